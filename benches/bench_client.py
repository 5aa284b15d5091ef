"""End-to-end client benchmarks against the embedded simulator, side by side in one run.

    make bench-client        (or: python benches/bench_client.py [--quick])

Measures, on this machine, in one process run so that the ratios are fair:
- events/s delivered to user code from the simulator's firehose replaying the real capture
  (amiwire `async for`, amiwire batches, panoramisk callbacks, asterisk-ami listeners, and a raw
  socket read that only counts messages);
- Pings/s with up to 100 in flight (amiwire, panoramisk), and sequential Ping p50/p99 against a
  bare asyncio Protocol doing the same round trip;
- peak RSS while streaming, and memory per connection with 1 000 connections receiving events.
Speed is checked here, never in the test suite: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


import amiwire

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "fixtures" / "asterisk-22" / "event-stream-load.raw"
USER, SECRET = "admin", "amiwire"


class Simulator:
    """The embedded simulator in its own process, as a PBX would be: the measured process then
    holds only the client, and the simulator's CPU is not charged to it."""

    SCRIPT = (
        "import json, sys\n"
        "from amiwire.testing import Simulator\n"
        "options = json.loads(sys.argv[1])\n"
        "with Simulator(**options) as sim:\n"
        "    print(sim.port, sim.http_port if options.get('http') else 0, flush=True)\n"
        "    sys.stdin.read()\n"
    )

    def __init__(self, **options: object) -> None:
        self.options = options
        self.host = "127.0.0.1"

    def __enter__(self) -> "Simulator":
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, json.dumps(self.options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port, http_port = self.proc.stdout.readline().split()
        self.port, self.http_port = int(port), int(http_port)
        self.url = f"tcp://{USER}:{SECRET}@{self.host}:{self.port}"
        self.http_url = f"http://{USER}:{SECRET}@{self.host}:{self.http_port}/rawman"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads_cpu(pid: int | str = "self", name: str | None = None) -> float:
    """CPU seconds of a process's threads (only those named `name` if given), from each
    thread's /proc schedstat (nanoseconds; utime/stime count 10 ms ticks). `name="amiwire"` is
    the client's driver: tokio's worker, which reads, decodes and queues."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if name is not None:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() != name:
                        continue
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


class Quiet:
    """Measures a stream from its first to its last event; the stream is over when no event
    came for `idle` seconds."""

    def __init__(self, idle: float = 0.5) -> None:
        self.idle = idle
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def hit(self, n: int = 1) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += n
        self.last = now

    def rate(self) -> float:
        return self.count / (self.last - self.first) if self.last > self.first else 0.0


async def _idle_wait(q: Quiet, limit: float = 120.0) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        await asyncio.sleep(q.idle / 2)
        if q.count and time.perf_counter() - q.last > q.idle:
            return
    raise TimeoutError("no end of the event stream in sight")


# -- events ---------------------------------------------------------------------------------


def events_amiwire(repeats: int, batches: bool) -> tuple[float, int, int, float, float, float, float]:
    """Events from the firehose to user code reading each one's name. The peak RSS is the
    process's (`isolated` adds it), so nothing here samples memory inside the loop. Both forms
    keep up with the simulator on most runs, so their rates are the wire's; the loop thread's
    CPU time per event (from the first event to the last) tells what each costs, and so do the
    driver's and the simulator's (from the trigger to the end of the stream): on two cores the
    three threads share the machine, so a rate can fall by the driver's CPU alone. The RSS once
    connected, before the stream starts, tells the peak's share that streaming adds."""
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:

        async def run() -> tuple[Quiet, int, float, float, float, float]:
            async with amiwire.connect(sim.url, keepalive=None) as ami:
                # The default stream: a consumer slower than the wire is kept up to 64 MiB of
                # queued events; past that the oldest go (counted).
                stream = ami.events()
                q = Quiet()
                cpu = [0.0, 0.0]  # the loop thread's CPU time at the first and the last event

                def hit(n: int) -> None:
                    if not q.count:
                        cpu[0] = time.thread_time()
                    q.hit(n)
                    cpu[1] = time.thread_time()

                async def consume() -> None:
                    if batches:
                        while True:
                            batch = await stream.next_batch()
                            for event in batch:
                                event.name
                            hit(len(batch))
                    else:
                        # Bookkeeping every 1024 events keeps the harness out of the measure.
                        n = 0
                        async for event in stream:
                            event.name
                            n += 1
                            if not n & 1023:
                                hit(1024)

                task = asyncio.ensure_future(consume())
                connected = rss_mb()
                driver, simulator = threads_cpu(name="amiwire"), threads_cpu(sim.proc.pid)
                await ami.action("UserEvent", UserEvent="firehose")  # starts the stream
                await _idle_wait(q)
                driver = threads_cpu(name="amiwire") - driver
                simulator = threads_cpu(sim.proc.pid) - simulator
                task.cancel()
                per_event = 1e6 / max(q.count, 1)
                return q, stream.dropped, (cpu[1] - cpu[0]) * per_event, driver * per_event, simulator * per_event, connected

        q, dropped, loop_cpu, driver_cpu, sim_cpu, connected = asyncio.run(run())
    return q.rate(), q.count, dropped, loop_cpu, driver_cpu, sim_cpu, connected


def events_panoramisk(repeats: int) -> tuple[float, int]:
    from panoramisk import Manager

    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:

        async def run() -> Quiet:
            q = Quiet()
            manager = Manager(host=sim.host, port=sim.port, username=USER, secret=SECRET, ping_delay=0, loop=asyncio.get_running_loop())

            def on_event(_manager: object, event: object) -> None:
                event["Event"]  # type: ignore[index]
                q.hit()

            manager.register_event("*", on_event)
            await manager.connect()
            await manager.send_action({"Action": "UserEvent", "UserEvent": "firehose"})
            await _idle_wait(q)
            manager.close()
            return q

        q = asyncio.run(run())
    return q.rate(), q.count


def events_asterisk_ami(repeats: int) -> tuple[float, int]:
    """asterisk-ami ends its session on any `Response: Goodbye`, whoever's ActionID it
    carries, and the capture ends with its recording client's Logoff: it reads the first
    repeat only (21,529 events), and its rate is over that."""
    from asterisk.ami import AMIClient

    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:
        q = Quiet()
        lock = threading.Lock()

        def on_event(event: object, **kwargs: object) -> None:
            event.name  # type: ignore[attr-defined]
            with lock:
                q.hit()

        client = AMIClient(address=sim.host, port=sim.port)
        client.add_event_listener(on_event)
        client.login(username=USER, secret=SECRET)
        from asterisk.ami import SimpleAction

        client.send_action(SimpleAction("UserEvent", UserEvent="firehose"))
        while not q.count or time.perf_counter() - q.last < q.idle:
            time.sleep(0.1)
        client.logoff()
    return q.rate(), q.count


def events_raw_socket(repeats: int) -> tuple[float, int]:
    """The floor: read the socket and count message terminators, nothing else."""
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:
        sock = socket.create_connection((sim.host, sim.port))
        sock.sendall(
            f"Action: Login\r\nUsername: {USER}\r\nSecret: {SECRET}\r\n\r\n"
            "Action: UserEvent\r\nUserEvent: firehose\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        q = Quiet()
        tail = b""
        try:
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    break
                chunk = tail + data
                q.hit(chunk.count(b"\r\n\r\n"))
                tail = chunk[-3:]
        except TimeoutError:
            pass
        sock.close()
    return q.rate(), q.count


# -- actions --------------------------------------------------------------------------------


async def _window(send: Any, total: int, window: int) -> None:
    """Keeps up to `window` actions in flight: a new one leaves as soon as the oldest is done."""
    in_flight: collections.deque[Any] = collections.deque()
    for _ in range(total):
        if len(in_flight) >= window:
            await in_flight.popleft()
        in_flight.append(send())
    for fut in in_flight:
        await fut


async def _gathered(send: Any, total: int, window: int) -> None:
    """Batches of `window` actions, each batch awaited with asyncio.gather."""
    for _ in range(total // window):
        await asyncio.gather(*(send() for _ in range(window)))


def pings_amiwire(total: int, window: int) -> tuple[float, float, float, float]:
    """Pings/s in a sliding window and in gathered batches, and the driver's CPU per Ping."""
    with Simulator() as sim:

        async def run() -> tuple[float, float, float, float]:
            async with amiwire.connect(sim.url, events="off", keepalive=None) as ami:
                rates, driver = [], []
                for pattern in (_window, _gathered):
                    start, cpu = time.perf_counter(), threads_cpu(name="amiwire")
                    await pattern(ami.ping, total, window)
                    rates.append(total / (time.perf_counter() - start))
                    driver.append((threads_cpu(name="amiwire") - cpu) / total * 1e6)
                return rates[0], rates[1], driver[0], driver[1]

        return asyncio.run(run())


def pings_panoramisk(total: int, window: int) -> tuple[float, float]:
    from panoramisk import Manager

    with Simulator() as sim:

        async def run() -> tuple[float, float]:
            manager = Manager(host=sim.host, port=sim.port, username=USER, secret=SECRET, ping_delay=0, events="off", loop=asyncio.get_running_loop())
            await manager.connect()
            rates = []
            for pattern in (_window, _gathered):
                start = time.perf_counter()
                await pattern(lambda: manager.send_action({"Action": "Ping"}), total, window)
                rates.append(total / (time.perf_counter() - start))
            manager.close()
            return rates[0], rates[1]

        return asyncio.run(run())


def sequential_latency(one_cpu: bool, rounds: int = 20, per_round: int = 100) -> tuple[float, float, float, float]:
    """Sequential Ping round trips, amiwire and a bare asyncio Protocol (the floor for asyncio)
    taking turns in rounds against one simulator, so that both see the same machine noise.

    With `one_cpu`, this process and the simulator are pinned to one CPU (set before either
    starts a thread, so all inherit it): every wake-up is then a context switch on that CPU,
    which shows the CPU cost per round trip without the cross-CPU wake-ups, whose price and
    count depend on where the scheduler happens to place each thread."""
    if one_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with Simulator() as sim:

        class Proto(asyncio.Protocol):
            def __init__(self) -> None:
                self.buf = b""
                self.waiter: asyncio.Future[None] | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.buf += data
                if b"\r\n\r\n" in self.buf and self.waiter and not self.waiter.done():
                    self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
                    self.waiter.set_result(None)

        async def run() -> tuple[float, float, float, float]:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(Proto, sim.host, sim.port)

            async def roundtrip(data: bytes) -> None:
                proto.waiter = loop.create_future()
                proto.transport.write(data)  # type: ignore[attr-defined]
                await proto.waiter

            await asyncio.sleep(0.05)
            proto.buf = b""
            await roundtrip(f"Action: Login\r\nUsername: {USER}\r\nSecret: {SECRET}\r\nEvents: off\r\n\r\n".encode())
            ours: list[float] = []
            bare: list[float] = []
            async with amiwire.connect(sim.url, events="off", keepalive=None) as ami:
                for _ in range(rounds):
                    for _ in range(per_round):
                        t = time.perf_counter()
                        await ami.ping()
                        ours.append(time.perf_counter() - t)
                    for i in range(per_round):
                        t = time.perf_counter()
                        await roundtrip(b"Action: Ping\r\nActionID: b-%d\r\n\r\n" % i)
                        bare.append(time.perf_counter() - t)
            proto.transport.close()
            ours.sort()
            bare.sort()
            pct = lambda xs, q: xs[int(len(xs) * q)] * 1e6  # noqa: E731
            return pct(ours, 0.5), pct(ours, 0.99), pct(bare, 0.5), pct(bare, 0.99)

        return asyncio.run(run())


def wakeup_round_trip(rounds: int = 20_000) -> tuple[float, float]:
    """p50 of a one-byte pipe round trip between two processes that sleep in between, pinned to
    the same CPU and to two different CPUs: the price of the thread wake-ups a sequential Ping
    is made of, on this machine, without any AMI code."""
    cpus = sorted(os.sched_getaffinity(0))
    results = []
    for other in (cpus[0], cpus[-1]):
        ping_r, ping_w = os.pipe()
        pong_r, pong_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.sched_setaffinity(0, {other})
            for _ in range(rounds):
                os.read(ping_r, 1)
                os.write(pong_w, b"x")
            os._exit(0)
        os.sched_setaffinity(0, {cpus[0]})
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            os.write(ping_w, b"x")
            os.read(pong_r, 1)
            times.append(time.perf_counter() - t)
        os.waitpid(child, 0)
        for fd in (ping_r, ping_w, pong_r, pong_w):
            os.close(fd)
        times.sort()
        results.append(times[len(times) // 2] * 1e6)
    return results[0], results[1]


# -- HTTP (AJAM /rawman) beside TCP ----------------------------------------------------------


def http_vs_tcp(total: int, window: int, events: int) -> list[tuple[str, str]]:
    """Pings with `window` in flight, and events from a TCP client's UserEvents delivered to an
    events() stream, over /rawman (keep-alive, one WaitEvent long-poll) and over TCP."""
    rows = []
    with Simulator(http=True) as sim:

        async def pings(url: str) -> float:
            async with amiwire.connect(url, events="off", keepalive=None) as ami:
                start = time.perf_counter()
                for _ in range(total // window):
                    await asyncio.gather(*(ami.ping() for _ in range(window)))
                return total / (time.perf_counter() - start)

        async def stream(url: str) -> float:
            async with amiwire.connect(sim.url, events="off", keepalive=None) as sender:
                async with amiwire.connect(url, keepalive=None) as ami:
                    got = ami.events("UserEvent", UserEvent="bench-*", maxsize=events * 2)
                    start = time.perf_counter()
                    for i in range(0, events, 100):
                        await asyncio.gather(*(sender.action("UserEvent", UserEvent=f"bench-{i + k}") for k in range(100)))
                    n = 0
                    while n < events:
                        n += len(await asyncio.wait_for(got.next_batch(), 30))
                    return n / (time.perf_counter() - start)

        tcp_p, http_p = asyncio.run(pings(sim.url)), asyncio.run(pings(sim.http_url))
        rows.append((f"Ping, {window} in flight", f"/rawman {http_p:,.0f}/s; TCP {tcp_p:,.0f}/s"))
        tcp_e, http_e = asyncio.run(stream(sim.url)), asyncio.run(stream(sim.http_url))
        rows.append(("UserEvents to a stream", f"/rawman {http_e:,.0f}/s; TCP {tcp_e:,.0f}/s (sender-bound)"))
    return rows


# -- memory ---------------------------------------------------------------------------------


def connections_memory(n: int) -> tuple[float, int]:
    with Simulator() as sim:

        async def run() -> tuple[float, int]:
            gc.collect()
            before = rss_mb()
            clients = []
            streams = []
            for i in range(0, n, 50):
                batch = await asyncio.gather(*(amiwire.connect(sim.url, keepalive=None) for _ in range(min(50, n - i))))
                clients += batch
            for c in clients:
                streams.append(c.events("UserEvent"))
            for k in range(5):
                await clients[0].action("UserEvent", UserEvent=f"mem-{k}")
            got = 0
            for s in streams:  # every connection receives all five
                mine = 0
                while mine < 5:
                    mine += len(await asyncio.wait_for(s.next_batch(), 10))
                got += mine
            after = rss_mb()
            await asyncio.gather(*(c.close() for c in clients))
            return (after - before) * 1024 / n, got

        return asyncio.run(run())


MEASURES = {
    "connections_memory": connections_memory,
    "events_raw_socket": events_raw_socket,
    "events_amiwire": events_amiwire,
    "events_panoramisk": events_panoramisk,
    "events_asterisk_ami": events_asterisk_ami,
    "pings_amiwire": pings_amiwire,
    "pings_panoramisk": pings_panoramisk,
    "sequential_latency": sequential_latency,
    "wakeup_round_trip": wakeup_round_trip,
    "http_vs_tcp": http_vs_tcp,
}


def isolated(name: str, *args: Any) -> Any:
    """Runs one measure in a fresh interpreter: its RSS figures then describe that measure
    alone, not what earlier ones left in the heap."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", name, json.dumps(args)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke check that the bench works)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "ARGS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        name, params = args.measure
        result = MEASURES[name](*json.loads(params))
        print(json.dumps([*result, peak_rss_mb()]))
        return 0
    repeats = 2 if args.quick else 10
    pings = 10_000 if args.quick else 100_000
    conns = 100 if args.quick else 1000

    try:
        import panoramisk  # noqa: F401
        import asterisk.ami  # noqa: F401

        peers = not args.no_peers
    except ImportError:
        print("(panoramisk / asterisk-ami not installed: `make bench-python` installs them)")
        peers = False

    print(f"capture: {CAPTURE.name} x{repeats}; machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    print("each line is measured in a fresh process; peak RSS is that process's")
    rows: list[tuple[str, str]] = []
    per_conn, got, rss = isolated("connections_memory", conns)
    rows.append((f"{conns} connections", f"{per_conn:.0f} KB each (RSS growth), {got} events delivered ({5 * conns} sent), peak RSS {rss:.1f} MB"))
    raw, raw_n, _ = isolated("events_raw_socket", repeats)
    rows.append(("raw socket read (count only)", f"{raw:,.0f} events/s ({raw_n:,})"))
    for label, batches in (("amiwire async for", False), ("amiwire next_batch", True)):
        rate, n, dropped, loop_cpu, driver_cpu, sim_cpu, connected, peak = isolated("events_amiwire", repeats, batches)
        if not batches:
            it = rate
        rows.append((label, f"{rate:,.0f} events/s ({n:,}, {dropped:,} dropped), CPU us/event: loop {loop_cpu:.2f}, driver {driver_cpu:.2f}, simulator {sim_cpu:.2f}; peak RSS {peak:.1f} MB ({connected:.1f} once connected)"))
    if peers:
        pa, pa_n, _ = isolated("events_panoramisk", repeats)
        rows.append(("panoramisk callbacks", f"{pa:,.0f} events/s ({pa_n:,}); amiwire is {it / pa:.1f}x"))
        aa, aa_n, _ = isolated("events_asterisk_ami", repeats)
        rows.append(("asterisk-ami listeners", f"{aa:,.0f} events/s ({aa_n:,}); amiwire is {it / aa:.1f}x"))

    window, gathered, window_cpu, gathered_cpu, _ = isolated("pings_amiwire", pings, 100)
    rows.append(("amiwire Ping, up to 100 in flight", f"{window:,.0f}/s (sliding window); {gathered:,.0f}/s (gather of 100); driver CPU {window_cpu:.2f} / {gathered_cpu:.2f} us per Ping"))
    if peers:
        p_window, p_gathered, _ = isolated("pings_panoramisk", pings // 4, 100)
        rows.append(("panoramisk Ping, up to 100 in flight", f"{p_window:,.0f}/s (window), {p_gathered:,.0f}/s (gather); amiwire is {window / p_window:.1f}x / {gathered / p_gathered:.1f}x"))
    for one_cpu, label in ((False, "sequential Ping p50 / p99"), (True, "  the same, pinned to one CPU")):
        p50, p99, bare50, bare99, _ = isolated("sequential_latency", one_cpu)
        rows.append((label, f"amiwire {p50:.0f} / {p99:.0f} us; bare asyncio Protocol {bare50:.0f} / {bare99:.0f} us (taking turns)"))
    same, across, _ = isolated("wakeup_round_trip")
    rows.append(("  reference: pipe round trip, 2 processes", f"p50 {same:.1f} us on one CPU, {across:.1f} us across two CPUs (a Ping wakes 2 threads bare, and 2 in amiwire over plain TCP since the loop reads the socket; it woke 4 before)"))
    *http_rows, _ = isolated("http_vs_tcp", pings // 10, 10, 5_000 if args.quick else 20_000)
    rows += [tuple(r) for r in http_rows]

    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
