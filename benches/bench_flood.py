"""Two cases of issue 9, against the embedded simulator replaying the real event capture:

    python benches/bench_flood.py        (after `make develop`, a release build)

- a flood with actions in flight: while the firehose runs and a stream consumes it, a Ping is
  submitted every 20 ms; each one's latency (submitted -> resolved) is recorded;
- the slow consumer: the firehose (3 x the capture, ~64,600 events, ~24 MB) runs while the
  Python thread is held for 8 s, then the default stream is drained; nothing may be dropped.

Figures go to benches/README.md. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import amiwire  # noqa: E402
from bench_client import CAPTURE, Simulator, peak_rss_mb  # noqa: E402


async def flood_with_actions(repeats: int = 10) -> str:
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:
        async with amiwire.connect(sim.url, keepalive=None) as ami:
            stream = ami.events()
            seen = 0

            async def consume() -> None:
                nonlocal seen
                while True:
                    seen += len(await stream.next_batch())

            consumer = asyncio.ensure_future(consume())
            await ami.action("UserEvent", UserEvent="firehose")
            while seen == 0:
                await asyncio.sleep(0.001)
            latencies: list[float] = []
            last, quiet_since = -1, time.perf_counter()
            while time.perf_counter() - quiet_since < 0.5:
                started = time.perf_counter()
                await ami.ping(timeout=10)
                latencies.append((time.perf_counter() - started) * 1e3)
                await asyncio.sleep(0.02)
                if seen != last:
                    last, quiet_since = seen, time.perf_counter()
            consumer.cancel()
            during = latencies[:-20] or latencies  # the last ones ran after the flood
            cuts = statistics.quantiles(during, n=100, method="inclusive")
            return (
                f"{len(during)} Pings during a flood of {seen:,} events ({stream.dropped:,} dropped): "
                f"p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms, max {max(during):.2f} ms"
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
