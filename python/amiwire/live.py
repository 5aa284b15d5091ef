"""The live state of a PBX (``connect(live=True)``): channels, bridges and calls kept in Rust
from the events, rebuilt from the PBX's own lists on connect and after every reconnect; and
:class:`Call`, a call placed with :meth:`Client.call` and followed to its end."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from . import _core
from ._core import LiveChange, LiveChannel, LiveSnapshot, Message
from .exceptions import ClientClosed, LocalProtocolError
from .streams import EventStream

if TYPE_CHECKING:
    from .client import Client, Overflow, _Bridge
    from .events import OriginateResponse


class Live:
    """The live state of one connection: :attr:`Client.live`.

    :meth:`snapshot` is consistent and O(1); :meth:`changes` streams what changes. After a gap
    (a reconnect, an HTTP re-login) the state is rebuilt from ``CoreShowChannels``,
    ``BridgeList`` and ``BridgeInfo`` and the difference arrives as one set of changes:
    channels that ended meanwhile are removed with ``cause`` None, never a reset.
    """

    def __init__(self, conn: _core.Connection, bridge: _Bridge) -> None:
        self._conn = conn
        self._bridge = bridge

    def snapshot(self) -> LiveSnapshot:
        """Channels, bridges and calls at one moment, consistent with each other."""
        return self._conn.live_snapshot()

    def changes(
        self,
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        linkedid: str | None = None,
    ) -> EventStream[LiveChange]:
        """Every change from now on (``channel_added``, ``channel_changed`` with its
        ``fields``, ``channel_removed`` with the hangup ``cause``, and the same for bridges and
        calls), in a queue with the limits and overflow policies of :meth:`Client.events`.
        With ``linkedid``, only that call's (its channels and the call itself), picked in Rust
        by key: following thousands of calls costs each change one lookup, not one test per
        call."""
        sub = self._conn.subscribe_changes(maxsize, overflow, max_bytes, linkedid)
        wanted = f"live changes of {linkedid}" if linkedid else "live changes"
        return EventStream(self._bridge, sub, wanted)

    @property
    def rebuilding(self) -> bool:
        """A rebuild from the PBX's lists is under way (the snapshot is the one from before)."""
        return bool(self._conn.live_status()["rebuilding"])

    @property
    def status(self) -> dict[str, Any]:
        """``rebuilding``, ``rebuild_error`` (why the PBX's lists could not be read, if so),
        and counters: ``rebuilds``, ``rebuild_retries``, ``events``, ``orphan_events``."""
        return self._conn.live_status()

    def __repr__(self) -> str:
        return f"<amiwire.Live {self.snapshot()!r}>"


class Call:
    """A call placed with :meth:`Client.call`, followed through the live state.

    Its first channel's Uniqueid is chosen by amiwire (Originate's ``ChannelId``), so the call
    is known from the channel's birth on; ``linkedid`` is the same id, which every channel of
    the call (dialled legs, Local pairs) carries.
    """

    def __init__(self, client: Client, live: Live, uniqueid: str, placed: asyncio.Future[OriginateResponse]) -> None:
        self._client = client
        self._live = live
        self.uniqueid = uniqueid
        self.linkedid = uniqueid
        self._placed = placed
        self._changes = live.changes(linkedid=uniqueid)
        self._events: EventStream[Message] = client.events(Linkedid=uniqueid)
        self._removal: LiveChange | None = None
        self._ended: LiveChange | None = None
        self._seen = False

    async def answered(self) -> OriginateResponse:
        """Waits until the call is answered: its ``OriginateResponse``. Raises
        :class:`~amiwire.OriginateFailed` (busy, no answer, ...) when it is not."""
        return await asyncio.shield(self._placed)

    async def ended(self) -> LiveChange:
        """Waits until every channel of the call has hung up; returns the removal of the
        call's first channel (``cause``, ``cause_text``; ``cause`` None if it ended during a gap).
        If the call never started, raises what :meth:`answered` raises."""
        while self._ended is None:
            if self._never_started():
                self._close()
                await self.answered()  # raises why
            try:
                changes = await self._next_changes()
            except StopAsyncIteration:
                self._close()
                raise ClientClosed("the connection closed before the call ended") from None
            for change in changes:
                channel = change.channel
                if channel is not None and channel.uniqueid == self.uniqueid:
                    self._seen = True
                    if change.kind == "channel_removed":
                        self._removal = change
                if change.kind == "call_removed":  # the stream holds this call's changes only
                    self._close()
                    assert self._removal is not None  # its first channel went before it did
                    self._ended = self._removal
        return self._ended

    async def _next_changes(self) -> list[LiveChange]:
        """The call's next changes; none if its Originate ended first (which may mean it never
        started: the caller checks)."""
        if self._placed.done():
            return await self._changes.next_batch()
        batch = asyncio.ensure_future(self._changes.next_batch())
        either: set[asyncio.Future[Any]] = {batch, self._placed}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if batch.done():
            return batch.result()
        batch.cancel()
        return []

    def _never_started(self) -> bool:
        failed = self._placed.done() and self._placed.exception() is not None
        return failed and not self._seen and self.channel is None

    def _close(self) -> None:
        self._changes.close()  # the events stay readable: events() ends with the Call object

    def events(self) -> EventStream[Message]:
        """This call's events only (every event whose ``Linkedid`` is the call's), from the
        moment it was placed, kept until read or until this Call object is dropped."""
        return self._events

    @property
    def channel(self) -> LiveChannel | None:
        """The call's first channel as the live state has it now (None before it exists and
        after it hung up)."""
        return self._live.snapshot().channels.get(self.uniqueid)

    def _name(self) -> str:
        channel = self.channel
        if channel is None:
            raise LocalProtocolError(f"call {self.uniqueid} has no live channel")
        return channel.name

    async def hangup(self, cause: int = 16) -> Message:
        """Hangs the call's first channel up (``Hangup``, Q.850 ``cause``, 16 normal clearing)."""
        return await self._client.action("Hangup", Channel=self._name(), Cause=str(cause))

    async def redirect(self, context: str, exten: str, priority: int = 1) -> Message:
        """Sends the call's first channel to ``context``/``exten``/``priority`` (``Redirect``)."""
        return await self._client.action(
            "Redirect", Channel=self._name(), Context=context, Exten=exten, Priority=str(priority)
        )

    def __repr__(self) -> str:
        channel = self.channel
        state = channel.state_desc if channel is not None else ("ended" if self._ended else "not live")
        return f"<amiwire.Call {self.uniqueid} {state}>"


def new_channel_ids() -> tuple[str, str]:
    """Uniqueids for an Originate's two channels (``ChannelId``, ``OtherChannelId``)."""
    base = uuid.uuid4().hex
    return f"amiwire-{base}", f"amiwire-{base}-2"

