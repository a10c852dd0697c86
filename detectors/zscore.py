"""Robust per-feature z-scores against a sliding window of learned values.

For each feature ``f``, ``z_f = |x_f - median_f| / scale_f`` where the median and the scale come from the last
``window`` learned values of ``f``:

* ``scale = 1.4826 * MAD`` (the median absolute deviation, scaled to match a standard deviation on normal
  data);
* when more than half the window sits on one value (``MAD == 0``, typical of counts and flags), the scale
  falls back to ``1.2533 * mean |x - median|`` (the same normal-consistency for the mean absolute deviation),
  which is positive as soon as the feature varies at all; a feature that never varied gets a scale of
  ``1e-9 * max(1, |median|)``, so any change is an extreme z (and is then clipped).

The statistics are exact over the window but *refreshed* only every ``refresh_every`` learned events (numpy
medians over a ring buffer), at fixed counts of learned events, so scores do not depend on how the stream is
cut into batches, and :meth:`RobustZScore.process_many` can score every event between two refresh points in
one vectorised pass.

Features whose window holds no negative value (amounts, counts, durations) are scored on the ``log1p`` scale
(``log_nonneg``): for right-skewed quantities a ratio says more than a difference.

``count_floor`` (off by default) keeps the scale of every *window feature* (a name ending in a window, ``_1m``,
``_1h``, ``_24h``: the engine's counts, sums and distinct counts over its sliding windows) at or above that fraction
of the feature's level: ``count_floor`` on the ``log1p`` scale, ``count_floor * max(1, |median|)`` on the linear
one. The engine counts a window in 12 buckets plus the partial current one, so a steady entity's count wobbles by
up to a twelfth of its level as buckets leave; with a scale of a fraction of a percent (a busy entity's count
barely moves) that wobble scores like a shift. ``1 / 12`` is the counts' own resolution; the panel's measurements
are in ``bench/panel/README.md`` ("A floor on the z-score's scale", then "`count_floor`").

The event's score is the root-mean-square of its clipped z-scores over the features it carries (missing ones
do not count): ``sqrt(mean(min(z_f, clip)**2))``, or over its ``top_k`` largest if ``top_k`` is set. On the
ULB credit-card stream (``bench/ulb_detectors.py``, score-then-learn over 284,807 events) we compared
aggregations of the same z-scores: the maximum (top-1) reached ROC AUC 0.895 / average precision 0.011, the
sum of the top 4 0.935 / 0.055, the sum of all clipped at 10 0.942 / 0.221, and the RMS of all clipped at 5
0.944 / 0.239 (0.946 / 0.268 with the log scale for non-negative features). Clipping at 4-6 all did about as
well; without clipping a few heavy-tailed features swamp the rest (AP 0.03-0.07).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Frame, Gate, ask_gate
from detectors.registry import register
from detectors.text import number

__all__ = ["RobustZScore", "describe_z", "is_window_feature"]

_MAD_TO_SIGMA = 1.4826
_MEANAD_TO_SIGMA = 1.2533
#: A window feature's name: it ends in a window as ``stream.features.window_name`` writes one (``_30s``, ``_1m``,
#: ``_24h``, ``_1.5s``).
_WINDOW_FEATURE = re.compile(r"_[0-9]+(\.[0-9]+)?[smh]\Z")  # ASCII digits, as the compiled core reads them


def is_window_feature(name: str) -> bool:
    """Whether ``count_floor`` applies to ``name`` (see the module's notes).

    >>> [is_window_feature(n) for n in ("user_orders_24h", "ip_failed_login_ratio_1h", "dst_bytes", "V1", "x_1.5s")]
    [True, True, False, False, True]
    """
    return _WINDOW_FEATURE.search(name) is not None


@register("zscore")
class RobustZScore(Detector):
    """Sum of the largest robust z-scores of an event's features (median / MAD over a sliding window).

    Parameters
    ----------
    features
        Features to score. ``None``: every feature seen in learned events, as they appear.
    window
        Learned values per feature the median and scale are computed from.
    refresh_every
        The statistics are recomputed every this many learned events (``<= window``).
    clip
        Each z-score is clipped at this value, so one absurd feature cannot outweigh everything else.
    top_k
        The score is the sum of the ``top_k`` largest clipped z-scores (all of them if fewer).
    min_count
        A feature enters scoring once it has this many learned values (at a refresh).
    log_nonneg
        Score a feature on the ``log1p`` scale when every value in its window is ``>= 0`` (amounts, counts,
        durations: right-skewed, where a ratio is more telling than a difference). Negative values of such a
        feature map through ``sign(x) * log1p(|x|)``.
    count_floor
        The smallest scale of a window feature (:func:`is_window_feature`), as a fraction of its level (1 on the
        ``log1p`` scale, ``max(1, |median|)`` on the linear one). ``0`` (the default): no floor.

    Notes
    -----
    Missing or ``NaN`` features contribute 0 and are not learned; ``±inf`` scores ``clip`` and is not learned.
    :meth:`explain` returns the top features by clipped z, with their z.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> det = RobustZScore(window=256, refresh_every=64, min_count=32)
    >>> for _ in range(256):
    ...     det.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(10, 2)})
    >>> det.score_one({"a": 0.0, "b": 10.0}) < det.score_one({"a": 0.0, "b": 30.0})
    True
    >>> [(f, round(z, 1)) for f, z in det.explain({"a": 0.0, "b": 30.0}, top=1)]
    [('b', 5.0)]
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        window: int = 2048,
        refresh_every: int = 1024,
        clip: float = 5.0,
        top_k: int | None = None,
        min_count: int = 64,
        log_nonneg: bool = True,
        count_floor: float = 0.0,
    ) -> None:
        for name, v in (("window", window), ("refresh_every", refresh_every), ("min_count", min_count),
                        ("top_k", 1 if top_k is None else top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if refresh_every > window:
            raise ValueError(f"refresh_every ({refresh_every}) must not exceed window ({window})")
        if not (isinstance(clip, int | float) and clip > 0 and math.isfinite(clip)):
            raise ValueError(f"clip must be a positive finite number, got {clip!r}")
        if isinstance(count_floor, bool) or not (isinstance(count_floor, int | float) and 0 <= count_floor < math.inf):
            raise ValueError(f"count_floor must be a finite number >= 0, got {count_floor!r}")
        if features is not None and (isinstance(features, str) or len(features) == 0):
            raise ValueError("features must be a non-empty list of feature names, or None")
        self.features = features
        self.window = window
        self.refresh_every = refresh_every
        self.clip = clip
        self.top_k = top_k
        self.min_count = min_count
        self.log_nonneg = log_nonneg
        self.count_floor = float(count_floor)
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._ring = np.empty((0, window))
        self._fill = np.zeros(0, dtype=np.int64)  # values ever written per feature
        self._floored = np.zeros(0, dtype=bool)  # window features, which count_floor applies to
        self._learned = 0
        self._med = np.empty(0)  # snapshot, for the first len(_med) features
        self._scale = np.empty(0)
        self._use = np.empty(0, dtype=bool)
        self._n_use = 0
        self._log = np.empty(0, dtype=bool)  # features scored on the log scale
        self._any_log = False
        self._getter: Any = None
        if features is not None:
            self._register(list(dict.fromkeys(features)))

    #: The score is a root-mean-square of z-scores: the ensemble may read it on its own scale
    #: (``[ensemble.calibration] zscore = "gaussian"``).
    z_scale = True

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"window": 64, "refresh_every": 16, "min_count": 8}
        yield {"window": 32, "refresh_every": 32, "min_count": 4, "top_k": 1, "features": ["f0", "f1", "f2"]}

    # -- state -----------------------------------------------------------------------------------------------

    def _register(self, names: list[str]) -> None:
        new = [f for f in names if f not in self._index]
        if not new:
            return
        for f in new:
            self._index[f] = len(self._names)
            self._names.append(f)
        self._ring = np.vstack([self._ring, np.zeros((len(new), self.window))])
        self._fill = np.concatenate([self._fill, np.zeros(len(new), dtype=np.int64)])
        self._floored = np.concatenate([self._floored, [is_window_feature(f) for f in new]]).astype(bool)
        self._getter = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_getter"] = None
        del state["_floored"]  # derived from the names
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("count_floor", 0.0)  # a checkpoint written before the option: no floor, as then
        self._floored = np.array([is_window_feature(f) for f in self._names], dtype=bool)

    def _get(self) -> Any:
        if self._getter is None:
            names = self._names
            if len(names) == 1:
                g = itemgetter(names[0])
                self._getter = lambda x: (g(x),)
            else:
                self._getter = itemgetter(*names)
        return self._getter

    def _matrix(self, xs: Sequence[Features]) -> tuple[np.ndarray, list[bool]]:
        """Rows of ``xs`` over the known features (NaN where missing); whether each row has unknown keys."""
        names = self._names
        nf = len(names)
        if nf == 0:
            return np.empty((len(xs), 0)), [len(x) > 0 for x in xs]
        get = self._get()
        rows = []
        extra = []
        nan = math.nan
        for x in xs:
            try:
                rows.append(get(x))
                extra.append(len(x) > nf)
            except KeyError:
                row = [x.get(f, nan) for f in names]
                rows.append(row)
                extra.append(len(x) > sum(1 for f in names if f in x))
        return np.array(rows, dtype=np.float64).reshape(len(xs), nf), extra

    def _refresh(self) -> None:
        nf = len(self._names)
        fill = self._fill
        med = np.zeros(nf)
        scale = np.ones(nf)
        use = fill >= self.min_count
        log = np.zeros(nf, dtype=bool)
        full = np.flatnonzero(fill >= self.window)
        if len(full):
            ring = self._ring[full]
            if self.log_nonneg:
                lf = ring.min(axis=1) >= 0
                log[full] = lf
                ring = ring.copy()
                ring[lf] = _log1p(ring[lf])
            # a window holding one value (a constant feature: common when the data lacks an entity's ids) has
            # that value as its median and no deviation; only the others need medians
            m = ring.min(axis=1)
            var = ring.max(axis=1) != m
            mad = np.zeros(len(full))
            meanad = np.zeros(len(full))
            if var.any():
                rv = ring[var]
                mv = _row_median(rv)
                dev = np.abs(rv - mv[:, None])
                m[var] = mv
                mad[var] = _row_median(dev)
                meanad[var] = dev.mean(axis=1)
            med[full] = m
            scale[full] = _scale(mad, meanad, m)
        for f in np.flatnonzero(use & (fill < self.window)):
            vals = self._ring[f, : fill[f]]
            if self.log_nonneg and vals.min() >= 0:
                log[f] = True
                vals = _log1p(vals)
            m1 = np.median(vals)
            dev1 = np.abs(vals - m1)
            med[f] = m1
            scale[f] = _scale(np.median(dev1)[None], dev1.mean()[None], np.array([m1]))[0]
        if self.count_floor:
            level = np.where(log, 1.0, np.maximum(1.0, np.abs(med)))
            scale = np.where(self._floored, np.maximum(scale, self.count_floor * level), scale)
        self._med, self._scale, self._use, self._log = med, scale, use, log
        self._n_use = int(use.sum())
        self._any_log = bool(log.any())

    def _learn_rows(self, xl: np.ndarray) -> None:
        """Append learned rows (columns = all known features) to the rings; the caller handles refreshes."""
        mask = np.isfinite(xl)
        k, w, fill = len(xl), self.window, self._fill
        if len(fill) and k <= w and mask.all() and (fill == fill[0]).all():
            # the common case: complete rows, every feature at the same ring position: one slice (two at a wrap)
            s0 = int(fill[0]) % w
            first = min(k, w - s0)
            self._ring[:, s0 : s0 + first] = xl[:first].T
            if first < k:
                self._ring[:, : k - first] = xl[first:].T
            self._fill += k
            return
        cols = np.nonzero(mask)[1]
        pos = (np.cumsum(mask, axis=0) - 1 + self._fill)[mask] % self.window
        self._ring[cols, pos] = xl[mask]
        self._fill += mask.sum(axis=0)

    # -- scoring ---------------------------------------------------------------------------------------------

    def _z(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clipped z-scores over the snapshot's features (0 where missing or unused); how many were scored."""
        ns = len(self._med)
        x = x[:, :ns]
        if self._any_log:
            x = x.copy()
            x[:, self._log] = _symlog(x[:, self._log])
        with np.errstate(invalid="ignore"):
            z = np.abs(x - self._med) / self._scale
        np.minimum(z, self.clip, out=z)
        z[:, ~self._use] = 0.0
        missing = np.isnan(z)
        z[missing] = 0.0
        scored = self._n_use - missing[:, self._use].sum(axis=1)
        return z, scored

    def _aggregate(self, z: np.ndarray, scored: np.ndarray | int) -> np.ndarray:
        """Root-mean-square of the clipped z-scores (the ``top_k`` largest, if set) of the scored features."""
        k = self.top_k
        if k is not None and z.shape[1] > k:
            z = np.sort(np.partition(z, z.shape[1] - k, axis=1)[:, -k:], axis=1)
            scored = np.minimum(scored, k)
        return np.sqrt(np.square(z).sum(axis=1) / np.maximum(scored, 1))

    def _score(self, x: np.ndarray) -> np.ndarray:
        if len(self._med) == 0:
            return np.zeros(len(x))
        return self._aggregate(*self._z(x))

    def score_one(self, x: Features) -> float:
        return float(self._score(self._matrix([x])[0])[0])

    def learn_one(self, x: Features) -> None:
        if self.features is None:
            self._register([f for f in x if f not in self._index])
        self._learn_rows(self._matrix([x])[0])
        self._learned += 1
        if self._learned % self.refresh_every == 0:
            self._refresh()

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        n = len(xs)
        out = np.empty(n, dtype=np.float64)
        pos = 0
        frame = xs if isinstance(xs, Frame) else None
        while pos < n:
            m = min(n - pos, self.refresh_every - self._learned % self.refresh_every)
            chunk = xs[pos : pos + m]
            if frame is not None:  # the batch's shared matrix, over the features known now
                x = frame.columns(self._names)[pos : pos + m]
                extra = frame.has_keys_outside(self._index)[pos : pos + m].tolist()
            else:
                x, extra = self._matrix(chunk)
            scores = self._score(x)
            out[pos : pos + m] = scores
            if gate is None:
                learned = list(range(m))
            else:
                learned = np.flatnonzero(ask_gate(gate, scores)).tolist()
            if learned:
                xl = x[learned]
                if self.features is None:
                    known = len(self._names)
                    for i in learned:
                        if extra[i]:
                            self._register([f for f in chunk[i] if f not in self._index])
                    if len(self._names) > known:
                        new = self._names[known:]
                        cols = [[chunk[i].get(f, math.nan) for f in new] for i in learned]
                        xl = np.hstack([xl, np.array(cols, dtype=np.float64)])
                self._learn_rows(xl)
                self._learned += len(learned)
                if self._learned % self.refresh_every == 0:
                    self._refresh()
            pos += m
        return out

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        if len(self._med) == 0:
            return []
        z = self._z(self._matrix([x])[0])[0][0]
        order = np.argsort(-z, kind="stable")[:top]
        return [(self._names[i], float(z[i])) for i in order if z[i] > 0]

    def describe(self, x: Features, feature: str) -> str:
        """One line on ``feature``'s z-score in ``x`` (for alert reasons): the value, the median and scale it is
        measured against, and its z before the clip: ``merchant_orders_1m=14 (median 1, scale 0.741, z=17.5)``.
        A feature on the log scale (non-negative) has its median in its own units and its scale in ``log1p``
        units; a feature constant over the learned window says so."""
        i = self._index.get(feature)
        if i is None or i >= len(self._med) or not self._use[i]:
            return f"{feature} has too few learned values to score"
        return describe_z(feature, float(x.get(feature, math.nan)), float(self._med[i]), float(self._scale[i]),
                          bool(self._log[i]))


def describe_z(feature: str, value: float, med: float, scale: float, log: bool) -> str:
    """:meth:`RobustZScore.describe` of a scored feature from its snapshot statistics (``med`` and ``scale`` on the
    log scale when ``log``): shared by the Python detector and the compiled one's alerts (``stream.compiled``)."""
    v = float(_symlog(np.array(value))) if log else value
    shown = float(np.expm1(med)) if log else med
    if scale <= 1e-9 * max(1.0, abs(med)) * (1 + 1e-9):  # the floor of _scale: no deviation was ever learned
        return f"{feature}={number(value)} (constant {number(shown)} in the learned window)"
    z = abs(v - med) / scale if v == v else 0.0
    unit = "log1p scale" if log else "scale"
    return f"{feature}={number(value)} (median {number(shown)}, {unit} {number(scale, 3)}, z={number(z, 3)})"


def _row_median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` bit for bit, with one partition instead of two for an even row length (the
    lower middle value is the largest of the lower half)."""
    n = a.shape[1]
    h = n // 2
    if n % 2 or n < 2:
        return np.median(a, axis=1)
    part = np.partition(a, h, axis=1)
    lower = part[:, :h].max(axis=1)
    return np.mean(np.stack([lower, part[:, h]], axis=1), axis=1)


def _log1p(v: np.ndarray) -> np.ndarray:
    """``log1p`` elementwise through the C library (``math.log1p``), not numpy's own kernel: on CPUs with AVX-512
    numpy's SIMD ``np.log1p`` differs from libm's by one ulp on some inputs, and the compiled core (Rust's
    ``f64::ln_1p``) calls libm. One ulp was once enough to swap two tied calibrator ranks between the engines."""
    a = np.asarray(v, dtype=np.float64)
    flat = a.ravel().tolist()
    return np.fromiter(map(math.log1p, flat), dtype=np.float64, count=len(flat)).reshape(a.shape)


def _symlog(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * _log1p(np.abs(v))


def _scale(mad: np.ndarray, meanad: np.ndarray, med: np.ndarray) -> np.ndarray:
    return np.where(
        mad > 0,
        _MAD_TO_SIGMA * mad,
        np.where(meanad > 0, _MEANAD_TO_SIGMA * meanad, 1e-9 * np.maximum(1.0, np.abs(med))),
    )
