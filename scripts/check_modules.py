"""Keeps the layers' module structure honest (run by `make test-rust`):

- no import cycles between the modules of src/proto, nor between those of src/transport
  (a folder module such as transport/tcp counts as one module);
- no file of src/transport over MAX_LINES lines: a file that big holds more than one reason
  to change.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MAX_LINES = 450
LAYERS = ("proto", "transport")
PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)(::\{([^}]*)\})?")


def modules(root: Path) -> dict[str, list[Path]]:
    """Top-level module name -> its files."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.rs")):
        rel = path.relative_to(root)
        if rel == Path("mod.rs"):
            continue
        name = rel.parts[0].removesuffix(".rs")
        found.setdefault(name, []).append(path)
    return found


def resolve(layer: str, file_module: list[str], head: str, rest: list[str]) -> list[str]:
    """The absolute module path (from the crate root) that a `head::rest` path names."""
    if head == "crate":
        return rest
    base = ["transport" if layer == "transport" else "proto", *file_module]
    if head == "self":
        return base + rest
    # `super` (possibly repeated at the start of `rest`).
    base = base[:-1]
    while rest and rest[0] == "super":
        base, rest = base[:-1], rest[1:]
    return base + rest


def edges(layer: str, root: Path, names: set[str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, files in modules(root).items():
        for path in files:
            rel = path.relative_to(root).with_suffix("")
            file_module = [p for p in rel.parts if p != "mod"]
            text = re.sub(r"//.*", "", path.read_text())
            for head, tail, _, group in PATH.findall(text):
                rest = [p for p in tail.split("::") if p]
                targets = [resolve(layer, file_module, head, rest)]
                if group:
                    prefix = targets[0]
                    targets = [prefix + [item.strip().split("::")[0]] for item in group.split(",")]
                for target in targets:
                    if len(target) >= 2 and target[0] == layer and target[1] in names and target[1] != name:
                        graph[name].add(target[1])
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src"
    problems = []
    for layer in LAYERS:
        root = src / layer
        found = cycle(edges(layer, root, set(modules(root))))
        if found:
            problems.append(f"import cycle in src/{layer}: {' -> '.join(found)}")
    for path in sorted((src / "transport").rglob("*.rs")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(src.parent)} has {lines} lines (at most {MAX_LINES})")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
