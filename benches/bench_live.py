"""What keeping the live state costs the client (issue 12), side by side in one run.

The firehose (the real load capture, repeated) goes to a stream on a connection with
``live=True`` and on one without, alternately, each in a fresh process, against the simulator
in its own process (``bench_client.Simulator``). Reported per event: the loop thread's CPU (the
issue's target: at most 10 % more with the state) and the CPU of the client's other threads
(the tokio driver, where the state is kept). Speed is never asserted; run it and read it::

    .venv/bin/python benches/bench_live.py [--rounds 3] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_client import CAPTURE, Quiet, Simulator, _idle_wait  # noqa: E402

import amiwire  # noqa: E402


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def measure(live: bool, repeats: int) -> dict[str, float]:
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:

        async def run() -> dict[str, float]:
            async with amiwire.connect(sim.url, keepalive=None, live=live) as ami:
                stream = ami.events()
                q = Quiet()
                loop_cpu = [0.0, 0.0]
                all_cpu = [0.0, 0.0]

                batches = [0]

                async def consume() -> None:
                    # Batch by batch (what `async for` does inside), to count the batches: a
                    # loop that outruns the driver wakes for smaller ones, and pays per wake-up.
                    while True:
                        batch = await stream.next_batch()
                        for event in batch:
                            event.name
                        if not q.count:
                            loop_cpu[0], all_cpu[0] = time.thread_time(), process_cpu()
                        q.hit(len(batch))
                        batches[0] += 1
                        loop_cpu[1], all_cpu[1] = time.thread_time(), process_cpu()

                task = asyncio.ensure_future(consume())
                await ami.action("UserEvent", UserEvent="firehose")
                await _idle_wait(q)
                task.cancel()
                n = max(q.count, 1)
                loop = loop_cpu[1] - loop_cpu[0]
                channels = len(ami.channels) if live else 0
                return {
                    "events_per_s": q.rate(),
                    "loop_us": loop / n * 1e6,
                    "others_us": (all_cpu[1] - all_cpu[0] - loop) / n * 1e6,
                    "per_batch": q.count / max(batches[0], 1),
                    "dropped": stream.dropped,
                    "channels_left": channels,
                }

        return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure == "live", args.repeats)))
        return
    for _ in range(args.rounds):
        for arm in ("events", "live"):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", arm, "--repeats", str(args.repeats)],
                check=True, capture_output=True, text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{arm:6} {r['events_per_s'] / 1e6:5.2f} M events/s  loop {r['loop_us']:.3f} us/event  "
                f"driver {r['others_us']:.3f} us/event  {r['per_batch']:.0f} events/batch  "
                f"dropped {r['dropped']}  channels left {r['channels_left']}"
            )


if __name__ == "__main__":
    main()
