"""Rules between an action's parameters that Asterisk enforces and its AMI documentation
does not state (the docs mark each parameter required or not, never "this one, or those").

Written by hand (``tools/gen_schema.py`` does not touch this module) from Asterisk's
``main/manager.c``, github.com/asterisk/asterisk at commit f0c1c1a7 (2026-08-06); each rule
names the function and lines it mirrors. ``Schema.check`` applies them after the documented
parameters, so ``check=False`` skips them too. As in manager.c (``ast_strlen_zero``), a
parameter given with an empty value counts as not given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import NamedTuple


class Rule(NamedTuple):
    """When every parameter of ``when`` is given (always, if empty), at least one of the
    ``alternatives`` must be given whole."""

    when: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...]
    mirrors: str


RULES: dict[str, tuple[Rule, ...]] = {
    "originate": (
        Rule(
            (),
            (("Application",), ("Exten", "Context", "Priority")),
            # Without Application, a call needs Exten, Context and a Priority: "Originate with
            # 'Exten' requires 'Context' and 'Priority'" (5446-5453); an empty Exten or Context
            # fails as "Extension does not exist." (5374-5381).
            "action_originate, manager.c:5374-5381 and 5440-5453",
        ),
    ),
    "redirect": (
        Rule(
            ("ExtraChannel", "ExtraContext"),
            (("ExtraExten", "ExtraPriority"),),
            # "ExtraExten not specified", "ExtraPriority not specified".
            "action_redirect, manager.c:4045-4053",
        ),
    ),
    "blindtransfer": (
        Rule(
            (),
            (("Exten",),),
            # "No extension specified"; the docs leave Exten optional.
            "action_blind_transfer, manager.c:4158-4161",
        ),
    ),
}


def broken(action: str, is_given: Callable[[str], bool]) -> str | None:
    """Why ``action`` (documented name) with the parameters ``is_given`` accepts breaks one of
    Asterisk's rules, or None."""
    for rule in RULES.get(action.lower(), ()):
        if not all(map(is_given, rule.when)):
            continue
        if any(all(map(is_given, alternative)) for alternative in rule.alternatives):
            continue
        condition = f" with {_and(rule.when)}" if rule.when else ""
        if len(rule.alternatives) == 1:
            needs = _and(rule.alternatives[0])
        else:
            needs = ", or ".join(_with(alternative) for alternative in rule.alternatives)
        closest = max(rule.alternatives, key=lambda alt: sum(map(is_given, alt)))
        missing = [p for p in closest if not is_given(p)]
        detail = f": {_and(missing)} missing" if len(missing) < len(closest) else ""
        return (
            f"{action}{condition} needs {needs}{detail} (Asterisk refuses it otherwise: "
            f"{rule.mirrors}); pass check=False to send it anyway"
        )
    return None


def _and(names: Collection[str]) -> str:
    names = list(names)
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _with(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} with {_and(names[1:])}"
