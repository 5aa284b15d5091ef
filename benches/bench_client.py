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
import gc
import os
import resource
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import json
import subprocess

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


def events_amiwire(repeats: int, batches: bool) -> tuple[float, int, float, int]:
    with Simulator(firehose_file=str(CAPTURE), firehose_repeats=repeats, firehose_after="UserEvent") as sim:

        async def run() -> tuple[Quiet, float, int]:
            async with amiwire.connect(sim.url, keepalive=None) as ami:
                # The default queue bound: a consumer slower than the wire loses the oldest
                # events (counted) instead of growing memory.
                stream = ami.events()
                q = Quiet()
                peak = 0.0

                async def consume() -> None:
                    nonlocal peak
                    if batches:
                        while True:
                            batch = await stream.next_batch(65536)
                            for event in batch:
                                event.name
                            q.hit(len(batch))
                            peak = max(peak, rss_mb())
                    else:
                        # Bookkeeping every 1024 events keeps the harness out of the measure.
                        n = 0
                        async for event in stream:
                            event.name
                            n += 1
                            if not n & 1023:
                                q.hit(1024)
                                peak = max(peak, rss_mb())

                task = asyncio.ensure_future(consume())
                await ami.action("UserEvent", UserEvent="firehose")  # starts the stream
                await _idle_wait(q)
                task.cancel()
                return q, peak, stream.dropped

        q, peak, dropped = asyncio.run(run())
    return q.rate(), q.count, peak, dropped


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


def pings_amiwire(total: int, window: int) -> tuple[float, float, float]:
    with Simulator() as sim:

        async def run() -> tuple[float, float, float]:
            async with amiwire.connect(sim.url, events="off", keepalive=None) as ami:
                start = time.perf_counter()
                for _ in range(total // window):
                    await asyncio.gather(*(ami.ping() for _ in range(window)))
                rate = total / (time.perf_counter() - start)
                lat = []
                for _ in range(2000):
                    t = time.perf_counter()
                    await ami.ping()
                    lat.append(time.perf_counter() - t)
                lat.sort()
                return rate, lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6

        return asyncio.run(run())


def pings_panoramisk(total: int, window: int) -> float:
    from panoramisk import Manager

    with Simulator() as sim:

        async def run() -> float:
            manager = Manager(host=sim.host, port=sim.port, username=USER, secret=SECRET, ping_delay=0, events="off", loop=asyncio.get_running_loop())
            await manager.connect()
            start = time.perf_counter()
            for _ in range(total // window):
                await asyncio.gather(*(manager.send_action({"Action": "Ping"}) for _ in range(window)))
            rate = total / (time.perf_counter() - start)
            manager.close()
            return rate

        return asyncio.run(run())


def pings_bare_protocol() -> tuple[float, float]:
    """A minimal asyncio Protocol doing the Ping round trip: the latency floor for asyncio."""
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

        async def run() -> tuple[float, float]:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(Proto, sim.host, sim.port)

            async def roundtrip(data: bytes) -> None:
                proto.waiter = loop.create_future()
                proto.transport.write(data)
                await proto.waiter

            await asyncio.sleep(0.05)
            proto.buf = b""
            await roundtrip(f"Action: Login\r\nUsername: {USER}\r\nSecret: {SECRET}\r\nEvents: off\r\n\r\n".encode())
            lat = []
            for i in range(2000):
                t = time.perf_counter()
                await roundtrip(f"Action: Ping\r\nActionID: b-{i}\r\n\r\n".encode())
                lat.append(time.perf_counter() - t)
            proto.transport.close()
            lat.sort()
            return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6

        return asyncio.run(run())


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
            for s in streams:
                got += len(await asyncio.wait_for(s.next_batch(), 10))
            after = rss_mb()
            await asyncio.gather(*(c.close() for c in clients))
            return (after - before) * 1024 / n, got

        return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke check that the bench works)")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
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
    rows: list[tuple[str, str]] = []
    # First, while the heap is fresh: RSS growth per connection is only meaningful before the
    # floods leave freed memory behind for the allocator to reuse.
    per_conn, got = connections_memory(conns)
    rows.append((f"{conns} connections", f"{per_conn:.0f} KB each (RSS growth), {got} events delivered"))
    raw, raw_n = events_raw_socket(repeats)
    rows.append(("raw socket read (count only)", f"{raw:,.0f} events/s ({raw_n:,})"))
    it, it_n, peak, dropped = events_amiwire(repeats, batches=False)
    rows.append(("amiwire async for", f"{it:,.0f} events/s ({it_n:,}, {dropped:,} dropped), RSS {peak:.1f} MB"))
    bt, bt_n, peak_b, dropped_b = events_amiwire(repeats, batches=True)
    rows.append(("amiwire next_batch", f"{bt:,.0f} events/s ({bt_n:,}, {dropped_b:,} dropped), RSS {peak_b:.1f} MB"))
    if peers:
        pa, pa_n = events_panoramisk(repeats)
        rows.append(("panoramisk callbacks", f"{pa:,.0f} events/s ({pa_n:,}); amiwire is {it / pa:.1f}x"))
        aa, aa_n = events_asterisk_ami(repeats)
        rows.append(("asterisk-ami listeners", f"{aa:,.0f} events/s ({aa_n:,}); amiwire is {it / aa:.1f}x"))

    rate, p50, p99 = pings_amiwire(pings, 100)
    rows.append(("amiwire Ping, 100 in flight", f"{rate:,.0f}/s"))
    bare50, bare99 = pings_bare_protocol()
    rows.append(("sequential Ping p50 / p99", f"amiwire {p50:.0f} / {p99:.0f} us; bare asyncio Protocol {bare50:.0f} / {bare99:.0f} us"))
    if peers:
        pr = pings_panoramisk(pings // 4, 100)
        rows.append(("panoramisk Ping, 100 in flight", f"{pr:,.0f}/s; amiwire is {rate / pr:.1f}x"))
    rows += http_vs_tcp(pings // 10, 10, 5_000 if args.quick else 20_000)
    rows.append(("process peak RSS", f"{peak_rss_mb():.1f} MB"))

    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
