"""Every ```python block of README.md runs, in order, in one namespace (a block can use what
an earlier one defined). A block preceded by a `<!-- no-test -->` line is skipped."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NO_TEST = "<!-- no-test -->"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each block to run."""
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before.strip() != NO_TEST:
            blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def test_extractor_skips_marked_blocks() -> None:
    text = "x\n```python\na = 1\n```\n<!-- no-test -->\n```python\nb = 2\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n")]


def test_readme_python_blocks_run() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "readme"}
    for line, code in blocks:
        exec(compile(code, f"README.md (block at line {line})", "exec"), namespace)
