"""Type stubs for the compiled core (hand-written; checked by ``mypy.stubtest``)."""

import asyncio
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, ClassVar, Generic, TypeVar, final, overload

from typing_extensions import disjoint_base

_T = TypeVar("_T")

__all__ = [
    "Connection",
    "DeferredAction",
    "EventSubscription",
    "Message",
    "Parser",
    "Simulator",
    "__version__",
    "_shutdown",
    "log_records_dropped",
    "check_event_mask",
    "command_output",
    "encode_action",
    "event_classes",
    "HeaderField",
    "LiveBridge",
    "LiveCall",
    "LiveChange",
    "LiveChannel",
    "LiveMap",
    "LiveSnapshot",
    "parse",
]
__version__: str

def _shutdown() -> None: ...
def log_records_dropped() -> int:
    """Rust log records dropped because Python's logging could not keep up."""

@disjoint_base
class Message(Mapping[str, str]):
    """A read-only, case-insensitive ``Mapping[str, str]`` over one decoded AMI message.

    ``m[key]`` and ``get`` give the first value of a repeated header; ``get_all`` gives
    every value. Iteration yields each distinct name once, in its first-seen spelling.
    Values decode as UTF-8, or as Latin-1 when they are not valid UTF-8 (lossless:
    ``value.encode("latin-1")`` gives the bytes back); ``get_bytes`` and ``raw`` give the
    exact bytes. ``repr`` and ``_repr_html_`` mask the values of secret headers (``Secret``,
    ``Key``, ``Password``, ``Md5Cred``, ...).
    A Message equals another with the same wire bytes, or a Mapping with the same items.
    """

    __hash__: ClassVar[None]  # type: ignore[assignment]
    @property
    def name(self) -> str | None:
        """The event name (``Event:`` value) for events, else None."""

    @property
    def events(self) -> list[Message]:
        """For an action's response: the list items, in order (empty for anything else)."""

    @property
    def complete(self) -> Message | None:
        """For an action's response: the list's completion event, or a tracked originate's
        OriginateResponse; None otherwise."""

    @property
    def is_event(self) -> bool: ...
    @property
    def is_response(self) -> bool: ...
    @property
    def response(self) -> str | None:
        """``Success``, ``Error``, ``Follows``, ``Goodbye``... for responses, else None."""

    @property
    def action_id(self) -> str | None: ...
    @property
    def raw(self) -> bytes:
        """The exact bytes received, closing blank line included."""

    @property
    def offset(self) -> int:
        """Stream offset of the message's first byte."""

    @property
    def unparsed_lines(self) -> list[str]:
        """Lines without a colon, in order (not the legacy Command body)."""

    @property
    def body(self) -> str | None:
        """The legacy (Asterisk <= 13) ``Response: Follows`` CLI text, end marker excluded."""

    @overload
    def get(self, key: str, default: None = None) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: _T) -> str | _T: ...
    def get_all(self, key: str) -> list[str]: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def to_dict(self) -> dict[str, str | list[str]]:
        """``{name: value}`` in wire order; a repeated name maps to the list of its values."""

    def keys(self) -> KeysView[str]: ...
    def values(self) -> ValuesView[str]: ...
    def items(self) -> ItemsView[str, str]: ...
    def __getitem__(self, key: str, /) -> str: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def _repr_html_(self) -> str: ...

def event_classes() -> dict[str, type[Message]]:
    """``{event name as documented: class}`` for every typed event (see ``amiwire.events``)."""

@final
class HeaderField:
    """A documented header of a typed event, as an attribute: its first value when read, as
    text or (``integer``) an int; AttributeError when the event does not carry it."""

    def __new__(cls, header: str, integer: bool = False) -> HeaderField: ...
    @property
    def header(self) -> str:
        """The header's wire name, as documented."""

    @property
    def integer(self) -> bool:
        """Whether the value is read as an int."""

    @overload
    def __get__(self, instance: None, owner: type | None = None, /) -> HeaderField: ...
    @overload
    def __get__(self, instance: Message, owner: type | None = None, /) -> str | int: ...

@final
class Parser:
    """Incremental AMI decoder: bytes in, ``Message`` objects out, whatever the chunking.

    A message that breaks a limit never costs the stream: it is skipped up to the next blank
    line. With ``errors="raise"`` (default) ``feed`` raises ``RemoteProtocolError`` for it and
    keeps the messages decoded before it: the next ``feed()`` or ``drain()`` returns them
    first. With ``errors="skip"`` bad messages are only counted in ``error_count``.
    """

    def __new__(
        cls,
        *,
        max_line: int | None = None,
        max_lines: int | None = None,
        max_message: int | None = None,
        end_markers: list[str] | None = None,
        expect_banner: bool = True,
        errors: str = "raise",
    ) -> Parser: ...
    def feed(self, data: bytes | bytearray) -> list[Message]: ...
    def drain(self) -> list[Message]: ...
    @property
    def banner(self) -> str | None: ...
    @property
    def error_count(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def offset(self) -> int: ...

def parse(
    data: bytes | bytearray,
    *,
    max_line: int | None = None,
    max_lines: int | None = None,
    max_message: int | None = None,
    end_markers: list[str] | None = None,
    expect_banner: bool = True,
    errors: str = "raise",
) -> list[Message]:
    """Decode a complete byte string; same options as ``Parser``."""

def encode_action(
    name: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    action_id: str | None = None,
) -> bytes:
    """The wire bytes of an action; raises ``LocalProtocolError`` for header injection."""

def command_output(response: Message) -> str:
    """A Command response's CLI output as text, exact, from either Asterisk format; raises
    ``RemoteProtocolError`` when an HTTP encoding (Asterisk 13 ``/mxml``) lost it."""

def check_event_mask(mask: str) -> None:
    """Raises LocalProtocolError for an event mask Asterisk would silently treat as "off"."""

@final
class Connection:
    """One AMI connection driven by a tokio task; methods never block (see amiwire.client)."""

    def __new__(
        cls,
        options: Mapping[str, object],
        attach: Callable[[asyncio.AbstractEventLoop], object],
        future_class: type[asyncio.Future[Any]],
    ) -> Connection: ...
    def take_early_stream(self) -> EventSubscription | None: ...
    def fileno(self) -> int: ...
    def ready(self) -> asyncio.Future[Message]: ...
    def submit(
        self,
        name: str,
        headers: list[tuple[str, str]],
        expect: str = "auto",
        complete: str | None = None,
        timeout: float | None = None,
        action_id: str | None = None,
        raise_on_error: bool = True,
    ) -> asyncio.Future[Message]: ...
    def submit_deferred(self, deferred: DeferredAction) -> asyncio.Future[Message]: ...
    def flush(self) -> None: ...
    def cancel(self, token: int) -> None: ...
    def resolve(self) -> None: ...
    def on_readable(self) -> None: ...
    @property
    def pending(self) -> int: ...
    def subscribe(
        self,
        names: list[str],
        headers: list[tuple[str, list[tuple[str, str]]]],
        maxsize: int | None = None,
        overflow: str = "drop_oldest",
        max_bytes: int | None = None,
    ) -> EventSubscription: ...
    def subscribe_changes(
        self,
        maxsize: int | None = None,
        overflow: str = "drop_oldest",
        max_bytes: int | None = None,
        linkedid: str | None = None,
    ) -> EventSubscription: ...
    def live_snapshot(self) -> LiveSnapshot: ...
    def live_status(self) -> dict[str, Any]: ...
    def close(self) -> asyncio.Future[Message]: ...
    def detach(self) -> None: ...
    @property
    def state(self) -> str: ...
    @property
    def state_reason(self) -> str | None: ...
    @property
    def state_changes(self) -> int: ...
    def transitions_since(self, seq: int) -> list[tuple[int, str, str | None]]: ...
    @property
    def banner(self) -> str | None: ...
    @property
    def ami_version(self) -> str | None: ...
    @property
    def asterisk_version(self) -> str | None: ...
    @property
    def default_timeout(self) -> float: ...
    def stats(self) -> dict[str, int]: ...

@final
class DeferredAction:
    """An action checked outside a running loop, sent when its coroutine runs."""

@final
class EventSubscription:
    """A bounded queue fed by the connection's driver: of events, or of live changes."""

    def drain(self, max: int = 4096) -> list[Any]: ...
    def arm(self) -> bool: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def overflowed(self) -> bool: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def queued(self) -> int: ...
    @property
    def queued_bytes(self) -> int: ...
    @property
    def limit_hit(self) -> str | None: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def gaps(self) -> int: ...

_V_co = TypeVar("_V_co", covariant=True)

@final
class LiveChannel:
    """One live channel, as of the snapshot or change it came from (immutable)."""

    @property
    def uniqueid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def linkedid(self) -> str: ...
    @property
    def state(self) -> int:
        """Asterisk's channel state number (4 Ring, 5 Ringing, 6 Up, ...)."""
    @property
    def state_desc(self) -> str: ...
    @property
    def caller_id_num(self) -> str: ...
    @property
    def caller_id_name(self) -> str: ...
    @property
    def connected_line_num(self) -> str: ...
    @property
    def connected_line_name(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def account_code(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def exten(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def bridge(self) -> str | None:
        """The id of the bridge the channel is in."""
    @property
    def local_peer(self) -> str | None:
        """For a Local channel, the Uniqueid of its other half."""
    @property
    def created_at(self) -> float:
        """Seconds since the epoch."""
    @property
    def variables(self) -> dict[str, str]:
        """Channel variables (empty unless ``live_variables=True``)."""

@final
class LiveBridge:
    """One live bridge (immutable)."""

    @property
    def id(self) -> str: ...
    @property
    def bridge_type(self) -> str: ...
    @property
    def technology(self) -> str: ...
    @property
    def creator(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def video_source_mode(self) -> str: ...
    @property
    def members(self) -> list[str]:
        """Uniqueids of its channels, in the order they entered."""

@final
class LiveCall:
    """One call: the live channels sharing a Linkedid (immutable)."""

    @property
    def linkedid(self) -> str: ...
    @property
    def channels(self) -> list[str]: ...

@final
class LiveMap(Generic[_V_co]):
    """A read-only mapping of live entries by Uniqueid, bridge id or Linkedid."""

    def __len__(self) -> int: ...
    def __getitem__(self, key: str, /) -> _V_co: ...
    def __contains__(self, key: str, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    @overload
    def get(self, key: str, default: None = None) -> _V_co | None: ...
    @overload
    def get(self, key: str, default: _T) -> _V_co | _T: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[_V_co]: ...
    def items(self) -> list[tuple[str, _V_co]]: ...

@final
class LiveSnapshot:
    """The live state at one moment: channels, bridges and calls consistent with each other."""

    @property
    def channels(self) -> LiveMap[LiveChannel]: ...
    @property
    def bridges(self) -> LiveMap[LiveBridge]: ...
    @property
    def calls(self) -> LiveMap[LiveCall]: ...
    @property
    def version(self) -> int: ...

@final
class LiveChange:
    """One change of the live state."""

    @property
    def kind(self) -> str:
        """``channel_added``, ``channel_changed``, ``channel_removed``, and the same for
        ``bridge`` and ``call``."""
    @property
    def channel(self) -> LiveChannel | None: ...
    @property
    def bridge(self) -> LiveBridge | None: ...
    @property
    def call(self) -> LiveCall | None: ...
    @property
    def fields(self) -> list[str]:
        """What a ``*_changed`` changed."""
    @property
    def cause(self) -> int | None:
        """A removed channel's hangup cause; None when it went during a gap."""
    @property
    def cause_text(self) -> str | None: ...

@final
class Simulator:
    """The embedded AMI simulator (see amiwire.testing.Simulator for the options)."""

    def __new__(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: list[tuple[str, str, str, str]] | None = None,
        command_style: str = "output",
        faults: list[str] = ...,
        drip_interval: float = 0.001,
        firehose_file: str | None = None,
        firehose_count: int | None = None,
        firehose_repeats: int = 1,
        firehose_after: str | None = None,
        replay: str | None = None,
        tls: bool = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        auth_fail_delay: float = 1.0,
        auth_timeout: float = 30.0,
        time_scale: float = 1.0,
        dialplan: str | None = None,
        http: bool = False,
        http_timeout: float = 60.0,
        digest_stale: float = 62.0,
        write_timeout: float | None = None,
        load_calls: int = 0,
        call_duration: float = 10.0,
    ) -> Simulator: ...
    @property
    def host(self) -> str: ...
    @property
    def http_port(self) -> int | None: ...
    @property
    def port(self) -> int: ...
    @property
    def users(self) -> list[tuple[str, str]]: ...
    @property
    def tls_cert_pem(self) -> str | None: ...
    @property
    def running(self) -> bool: ...
    def emit_event(
        self, name: str, privilege: str = "user,all", headers: list[tuple[str, str]] = ...
    ) -> None: ...
    def session_count(self) -> int: ...
    def channel_count(self) -> int: ...
    def events_dropped(self) -> int: ...
    def bytes_sent(self) -> int: ...
    def load_calls_started(self) -> int: ...
    def load_calls_ended(self) -> int: ...
    def disconnect_all(self) -> None: ...
    def stop_load(self) -> None: ...
    def close(self) -> None: ...
