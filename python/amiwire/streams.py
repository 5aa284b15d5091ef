"""The stream a subscription is read through: events (:meth:`Client.events`) or the live
state's changes (:meth:`Live.changes`), from a bounded queue the connection's driver fills."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from . import _core
from .exceptions import ClientClosed, ConnectionLost

if TYPE_CHECKING:
    from .client import _Bridge

_T = TypeVar("_T")

# Items handed over per batch by default. Larger batches cost no less CPU per event, but the
# events of a batch and those queued meanwhile are alive together: at 4,096 a consumer that
# falls behind under a flood peaked at 44 MB, at 1,024 at 36 MB (benches/README.md).
BATCH = 1024


class EventStream(Generic[_T]):
    """Events from one subscription; see :meth:`Client.events`. Typed as the classes it was
    asked for (``EventStream[Hangup | DialEnd]``), else ``EventStream[Message]``; the live
    state's changes come as ``EventStream[LiveChange]`` (:meth:`Live.changes`)."""

    def __init__(self, bridge: _Bridge, sub: _core.EventSubscription, wanted: str = "*") -> None:
        self._bridge = bridge
        self._sub = sub
        self._wanted = wanted
        self._buffer: list[_T] = []
        self._index = 0

    async def next_batch(self, max: int = BATCH) -> list[_T]:
        """Waits for events and returns every queued one (up to ``max``) at once: the fastest
        way to consume a flood. Raises StopAsyncIteration when the stream has ended."""
        sub = self._sub
        waited = False
        while True:
            batch = sub.drain(max)
            if batch:
                # At least one turn of the loop per batch: a queue that never runs dry (a flood
                # faster than the consumer) must not keep every other task, a Ping's reply
                # among them, waiting until the flood ends. A batch waited for had its turn.
                if not waited:
                    await asyncio.sleep(0)
                return cast("list[_T]", batch)  # the subscription matches _T's items only
            if sub.closed:
                if sub.overflowed:
                    raise ClientClosed(
                        f"event stream closed: its queue reached the {sub.limit_hit} (overflow='disconnect')"
                    )
                if sub.failure is not None:
                    raise ConnectionLost(f"event stream ended: {sub.failure}")
                raise StopAsyncIteration
            if sub.arm():
                fut = self._bridge.running_loop().create_future()
                self._bridge.waiting[self] = fut
                try:
                    await fut
                finally:
                    self._bridge.waiting.pop(self, None)
                waited = True

    def __aiter__(self) -> AsyncIterator[_T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_T]:
        while True:
            try:
                batch = await self.next_batch(BATCH)
            except StopAsyncIteration:
                return
            for event in batch:
                yield event

    async def __anext__(self) -> _T:
        if self._index >= len(self._buffer):
            self._buffer = await self.next_batch(BATCH)
            self._index = 0
        event = self._buffer[self._index]
        self._index += 1
        return event

    def close(self) -> None:
        """Stops this stream; queued events are discarded."""
        self._sub.close()

    async def __aenter__(self) -> EventStream[_T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        """Events lost because this stream's queue was full."""
        return self._sub.dropped

    @property
    def delivered(self) -> int:
        return self._sub.delivered

    @property
    def queued_bytes(self) -> int:
        """Bytes of the events waiting in this stream's queue."""
        return self._sub.queued_bytes

    @property
    def limit_hit(self) -> str | None:
        """The limit this stream's queue last ran into (``"max_bytes limit of … bytes"``)."""
        return self._sub.limit_hit

    @property
    def queued(self) -> int:
        return self._sub.queued

    @property
    def gaps(self) -> int:
        """Reconnects this stream lived through (events may be missing around each)."""
        return self._sub.gaps

    @property
    def closed(self) -> bool:
        return self._sub.closed

    def _summary(self) -> str:
        """What the stream matches and its counters, for this repr and the blocking one."""
        counters = f"{self.queued} queued, {self.delivered} delivered, {self.dropped} dropped, {self.gaps} gaps"
        return f"{self._wanted}: {counters}{', closed' if self.closed else ''}"

    def __repr__(self) -> str:
        return f"<amiwire.EventStream {self._summary()}>"
