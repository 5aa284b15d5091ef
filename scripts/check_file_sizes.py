#!/usr/bin/env python3
"""Fails when a Rust file under the given directories passes MAX_LINES lines: a file that big
holds more than one reason to change (the transport's client.rs once held six in 1,363 lines).

    scripts/check_file_sizes.py src/transport [src/other ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

MAX_LINES = 450


def main(roots: list[str]) -> int:
    too_big = [
        (path, lines)
        for root in roots
        for path in sorted(Path(root).rglob("*.rs"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    ]
    for path, lines in too_big:
        print(f"{path} has {lines} lines (at most {MAX_LINES}): split it by concern", file=sys.stderr)
    if not too_big:
        print(f"check_file_sizes: every file in {' '.join(roots)} has at most {MAX_LINES} lines")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
