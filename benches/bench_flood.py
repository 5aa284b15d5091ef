"""Two cases of issue 9, against the embedded simulator replaying the real event capture:

    python benches/bench_flood.py        (after `make develop`, a release build)

- a flood with actions in flight: a server floods events without pause while a stream consumes
  them, and a Ping is submitted every 10 ms: when it reached the server, and when it resolved;
- the slow consumer: the firehose (3 x the capture, ~64,600 events, ~24 MB) runs while the
  Python thread is held for 8 s, then the default stream is drained; nothing may be dropped.

Figures go to benches/README.md. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import amiwire  # noqa: E402
from bench_client import CAPTURE, Simulator, peak_rss_mb  # noqa: E402




async def flood_with_actions(seconds: float = 5.0) -> str:
    """A server that floods events without pause for `seconds` and answers each Ping at once
    (behind the flood it already queued): how long a Ping submitted mid-flood takes to reach
    the server, and to come back."""
    server = Path(__file__).resolve().parent / "scripted_server.py"
    proc = subprocess.Popen([sys.executable, str(server), "flood", str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    submitted: dict[str, float] = {}
    round_trips: list[float] = []
    async with amiwire.connect(f"tcp://admin:x@127.0.0.1:{port}", keepalive=None) as ami:
        stream = ami.events()
        seen = 0

        async def consume() -> None:
            nonlocal seen
            while True:
                seen += len(await stream.next_batch())

        consumer = asyncio.ensure_future(consume())
        while seen == 0:
            await asyncio.sleep(0.001)
        until = time.monotonic() + seconds * 0.8
        n = 0
        while time.monotonic() < until:
            n += 1
            aid = f"bench-{n}"
            submitted[aid] = time.monotonic()
            await ami.action("Ping", action_id=aid, timeout=30)
            round_trips.append((time.monotonic() - submitted[aid]) * 1e3)
            await asyncio.sleep(0.01)
        consumer.cancel()
        events, dropped = ami.stats()["events"], stream.dropped
    arrivals = dict(line.split() for line in proc.stdout.read().splitlines())
    proc.wait(timeout=10)
    written = [(float(arrivals[aid]) - at) * 1e3 for aid, at in submitted.items() if aid in arrivals]

    def summary(values: list[float]) -> str:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return f"p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms, max {max(values):.2f} ms"

    return (
        f"{len(written)} Pings during {seconds * 0.8:.0f} s of a flood ({events:,} events read, {dropped:,} "
        f"dropped by the default stream): submitted -> at the server {summary(written)}; "
        f"round trip {summary(round_trips)}"
    )


async def slow_consumer(repeats: int = 3, hold: float = 8.0) -> str:
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:
        async with amiwire.connect(sim.url, keepalive=None) as ami:
            stream = ami.events()
            await ami.action("UserEvent", UserEvent="firehose")
            time.sleep(hold)  # the Python thread held: nothing is consumed meanwhile
            held_bytes = stream.queued_bytes
            held = stream.queued
            got = 0
            while True:
                try:
                    batch = await asyncio.wait_for(stream.next_batch(), 1.0)
                except asyncio.TimeoutError:
                    break
                got += len(batch)
            return (
                f"held {hold:.0f} s: {held:,} events queued ({held_bytes / 1e6:.1f} MB in the queue), "
                f"{got:,} delivered, {stream.dropped:,} dropped, peak RSS {peak_rss_mb():.0f} MB"
            )


def main() -> int:
    print("flood with actions in flight:", asyncio.run(flood_with_actions()))
    print("slow consumer:", asyncio.run(slow_consumer()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
