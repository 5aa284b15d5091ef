"""Every ```python block of README.md (and of the documentation's own pages) runs, in order, in
one namespace (a block can use what an earlier one defined). A block preceded by a
`<!-- no-test -->` line is skipped.

Also a script, which `make dist-check` runs with the installed wheel, outside the source tree:
``python test_readme.py README.md``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [ROOT / "docs" / "panoramisk.md"]
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


def run_blocks(path: Path) -> int:
    """Runs the page's blocks; how many ran."""
    blocks = python_blocks(path.read_text())
    namespace: dict[str, object] = {"__name__": path.stem}
    for line, code in blocks:
        exec(compile(code, f"{path.name} (block at line {line})", "exec"), namespace)
    return len(blocks)


def test_readme_python_blocks_run() -> None:
    assert run_blocks(README) >= 5


def test_documentation_pages_python_blocks_run() -> None:
    for page in PAGES:
        assert run_blocks(page) >= 3, page


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        print(f"{name}: {run_blocks(Path(name))} blocks ran")
