"""Stated evidence: patterns whose rate in genuine traffic is *stated* in the configuration, not measured on the
stream, so that a burst cannot teach the engine that they are normal.

Every other built-in detector ranks an event against recent traffic. That is what keeps them robust to streams
nobody tuned them on, and it is also their blind spot: when an attack is most of the traffic (a bot farm placing
orders in the first minute of each new account, for days, from the first event of the stream on), recent
traffic *is* the attack, and every reference window, calibrator and rule rank learns it as normal. A prior is a
rule with a stated false-positive rate::

    [[detectors.priors.rules]]
    name = "bot_speed_order"              # faster than a person signs up and pays
    when = "account_age_days < 0.000694"  # the account is less than a minute old at this order
    p = 0.001                             # at most 1 in 1,000 genuine orders does this

``p`` is the probability that a genuine event fires the rule (``0 < p < 1``). The rules that fire on an event
give ``P(fraud) = 1 - prod(p)`` over them, in configuration order: the detector is *probabilistic*, so with
``[ensemble] risk = "evidence"`` its evidence is ``-ln prod(p) = sum(-ln p)`` whatever the stream looks like (a
rule that fires on half of today's traffic still says ``-ln p``), and with ``risk = "rank"`` the ensemble
calibrates it like any detector. Clauses use the rules grammar (:func:`detectors.rules.parse_when`); a clause on a
feature the event lacks is false. Priors never learn and never block.

This is prior knowledge and should stay rare and conservative: a prior belongs here only when its genuine rate is
known without the stream, as with sub-minute sign-up-to-purchase (a person needs longer to fill in a sign-up and a
payment form).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from detectors.base import Features, Frame, Gate
from detectors.registry import register
from detectors.rules import _OPS, Rule, Rules, parse_when
from detectors.text import number

__all__ = ["Priors"]

_KEYS = {"name", "when", "p"}


def _parse_prior(spec: Mapping[str, Any], index: int) -> Rule:
    if not isinstance(spec, Mapping):
        raise ValueError(f"prior #{index + 1} must be a table with name, when, p")
    name = spec.get("name")
    label = f"prior {name!r}" if isinstance(name, str) and name else f"prior #{index + 1}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{label}: 'name' must be a non-empty string")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}; allowed: name, when, p")
    for key in ("when", "p"):
        if key not in spec:
            raise ValueError(f"{label}: {key!r} is missing")
    try:
        clauses = parse_when(spec["when"])
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None
    p = spec["p"]
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p < 1.0:
        raise ValueError(f"{label}: 'p' (its rate in genuine traffic) must be a number with 0 < p < 1, got {p!r}")
    return Rule(name, clauses, float(p), "review")  # the rule's score slot holds p


@register("priors")
class Priors(Rules):
    """Rules with a stated rate ``p`` in genuine traffic: ``P(fraud) = 1 - prod(p)`` over the rules that fire.

    Parameters
    ----------
    rules
        Prior tables: ``{"name": str, "when": str, "p": float}`` with ``0 < p < 1`` (``None``: no prior).

    Examples
    --------
    >>> d = Priors(rules=[{"name": "bot_speed_order", "when": "account_age_days < 0.000694", "p": 0.001},
    ...                   {"name": "shared", "when": "device_users_24h >= 10", "p": 0.01}])
    >>> d.score_one({"account_age_days": 0.0, "device_users_24h": 2.0})   # 1 - 0.001
    0.999
    >>> round(-math.log(1 - d.score_one({"account_age_days": 0.0, "device_users_24h": 12.0})), 3)  # -ln 0.001 - ln 0.01
    11.513
    >>> d.score_one({"account_age_days": 3.5}), d.score_one({})
    (0.0, 0.0)
    >>> d.explain({"account_age_days": 0.0, "device_users_24h": 12.0})
    [('bot_speed_order', 6.907755278982137), ('shared', 4.605170185988091)]
    >>> d.describe({"account_age_days": 0.0}, "bot_speed_order")
    'prior bot_speed_order: account_age_days=0 < 0.000694 (stated rate in genuine traffic 0.001)'
    """

    #: ``score_one`` is a fraud probability: with ``risk = "evidence"`` the ensemble takes ``-ln(1 - P)`` as is.
    probabilistic = True

    def __init__(self, rules: Sequence[Mapping[str, Any]] | None = None) -> None:
        if isinstance(rules, Mapping | str):
            raise ValueError("rules must be a list of prior tables")
        parsed = [_parse_prior(spec, i) for i, spec in enumerate(rules or ())]
        names = [r.name for r in parsed]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"prior name(s) used twice: {', '.join(dup)}")
        self.rules = rules
        self.blocklists = None
        self.combine = "product"
        self._rules = tuple(parsed)
        self._by_name = {r.name: r for r in parsed}
        self._blocked = {}

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"rules": [{"name": "far", "when": "f0 > 3", "p": 0.01},
                         {"name": "both", "when": "f1 < -3 and f2 > 3", "p": 0.001}]}
        yield {}

    def score_one(self, x: Features) -> float:
        prod = 1.0
        for r in self._rules:
            if r.fires(x):
                prod *= r.score
        return 1.0 - prod

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        """Vectorised :meth:`score_one`: the same products, rule after rule, so the same floats."""
        n = len(xs)
        prod = np.ones(n, dtype=np.float64)
        names = list(dict.fromkeys(c.feature for r in self._rules for c in r.clauses))
        if n and names:
            frame = xs if isinstance(xs, Frame) else Frame(xs)
            m = frame.columns(names)
            cols = {f: m[:, j] for j, f in enumerate(names)}
            for r in self._rules:
                fire = np.ones(n, dtype=bool)
                for c in r.clauses:
                    vals = cols[c.feature]
                    with np.errstate(invalid="ignore"):
                        fire &= _OPS[c.op](vals, c.value) & ~np.isnan(vals)
                prod[fire] *= r.score
        out = 1.0 - prod
        if gate is not None:
            for s in out.tolist():
                gate(s)
        return out

    def unknown_features(self, known: Collection[str]) -> list[tuple[str, str]]:
        """``(prior, feature)`` for each feature a prior reads that the feature vectors cannot hold."""
        return [(f"prior {r.name!r}", c.feature) for r in self._rules for c in r.clauses if c.feature not in known]

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        fired = sorted(self.fired(x), key=lambda r: r.score)
        return [(r.name, -math.log(r.score)) for r in fired[:top]]

    def describe(self, x: Features, name: str) -> str:
        rule = self._by_name.get(name)
        if rule is None:
            return name
        text = super().describe(x, name)
        return f"prior{text[len('rule'):]} (stated rate in genuine traffic {number(rule.score)})"
