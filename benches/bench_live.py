"""What keeping the live state costs the client (issue 12), side by side in one run.

The real load capture goes to a stream on a connection with ``live=True`` and on one without,
alternately, each in a fresh process, the server in its own process, two ways:

- ``firehose``: the simulator's firehose (the capture, repeated) as fast as the client reads;
- ``paced``: the capture's events at a fixed rate (``--rate``, events/s), as a busy PBX sends
  them, by ``scripted_server.py`` (which answers the login and the rebuild's lists).

Reported per event: the loop thread's CPU (the issue's target: at most 10 % more with the state),
the CPU of the client's other threads (the tokio driver, where the state is kept), and how many
events each wake-up of the loop took. Speed is never asserted; run it and read it::

    .venv/bin/python benches/bench_live.py [--rounds 3] [--repeats 10] [--rate 200000]
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




class PacedServer:
    """The capture at `rate` events/s, from its own process (`scripted_server.py paced`)."""

    def __init__(self, repeats: int, rate: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "scripted_server.py"), "paced",
             str(CAPTURE), str(repeats), str(rate)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.url = f"tcp://admin:amiwire@127.0.0.1:{int(self.proc.stdout.readline())}"

    def __enter__(self) -> PacedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def measure(live: bool, repeats: int, rate: float | None) -> dict[str, float]:
    server = (
        PacedServer(repeats, rate)
        if rate
        else Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent")
    )
    with server as sim:

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
    parser.add_argument("--rate", type=float, default=200_000.0, help="events/s of the paced source")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--paced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure == "live", args.repeats, args.rate if args.paced else None)))
        return
    for source in ("firehose", "paced"):
        for _ in range(args.rounds):
            for arm in ("events", "live"):
                command = [sys.executable, __file__, "--measure", arm, "--repeats", str(args.repeats)]
                if source == "paced":
                    command += ["--paced", "--rate", str(args.rate)]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(
                    f"{source:8} {arm:6} {r['events_per_s'] / 1e6:5.2f} M events/s  loop {r['loop_us']:.3f} us/event  "
                    f"driver {r['others_us']:.3f} us/event  {r['per_batch']:.0f} events/batch  "
                    f"dropped {r['dropped']}  channels left {r['channels_left']}"
                )


if __name__ == "__main__":
    main()
