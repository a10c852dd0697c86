"""An example riskstream detector plug-in: a streaming Tukey fence on each feature's recent quantiles.

It is a real detector (``docs/plugins.md`` shows its results on the simulator) and the template for yours:
a :class:`detectors.Detector` subclass whose constructor arguments are its whole configuration, that scores and
learns plain ``dict[str, float]`` feature vectors, explains its scores, and passes the conformance suite of
:mod:`detectors.testing`.

Use it from a config, without installing anything, when this folder is on ``PYTHONPATH``::

    [detectors.fence]
    class = "quantile_fence:QuantileFence"
    q = 0.99
    features = ["order_amount", "user_amount_ratio_max", "user_amount_24h", "device_amount_24h"]

or ``pip install docs/plugins/quantile_fence`` and name its entry point: ``class = "quantile_fence"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from river.utils import SortedWindow

from detectors import Detector, Features

__all__ = ["QuantileFence"]


class QuantileFence(Detector):
    """How far past its own recent quantiles each feature of an event lies.

    For every feature the detector keeps its last ``window`` values sorted (river's ``SortedWindow``). A value
    above the upper ``q`` quantile ``hi`` lies ``(x - hi) / spread`` past the fence, one below the lower
    ``1 - q`` quantile ``lo`` lies ``(lo - x) / spread`` past it, where ``spread = hi - lo`` (or
    ``max(|median|, 1)`` for a feature that has been constant). The raw score is the sum over features of
    ``log1p(distance past the fence)``: one feature far out, or several a little, both count; a feature seen
    fewer than ``min_count`` times does not count yet.

    Parameters
    ----------
    q
        The upper quantile of the fence, in (0.5, 1); the lower one is ``1 - q``.
    window
        Values of each feature remembered (the most recent ones).
    min_count
        Values a feature needs before it scores.
    features
        The features watched; ``None`` watches every feature an event carries.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> det = QuantileFence(q=0.99, window=500, min_count=50)
    >>> for _ in range(1000):
    ...     det.learn_one({"amount": rng.lognormvariate(3, 0.5), "items": rng.randint(1, 3)})
    >>> round(det.score_one({"amount": 20.0, "items": 2}), 3)
    0.0
    >>> round(det.score_one({"amount": 900.0, "items": 2}), 3)
    2.642
    >>> [(f, round(c, 3)) for f, c in det.explain({"amount": 900.0, "items": 9})]
    [('amount', 2.642), ('items', 1.386)]
    >>> det.describe({"amount": 900.0}, "amount")
    'amount=900 is above its recent 99% quantile 69.28 (median 20.23)'
    """

    def __init__(self, q: float = 0.99, window: int = 1000, min_count: int = 50,
                 features: Sequence[str] | None = None) -> None:
        if not 0.5 < q < 1:
            raise ValueError(f"q must be in (0.5, 1), got {q!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an integer >= 2, got {window!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or not 1 <= min_count <= window:
            raise ValueError(f"min_count must be an integer in [1, window], got {min_count!r}")
        self.q = q
        self.window = window
        self.min_count = min_count
        self.features = list(features) if features is not None else None
        self._watched = frozenset(self.features) if self.features is not None else None
        self._windows: dict[str, SortedWindow] = {}

    # -- the protocol -------------------------------------------------------------------------------------------

    def score_one(self, x: Features) -> float:
        return float(sum(math.log1p(d) for d in self._distances(x).values()))

    def learn_one(self, x: Features) -> None:
        for f, v in self._values(x):
            w = self._windows.get(f)
            if w is None:
                w = self._windows[f] = SortedWindow(self.window)
            w.append(v)

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        ranked = sorted(((f, math.log1p(d)) for f, d in self._distances(x).items()), key=lambda t: (-t[1], t[0]))
        return ranked[:top]

    def describe(self, x: Features, feature: str) -> str:
        """The alert reason's ``detail`` for ``feature`` (the ensemble asks for it when present)."""
        fence = self._fence(feature)
        v = x.get(feature)
        if fence is None or v is None:
            return f"{feature} is outside its recent range"
        lo, med, hi = fence
        side, bound, pct = ("above", hi, self.q) if v > hi else ("below", lo, 1 - self.q)
        return f"{feature}={v:.4g} is {side} its recent {pct:.0%} quantile {bound:.4g} (median {med:.4g})"

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"q": 0.99, "window": 200, "min_count": 20}
        yield {"q": 0.95, "window": 50, "min_count": 5, "features": ["f0", "f1", "f2"]}

    # -- helpers ------------------------------------------------------------------------------------------------

    def _values(self, x: Features) -> list[tuple[str, float]]:
        watched = self._watched
        return [(f, float(v)) for f, v in x.items()
                if (watched is None or f in watched) and math.isfinite(v)]

    def _fence(self, feature: str) -> tuple[float, float, float] | None:
        w = self._windows.get(feature)
        if w is None or len(w) < self.min_count:
            return None
        n = len(w)
        return w[int((1 - self.q) * (n - 1))], w[(n - 1) // 2], w[math.ceil(self.q * (n - 1))]

    def _distances(self, x: Features) -> dict[str, float]:
        out = {}
        for f, v in self._values(x):
            fence = self._fence(f)
            if fence is None:
                continue
            lo, med, hi = fence
            spread = hi - lo if hi > lo else max(abs(med), 1.0)
            d = (v - hi) / spread if v > hi else (lo - v) / spread if v < lo else 0.0
            if d > 0:
                out[f] = d
        return out
