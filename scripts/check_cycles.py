#!/usr/bin/env python3
"""Fails when the Rust modules under the given directories import each other in a circle.

    scripts/check_cycles.py src/sim [src/other ...]

A module depends on another when its code names it by path: a `use` declaration
(`use super::core::Core;`, `use crate::sim::{wire::Out, time::Stamp};`) or an inline path
(`super::wire::header(m)`). `mod x;` declarations are ownership, not dependencies, and comments
are ignored. A path is charged to the longest module it names (`super::calls::model::Calls` ->
`calls/model.rs`). Only modules inside the given directories count. Prints each cycle with the
lines that close it, and exits 1 if there is one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
USE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);")
INLINE = re.compile(r"\b(?:crate|super|self)(?:\s*::\s*\w+)+")


def module_of(path: Path, src: Path) -> tuple[str, ...]:
    """`src/sim/calls/mod.rs` -> ("sim", "calls"); `src/sim/core.rs` -> ("sim", "core")."""
    parts = path.relative_to(src).with_suffix("").parts
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def expand(tree: str) -> list[str]:
    """`a::{b::C, d}` -> ["a::b::C", "a::d"] (nested braces too)."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree.split(" as ")[0]]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    return [p for item in items if item for p in expand(prefix + item)]


def resolve(path: str, here: tuple[str, ...]) -> tuple[str, ...]:
    segs = [s for s in path.replace(" ", "").split("::") if s]
    if segs[0] == "crate":
        base: tuple[str, ...] = ()
        segs = segs[1:]
    else:
        # `super` in foo.rs and in foo/mod.rs both name foo's parent.
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    return base + tuple(segs)


def main(dirs: list[str]) -> int:
    files = [f for d in dirs for f in sorted(Path(d).rglob("*.rs"))]
    if not files:
        print(f"check_cycles: no Rust files under {' '.join(dirs)}", file=sys.stderr)
        return 2
    src = next(p for p in files[0].resolve().parents if p.name == "src")
    modules = {module_of(f.resolve(), src): f for f in files}
    edges: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {m: {} for m in modules}
    for mod, file in modules.items():
        text = file.read_text(encoding="utf-8")
        code = STRING.sub('""', COMMENT.sub(lambda m: "\n" * m.group().count("\n"), text))
        paths = []
        for m in USE.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            paths += [(p, line) for p in expand(m.group(1))]
        uses_removed = USE.sub(lambda m: "\n" * m.group().count("\n"), code)
        for m in INLINE.finditer(uses_removed):
            paths.append((m.group(), uses_removed.count("\n", 0, m.start()) + 1))
        for path, line in paths:
            target = resolve(path, mod)
            while target and target not in modules:
                target = target[:-1]
            if target in modules and target != mod and target not in edges[mod]:
                edges[mod][target] = f"{file}:{line}: {path}"
    cycles = strongly_connected(edges)
    for scc in cycles:
        names = sorted("::".join(m) for m in scc)
        print(f"import cycle among {', '.join(names)}:")
        for a in sorted(scc):
            for b, where in sorted(edges[a].items()):
                if b in scc:
                    print(f"  {where}")
    if not cycles:
        print(f"check_cycles: no import cycle among {len(modules)} modules in {' '.join(dirs)}")
    return 1 if cycles else 0


def strongly_connected(edges):
    """Tarjan's algorithm; returns the components of more than one module."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
