"""Declarative rules and blocklists from configuration; parsed by a small grammar, never ``eval``-ed.

A rule fires when all its clauses hold::

    [[detectors.rules.rules]]
    name = "card_testing_burst"
    when = "device_payments_distinct_24h >= 5 and amount < 5"
    score = 0.9
    action = "review"          # or "block"

Grammar of ``when``: one or more clauses ``feature op number`` joined by ``and``; ``op`` is one of
``> >= < <= == !=``; a feature name is a letter or ``_`` followed by letters, digits, ``_``, ``.``, ``:`` or
``-``; a number is a decimal or scientific literal (``5``, ``-0.5``, ``1e3``), or ``inf``. A clause on a
feature the event does not carry (or carries as ``NaN``) is false, so the rule does not fire.

The detector's raw score is the largest ``score`` among the rules that fire (0 when none does); the ensemble
calibrates it like any other detector's. A fired rule whose action is ``"block"`` forces the event's decision
to
*block* whatever the alert budget says.

Blocklists match entity ids, which detectors do not see in feature vectors: ``blocklists = {"ip": [...],
"device": [...]}`` maps an entity kind to blocked ids, and the ensemble calls :meth:`Rules.blocklist_match`
with each event's entity ids. A match always forces *block*.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Frame, Gate
from detectors.registry import register
from detectors.text import number, number_keeping

__all__ = ["Rules", "Rule", "Clause", "parse_when", "ACTIONS"]

#: Actions a rule may carry.
ACTIONS = ("review", "block")
_COMBINE = ("max", "sum")

_OPS: dict[str, Callable[[Any, float], Any]] = {  # floats (score_one) or numpy columns
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CLAUSE = re.compile(
    r"""\s*(?P<feature>[A-Za-z_][A-Za-z0-9_.:\-]*)\s*
        (?P<op>>=|<=|==|!=|>|<)\s*
        (?P<number>[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf))\s*$""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+")
_RULE_KEYS = {"name", "when", "score", "action"}


@dataclass(frozen=True, slots=True)
class Clause:
    """``feature op value``."""

    feature: str
    op: str
    value: float

    def holds(self, x: Features) -> bool:
        v = x.get(self.feature)
        if v is None or v != v:
            return False
        return _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.feature} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule: it fires when every clause holds."""

    name: str
    clauses: tuple[Clause, ...]
    score: float
    action: str

    def fires(self, x: Features) -> bool:
        return all(c.holds(x) for c in self.clauses)


def parse_when(text: str) -> tuple[Clause, ...]:
    """Parse a ``when`` expression; ``ValueError`` says what is wrong.

    >>> [str(c) for c in parse_when("n_orders_1h >= 5 and amount < 4.5")]
    ['n_orders_1h >= 5', 'amount < 4.5']
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'when' must be a non-empty string")
    clauses = []
    for part in _AND.split(text.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise ValueError(
                f"cannot parse clause {part.strip()!r}: expected 'feature op number' with op one of "
                f"{' '.join(sorted(_OPS))}, clauses joined by 'and'"
            )
        value = float(m["number"])
        clauses.append(Clause(m["feature"], m["op"], value))
    return tuple(clauses)


def _parse_rule(spec: Mapping[str, Any], index: int) -> Rule:
    if not isinstance(spec, Mapping):
        raise ValueError(f"rule #{index + 1} must be a table with name, when, score, action")
    name = spec.get("name")
    label = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{index + 1}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{label}: 'name' must be a non-empty string")
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        keys = ", ".join(sorted(unknown))
        raise ValueError(f"{label}: unknown key(s) {keys}; allowed: name, when, score, action")
    if "when" not in spec:
        raise ValueError(f"{label}: 'when' is missing")
    try:
        clauses = parse_when(spec["when"])
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None
    score = spec.get("score", 1.0)
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) or score < 0:
        raise ValueError(f"{label}: 'score' must be a finite number >= 0, got {score!r}")
    action = spec.get("action", "review")
    if action not in ACTIONS:
        raise ValueError(f"{label}: 'action' must be one of {', '.join(ACTIONS)}, got {action!r}")
    return Rule(name, clauses, float(score), action)


@register("rules")
class Rules(Detector):
    """Threshold rules over features, and entity blocklists.

    Parameters
    ----------
    rules
        Rule tables: ``{"name": str, "when": str, "score": float = 1.0, "action": "review" | "block"}``
        (``None``: no rule).
    blocklists
        Entity kind -> blocked ids, e.g. ``{"ip": ["203.0.113.9"], "device": ["d-666"]}``.
    combine
        How the scores of the rules that fire make the event's score: ``"max"``, the highest (one pattern is as
        bad as several), or ``"sum"`` (each pattern that fires adds its evidence).

    Examples
    --------
    >>> r = Rules(rules=[{"name": "burst", "when": "n_1h >= 5 and amount < 5", "score": 0.9}],
    ...           blocklists={"ip": ["203.0.113.9"]})
    >>> r.score_one({"n_1h": 7, "amount": 2.0}), r.score_one({"n_1h": 7, "amount": 20.0})
    (0.9, 0.0)
    >>> r.explain({"n_1h": 7, "amount": 2.0})
    [('burst', 0.9)]
    >>> r.blocklist_match({"user": "u1", "ip": "203.0.113.9"})
    ['blocklist:ip']
    """

    def __init__(
        self,
        rules: Sequence[Mapping[str, Any]] | None = None,
        blocklists: Mapping[str, Sequence[str]] | None = None,
        combine: str = "max",
    ) -> None:
        if isinstance(rules, Mapping | str):
            raise ValueError("rules must be a list of rule tables")
        if combine not in _COMBINE:
            raise ValueError(f"combine must be one of {', '.join(_COMBINE)}, got {combine!r}")
        self.combine = combine
        self.rules = rules
        self.blocklists = blocklists
        parsed = [_parse_rule(spec, i) for i, spec in enumerate(rules or ())]
        names = [r.name for r in parsed]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule name(s) used twice: {', '.join(dup)}")
        self._rules: tuple[Rule, ...] = tuple(parsed)
        self._by_name = {r.name: r for r in parsed}
        self._blocked: dict[str, frozenset[str]] = {}
        for kind, ids in (blocklists or {}).items():
            if not isinstance(kind, str) or isinstance(ids, str) or not isinstance(ids, Iterable):
                raise ValueError(f"blocklist {kind!r} must map an entity kind to a list of ids")
            self._blocked[kind] = frozenset(str(i) for i in ids)

    #: Class default, so that rules pickled before the option existed (a checkpoint) keep scoring the maximum.
    combine = "max"

    #: Rules never learn: the ensemble calibrates their scores a batch at a time, without a per-event gate.
    learns = False

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"rules": [{"name": "far", "when": "f0 > 3", "score": 0.8},
                         {"name": "both", "when": "f1 < -3 and f2 > 3", "score": 1.0, "action": "block"}]}
        yield {}

    # -- Detector API ----------------------------------------------------------------------------------------

    def fired(self, x: Features) -> list[Rule]:
        """The rules that fire on ``x``, in configuration order."""
        return [r for r in self._rules if r.fires(x)]

    def score_one(self, x: Features) -> float:
        if self.combine == "sum":
            return sum(r.score for r in self._rules if r.score > 0.0 and r.fires(x))
        best = 0.0
        for r in self._rules:
            if r.score > best and r.fires(x):
                best = r.score
        return best

    def learn_one(self, x: Features) -> None:
        return None

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        """Vectorised :meth:`score_one` over a batch (rules learn nothing; ``gate`` is still called per event).

        The features the rules name are read into one matrix (``NaN`` where absent), each clause is one numpy
        comparison on its column.
        """
        n = len(xs)
        out = np.zeros(n, dtype=np.float64)
        add = self.combine == "sum"
        names = list(dict.fromkeys(c.feature for r in self._rules if r.score > 0.0 for c in r.clauses))
        if n and names:
            if isinstance(xs, Frame):
                m = xs.columns(names)
            else:
                get = operator.itemgetter(*names)
                try:
                    rows = [get(x) for x in xs]
                except KeyError:  # some event lacks some feature: NaN there
                    nan = math.nan
                    rows = [[x.get(f, nan) for f in names] for x in xs]
                m = np.array(rows, dtype=np.float64).reshape(n, len(names))
            cols: dict[str, np.ndarray | None] = {}
            for j, f in enumerate(names):
                col = m[:, j]
                cols[f] = None if np.isnan(col).all() else col
            for r in self._rules:
                if r.score <= 0.0:
                    continue
                fire: np.ndarray | None = None
                for c in r.clauses:
                    vals = cols[c.feature]
                    if vals is None:
                        fire = None
                        break
                    with np.errstate(invalid="ignore"):
                        holds = _OPS[c.op](vals, c.value) & ~np.isnan(vals)
                    fire = holds if fire is None else fire & holds
                    if not fire.any():
                        fire = None
                        break
                if fire is not None:
                    if add:
                        out[fire] += r.score
                    else:
                        np.maximum(out, np.where(fire, r.score, 0.0), out=out)
        if gate is not None:
            for s in out.tolist():
                gate(s)
        return out

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        fired = sorted(self.fired(x), key=lambda r: -r.score)
        return [(r.name, r.score) for r in fired[:top]]

    def describe(self, x: Features, name: str) -> str:
        """The fired rule ``name`` with the event's value in each clause, rounded (but never so far that the
        clause would read false); a ``block`` rule says so, a ``review`` rule says nothing of an action (the
        alert's own action follows its severity).

        >>> r = Rules(rules=[{"name": "small", "when": "amount < 10 and n_1h >= 3"}])
        >>> r.describe({"amount": 9.99996, "n_1h": 4.0}, "small")
        'rule small: amount=9.99996 < 10 and n_1h=4 >= 3'
        """
        rule = self._by_name.get(name)
        if rule is None:
            return name
        parts = []
        for c in rule.clauses:
            v = x.get(c.feature)
            shown = "missing" if v is None else number_keeping(v, lambda t, c=c: bool(_OPS[c.op](t, c.value)))
            parts.append(f"{c.feature}={shown} {c.op} {number(c.value)}")
        action = " (block)" if rule.action == "block" else ""
        return f"rule {rule.name}{action}: " + " and ".join(parts)

    def unknown_features(self, known: Collection[str]) -> list[tuple[str, str]]:
        """``(rule, feature)`` for each feature a rule reads that is not among ``known`` (every name the feature
        vectors can hold, which the caller knows), in configuration order; such a rule could never fire.

        >>> Rules(rules=[{"name": "burst", "when": "n_1h >= 5 and amount < 5"}]).unknown_features({"amount"})
        [("rule 'burst'", 'n_1h')]
        """
        return [(f"rule {r.name!r}", c.feature) for r in self._rules for c in r.clauses if c.feature not in known]

    # -- forced decisions ------------------------------------------------------------------------------------

    @property
    def can_block(self) -> bool:
        """Whether any rule or blocklist can force a block (lets the ensemble skip the check)."""
        return bool(self._blocked) or any(r.action == "block" for r in self._rules)

    def blocklist_match(self, entity_ids: Mapping[str, str]) -> list[str]:
        """``blocklist:<kind>`` for each entity of the event whose id is blocklisted."""
        blocked = self._blocked
        return [f"blocklist:{k}" for k, v in entity_ids.items() if k in blocked and str(v) in blocked[k]]

    def block_reasons(self, x: Features, entity_ids: Mapping[str, str] | None = None) -> list[str]:
        """Why the event must be blocked: fired ``block`` rules by name, then blocklist matches."""
        out = [r.name for r in self._rules if r.action == "block" and r.fires(x)]
        if entity_ids:
            out.extend(self.blocklist_match(entity_ids))
        return out
