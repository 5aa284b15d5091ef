"""Parse a captured AMI byte stream and print a summary (the `make demo` stand-in).

Usage: python examples/parse_capture.py [capture.raw]
Defaults to the real Asterisk 22 load capture in ../shared/fixtures.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import amiwire

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/fixtures/asterisk-22/event-stream-load.raw"
CHUNK = 256 * 1024


def main(path: Path) -> None:
    data = path.read_bytes()
    parser = amiwire.Parser(errors="skip")
    names: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        for message in parser.feed(data[i : i + CHUNK]):
            if message.name is not None:
                names[message.name] += 1
            elif message.response is not None:
                responses[message.response] += 1
    seconds = time.perf_counter() - start
    total = names.total() + responses.total()
    print(f"{path.name}: {len(data):,} bytes, banner {parser.banner!r}")
    print(f"{total:,} messages ({names.total():,} events, {responses.total():,} responses), "
          f"{parser.error_count} over the limits, {parser.buffered} bytes left unterminated")
    print(f"parsed and counted in {seconds * 1000:.1f} ms: {total / seconds / 1e6:.2f} M messages/s, "
          f"{len(data) / seconds / 1e6:.0f} MB/s")
    print("events:", ", ".join(f"{name} {count}" for name, count in names.most_common(8)), "...")
    print("responses:", ", ".join(f"{name} {count}" for name, count in responses.most_common()))
    first = next(m for m in amiwire.parse(data[: 64 * 1024]) if m.name == "Newchannel")
    print("a Newchannel event:", first)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
