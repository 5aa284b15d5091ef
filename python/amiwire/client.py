"""The asyncio AMI client.

Everything that touches the socket runs in a Rust task; this module only turns its
completions and event batches into asyncio results, on the loop thread. A connection wakes the
loop through one file descriptor (``loop.add_reader``), once per burst, never per message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar, overload
from urllib.parse import parse_qs, unquote, urlsplit

from . import _core
from ._core import LiveBridge, LiveCall, LiveChannel, LiveMap, Message
from ._ranges import check_ranges
from ._schema import Action, HeaderValue, ListAction, Schema, for_version
from .events import OriginateResponse, event_name
from .exceptions import ActionError, ClientClosed, ConnectionLost, LocalProtocolError
from .live import Call, Live, new_channel_ids
from .streams import BATCH, EventStream

__all__ = ["Client", "EventStream", "connect", "parse_url", "OriginateFailed"]

log = logging.getLogger("amiwire")

# An event callback: a function or a coroutine function taking the event.
_Callback = TypeVar("_Callback", bound=Callable[[Message], object])
Overflow = Literal["drop_oldest", "drop_newest", "disconnect"]
HeaderFilter = str | re.Pattern[str] | Iterable[str | re.Pattern[str]]

DEFAULT_PORTS = {"tcp": 5038, "tls": 5039, "http": 8088, "https": 8089}
HTTP_ENDPOINTS = {"rawman", "mxml", "manager", "arawman", "amxml", "amanager"}


_M = TypeVar("_M", bound=Message)
_E1 = TypeVar("_E1", bound=Message)
_E2 = TypeVar("_E2", bound=Message)
_E3 = TypeVar("_E3", bound=Message)
_E4 = TypeVar("_E4", bound=Message)

# The keywords of action() and originate(): a header name close to one is a typo to refuse
# (``timout=3`` would otherwise be sent as ``timout: 3``).
ACTION_KEYWORDS = ("timeout", "action_id", "raise_on_error", "list_complete", "headers", "check")
ORIGINATE_KEYWORDS = (
    "channel", "exten", "context", "priority", "application", "data", "caller_id", "variables",
    "timeout", "ring_timeout", "check",
)


class OriginateFailed(ActionError):
    """A tracked originate ended in ``OriginateResponse: Failure``. ``reason`` is the
    AST_CONTROL code (0 no such extension or failed, 1 hung up, 3 ring timeout, 5 busy,
    8 congestion) and ``reason_text`` its name."""

    REASONS = {
        0: "failed",
        1: "hung up",
        3: "no answer",
        4: "answered",
        5: "busy",
        8: "congestion",
    }

    def __init__(self, message: str, *, reason: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason
        self.reason_text = self.REASONS.get(reason, "unknown") if reason is not None else None


# The connect() keywords a URL's query may set, by the type its text is converted to.
URL_FLAGS = frozenset({"insecure", "reconnect", "tls", "https", "live", "live_variables"})
URL_SECONDS = frozenset({"timeout", "connect_timeout", "keepalive", "reconnect_initial", "reconnect_max"})
URL_COUNTS = frozenset({"port", "reconnect_attempts", "poll_timeout", "http_timeout", "list_limit"})
URL_TEXTS = frozenset({"auth", "events", "ca_file", "server_name", "record"})
URL_OPTIONS = URL_FLAGS | URL_SECONDS | URL_COUNTS | URL_TEXTS

_URL_FORMS = "tcp://user:secret@host:5038, tls://…:5039 or http(s)://user:secret@host:8088/rawman"


def _url_error(problem: str) -> LocalProtocolError:
    # Never quote the URL itself: it may hold the secret.
    return LocalProtocolError(f"bad AMI URL: {problem}")


def parse_url(url: str) -> dict[str, Any]:
    """``tcp://user:secret@host:5038``, ``tls://…:5039``, or AMI over HTTP:
    ``http://user:secret@host:8088/rawman`` (also ``https://``, ``/mxml``, ``/manager`` and the
    Digest variants ``/arawman``, ``/amxml``, ``/amanager``; a path prefix such as
    ``/asterisk/rawman`` is the ``http.conf`` prefix). Query options such as
    ``?auth=md5&events=off&insecure=1`` become connect() keywords.

    The username and secret are percent-decoded: write ``/ ? # @ : %`` in them as ``%2F %3F
    %23 %40 %3A %25`` (``urllib.parse.quote(secret, safe="")``). A malformed URL raises
    :class:`~amiwire.LocalProtocolError` (a ``ValueError``) whose message never quotes the
    credentials; an unknown query option is refused by name."""
    if "://" not in url:
        raise _url_error(f"expected {_URL_FORMS}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _url_error("the host part is malformed (an IPv6 address goes in brackets: [::1])") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _url_error(f"unsupported scheme {scheme!r}: use tcp://, tls://, http:// or https://")
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        # The user info ended early at a '/', '?' or '#' that belongs to the secret.
        raise _url_error(
            "percent-encode '/', '?', '#' and '%' in the username or secret "
            "(urllib.parse.quote(secret, safe=''))"
        )
    try:
        port = parts.port
    except ValueError:
        raise _url_error("the port must be a number from 1 to 65535") from None
    opts: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port or DEFAULT_PORTS[scheme],
    }
    if scheme in {"http", "https"}:
        prefix, _, endpoint = parts.path.rstrip("/").rpartition("/")
        if endpoint.lower() not in HTTP_ENDPOINTS:
            raise _url_error(f"an AMI HTTP URL's path ends in one of {', '.join(sorted(HTTP_ENDPOINTS))}")
        opts.update(http_endpoint=endpoint.lower(), http_prefix=prefix, https=scheme == "https")
    else:
        if parts.path not in {"", "/"}:
            raise _url_error(f"a {scheme}:// URL has no path")
        opts["tls"] = scheme == "tls"
    if parts.username is not None:
        opts["username"] = unquote(parts.username)
    if parts.password is not None:
        opts["secret"] = unquote(parts.password)
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        opts[key] = _url_option(key, values[-1])
    return opts


def _url_option(key: str, text: str) -> Any:
    """A query option's value, converted to the type connect() takes."""
    if key not in URL_OPTIONS:
        raise _url_error(f"unknown option {key!r} (known: {', '.join(sorted(URL_OPTIONS))})")
    if key in URL_FLAGS:
        # A bare flag (``?insecure``) means yes.
        return text.lower() in {"", "1", "true", "yes", "on"}
    try:
        if key in URL_SECONDS:
            return float(text)
        if key in URL_COUNTS:
            return int(text)
    except ValueError:
        kind = "a number of seconds" if key in URL_SECONDS else "a whole number"
        raise _url_error(f"option {key!r} must be {kind}, not {text!r}") from None
    return text


def _sends_call_events(mask: str) -> bool:
    """Whether a session with this event mask gets call events (OriginateResponse among them)."""
    words = {word.strip().lower() for word in mask.split(",")}
    return bool(words & {"on", "yes", "true", "call", "all"})


def _header_items(headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]) -> list[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        elif isinstance(value, (str, int, float)):
            out.append((key, str(value)))
        else:
            # A list becomes a repeated header (Variable: a=1, Variable: b=2).
            out.extend((key, str(v)) for v in value)
    return out


def _matchers(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, re.Pattern):
        return [("regex", value.pattern)]
    if isinstance(value, str):
        return [("glob", value)]
    if isinstance(value, Iterable):
        return [m for v in value for m in _matchers(v)]
    return [("glob", str(value))]


class _ActionFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future of one action. Cancelling it (directly, through the task awaiting it, or by
    ``asyncio.wait_for``) also forgets the action in the connection, so nothing waits for a
    reply nobody wants."""

    __slots__ = ("_conn", "_token")
    _conn: _core.Connection
    _token: int

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        self._conn.cancel(self._token)
        return True


async def _deferred(conn: _core.Connection, action: _core.DeferredAction) -> Message:
    """What an action method returns when called with no running loop (``asyncio.run(ami.ping())``):
    the action, already checked, leaves when this coroutine runs."""
    return await conn.submit_deferred(action)


class _Bridge:
    """Watches one connection's wake-up descriptor on whichever loop the client is used from,
    and runs what a wake-up brings: finished actions (settled in Rust), event streams waiting
    for events, state-change callbacks."""

    def __init__(self) -> None:
        self.conn: _core.Connection
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: dict[EventStream[Any], asyncio.Future[None]] = {}
        # Woken by the next wake-up, whatever it brings (each re-checks what it waits for).
        self.next_wakeup: list[asyncio.Future[None]] = []
        self.state_callbacks: list[Callable[[str, str | None], Any]] = []
        self.state_seen = 0
        self.peer = ""

    def connect(self, options: dict[str, Any]) -> _core.Connection:
        # Who and where, for log lines: never the secret.
        user = options.get("username")
        self.peer = f"{user + '@' if user else ''}{options['host']}:{options['port']}"
        self.conn = _core.Connection(options, self.attach, _ActionFuture)
        return self.conn

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Moves the wake-up reader to ``loop`` (the connection calls this when it makes its
        first future on a new loop)."""
        if loop is not self.loop:
            self.remove_reader()
            loop.add_reader(self.conn.fileno(), self.on_wakeup)
            self.loop = loop

    def running_loop(self) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "amiwire.Client needs a running asyncio event loop; "
                "from synchronous code use amiwire.connect_blocking()"
            ) from None
        self.attach(loop)
        return loop

    def remove_reader(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        self.loop = None

    def detach(self) -> None:
        """For good: the connection is closed. The last state changes are reported even if
        their wake-up was not read yet."""
        self.report_states()
        self.remove_reader()
        self.conn.detach()

    def on_wakeup(self) -> None:
        self.conn.resolve()
        if self.waiting:
            waiting, self.waiting = self.waiting, {}
            for fut in waiting.values():
                if not fut.done():
                    fut.set_result(None)
        if self.next_wakeup:
            woken, self.next_wakeup = self.next_wakeup, []
            for fut in woken:
                if not fut.done():
                    fut.set_result(None)
        self.report_states()

    async def live_built(self) -> None:
        """Until the live state's rebuild from the PBX's lists is over (or the connection
        closed): the rebuild's end wakes the loop."""
        while self.conn.state != "closed" and self.conn.live_status()["rebuilding"]:
            fut = self.running_loop().create_future()
            self.next_wakeup.append(fut)
            await fut

    def report_states(self) -> None:
        if self.conn.state_changes != self.state_seen:
            # Every change since the last wake-up, in order: a reconnect quicker than a busy
            # loop's wake-up still reports "reconnecting" before "connected".
            for seq, state, reason in self.conn.transitions_since(self.state_seen):
                self.state_seen = seq
                log.info("amiwire %s %s%s", self.peer, state, f": {reason}" if reason else "")
                for callback in list(self.state_callbacks):
                    try:
                        callback(state, reason)
                    except Exception:
                        log.exception("amiwire: state callback %r failed", callback)


class Client:
    """An AMI session. Create it with :func:`connect`.

    Every method is safe to call concurrently: actions are pipelined and correlated by
    ActionID in Rust. The action methods (:meth:`action`, :meth:`ping`, :meth:`add_filter`,
    :meth:`set_event_mask`) queue the action at once and return an :class:`asyncio.Future`:
    actions leave in the order they were called, whether or when they are awaited, and
    ``asyncio.gather`` needs no task per action. A usage error (say, CR or LF in a header)
    raises at the call, before anything is sent. Nothing waits forever: each action has a
    deadline (``timeout`` per call, or the connection default); cancelling the future (or the
    task awaiting it) forgets the action; a lost connection fails every pending action at once
    with :class:`~amiwire.ConnectionLost`.
    """

    def __init__(
        self,
        conn: _core.Connection,
        bridge: _Bridge,
        events: str = "on",
        early_stream: EventStream[Message] | None = None,
        live: bool = False,
    ) -> None:
        self._conn = conn
        self._bridge = bridge
        self._early_stream = early_stream
        # Chosen once, at connect: with DEBUG off, an action costs not even a level check.
        self._submit: Callable[..., Any] = self._submit_traced if log.isEnabledFor(logging.DEBUG) else conn.submit
        self._callbacks: list[asyncio.Task[None]] = []
        # The event mask the session has once the actions already queued have run.
        self._events = events
        # The AMI documentation for the server's version, and that version.
        self._docs: tuple[str | None, Schema] | None = None
        # Decided at connect: reading `ami.channels` asks Rust for nothing but the snapshot.
        self._live = Live(conn, bridge) if live else None

    def _submit_traced(self, name: str, *args: Any) -> Any:
        """``Connection.submit``, plus one DEBUG line per action (never its headers: they may
        hold a secret)."""
        pending = self._conn.submit(name, *args)
        trace = _ActionTrace(self._bridge.peer, name)
        if isinstance(pending, asyncio.Future):
            pending.add_done_callback(trace.done)
            return pending
        return trace.awaiting(pending)  # a deferred action (no running loop): a coroutine

    # -- actions -------------------------------------------------------------------------

    def _documentation(self) -> Schema:
        """Asterisk's AMI docs for the version logged in to (the newest when unknown)."""
        version = self._conn.asterisk_version
        if self._docs is None or self._docs[0] != version:
            self._docs = (version, for_version(version))
        return self._docs[1]

    def _checked(
        self,
        name: str | Action,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]],
        kwargs: Mapping[str, HeaderValue],
        keywords: Collection[str],
        check: bool,
    ) -> tuple[str, list[tuple[str, str]]]:
        """The name and wire headers of an action; with ``check``, refused before anything is
        sent if the server's documentation of ``name`` has no such parameter or needs another."""
        if isinstance(name, Action):
            given = headers.items() if isinstance(headers, Mapping) else headers
            headers, name = [*name.headers, *given], name.name
        items = _header_items(headers) + _header_items(kwargs) if headers or kwargs else []
        if check:
            empty = [k for k, v in items if not v]
            respell = self._documentation().check(name, [k for k, _ in items], keywords, empty)
            if respell:
                items = [(respell.get(k, k), v) for k, v in items]
        return name, items

    def action(
        self,
        name: str | Action,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        action_id: str | None = None,
        raise_on_error: bool = True,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> asyncio.Future[Message]:
        """Sends action ``name`` (a name, or an action made by :mod:`amiwire.actions`) with
        ``headers`` and keyword headers; the future resolves to the response.

        Checked before anything is sent, against the documentation of the server's Asterisk
        version (:attr:`asterisk_version`; the newest when unknown): for a documented action,
        an unknown parameter or a missing required one raises
        :class:`~amiwire.LocalProtocolError` naming the nearest valid name, the client's own
        keywords included (``timout=3`` -> ``timeout``); names match ignoring case and ``_``
        (``caller_id=`` is sent as ``CallerID``). An undocumented action (a module's, a newer
        Asterisk's) goes through, unless a keyword looks like a mistyped one of this method.
        ``check=False`` sends the action as given.

        A list action (the response says ``EventList: start``) resolves once its completion
        event arrived: items in ``response.events``, the completion in ``response.complete``.
        For servers that answer a list without ``EventList`` (Asterisk 11), name the event
        that ends it with ``list_complete``. ``Response: Error`` raises
        :class:`~amiwire.ActionError` carrying the response, unless ``raise_on_error`` is
        false (then the error response is the result). A list value becomes a repeated
        header; booleans become ``true``/``false``.
        """
        name, items = self._checked(name, headers, kwargs, ACTION_KEYWORDS, check)
        expect = "list" if list_complete else "auto"
        return self._submit(name, items, expect, list_complete, timeout, action_id, raise_on_error)

    @overload
    async def action_list(
        self,
        name: ListAction[_M],
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> list[_M]: ...
    @overload
    async def action_list(
        self,
        name: str | Action,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> list[Message]: ...
    async def action_list(
        self,
        name: str | Action,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> list[Any]:
        """A list action's items (the response and completion are on ``.events``' owner:
        use :meth:`action` to get them); typed events for a list action of
        :mod:`amiwire.actions`. Checked as :meth:`action` checks."""
        name, items = self._checked(name, headers, kwargs, ACTION_KEYWORDS, check)
        response = await self._submit(name, items, "list" if list_complete else "auto", list_complete, timeout)
        return list(response.events)

    def ping(self, *, timeout: float | None = None) -> asyncio.Future[Message]:
        """``Ping``; the response has ``Ping: Pong`` and a ``Timestamp``."""
        return self._submit("Ping", [], "auto", None, timeout)

    async def command(self, command: str, *, timeout: float | None = None) -> str:
        """Runs a CLI command and returns its output as text, exactly (indentation and trailing
        spaces kept; one ``\\n`` per line). Works with Asterisk 14+ (``Output:`` headers) and
        the legacy ``Response: Follows … --END COMMAND--`` form alike. An unknown command
        raises :class:`~amiwire.ActionError` whose ``output`` attribute has the text."""
        try:
            response = await self.action("Command", Command=command, timeout=timeout)
        except ActionError as err:
            err.output = _core.command_output(err.response)
            raise
        output = _core.command_output(response)
        if output.startswith("No such command "):
            # Asterisk <= 13 reports unknown commands as ordinary output.
            raise ActionError(output.strip(), response=response, action_id=response.action_id, output=output)
        return output

    async def originate(
        self,
        channel: str,
        *,
        exten: str | None = None,
        context: str | None = None,
        priority: int | None = 1,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        ring_timeout: float | None = None,
        check: bool = True,
        **headers: HeaderValue,
    ) -> OriginateResponse:
        """Places a call with ``Async: true`` and waits for its ``OriginateResponse``.

        Returns the OriginateResponse event on success (``Response: Success``, ``Channel``,
        ``Uniqueid``); raises :class:`OriginateFailed` with ``reason`` otherwise. Async is
        forced because a synchronous Originate blocks the whole connection until the call is
        answered. The OriginateResponse is a ``call`` event: with events off (or a mask without
        ``call``) Asterisk never sends it, so that raises :class:`~amiwire.LocalProtocolError`
        at once instead of waiting out the deadline. ``timeout`` bounds the whole wait;
        ``ring_timeout`` is Asterisk's own ``Timeout`` (ms on the wire) for the ringing phase.
        Other keyword headers are checked as :meth:`action` checks them (``aplication=`` is
        refused: did you mean ``application``?), unless ``check`` is false.
        """
        items: list[tuple[str, str]] = [("Channel", channel)]
        if application:
            items.append(("Application", application))
            if data is not None:
                items.append(("Data", data))
        else:
            items += [(k, str(v)) for k, v in (("Exten", exten), ("Context", context), ("Priority", priority)) if v is not None]
        if caller_id:
            items.append(("CallerID", caller_id))
        if ring_timeout is not None:
            items.append(("Timeout", str(int(ring_timeout * 1000))))
        for key, value in (variables or {}).items():
            items.append(("Variable", f"{key}={value}"))
        extra = {k: v for k, v in headers.items() if k.lower() != "async"}
        _, items = self._checked("Originate", items, extra, ORIGINATE_KEYWORDS, check)
        items.append(("Async", "true"))
        if not _sends_call_events(self._events):
            raise LocalProtocolError(
                f"originate() waits for the OriginateResponse event, which Asterisk sends only to "
                f"sessions whose event mask has the 'call' class; this connection's mask is "
                f"{self._events!r}: connect with events on, or set_event_mask('call,...') first"
            )
        try:
            response = await self._submit("Originate", items, "originate", None, timeout)
        except ActionError as err:
            complete = err.events[-1] if err.events else None
            if complete is not None and complete.get("Event") == "OriginateResponse":
                reason = int(complete.get("Reason", "0") or 0)
                raise OriginateFailed(
                    f"originate to {channel} failed: {OriginateFailed.REASONS.get(reason, 'reason')} (Reason {reason})",
                    reason=reason,
                    response=complete,
                    events=err.events,
                    action_id=err.action_id,
                ) from None
            raise
        complete = response.complete
        assert isinstance(complete, OriginateResponse)  # a tracked originate ends in its OriginateResponse
        return complete

    async def call(
        self,
        channel: str,
        *,
        exten: str | None = None,
        context: str | None = None,
        priority: int | None = 1,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        ring_timeout: float | None = None,
    ) -> Call:
        """Places a call like :meth:`originate` and returns at once a :class:`~amiwire.Call`
        that follows it through the live state (``connect(live=True)``): ``await
        call.answered()``, ``await call.ended()``, ``call.events()``, ``await call.hangup()``,
        ``await call.redirect(...)``. The call's first channel gets a Uniqueid chosen here
        (Originate's ``ChannelId``), so nothing of it is missed."""
        live = self.live  # raises unless the connection keeps the live state
        uniqueid, other = new_channel_ids()
        placed = asyncio.ensure_future(
            self.originate(
                channel,
                exten=exten,
                context=context,
                priority=priority,
                application=application,
                data=data,
                caller_id=caller_id,
                variables=variables,
                timeout=timeout,
                ring_timeout=ring_timeout,
                ChannelId=uniqueid,
                OtherChannelId=other,
            )
        )
        # A failure nobody awaits is still reported by the call's methods, not as a warning.
        placed.add_done_callback(lambda f: f.cancelled() or f.exception())
        return Call(self, live, uniqueid, placed)

    @property
    def live(self) -> Live:
        """The PBX's live channels, bridges and calls (``connect(live=True)``); raises
        :class:`~amiwire.LocalProtocolError` on a connection that keeps none."""
        if self._live is None:
            raise LocalProtocolError("this connection keeps no live state: connect with live=True")
        return self._live

    @property
    def channels(self) -> LiveMap[LiveChannel]:
        """Live channels by Uniqueid, as of now (a read-only snapshot; see :attr:`live`)."""
        return self.live.snapshot().channels

    @property
    def bridges(self) -> LiveMap[LiveBridge]:
        """Live bridges by id, as of now (a read-only snapshot)."""
        return self.live.snapshot().bridges

    @property
    def calls(self) -> LiveMap[LiveCall]:
        """Calls in progress by Linkedid (the channels of each), as of now."""
        return self.live.snapshot().calls

    def set_event_mask(self, mask: str, *, timeout: float | None = None) -> asyncio.Future[Message]:
        """``Action: Events``. The mask is checked client-side (Asterisk silently turns events
        off on a typo). Restored after a reconnect."""
        _core.check_event_mask(mask)
        future = self._submit("Events", [("EventMask", mask)], "auto", None, timeout)
        self._events = mask
        return future

    def add_filter(
        self,
        filter: str | None = None,
        *,
        match_criteria: str | None = None,
        timeout: float | None = None,
    ) -> asyncio.Future[Message]:
        """Adds a server-side event filter (``Action: Filter``) so a busy PBX sends less.

        ``filter`` is Asterisk's regex form, e.g. ``"Event: Hangup"`` (a substring match:
        anchor it as ``"Event: Hangup$"`` to exclude HangupRequest) or ``"!Event: VarSet"``.
        ``match_criteria`` is the structured form of Asterisk 18.26/20.11/22.1+
        (``"name(Newchannel)"``). Filters cannot be removed except by reconnecting; amiwire
        re-adds them after a reconnect.
        """
        items: list[tuple[str, str]] = [("Operation", "Add")]
        if match_criteria is not None:
            items.append(("MatchCriteria", match_criteria))
        if filter is not None:
            items.append(("Filter", filter))
        if len(items) == 1:
            raise LocalProtocolError("add_filter needs a filter or match_criteria")
        return self._submit("Filter", items, "auto", None, timeout)

    # -- events --------------------------------------------------------------------------

    @overload
    def events(
        self,
        *patterns: str,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[Message]: ...
    @overload
    def events(
        self,
        __a: type[_E1],
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[_E1]: ...
    @overload
    def events(
        self,
        __a: type[_E1],
        __b: type[_E2],
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[_E1 | _E2]: ...
    @overload
    def events(
        self,
        __a: type[_E1],
        __b: type[_E2],
        __c: type[_E3],
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[_E1 | _E2 | _E3]: ...
    @overload
    def events(
        self,
        __a: type[_E1],
        __b: type[_E2],
        __c: type[_E3],
        __d: type[_E4],
        *,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[_E1 | _E2 | _E3 | _E4]: ...
    @overload
    def events(
        self,
        *patterns: str | type[Message],
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[Message]: ...
    def events(
        self,
        *patterns: str | type[Message],
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> EventStream[Any]:
        """An async iterator over events, filtered in Rust before they reach Python.

        ``patterns`` are event names or globs (``"Hangup"``, ``"Dial*"``), or classes of
        :mod:`amiwire.events` (``ami.events(Hangup, DialEnd)``: the stream is then typed as
        those classes for type checkers); none means every event. ``header_filters`` require
        header values: a string (exact, or a glob with ``*``/``?``), a compiled regex
        (searched), or a list of those (any). Each stream has its own queue, bounded in bytes
        (``max_bytes``, 64 MiB by default) and, if given, in events (``maxsize``); all the
        queues of a client together hold at most ``max_event_bytes`` (see :func:`connect`).
        When a limit is reached, ``overflow`` decides: ``drop_oldest`` (default),
        ``drop_newest`` or ``disconnect`` (the stream then raises, naming the limit).
        ``stream.dropped`` counts what was lost, ``stream.limit_hit`` says which limit it met,
        ``stream.gaps`` the reconnects it lived through. Several streams may run at once; each
        sees every matching event. A stream
        ends when the client is closed; when the connection fails for good instead (reconnect
        off or given up), it raises :class:`~amiwire.ConnectionLost` with the reason.
        """
        names = [p if isinstance(p, str) else event_name(p) for p in patterns]
        headers = [(name, _matchers(value)) for name, value in header_filters.items()]
        sub = self._conn.subscribe(names, headers, maxsize, overflow, max_bytes)
        wanted = [*names, *(f"{name}={value!r}" for name, value in header_filters.items())]
        return EventStream(self._bridge, sub, " ".join(wanted) or "*")

    @overload
    def on(
        self, pattern: str = "*", callback: None = None, **header_filters: HeaderFilter
    ) -> Callable[[_Callback], _Callback]: ...
    @overload
    def on(self, pattern: str, callback: _Callback, **header_filters: HeaderFilter) -> _Callback: ...
    def on(
        self, pattern: str = "*", callback: _Callback | None = None, **header_filters: HeaderFilter
    ) -> _Callback | Callable[[_Callback], _Callback]:
        """Calls ``callback(event)`` (a function or a coroutine function) for each matching
        event, on the event loop thread; usable as a decorator (``@ami.on("Hangup")``), which
        returns the function unchanged. The callbacks are consumers like any stream: a slow
        one loses events (``drop_oldest``) rather than stalling the connection. Needs a
        running loop."""

        def register(fn: _Callback) -> _Callback:
            stream = self.events(pattern, maxsize=None, overflow="drop_oldest", max_bytes=None, **header_filters)
            self._callbacks.append(asyncio.get_running_loop().create_task(_run_callback(stream, fn)))
            return fn

        return register(callback) if callback is not None else register

    @property
    def early_stream(self) -> EventStream[Message] | None:
        """With ``connect(..., early_stream=True)``: a stream of every event, subscribed before
        the login, so it sees the session from its first event (``FullyBooted``, and whatever
        was happening as the session opened). None otherwise."""
        return self._early_stream

    # -- life ----------------------------------------------------------------------------

    def on_state_change(self, callback: Callable[[str, str | None], Any]) -> Callable[[str, str | None], Any]:
        """Calls ``callback(state, reason)`` on the loop thread whenever the connection
        changes state (``connected``, ``reconnecting``, ``closed``); usable as a decorator.
        Needs the loop to be running, as any wake-up does."""
        self._bridge.state_callbacks.append(callback)
        self._bridge.running_loop()
        return callback

    async def close(self) -> None:
        """Logs off and closes the connection; pending actions fail with ClientClosed."""
        for task in self._callbacks:
            task.cancel()
        self._callbacks.clear()
        try:
            if self._conn.state != "closed":
                await self._conn.close()
        except ClientClosed:
            pass  # closed meanwhile (a concurrent close)
        finally:
            self._bridge.detach()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def state(self) -> str:
        """``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self._conn.state

    @property
    def state_reason(self) -> str | None:
        """Why the connection last changed state (the error that broke it, say)."""
        return self._conn.state_reason

    @property
    def banner(self) -> str | None:
        """The server's banner, e.g. ``Asterisk Call Manager/11.0.0``."""
        return self._conn.banner

    @property
    def ami_version(self) -> str | None:
        """The AMI version from the banner (``11.0.0`` for Asterisk 22)."""
        return self._conn.ami_version

    @property
    def asterisk_version(self) -> str | None:
        """``AsteriskVersion`` from CoreSettings (None if the user may not read it)."""
        return self._conn.asterisk_version

    def stats(self) -> dict[str, int]:
        """Connection counters: ``messages``, ``events``, ``orphans``, ``decode_errors``,
        ``reconnects``, ``bytes_read``; ``pending`` actions; ``queued_event_bytes`` of
        ``max_event_bytes``; and who read the socket: ``loop_reads`` (the event loop's thread,
        plain TCP), ``driver_reads`` (amiwire's I/O thread), ``stall_takeovers`` (the loop had
        not read waiting data for 5 ms) and ``flood_handovers`` (a read found a flood waiting)."""
        return self._conn.stats()

    def __repr__(self) -> str:
        return f"<amiwire.Client {self.state} {self.banner or ''}>"


class _ActionTrace:
    """The DEBUG line of one action: name, ActionID, outcome and how long it took."""

    __slots__ = ("peer", "name", "started")

    def __init__(self, peer: str, name: str) -> None:
        self.peer = peer
        self.name = name
        self.started = time.perf_counter()

    def done(self, future: asyncio.Future[Message]) -> None:
        if future.cancelled():
            self.log(None, "cancelled")
        elif (err := future.exception()) is not None:
            self.log(getattr(err, "action_id", None), type(err).__name__)
        else:
            response = future.result()
            self.log(response.action_id, response.response or "answered")

    async def awaiting(self, pending: Awaitable[Message]) -> Message:
        try:
            response = await pending
        except Exception as err:
            self.log(getattr(err, "action_id", None), type(err).__name__)
            raise
        self.log(response.action_id, response.response or "answered")
        return response

    def log(self, action_id: str | None, outcome: str) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        log.debug("amiwire %s action %s ActionID=%s: %s in %.1f ms", self.peer, self.name, action_id, outcome, elapsed)


async def _run_callback(stream: EventStream[Message], fn: Callable[[Message], Any]) -> None:
    async with stream:
        try:
            async for event in stream:
                try:
                    result = fn(event)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("amiwire: event callback %r failed", fn)
        except ConnectionLost as lost:
            # Nobody awaits this task: say it here rather than as a never-retrieved exception.
            log.warning("amiwire: callbacks for %r stopped: %s", fn, lost)


class _Connect:
    """What :func:`connect` returns: await it, or use it as ``async with``."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._client: Client | None = None

    async def _open(self) -> Client:
        bridge = _Bridge()
        conn = bridge.connect(self._options)
        early = conn.take_early_stream()
        early_stream: EventStream[Message] | None = None
        if early is not None:
            early_stream = EventStream(bridge, early, "* (from the session's start)")
        try:
            await conn.ready()
            if self._options.get("live"):
                # Returned with the state built from the PBX's lists: an answer that arrives
                # before them could name a channel the state does not show yet.
                await bridge.live_built()
        except BaseException:
            if conn.state != "closed":
                conn.close()  # cancelled while connecting: stop retrying in the background
            bridge.detach()
            raise
        self._client = Client(
            conn, bridge, self._options.get("events", "on"), early_stream, bool(self._options.get("live"))
        )
        return self._client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    url: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    username: str | None = None,
    secret: str | None = None,
    auth: Literal["plain", "md5"] = "plain",
    events: str = "on",
    timeout: float = 10.0,
    connect_timeout: float = 10.0,
    keepalive: float | None = 20.0,
    reconnect: bool = True,
    reconnect_initial: float = 0.2,
    reconnect_max: float = 10.0,
    reconnect_attempts: int = 0,
    tls: bool | None = None,
    ca_file: str | None = None,
    server_name: str | None = None,
    insecure: bool = False,
    record: str | None = None,
    list_limit: int = 250_000,
    max_list_bytes: int | None = None,
    max_event_bytes: int | None = None,
    early_stream: bool = False,
    max_body: int | None = None,
    max_bodies: int | None = None,
    live: bool = False,
    live_variables: bool = False,
) -> _Connect:
    """Connects and logs in to an AMI server; ``await`` it or use ``async with``.

    ``url`` is ``tcp://user:secret@host:5038`` or ``tls://user:secret@host:5039``; keywords
    override its parts. ``auth="md5"`` uses the Challenge login (the secret never crosses the
    wire). ``events`` is ``on``, ``off`` or a class mask like ``call,user`` (checked
    client-side). ``timeout`` is every action's default deadline. ``keepalive`` sends a Ping
    when idle that long and declares the connection dead if it goes unanswered (None turns it
    off). ``reconnect`` re-establishes a lost session with jittered exponential backoff
    (``reconnect_initial`` … ``reconnect_max`` seconds; ``reconnect_attempts`` 0 = forever),
    logs in again and restores the event mask and filters. Bad credentials raise
    :class:`~amiwire.AuthenticationError` at once, never a retry loop. ``tls`` with
    ``ca_file`` (PEM), ``server_name`` and ``insecure``; ``record`` writes the traffic as a
    JSONL transcript (secrets masked) that the simulator can replay (TCP and TLS; refused
    over HTTP). A list action that sends more than ``list_limit`` items raises
    :class:`~amiwire.ListTooLong` (with the first items) instead of growing without end, and so
    does one whose items pass ``max_list_bytes`` (64 MiB; TCP and TLS, over HTTP ``max_body``
    bounds the whole reply). ``max_event_bytes`` bounds the bytes all event streams of the client hold together
    (128 MiB by default). ``early_stream=True`` subscribes one stream of every event before
    the login: :attr:`Client.early_stream` then sees the session from its first event. Over
    HTTP, ``max_body`` bounds one response body (32 MiB) and ``max_bodies`` the bodies read
    at once (64 MiB); a bigger one fails the action with an error naming the limit.
    ``live=True`` keeps the PBX's channels, bridges and calls (:attr:`Client.live`,
    :attr:`Client.channels`, :meth:`Client.call`), rebuilt from its own lists after every gap
    (``connect`` returns once the first rebuild is done); it needs the ``call`` event class.
    ``live_variables`` also keeps channel variables.
    """
    options: dict[str, Any] = parse_url(url) if url else {}
    given = {
        "host": host,
        "port": port,
        "username": username,
        "secret": secret,
        "tls": tls,
    }
    options.update({k: v for k, v in given.items() if v is not None})
    options.setdefault("host", "127.0.0.1")
    if "port" not in options:
        options["port"] = DEFAULT_PORTS["tls" if options.get("tls") else "tcp"]
    for key, value in {
        "auth": auth,
        "events": events,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "keepalive": keepalive if keepalive is not None else 0.0,
        "reconnect": reconnect,
        "reconnect_initial": reconnect_initial,
        "reconnect_max": reconnect_max,
        "reconnect_attempts": reconnect_attempts,
        "ca_file": ca_file,
        "server_name": server_name,
        "insecure": insecure,
        "record": record,
        "list_limit": list_limit,
        "max_list_bytes": max_list_bytes,
        "max_event_bytes": max_event_bytes,
        "early_stream": early_stream,
        "max_body": max_body,
        "max_bodies": max_bodies,
        "live": live,
        "live_variables": live_variables,
    }.items():
        options.setdefault(key, value)
    if options["live"] and not _sends_call_events(options["events"]):
        raise LocalProtocolError(
            f"live=True follows the call events, which this connection's mask {options['events']!r} "
            "does not have: connect with events on, or a mask with 'call'"
        )
    check_ranges(options, non_negative=_SECONDS, counts=_COUNTS, error=LocalProtocolError)
    return _Connect(options)


# connect()'s numeric options: seconds, and whole numbers with their range.
_SECONDS = ("timeout", "connect_timeout", "keepalive", "reconnect_initial", "reconnect_max")
_COUNTS = {
    "port": range(1, 65536),
    "reconnect_attempts": range(0, 2**32),
    "poll_timeout": range(0, 2**32),
    "http_timeout": range(0, 2**32),
    "list_limit": range(1, 2**63),
}
