"""A griffe extension: the docstrings' reStructuredText markup becomes Markdown for mkdocstrings.

The docstrings are written for ``help()`` and editors, in reST (``code``, :class:`X`). Here
each role becomes an autorefs cross-reference, resolved against the object's own class and
module first, then the ``amiwire`` package: a role that names nothing fails ``mkdocs build
--strict``, so the reference cannot point into the void. Roles naming another library
(``asyncio.Future``) become plain code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|exc|mod):`~?([\w.]+)`")
LITERAL = re.compile(r"``(.+?)``")
# reST's "text::" before an indented block; Markdown needs only the indentation.
LITERAL_BLOCK = re.compile(r"::\n\n")


class RstRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "amiwire":
            self._rewrite(pkg, pkg)

    def _rewrite(self, obj: griffe.Object, pkg: griffe.Module) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(lambda m: self._reference(m.group(1), obj, pkg), obj.docstring.value)
            obj.docstring.value = LITERAL_BLOCK.sub(":\n\n", LITERAL.sub(r"`\1`", text))
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, pkg)  # type: ignore[arg-type]

    @staticmethod
    def _reference(name: str, obj: griffe.Object, pkg: griffe.Module) -> str:
        short = name.rsplit(".", 1)[-1]
        if not name.startswith("amiwire") and "." in name:
            return f"`{name}`"  # another library's name: no page of ours to point to
        scopes = [scope.path for scope in (obj, obj.parent, obj.module) if scope is not None]
        for candidate in [name, *(f"{scope}.{name}" for scope in scopes), f"amiwire.{name}"]:
            try:
                pkg.modules_collection.get_member(candidate)
            except (KeyError, ValueError, griffe.AliasResolutionError):
                continue
            return f"[`{short}`][{candidate}]"
        # Unresolved: left as a cross-reference, which --strict reports as broken.
        return f"[`{short}`][{name}]"
