"""Every fault of the simulator's catalogue, and the same faults mid-session through a relay:
each pending action ends in a value or a typed error before its deadline, and reconnect
restores the session where the fault allows one."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

import amiwire
from amiwire.testing import Simulator
from conftest import LOAD_CAPTURE

# Short deadlines keep the whole file fast; MARGIN absorbs scheduling noise on 2 shared cores.
FAST = {"timeout": 1.0, "connect_timeout": 1.0, "keepalive": None, "reconnect_initial": 0.05, "reconnect_max": 0.2}
MARGIN = 0.5
# Slower reconnects, for tests that watch the connection while it is down.
WATCHED = {**FAST, "reconnect_initial": 0.3, "reconnect_max": 0.5}
UTF8 = "Zoë Ñandú – 東京 ✓"


async def wait_until(predicate: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Relay:
    """A loopback TCP relay in front of a simulator. It can stall a live link (bytes are
    swallowed both ways: a half-open link) or cut it in the middle of the next server write,
    while new connections pass untouched, so a reconnect finds a healthy server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.stalled = False
        self.cut_next = False
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for client, server in self.links:
            client.transport.abort()
            server.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def kill(self) -> None:
        """Drops every open link at once, as a dead peer or a NAT timeout would."""
        for link in self.links:
            for w in link:
                w.transport.abort()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        # Faults apply to the links open when they are armed, not to the next ones.
        self.stalled = self.cut_next = False
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = (c_writer, s_writer)
        self.links.append(link)
        for task in (self._pump(c_reader, s_writer, link, False), self._pump(s_reader, c_writer, link, True)):
            t = asyncio.get_running_loop().create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        from_server: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if link is not self.links[-1]:
                    continue  # an old link that was cut or stalled: never deliver again
                if self.stalled:
                    continue
                if from_server and self.cut_next:
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    for w in link:
                        w.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


# -- the simulator's catalogue -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("close_during_login", "closed"),
        # The sim cuts the first action after login: our CoreSettings, still part of connect().
        ("close_mid_message", "closed"),
        # The sim answers the login, then neither reads nor writes: CoreSettings never answers.
        ("stall_after_login", "in time"),
    ],
)
async def test_fault_during_login_fails_connect_fast(fault, why):
    async with Simulator(faults=[fault]) as sim:
        started = time.monotonic()
        with pytest.raises(amiwire.ConnectionLost, match=why):
            await amiwire.connect(sim.url, **FAST)
        # The login's deadline is max(connect_timeout, timeout); it must hold, not hang.
        assert time.monotonic() - started < FAST["timeout"] + MARGIN


async def test_close_mid_list_fails_every_pending_action_at_once_then_reconnects():
    async with Simulator(faults=["close_mid_list"]) as sim:
        ami = await amiwire.connect(sim.url, events="user", **WATCHED)
        states: list[tuple[str, str | None]] = []
        ami.on_state_change(lambda state, reason: states.append((state, reason)))
        stream = ami.events("UserEvent")
        try:
            started = time.monotonic()
            pending = [asyncio.ensure_future(ami.action("ShowDialPlan", timeout=5))]
            pending += [asyncio.ensure_future(ami.ping(timeout=5)) for _ in range(5)]
            results = await asyncio.gather(*pending, return_exceptions=True)
            # "At once": far sooner than the 5 s deadlines.
            assert time.monotonic() - started < 1.0
            assert all(isinstance(r, amiwire.ConnectionLost) for r in results), results

            await wait_until(lambda: ami.state == "connected" and ami.stats()["reconnects"] == 1, 2.0)
            assert [s for s, _ in states] == ["reconnecting", "connected"]
            # EOF, or a reset if our pipelined Pings hit the closed socket first.
            assert re.search("closed|reset", states[0][1] or ""), states
            assert stream.gaps == 1
            assert (await ami.ping(timeout=1))["Ping"] == "Pong"
            # The iterator made before the loss carries on with events after it.
            sim.emit_event("UserEvent", {"UserEvent": "after-gap", "Text": UTF8})
            event = await asyncio.wait_for(anext(stream), 2)
            assert (event["UserEvent"], event["Text"]) == ("after-gap", UTF8)
            assert sim.session_count == 1
        finally:
            await ami.close()


async def test_state_callbacks_get_every_change_even_when_the_loop_wakes_late():
    async with Simulator() as sim, Relay(sim.port) as relay:
        url = f"tcp://{sim.username}:{sim.secret}@127.0.0.1:{relay.port}"
        ami = await amiwire.connect(url, **FAST)
        states: list[str] = []
        ami.on_state_change(lambda state, reason: states.append(state))
        try:
            relay.kill()
            busy_until = time.perf_counter() + 2.0  # the loop is busy while the link comes back
            while time.perf_counter() < busy_until:
                pass
            await wait_until(lambda: len(states) >= 2, 2.0)
            assert ami.stats()["reconnects"] == 1
            assert states == ["reconnecting", "connected"]
        finally:
            await ami.close()


async def test_garbage_after_login_is_counted_not_fatal():
    async with Simulator(faults=["garbage_after_login"]) as sim:
        async with amiwire.connect(sim.url, **FAST) as ami:
            assert ami.state == "connected"  # already when connect() returns
            assert (await ami.ping(timeout=1))["Ping"] == "Pong"
            stats = ami.stats()
            assert stats["decode_errors"] + stats["orphans"] >= 1, stats
            assert stats["reconnects"] == 0
            assert ami.state == "connected"
            assert ami.asterisk_version  # the login's own round trip survived the garbage too


async def test_drip_one_byte_per_read_keeps_utf8_intact():
    async with Simulator(faults=["drip"], drip_interval=0.0002) as sim:
        async with amiwire.connect(sim.url, events="user", **{**FAST, "timeout": 8.0}) as ami:
            stream = ami.events("UserEvent")
            await ami.action("Setvar", Variable="AMIWIRE_UTF8", Value=UTF8)
            reply = await ami.action("Getvar", Variable="AMIWIRE_UTF8")
            assert reply["Value"] == UTF8
            sim.emit_event("UserEvent", {"UserEvent": "drip", "Text": UTF8})
            event = await asyncio.wait_for(anext(stream), 8)
            assert event["Text"] == UTF8
            stats = ami.stats()
            # Each multi-byte character crossed reads, and nothing went astray on the way.
            assert stats["decode_errors"] == stats["orphans"] == stats["reconnects"] == 0


async def test_ignore_pings_half_open_is_detected_by_keepalive_and_reconnects():
    async with Simulator(faults=["ignore_pings"]) as sim:
        ami = await amiwire.connect(sim.url, events="off", **{**WATCHED, "keepalive": 0.3})
        reasons: list[str | None] = []
        ami.on_state_change(lambda state, reason: reasons.append(reason) if state == "reconnecting" else None)
        stream = ami.events()
        try:
            # A user Ping is just an action: it times out on its own deadline, nothing else.
            started = time.monotonic()
            with pytest.raises(amiwire.ActionTimeout):
                await ami.ping(timeout=0.2)
            assert time.monotonic() - started < 0.2 + MARGIN
            # Idle 0.3 s, then the keepalive Ping has 0.3 s to answer: dead within ~0.6 s.
            await wait_until(lambda: ami.stats()["reconnects"] >= 1, 0.6 + 2 * MARGIN)
            assert "half-open" in (reasons[0] or "")
            assert stream.gaps >= 1
            await wait_until(lambda: ami.state == "connected", 1.0)
            # Everything but Ping works on the restored session.
            reply = await ami.action("Getvar", Variable="EPOCH", timeout=1)
            assert reply["Response"] == "Success"
        finally:
            await ami.close()


async def test_flood_with_a_stalled_consumer_keeps_the_connection():
    # The sim floods a session right after login, before answering our CoreSettings, so the
    # first flood is over when connect() returns. The relay then kills the link: the
    # reconnect's flood pours into a stream whose consumer sleeps for seconds.
    async with Simulator(firehose_file=str(LOAD_CAPTURE), firehose_repeats=2) as sim, Relay(sim.port) as relay:
        url = f"tcp://{sim.username}:{sim.secret}@127.0.0.1:{relay.port}"
        async with amiwire.connect(url, **{**FAST, "timeout": 10.0, "keepalive": 1.0}) as ami:
            first_flood = ami.stats()["events"]
            stream = ami.events(maxsize=1000, overflow="drop_oldest")
            relay.kill()
            await asyncio.sleep(2.0)
            await wait_until(lambda: ami.state == "connected", 10.0)
            assert ami.stats()["reconnects"] == 1
            assert stream.gaps == 1
            assert (await ami.ping(timeout=2))["Ping"] == "Pong"
            assert stream.dropped > 0
            assert stream.queued == 1000
            assert stream.dropped + stream.queued <= ami.stats()["events"] - first_flood
            batch = await stream.next_batch()
            assert len(batch) == 1000
            assert ami.stats()["decode_errors"] == 0


# -- the same faults mid-session, through the relay ----------------------------------------


async def test_cut_mid_message_fails_the_action_and_reconnect_restores_the_session():
    async with Simulator() as sim, Relay(sim.port) as relay:
        url = f"tcp://{sim.username}:{sim.secret}@127.0.0.1:{relay.port}"
        async with amiwire.connect(url, events="user", **FAST) as ami:
            stream = ami.events("UserEvent")
            await ami.add_filter("Event: UserEvent")
            relay.cut_next = True
            started = time.monotonic()
            with pytest.raises(amiwire.ConnectionLost):
                await ami.action("Getvar", Variable="EPOCH", timeout=5)
            assert time.monotonic() - started < 1.0
            await wait_until(lambda: ami.state == "connected", 2.0)
            assert ami.stats()["reconnects"] == 1
            assert stream.gaps == 1
            assert (await ami.ping(timeout=1))["Ping"] == "Pong"
            sim.emit_event("UserEvent", {"UserEvent": "restored"})
            event = await asyncio.wait_for(anext(stream), 2)
            assert event["UserEvent"] == "restored"
            assert sim.session_count == 1


async def test_stall_mid_session_times_actions_out_then_keepalive_declares_it_dead():
    async with Simulator() as sim, Relay(sim.port) as relay:
        url = f"tcp://{sim.username}:{sim.secret}@127.0.0.1:{relay.port}"
        ami = await amiwire.connect(url, events="off", **{**WATCHED, "keepalive": 0.4})
        reasons: list[str | None] = []
        ami.on_state_change(lambda state, reason: reasons.append(reason) if state == "reconnecting" else None)
        try:
            relay.stalled = True
            started = time.monotonic()
            results = await asyncio.gather(
                ami.ping(timeout=0.2), ami.action("CoreStatus", timeout=0.3), return_exceptions=True
            )
            assert time.monotonic() - started < 0.3 + MARGIN
            assert all(isinstance(r, amiwire.ActionTimeout) for r in results), results
            await wait_until(lambda: ami.stats()["reconnects"] == 1, 0.8 + 2 * MARGIN)
            assert "half-open" in (reasons[0] or "")
            await wait_until(lambda: ami.state == "connected", 1.0)
            assert (await ami.ping(timeout=1))["Ping"] == "Pong"
        finally:
            await ami.close()


async def test_writetimeout_drops_a_reader_that_stops_but_not_a_client_whose_python_stalls():
    # Asterisk disconnects a session whose writes make no progress for `writetimeout` (100 ms);
    # the simulator does the same when asked. A raw socket that stops reading is cut off, while
    # amiwire's driver keeps reading through a flood although the loop thread is busy for a
    # whole second holding the GIL.
    flood = 10 * LOAD_CAPTURE.stat().st_size
    flood_events = 10 * sum(m.is_event for m in amiwire.parse(LOAD_CAPTURE.read_bytes()))
    async with Simulator(
        firehose_file=str(LOAD_CAPTURE), firehose_repeats=10, firehose_after="UserEvent", write_timeout=0.1
    ) as sim:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        writer.write(
            f"Action: Login\r\nUsername: {sim.username}\r\nSecret: {sim.secret}\r\n\r\n"
            "Action: UserEvent\r\nUserEvent: go\r\n\r\n".encode()
        )
        await writer.drain()
        await asyncio.sleep(1.0)  # not reading: the simulator's writes stall
        received = 0
        try:
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
                received += len(chunk)
        except ConnectionResetError:
            pass
        writer.close()
        assert 0 < received < flood, "the stalled reader should have been disconnected"

        async with amiwire.connect(sim.url, keepalive=None) as ami:
            stream = ami.events(maxsize=1000)
            await ami.action("UserEvent", UserEvent="go")
            busy_until = time.perf_counter() + 1.0
            while time.perf_counter() < busy_until:  # Python busy, the GIL held
                pass
            await wait_until(lambda: ami.stats()["events"] >= flood_events, 20.0)
            assert ami.state == "connected" and ami.stats()["reconnects"] == 0
            assert stream.queued == 1000 and stream.dropped > 0
            assert (await ami.ping(timeout=5))["Ping"] == "Pong"


@pytest.mark.parametrize("policy", [{"reconnect": False}, {"reconnect_attempts": 2}])
async def test_a_connection_lost_for_good_ends_streams_with_the_reason_not_quietly(policy):
    sim = Simulator()
    sim.__enter__()
    try:
        ami = await amiwire.connect(sim.url, **{**FAST, **policy})
        stream = ami.events()
        callback_stream = ami.events("UserEvent")
    finally:
        sim.__exit__(None, None, None)  # the PBX goes away and does not come back
    with pytest.raises(amiwire.ConnectionLost) as lost:
        await asyncio.wait_for(stream.__anext__(), 10)
    assert ami.state == "closed"
    expected = "server closed the connection" if policy == {"reconnect": False} else "gave up after 2 reconnect attempts"
    assert expected in str(lost.value)
    with pytest.raises(amiwire.ClientClosed, match=re.escape(expected)):
        await ami.ping()
    with pytest.raises(amiwire.ConnectionLost):
        await asyncio.wait_for(callback_stream.next_batch(), 1)
    with pytest.raises(amiwire.ConnectionLost, match=re.escape(expected)):
        await asyncio.wait_for(ami.events().__anext__(), 1)  # a stream opened afterwards too
    await ami.close()


async def test_a_stream_of_a_client_closed_on_purpose_just_ends():
    with Simulator() as sim:
        ami = await amiwire.connect(sim.url, **FAST)
        stream = ami.events()
        await ami.close()
        assert [event async for event in stream] == []
