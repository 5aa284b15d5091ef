"""Who reads the socket. Over plain TCP the event loop's thread reads and writes the session's
socket itself (a reply reaches its future with no thread hop); amiwire's I/O thread reads
whenever the loop does not, so that user code that holds the GIL never makes the PBX drop the
session (Asterisk cuts a client whose socket does not drain for 100 ms)."""

from __future__ import annotations

import asyncio
import sys
import time

import amiwire
from amiwire.testing import Simulator


async def test_replies_are_read_on_the_loop_thread_over_plain_tcp():
    async with Simulator() as sim, amiwire.connect(sim.url, keepalive=None) as ami:
        for _ in range(20):
            assert (await ami.ping())["Ping"] == "Pong"
        # The driver reads until the loop first does; from then on the loop reads the replies.
        before = ami.stats()
        for _ in range(20):
            await ami.ping()
        after = ami.stats()
        assert after["loop_reads"] - before["loop_reads"] >= 20
        assert after["driver_reads"] == before["driver_reads"]
        assert after["stall_takeovers"] == 0


async def test_a_consumer_holding_the_gil_for_seconds_keeps_its_session_and_every_event_is_counted():
    # A busy PBX's flood (the simulator's call load, about 50,000 events/s, 20 MB/s) while the
    # loop's thread runs Python for 3 s without giving up the GIL (the switch interval is
    # raised so that no other Python thread runs either). The simulator drops a session whose
    # writes make no progress for 100 ms, as Asterisk does.
    async with (
        Simulator(write_timeout=0.1, load_calls=2000, call_duration=1.0) as sim,
        amiwire.connect(sim.url, keepalive=None, early_stream=True) as ami,
    ):
        stream = ami.early_stream
        assert stream is not None
        for _ in range(5):
            await ami.ping()
        await asyncio.sleep(0.3)
        assert ami.stats()["loop_reads"] > 0
        hold = 3.0
        backlog: list[tuple[float, int]] = []
        switch = sys.getswitchinterval()
        sys.setswitchinterval(60)
        try:
            start = time.perf_counter()
            while (now := time.perf_counter() - start) < hold:
                backlog.append((now, sim.bytes_sent - ami.stats()["bytes_read"]))
        finally:
            sys.setswitchinterval(switch)
        stats = ami.stats()
        assert ami.state == "connected" and stats["reconnects"] == 0
        assert stats["stall_takeovers"] >= 1
        # The socket drains while the loop is stuck. The simulator writes what its session
        # queued in one go, so a single write may briefly leave more than that in the
        # buffers: what is bounded is how long the backlog stays above 256 KB.
        longest = above = 0.0
        for (t0, b0), (t1, _) in zip(backlog, backlog[1:]):
            above = above + (t1 - t0) if b0 > 256_000 else 0.0
            longest = max(longest, above)
        assert longest < 0.02, f"the server's socket held over 256 KB for {longest * 1000:.1f} ms"
        assert sum(b <= 256_000 for _, b in backlog) > 0.95 * len(backlog)
        # Once the load has ended, everything the server sent was read, and every event read
        # is in the stream's counts: delivered, dropped (its byte bound) or still queued.
        sim.stop_load()
        for _ in range(500):
            if sim.load_calls_ended == sim.load_calls_started:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert (await ami.ping())["Ping"] == "Pong"
        # (The simulator counts a write once it returned: just after the client may read it.)
        for _ in range(100):
            if ami.stats()["bytes_read"] == sim.bytes_sent:
                break
            await asyncio.sleep(0.01)
        assert ami.stats()["bytes_read"] == sim.bytes_sent
        delivered = 0
        while stream.queued:
            delivered += len(await stream.next_batch(10_000))
        assert stream.delivered == delivered
        assert stream.delivered + stream.dropped == ami.stats()["events"]
        assert stream.dropped > 0  # the flood outgrew the stream's bytes while the loop was away
