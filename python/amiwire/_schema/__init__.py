"""Asterisk's AMI documentation as the client uses it: an action's parameters are checked
before it is sent, against the documentation of the Asterisk version the client logged in to
(``ami13`` for Asterisk 13 and older, ``ami22`` otherwise: the newest is the fallback). Also
the base classes of the typed constructors in :mod:`amiwire.actions`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Generic, NamedTuple, TypeVar

from ..exceptions import LocalProtocolError
from . import ami13, ami22, rules

HeaderValue = str | int | float | bool | Iterable[str]

_E = TypeVar("_E")


class Action:
    """An action made by a constructor of :mod:`amiwire.actions`; send it with
    ``ami.action(...)``. ``headers`` are the wire pairs, None values left out."""

    __slots__ = ("name", "headers")

    def __init__(
        self, name: str, pairs: Iterable[tuple[str, HeaderValue | None]], extra: Mapping[str, HeaderValue] | None
    ) -> None:
        self.name = name
        self.headers: list[tuple[str, HeaderValue]] = [(k, v) for k, v in pairs if v is not None]
        if extra:
            self.headers += extra.items()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.headers)})"


class ListAction(Action, Generic[_E]):
    """A list action: ``ami.action_list(...)`` returns its items as ``_E`` (typed events)."""

    __slots__ = ()


class Facts(NamedTuple):
    """One action as documented: its name, parameters, required parameters and the events that
    complete its list (empty for a plain action)."""

    name: str
    parameters: tuple[str, ...]
    required: tuple[str, ...]
    complete: tuple[str, ...]


def _key(name: str) -> str:
    """Parameter names match ignoring case, ``_`` and ``-``: ``caller_id`` is ``CallerID``."""
    return name.replace("_", "").replace("-", "").lower()


# Parameters the docs give as a pattern: UpdateConfig's ``Action-000000``, AOCMessage's
# ``UnitAmount(0)``; UserEvent's ``HeaderN`` stands for any header at all.
_NUMBERED = re.compile(r"-0{6}$|\(0\)$")
_ANY_HEADER = "HeaderN"
# How many shapes of call Schema.check remembers before it starts again.
_VERDICTS = 4096


class Schema:
    """The actions one Asterisk version documents."""

    def __init__(self, asterisk: str, actions: Mapping[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]) -> None:
        self.asterisk = asterisk
        self._actions = {key: Facts(*fact) for key, fact in actions.items()}
        self._params = {key: {_key(p): p for p in fact.parameters} for key, fact in self._actions.items()}
        self._verdicts: dict[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], Mapping[str, str]] = {}

    def facts(self, action: str) -> Facts | None:
        """The documentation of ``action`` (any case), or None if this version has none."""
        return self._actions.get(action.lower())

    def check(
        self, action: str, names: Iterable[str], keywords: Collection[str], empty: Collection[str] = ()
    ) -> Mapping[str, str]:
        """Checks the header ``names`` given to ``action``, as :meth:`_check` does. The verdict
        for one shape of call (action, names, empty ones, keywords) is remembered: a pipeline
        sends the same few shapes again and again, and a check costs more than the rest of
        ``action()``. Refusals are not remembered (they raise, and are rare)."""
        key = (action, tuple(names), tuple(empty), tuple(keywords))
        respell = self._verdicts.get(key)
        if respell is None:
            respell = self._check(action, key[1], keywords, key[2])
            if len(self._verdicts) >= _VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = respell
        return respell

    def _check(
        self, action: str, names: Iterable[str], keywords: Collection[str], empty: Collection[str]
    ) -> Mapping[str, str]:
        """Checks the header ``names`` given to ``action`` (``empty``: those given an empty
        value); returns ``{given: documented spelling}`` for those to respell. Raises
        LocalProtocolError for an unknown parameter of a documented action (with the nearest
        documented one, or one of the caller's own ``keywords``), a missing required one, a
        combination Asterisk refuses (:mod:`.rules`: Originate needs Application or Exten with
        Context and Priority, ...), and, for an undocumented action, a name that looks like a
        mistyped keyword (``timout``)."""
        names = list(names)
        facts = self.facts(action)
        if facts is None:
            for name in names:
                near = difflib.get_close_matches(name.lower(), list(keywords), n=1, cutoff=0.8)
                if near and name.lower() != near[0]:
                    raise LocalProtocolError(_refusal(action, name, near[0], documented=False))
            return {}
        params = self._params[action.lower()]
        respell: dict[str, str] = {}
        for name in names:
            documented = params.get(_key(name))
            if documented is not None:
                if documented != name:
                    respell[name] = documented
            elif _ANY_HEADER not in facts.parameters and not _numbered(name, facts.parameters):
                choices = {**params, **{_key(k): k for k in keywords}}
                near = difflib.get_close_matches(_key(name), list(choices), n=1, cutoff=0.6)
                raise LocalProtocolError(_refusal(facts.name, name, choices[near[0]] if near else None, documented=True))
        given = {_key(n) for n in names}
        missing = [p for p in facts.required if _key(p) not in given]
        if missing:
            raise LocalProtocolError(
                f"{facts.name} needs {', '.join(missing)} (Asterisk {self.asterisk}'s documentation); "
                "pass check=False to send it anyway"
            )
        filled = given - {_key(n) for n in empty}
        refusal = rules.broken(facts.name, lambda param: _key(param) in filled)
        if refusal:
            raise LocalProtocolError(refusal)
        return respell


def _numbered(name: str, parameters: tuple[str, ...]) -> bool:
    for param in parameters:
        if _NUMBERED.search(param):
            stem = _NUMBERED.sub("", param)
            if re.fullmatch(re.escape(stem) + r"(-\d+|\(\d+\))", name, re.IGNORECASE):
                return True
    return False


def _refusal(action: str, name: str, near: str | None, *, documented: bool) -> str:
    what = f"{action} has no parameter {name!r}" if documented else f"{name!r} looks like a mistyped keyword"
    hint = f" (did you mean {near!r}?)" if near else ""
    return f"{what}{hint}; pass check=False to send it anyway"


SCHEMAS = {"13": Schema(ami13.ASTERISK, ami13.ACTIONS), "22": Schema(ami22.ASTERISK, ami22.ACTIONS)}
NEWEST = SCHEMAS["22"]


def for_version(asterisk_version: str | None) -> Schema:
    """The documentation for a server: Asterisk 13's for 13 and older, else the newest (an
    unknown version included; a newer Asterisk's extra parameters are then refused, hence
    ``check=False``)."""
    major = re.match(r"\d+", asterisk_version or "")
    if major and int(major.group()) <= 13:
        return SCHEMAS["13"]
    return NEWEST
