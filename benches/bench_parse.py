"""Python parsing benchmark: amiwire against panoramisk's and asterisk-ami's own parsing code.

Input: the real Asterisk 22 load capture (21,829 messages, 8 MB), fed in 256 KiB chunks.
Each library goes through its own receive path with a fake transport; nothing touches the
network. Reported: the best of N runs in process CPU time (the machine is shared: CPU time
ignores the time other processes hold the core, and the best run is the least disturbed),
and the memory that retained messages cost relative to their wire size.

    python benches/bench_parse.py [--runs N]      (`make bench-python` installs the others)
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import amiwire

CAPTURE = Path(__file__).resolve().parents[1].parent / "shared/fixtures/asterisk-22/event-stream-load.raw"
CHUNK = 256 * 1024
TARGETS = {"feed + .name": 1.5e6, "feed + to_dict()": 0.4e6}


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---- amiwire ---------------------------------------------------------------------------------


def amiwire_names(chunks: list[bytes]) -> int:
    parser = amiwire.Parser()
    n = 0
    for chunk in chunks:
        for message in parser.feed(chunk):
            message.name
            n += 1
    return n


def amiwire_dicts(chunks: list[bytes]) -> int:
    parser = amiwire.Parser()
    n = 0
    for chunk in chunks:
        for message in parser.feed(chunk):
            message.to_dict()
            n += 1
    return n


def amiwire_retain(chunks: list[bytes]) -> list[Any]:
    parser = amiwire.Parser()
    out: list[Any] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


# ---- panoramisk: AMIProtocol.data_received -> Message.from_line ---------------------------------


def panoramisk_protocol(sink: Callable[[Any], None]) -> Any:
    from panoramisk.ami_protocol import AMIProtocol

    protocol = AMIProtocol()
    protocol.connection_made(SimpleNamespace(write=lambda data: None))
    protocol.factory = SimpleNamespace(save_stream=None)
    protocol.encoding = "utf8"  # what panoramisk.Manager sets by default
    protocol.log.setLevel(logging.WARNING)
    protocol.handle_message = sink  # the dispatching after parsing is not what we measure
    return protocol


def panoramisk_run(chunks: list[bytes], use: Callable[[Any], Any]) -> int:
    count = [0]

    def sink(message: Any) -> None:
        use(message)
        count[0] += 1

    protocol = panoramisk_protocol(sink)
    for chunk in chunks:
        protocol.data_received(chunk)
    return count[0]


def panoramisk_retain(chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    protocol = panoramisk_protocol(out.append)
    for chunk in chunks:
        protocol.data_received(chunk)
    return out


# ---- asterisk-ami: AMIClient._next_pack framing, then Response/Event.read -------------------------


class FakeSocket:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = deque(chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.popleft() if self.chunks else b""

    def close(self) -> None:
        pass


def asterisk_ami_run(chunks: list[bytes], use: Callable[[Any], Any]) -> int:
    from asterisk.ami.client import AMIClient
    from asterisk.ami.event import Event
    from asterisk.ami.response import Response

    client = AMIClient(buffer_size=CHUNK)
    client._socket = FakeSocket(chunks)
    client.finished = threading.Event()
    packs = client._next_pack()
    next(packs)  # the banner line
    n = 0
    for pack in packs:  # what AMIClient.fire_recv_pack does, minus the listeners
        if Response.match(pack):
            use(Response.read(pack))
        elif Event.match(pack):
            use(Event.read(pack))
        n += 1
    return n


# ---- measurement ---------------------------------------------------------------------------------


def best_rate(run: Callable[[], int], runs: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(runs):
        gc.collect()
        start = time.process_time()
        count = run()
        best = min(best, time.process_time() - start)
    return count / best, count


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def retained_memory(retain: Callable[[list[bytes]], list[Any]], chunks: list[bytes]) -> tuple[int, int, list[Any]]:
    """(bytes traced by tracemalloc, RSS growth) for keeping every parsed message."""
    gc.collect()
    rss = rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = retain(chunks)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return traced, rss_bytes() - rss, kept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--capture", type=Path, default=CAPTURE)
    args = ap.parse_args()
    data = args.capture.read_bytes()
    chunks = chunks_of(data)
    wire = len(data)
    print(f"{args.capture.name}: {wire:,} bytes in {len(chunks)} chunks of {CHUNK // 1024} KiB; "
          f"best of {args.runs} runs (CPU time); Python {sys.version.split()[0]}")

    rows: list[tuple[str, str, float, int]] = []
    rows.append(("feed + .name", "amiwire", *best_rate(lambda: amiwire_names(chunks), args.runs)))
    rows.append(("feed + to_dict()", "amiwire", *best_rate(lambda: amiwire_dicts(chunks), args.runs)))
    others = {
        "panoramisk 1.4": lambda use: panoramisk_run(chunks, use),
        "asterisk-ami 0.1.7": lambda use: asterisk_ami_run(chunks, use),
    }
    name_of = {"panoramisk 1.4": lambda m: m.get("Event"), "asterisk-ami 0.1.7": lambda m: getattr(m, "name", None)}
    dict_of = {"panoramisk 1.4": lambda m: dict(m), "asterisk-ami 0.1.7": lambda m: dict(m.keys)}
    for label, run in others.items():
        try:
            rows.append(("feed + .name", label, *best_rate(lambda: run(name_of[label]), args.runs)))
            rows.append(("feed + to_dict()", label, *best_rate(lambda: run(dict_of[label]), args.runs)))
        except ImportError as err:
            print(f"  ({label} not installed: {err}; `make bench-python` installs it)")

    print(f"\n{'task':<18} {'library':<20} {'messages':>9} {'rate':>13} {'amiwire is':>11}")
    for task, lib, rate, count in rows:
        ours = next(r for t, lib2, r, _ in rows if t == task and lib2 == "amiwire")
        speedup = "" if lib == "amiwire" else f"{ours / rate:9.1f}x"
        target = TARGETS.get(task) if lib == "amiwire" else None
        mark = "" if target is None else ("  (target met)" if rate >= target else f"  (below target {target / 1e6:g} M/s)")
        print(f"{task:<18} {lib:<20} {count:>9,} {rate / 1e6:>9.3f} M/s {speedup:>11}{mark}")

    # tracemalloc sees Python's allocator only; a Message's bytes and line index live on the
    # Rust heap, which sys.getsizeof(message) includes (Message.__sizeof__). Both are shown.
    traced, rss, kept = retained_memory(amiwire_retain, chunks)
    rust_heap = sum(sys.getsizeof(m) for m in kept) - len(kept) * type(kept[0]).__basicsize__
    total = traced + rust_heap
    print(f"\nretained {len(kept):,} amiwire Messages: Python heap (tracemalloc) {traced / 1e6:.2f} MB + "
          f"Rust heap {rust_heap / 1e6:.2f} MB = {total / wire:.2f}x wire size "
          f"(RSS growth {rss / 1e6:.1f} MB = {rss / wire:.2f}x; target <= 1.5x)")
    del kept
    try:
        traced, rss, kept = retained_memory(panoramisk_retain, chunks)
        print(f"retained {len(kept):,} panoramisk Messages: tracemalloc {traced / 1e6:.1f} MB = "
              f"{traced / wire:.2f}x wire size")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
