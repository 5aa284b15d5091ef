"""The amiwire client over AJAM (HTTP) against the simulator's HTTP listener."""

from __future__ import annotations

import asyncio

import pytest

import amiwire
from amiwire.testing import Simulator

ENDPOINTS = ["rawman", "mxml", "manager", "arawman", "amxml", "amanager"]


@pytest.fixture
def sim():
    with Simulator(http=True, auth_fail_delay=0.05, time_scale=0.1) as s:
        yield s


def test_http_url_and_port(sim):
    assert sim.http_port != sim.port
    assert sim.http_url() == f"http://admin:amiwire@127.0.0.1:{sim.http_port}/rawman"
    assert sim.http_url("amxml").endswith(f":{sim.http_port}/amxml")
    with Simulator() as plain, pytest.raises(RuntimeError):
        _ = plain.http_port


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_ping_command_and_list_on_every_endpoint(sim, endpoint):
    async with amiwire.connect(sim.http_url(endpoint), timeout=10) as ami:
        pong = await ami.ping()
        assert pong["Response"] == "Success"
        assert pong.get("Ping", pong.get("ping")) == "Pong"
        plan = await ami.action("ShowDialPlan", Context="test")
        assert plan.events, endpoint
        assert len(plan.events) == int(plan.complete.get("ListItems", plan.complete.get("listitems")))
        if endpoint in {"rawman", "arawman"}:
            # The body is the TCP format: Output lines survive exactly.
            text = await ami.command("dialplan show test")
            assert text.split("\n")[0].startswith("[ Context 'test'")


@pytest.mark.parametrize("endpoint", ["rawman", "arawman"])
async def test_originate_is_tracked_through_wait_event(sim, endpoint):
    async with amiwire.connect(sim.http_url(endpoint), timeout=10) as ami:
        # Several at once: an OriginateResponse often comes by WaitEvent before the
        # Originate's own HTTP reply (the client must keep it, not drop it).
        # Digest runs them one by one: concurrent Digest requests renew the nonce (see
        # transport/http.rs), and a login renewed twice in a row loses its event queue.
        calls = [ami.originate("Local/100@test", application="Wait", data="0", timeout=10) for _ in range(8)]
        if endpoint == "arawman":
            results = [await call for call in calls]
        else:
            results = await asyncio.gather(*calls)
        assert all(ok.name == "OriginateResponse" and ok["Response"] == "Success" for ok in results)
        assert len({ok["ActionID"] for ok in results}) == 8


async def test_events_arrive_through_the_wait_event_poller(sim):
    async with amiwire.connect(sim.http_url(), timeout=10) as ami:
        stream = ami.events("UserEvent", UserEvent="Alpha")
        await ami.action("UserEvent", UserEvent="Beta")
        await ami.action("UserEvent", UserEvent="Alpha", Foo="1")
        got = await asyncio.wait_for(stream.__anext__(), 10)
        assert got["UserEvent"] == "Alpha" and got["Foo"] == "1"


async def test_digest_actions_beside_a_busy_long_poll_never_fail(sim):
    # Each event returns the WaitEvent, so the poller sends a new one while actions go out:
    # their nc values reach the server out of order and earn stale nonces, which are retried.
    async with amiwire.connect(sim.http_url("arawman"), timeout=10) as ami, amiwire.connect(sim.url) as tcp:
        stream = ami.events("UserEvent", UserEvent="Busy")

        async def busy() -> None:
            for i in range(2000):
                await tcp.action("UserEvent", UserEvent="Busy", N=str(i))

        sender = asyncio.ensure_future(busy())
        pings = 0
        while not sender.done():
            replies = await asyncio.gather(*(ami.ping() for _ in range(5)))
            assert all(r["Ping"] == "Pong" for r in replies)
            pings += 5
        await sender
        got = 0
        while got < 2000:
            got += len(await asyncio.wait_for(stream.next_batch(), 10))
        assert ami.state == "connected" and stream.dropped == 0 and pings > 0


async def test_events_turned_on_after_an_events_off_login_arrive(sim):
    async with amiwire.connect(sim.http_url(), timeout=10, events="off") as ami, amiwire.connect(sim.url) as tcp:
        stream = ami.events("UserEvent")
        await ami.set_event_mask("user")
        await tcp.action("UserEvent", UserEvent="Later")
        got = await asyncio.wait_for(stream.__anext__(), 10)
        assert got["UserEvent"] == "Later"


async def test_recording_is_refused_over_http_rather_than_ignored(sim, tmp_path):
    with pytest.raises(amiwire.LocalProtocolError, match="recording"):
        await amiwire.connect(sim.http_url(), record=str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


async def test_wrong_port_or_path_errors_say_what_the_server_did(sim):
    with pytest.raises(amiwire.ConnectionLost, match="does not answer in HTTP"):
        await amiwire.connect(f"http://admin:amiwire@{sim.host}:{sim.port}/rawman")  # the AMI TCP port
    with pytest.raises(amiwire.RemoteProtocolError, match="404 Not Found from /asterisk/rawman"):
        await amiwire.connect(f"http://admin:amiwire@{sim.host}:{sim.http_port}/asterisk/rawman")


async def test_closing_a_polling_client_ends_its_session_at_once(sim):
    async with amiwire.connect(sim.http_url(), timeout=10) as ami:
        await ami.ping()
        assert sim.session_count == 1
    # Logged off while its WaitEvent was in flight: the long-poll ends with the connection
    # instead of holding the session until its 20 s timeout.
    deadline = asyncio.get_running_loop().time() + 2
    while sim.session_count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert sim.session_count == 0


async def test_tcp_sees_http_calls(sim):
    async with amiwire.connect(sim.url) as tcp, amiwire.connect(sim.http_url(), timeout=10) as http:
        seen = tcp.events("UserEvent")
        await http.action("UserEvent", UserEvent="FromHttp")
        assert (await asyncio.wait_for(seen.__anext__(), 5))["UserEvent"] == "FromHttp"


async def test_expired_cookie_is_renewed_transparently():
    with Simulator(http=True, http_timeout=1.0, auth_fail_delay=0.05) as sim:
        # events="off": no WaitEvent poller, which would keep the cookie alive.
        async with amiwire.connect(sim.http_url() + "?http_timeout=1", timeout=10, events="off") as ami:
            assert (await ami.ping())["Response"] == "Success"
            assert sim.session_count == 1
            for _ in range(50):
                if sim.session_count == 0:
                    break
                await asyncio.sleep(0.1)
            assert sim.session_count == 0, "the simulator expired the cookie"
            assert (await ami.action("Getvar", Variable="LABGLOBAL"))["Value"] == "initial"
            assert sim.session_count == 1, "logged in again"


async def test_an_expired_digest_session_is_replaced_and_streams_see_the_gap():
    with Simulator(http=True, http_timeout=1.0, auth_fail_delay=0.05) as sim:
        # events="off": no WaitEvent poller, which would keep the session alive.
        async with amiwire.connect(sim.http_url("arawman"), timeout=10, events="off") as ami:
            stream = ami.events()
            assert (await ami.ping())["Ping"] == "Pong"
            for _ in range(50):
                if sim.session_count == 0:
                    break
                await asyncio.sleep(0.1)
            assert sim.session_count == 0, "the simulator expired the Digest session"
            assert (await ami.ping())["Ping"] == "Pong"
            assert sim.session_count == 1, "a new session"
            assert stream.gaps == 1 and ami.state == "connected"


async def test_a_body_over_max_body_fails_naming_the_limit(sim):
    async with amiwire.connect(sim.http_url(), events="off", max_body=2_000) as ami:
        with pytest.raises(amiwire.RemoteProtocolError, match="max_body limit"):
            await ami.action("ShowDialPlan")
        assert (await ami.ping())["Ping"] == "Pong"


@pytest.mark.parametrize("endpoint", ["rawman", "arawman"])
async def test_wrong_password_raises_authentication_error(sim, endpoint):
    url = f"http://admin:not-the-secret@127.0.0.1:{sim.http_port}/{endpoint}"
    with pytest.raises(amiwire.AuthenticationError) as info:
        await amiwire.connect(url, timeout=5, reconnect=False)
    assert "not-the-secret" not in str(info.value)


class _Tap:
    """A loopback TCP relay that keeps every byte the client sends."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sent = bytearray()
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> _Tap:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await src.read(65536):
                    if keep:
                        self.sent += data
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True)


@pytest.mark.parametrize(("endpoint", "secret_on_wire"), [("rawman", True), ("arawman", False), ("amxml", False)])
async def test_digest_never_sends_the_secret(sim, endpoint, secret_on_wire):
    async with _Tap(sim.http_port) as tap:
        url = f"http://admin:amiwire@127.0.0.1:{tap.port}/{endpoint}"
        async with amiwire.connect(url, timeout=10, events="off") as ami:
            assert (await ami.ping())["Response"] == "Success"
            await ami.action("UserEvent", UserEvent="x")
    wire = bytes(tap.sent)
    assert b"POST /" + endpoint.encode() in wire
    # The cookie endpoint's login carries the secret (the tap works); Digest never does.
    assert (b"amiwire" in wire.replace(b"/amiwire", b"")) is secret_on_wire
    assert (b"Authorization: Digest" in wire or b"authorization: Digest" in wire) is not secret_on_wire


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_legacy_command_text_over_every_endpoint(endpoint):
    # Asterisk 13 answers Command with raw text, which /manager and /mxml cut into rows.
    with Simulator(http=True, command_style="legacy", time_scale=0.1) as sim:
        async with amiwire.connect(sim.url, timeout=10) as tcp:
            version = await tcp.command("core show version")
            plan = await tcp.command("dialplan show test")
        async with amiwire.connect(sim.http_url(endpoint), timeout=10) as ami:
            kept = "".join(f"{line.rstrip()}\n" for line in plan.splitlines() if line.strip())
            got = await ami.command("dialplan show test")
            assert got == (plan if endpoint.endswith("rawman") else kept)
            if endpoint.endswith("mxml") and ":" in version.splitlines()[0]:
                # The line became an attribute name: lost, and said so.
                with pytest.raises(amiwire.RemoteProtocolError, match="/rawman"):
                    await ami.command("core show version")
            else:
                assert (await ami.command("core show version")).rstrip() == version.rstrip()


async def test_closing_fails_an_action_still_in_flight():
    # Without an event poller, a WaitEvent sent as an action is held by the server: closing
    # the client must settle its future at once, not leave it waiting forever.
    with Simulator(http=True) as sim:
        ami = await amiwire.connect(sim.http_url(), timeout=10, events="off")
        held = ami.action("WaitEvent", Timeout="20", timeout=30, check=False)
        await asyncio.sleep(0.2)
        await ami.close()
        with pytest.raises(amiwire.ClientClosed):
            await asyncio.wait_for(held, 2)
