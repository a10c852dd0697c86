"""Adaptive ensemble weights: each detector's weight follows how well it separates fraud on *this* stream, as
measured on the delayed labels that have arrived.

The ensemble combines evidence ``S = sum_d w_d * -ln(p_d)`` with configured weights. A detector that sees nothing
on a stream is harmless (its ``p`` stays near 1, its evidence near 0); one that sees the *opposite* of the signal
is not: on the real-data panel (``bench/panel/``) HST alone has ROC AUC 0.29 on KDDCup99 HTTP where the z-score
alone has 0.84, and the z-score has 0.41 on the e-commerce first purchases where HST has 0.55, so the fixed
ensemble lands between them. Without labels nothing can tell which is which; with labels it can be measured.

:class:`WeightAdapter` keeps, for each scored event still waiting for its label (at most ``max_pending``, oldest
dropped first), the vector of detector evidences it was scored with. When its label arrives, the vector joins a
window of the last ``window`` labelled frauds or of the last ``window`` labelled legitimate events. Every
``refresh_every`` labels (at fixed label counts, so a replay cut into other batches makes the same changes) it
measures each detector on those windows and sets::

    learned_d = max(0, (AP_d - b) / (1 - b))          # measure = "stream_precision" (the default) or "precision"
              or max(0, 2 * AUC_d - 1)                # measure = "auc"; 0 for no better than chance

With ``"stream_precision"`` the average precision is the one the detector has on the stream's own mix of the
classes: each class counts with its share of every label that arrived, not its share of the windows (``b`` is the
stream's fraud share). The windows keep every fraud while they fit and only the last ``window`` legitimate
events, so on a stream with 1 fraud in 600 they hold one in eleven, where a weak detector's precision looks
close to a strong one's (ULB: HST 0.089 and the supervised model 0.645 on the stream, both near 0.5 in the
windows). ``"precision"`` is the windows' own mix, the measure before; the two agree until a window is full.
    learned   = learned * sum(prior) / sum(learned)   # the same total weight as the configured one
    w_d       = (1 - a) * prior_d + a * learned_d,   a = frauds / (frauds + prior_positives)

so with few labelled frauds the configured weights stay, and as they accumulate the weights become the measured
ones. Keeping the total fixed keeps the scale of ``S`` comparable with the scores already in the final
calibrator's window, which ranks each event's ``S`` against recent ones: a change of weights shows in the alerts
gradually, as that window turns over. A detector weighted 0 in the configuration stays at 0.

A detector whose evidence is the same on every labelled event in the windows (it never fired: a prior on a
feature the stream lacks, cold start on a stream without accounts) is *blind*, not bad: it is not measured, keeps
its configured weight (so it counts as configured if it starts to fire), and its configured weight is left out of
the total the others share (``sum(prior)`` above is over the detectors that showed evidence). Handing a blind
detector's share to the others would raise the scale of ``S`` while it stays blind, and every event after that
would rank high against the older sums in the calibration window.

It is bounded (``max_pending`` vectors plus two windows of ``window`` vectors) and pickles with the ensemble.

>>> a = WeightAdapter(["good", "bad"], {"good": 1.0, "bad": 1.0}, prior_positives=2, window=100, refresh_every=10)
>>> for i in range(40):
...     y = i % 4 == 0
...     a.remember(f"e{i}", [3.0 if y else 0.1 * (i % 3), 0.1 if y else 2.0 + (i % 5)])
...     _ = a.learn(f"e{i}", int(y))
>>> w = a.weights()
>>> w["good"] > 1.5 > 0.5 > w["bad"]
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["WeightAdapter"]


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of ``pos`` above ``neg`` (ties count one half), from average ranks."""
    both = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # the mean of the 1-based ranks a run of ties covers
    r_pos = avg_rank[inverse[: len(pos)]].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def _average_precision(pos: np.ndarray, neg: np.ndarray, w_pos: float = 1.0, w_neg: float = 1.0) -> float:
    """Average precision of ranking ``pos`` above ``neg``, ties taken as one threshold (a run of equal values
    enters at once): ``sum over thresholds, highest first, of precision * positives at it``, over ``len(pos)``,
    where precision counts each positive as ``w_pos`` and each negative as ``w_neg`` events (the classes' shares
    of a larger population the two samples were drawn from). Cumulative sums are sequential, so the Rust core's
    loop gives the same float."""
    both = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    vals, inverse = np.unique(both, return_inverse=True)
    tp = np.bincount(inverse, weights=y, minlength=len(vals))[::-1]
    n = np.bincount(inverse, minlength=len(vals))[::-1].astype(np.float64)
    # with both weights 1 this is cumsum(tp) / cumsum(n) bit for bit: the counts are whole numbers, summed exactly
    ctp = w_pos * np.cumsum(tp)
    prec = ctp / (ctp + w_neg * np.cumsum(n - tp))
    return float(np.cumsum(prec * tp)[-1] / len(pos))


#: How a detector's separation is measured (``[ensemble.adaptive] measure``).
MEASURES = ("stream_precision", "precision", "auc")


class WeightAdapter:
    """Detector weights measured on the arrived labels (see the module docstring).

    Parameters
    ----------
    names
        The ensemble's detectors, in its order.
    prior
        Their configured weights.
    prior_positives
        Labelled frauds at which the measured weights count as much as the configured ones.
    window
        Most recent labelled vectors kept per class for the measurement.
    refresh_every
        Labels between two measurements.
    max_pending
        Most scored events whose evidence waits for a label.
    measure
        ``"stream_precision"``: each detector's average precision with each class counted at its share of all
        the labels that arrived, ``max(0, (AP - b) / (1 - b))`` with ``b`` that fraud share; ``"precision"``:
        the same on the windows' own mix (``b`` the windows' fraud share); ``"auc"``: ``max(0, 2 AUC - 1)``.
    """

    def __init__(self, names: Sequence[str], prior: Mapping[str, float], *, prior_positives: int = 20,
                 window: int = 5000, refresh_every: int = 100, max_pending: int = 200_000,
                 measure: str = "stream_precision") -> None:
        if measure not in MEASURES:
            raise ValueError(f"adaptive measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        self.measure = measure
        for what, v, lo in (("prior_positives", prior_positives, 0), ("window", window, 2),
                            ("refresh_every", refresh_every, 1), ("max_pending", max_pending, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"adaptive {what} must be an integer >= {lo}, got {v!r}")
        self.names = list(names)
        self.prior = {n: float(prior[n]) for n in self.names}
        self.prior_positives = prior_positives
        self.window = window
        self.refresh_every = refresh_every
        self.max_pending = max_pending
        self._pending: OrderedDict[str, np.ndarray] = OrderedDict()
        d = len(self.names)
        self._rings = {y: np.zeros((window, d), dtype=np.float32) for y in (0, 1)}
        self._filled = {0: 0, 1: 0}  # vectors written into each ring (its write position is this % window)
        self._labels = 0
        self._weights = dict(self.prior)
        self.auc: dict[str, float] = {}

    def params(self) -> dict[str, Any]:
        return {"prior_positives": self.prior_positives, "window": self.window,
                "refresh_every": self.refresh_every, "max_pending": self.max_pending, "measure": self.measure}

    def weights(self) -> dict[str, float]:
        """The weights to use now."""
        return dict(self._weights)

    def remember(self, event_id: str, evidence: Sequence[float] | np.ndarray) -> None:
        """The evidence vector (``-ln p`` per detector, in ``names`` order) an event was scored with."""
        self.remember_many([event_id], [evidence])

    def remember_many(self, event_ids: Sequence[str], evidence: np.ndarray | Sequence[Sequence[float]]) -> None:
        """:meth:`remember` for a batch: row ``i`` of ``evidence`` is ``event_ids[i]``'s vector (one conversion
        for the batch, not one per event)."""
        rows = np.asarray(evidence, dtype=np.float32)
        pending = self._pending
        cap = self.max_pending
        for event_id, row in zip(event_ids, rows, strict=True):
            pending[event_id] = row  # an id remembered again keeps its place
            if len(pending) > cap:  # after each event, as one at a time would: the same at any batch split
                pending.popitem(last=False)

    def learn(self, event_id: str, y: int) -> bool:
        """A label arrived for ``event_id``: whether this adapter had its evidence (then it is learned)."""
        vec = self._pending.pop(event_id, None)
        if vec is None:
            return False
        y = 1 if y else 0
        self._rings[y][self._filled[y] % self.window] = vec
        self._filled[y] += 1
        self._labels += 1
        if self._labels % self.refresh_every == 0:
            self._refresh()
        return True

    def _refresh(self) -> None:
        n_pos, n_neg = min(self._filled[1], self.window), min(self._filled[0], self.window)
        if not n_pos or not n_neg:
            return
        pos, neg = self._rings[1][:n_pos], self._rings[0][:n_neg]
        learned: dict[str, float] = {}  # the detectors that showed evidence
        w_pos = w_neg = 1.0
        base = n_pos / (n_pos + n_neg)
        if self.measure == "stream_precision":  # each class as many times as it has arrived, not as the windows hold
            w_pos, w_neg = self._filled[1] / n_pos, self._filled[0] / n_neg
            base = self._filled[1] / (self._filled[0] + self._filled[1])
        for j, name in enumerate(self.names):
            p_col, n_col = pos[:, j], neg[:, j]
            p64, n64 = p_col.astype(np.float64), n_col.astype(np.float64)
            auc = _auc(p64, n64)
            self.auc[name] = auc
            lo, hi = min(p_col.min(), n_col.min()), max(p_col.max(), n_col.max())
            if lo != hi:  # else blind on every labelled event: not measured, and its share not handed out
                if self.prior[name] <= 0:
                    learned[name] = 0.0
                elif self.measure == "auc":
                    learned[name] = max(0.0, 2.0 * auc - 1.0)
                else:
                    learned[name] = max(0.0, (_average_precision(p64, n64, w_pos, w_neg) - base) / (1.0 - base))
        total_prior = sum(self.prior[n] for n in learned)
        total = sum(learned.values())
        if total <= 0:  # nothing separates the classes yet: keep the configured weights
            self._weights = dict(self.prior)
            return
        a = self._filled[1] / (self._filled[1] + self.prior_positives)
        self._weights = {n: (1.0 - a) * self.prior[n] + a * learned[n] * total_prior / total if n in learned
                         else self.prior[n] for n in self.names}

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self._pending), "frauds": self._filled[1], "legit": self._filled[0],
                "weights": self.weights(), "auc": dict(self.auc)}
