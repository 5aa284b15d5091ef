"""Test helpers: an embedded AMI server that behaves like a real Asterisk 22.

``Simulator`` starts amiwire's built-in simulator (Rust, in-process) on an ephemeral loopback
port. Use it as a context manager, sync or async::

    from amiwire.testing import Simulator

    with Simulator() as sim:
        print(sim.url)          # tcp://admin:amiwire@127.0.0.1:PORT

    async with Simulator(faults=["drip"], time_scale=0.1) as sim:
        ...

Options (all keyword-only): ``host``, ``port``, ``users`` (a list of ``(name, secret, read,
write)`` tuples in manager.conf terms, e.g. ``("ops", "pw", "all", "system,call")``),
``command_style`` (``"output"`` like Asterisk 14+ or ``"legacy"`` like 13), ``faults``
(names: ``close_during_login``, ``close_mid_message``, ``close_mid_list``,
``stall_after_login``, ``garbage_after_login``, ``ignore_pings``, ``drip``), ``drip_interval``
(seconds), ``firehose_file`` / ``firehose_count`` and ``firehose_repeats`` (``firehose_after``: an action
name whose reply starts the stream instead of the login, so a client can subscribe first), ``replay`` (a
recorded JSONL transcript), ``tls`` / ``tls_cert`` / ``tls_key`` (PEM text),
``auth_fail_delay`` and ``auth_timeout`` (seconds), ``time_scale`` (multiplies dialplan waits),
``dialplan`` (extensions.conf text), ``http`` (also serve AJAM: ``/rawman``, ``/mxml``,
``/manager`` and the Digest ``/a…`` twins on a second port), ``http_timeout`` (seconds; the
cookie Max-Age and idle expiry, 60 like ``http.conf``), ``digest_stale`` (seconds before a
Digest nonce is answered with ``stale=true``), ``write_timeout`` (seconds, like Asterisk's
``writetimeout``, whose default is 0.1: a session that stops reading for that long is
disconnected; None, the default here, keeps up to 10,000 events per session and then drops
the newer ones, counted in ``events_dropped``), ``load_calls`` (keep that many calls going,
the first ones placed evenly over one ``call_duration``: each rings, answers, is bridged and hangs up like a real Local-channel call,
then another takes its place; counted in ``load_calls_started`` / ``load_calls_ended``) and
``call_duration`` (seconds of PBX time a load call lasts on average, 10; ``time_scale``
applies).

The pytest fixture ``ami_simulator`` yields a started simulator with a short
``auth_fail_delay``. Enable it with ``pytest_plugins = ["amiwire.testing"]`` in a conftest, or
import it into a test module. It is defined only when pytest is running, so that scripts and
services using the simulator do not import pytest (about 10 MB and 70 ms).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

from . import _core
from ._ranges import check_ranges

__all__ = ["Simulator", "SimulatorOptions"]


class SimulatorOptions(TypedDict, total=False):
    """The keywords :class:`Simulator` takes (see the module's documentation)."""

    host: str
    port: int
    users: list[tuple[str, str, str, str]] | None
    command_style: str
    faults: list[str]
    drip_interval: float
    firehose_file: str | None
    firehose_count: int | None
    firehose_repeats: int
    firehose_after: str | None
    replay: str | None
    tls: bool
    tls_cert: str | None
    tls_key: str | None
    auth_fail_delay: float
    auth_timeout: float
    time_scale: float
    dialplan: str | None
    http: bool
    http_timeout: float
    digest_stale: float
    write_timeout: float | None
    load_calls: int
    call_duration: float


_NON_NEGATIVE = (
    "drip_interval",
    "auth_fail_delay",
    "auth_timeout",
    "time_scale",
    "http_timeout",
    "digest_stale",
    "write_timeout",
    "call_duration",
)
_COUNTS = {
    "port": range(0, 65536),
    "firehose_count": range(0, 2**64),
    "firehose_repeats": range(0, 2**32),
    "load_calls": range(0, 2**32),
}


class Simulator:
    """An in-process AMI simulator; started by ``start()`` or a ``with`` block. A keyword it
    does not know raises ``TypeError`` here, not when it starts."""

    def __init__(self, **options: Unpack[SimulatorOptions]) -> None:
        unknown = options.keys() - SimulatorOptions.__annotations__.keys()
        if unknown:
            raise TypeError(f"Simulator() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        check_ranges(options, non_negative=_NON_NEGATIVE, counts=_COUNTS, error=ValueError)
        self._options = options
        self._core: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._core is None:
            self._core = _core.Simulator(**self._options)
        return self

    def close(self) -> None:
        core, self._core = self._core, None
        if core is not None:
            core.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Simulator:
        # Binding is quick, but stay off the loop thread anyway.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Closing waits for the connections to end; never block the event loop on it.
        await asyncio.to_thread(self.close)

    # -- where and who ---------------------------------------------------------------------

    def _running(self) -> Any:
        if self._core is None:
            raise RuntimeError("the simulator is not running; use start() or a with block")
        return self._core

    @property
    def running(self) -> bool:
        return self._core is not None and bool(self._core.running)

    @property
    def host(self) -> str:
        return str(self._running().host)

    @property
    def port(self) -> int:
        return int(self._running().port)

    @property
    def users(self) -> dict[str, str]:
        """Username -> secret for every configured user."""
        return dict(self._running().users)

    @property
    def username(self) -> str:
        """The first user (``admin`` by default)."""
        return next(iter(self.users))

    @property
    def secret(self) -> str:
        return self.users[self.username]

    @property
    def url(self) -> str:
        """``tcp://user:secret@host:port`` (``tls://`` with TLS) for the first user, the
        credentials percent-encoded."""
        scheme = "tls" if self.tls_cert_pem is not None else "tcp"
        return f"{scheme}://{self._userinfo()}@{self.host}:{self.port}"

    def _userinfo(self) -> str:
        # Percent-encoded: a secret with '/', '?', '#' or '@' must not end the user info.
        return f"{quote(self.username, safe='')}:{quote(self.secret, safe='')}"

    @property
    def http_port(self) -> int:
        """The AJAM port; only with ``http=True``."""
        port = self._running().http_port
        if port is None:
            raise RuntimeError("the simulator was started without http=True")
        return int(port)

    def http_url(self, endpoint: str = "rawman") -> str:
        """``http://user:secret@host:http_port/<endpoint>`` for the first user."""
        return f"http://{self._userinfo()}@{self.host}:{self.http_port}/{endpoint.lstrip('/')}"

    @property
    def tls_cert_pem(self) -> str | None:
        """The server certificate (PEM) when TLS is on, for clients to trust."""
        pem = self._running().tls_cert_pem
        return None if pem is None else str(pem)

    # -- driving it --------------------------------------------------------------------------

    def emit_event(
        self,
        name: str,
        headers: Sequence[tuple[str, str]] | dict[str, str] = (),
        *,
        privilege: str = "user,all",
    ) -> None:
        """Broadcasts an event to every logged-in session allowed to read ``privilege``."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        self._running().emit_event(name, privilege, pairs)

    @property
    def session_count(self) -> int:
        """Logged-in sessions right now."""
        return int(self._running().session_count())

    @property
    def events_dropped(self) -> int:
        """Events sessions did not get because they were over 10,000 events behind (a TCP
        client not reading, an HTTP session not polling): the newer ones are dropped so that
        the simulator's memory stays bounded. Asterisk instead disconnects a TCP client that
        stops reading; ask for that with ``write_timeout``."""
        return int(self._running().events_dropped())

    @property
    def bytes_sent(self) -> int:
        """Bytes the AMI sessions' sockets accepted so far: less what a client read, what
        waits for it in the kernel's buffers."""
        return int(self._running().bytes_sent())

    @property
    def channel_count(self) -> int:
        """Live simulated channels."""
        return int(self._running().channel_count())

    @property
    def load_calls_started(self) -> int:
        """Calls the load mode (``load_calls``) has placed so far."""
        return int(self._running().load_calls_started())

    @property
    def load_calls_ended(self) -> int:
        """Load calls whose every channel has hung up."""
        return int(self._running().load_calls_ended())

    def stop_load(self) -> None:
        """Places no new load call; those in progress run to their end (``load_calls_ended``
        catches up with ``load_calls_started``)."""
        self._running().stop_load()

    def disconnect_all(self) -> None:
        """Closes every AMI connection at once, as a network failure would, and forgets every
        HTTP session; calls go on and new connections are served (a client's reconnect and
        state rebuild can be tested)."""
        self._running().disconnect_all()

    def __repr__(self) -> str:
        if self._core is None:
            return "<amiwire.testing.Simulator (stopped)>"
        return f"<amiwire.testing.Simulator {self.host}:{self.port}>"


def _ami_simulator() -> Iterator[Simulator]:
    """A running simulator on an ephemeral loopback port (failed logins answer in 50 ms)."""
    with Simulator(auth_fail_delay=0.05) as sim:
        yield sim


# pytest imports itself before any plugin or conftest, so a test run always finds it here.
if "pytest" in sys.modules:
    import pytest

    ami_simulator = pytest.fixture(name="ami_simulator")(_ami_simulator)
    __all__ += ["ami_simulator"]
