"""Exact detection-quality metrics, computed from every score (no approximation, no sampling).

>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
0.8333
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["roc_auc", "average_precision", "top_k_metrics", "Collector"]


def _arrays(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=np.int8)
    sa = np.asarray(s, dtype=np.float64)
    if ya.shape != sa.shape:
        raise ValueError("labels and scores differ in length")
    return ya, sa


def roc_auc(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float | None:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties); None when one class is absent."""
    ya, sa = _arrays(y, s)
    pos = int(ya.sum())
    neg = len(ya) - pos
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(sa, kind="mergesort")
    ranks = np.empty(len(sa), dtype=np.float64)
    sorted_s = sa[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[ya == 1].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


def average_precision(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float | None:
    """Average precision (area under the precision-recall step curve, as scikit-learn computes it)."""
    ya, sa = _arrays(y, s)
    pos = int(ya.sum())
    if pos == 0:
        return None
    order = np.argsort(-sa, kind="mergesort")
    ys, ss = ya[order], sa[order]
    # thresholds at distinct scores: take the last index of each tie group
    distinct = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tp = np.cumsum(ys)[distinct]
    fp = (distinct + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / pos
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


def top_k_metrics(y: np.ndarray, s: np.ndarray, k: int) -> tuple[float | None, float | None]:
    """Precision and recall of the ``k`` highest scores (ties broken by input order)."""
    if k <= 0 or len(y) == 0:
        return None, None
    order = np.argsort(-s, kind="mergesort")[:k]
    tp = int(y[order].sum())
    pos = int(y.sum())
    return tp / min(k, len(y)), (tp / pos if pos else None)


class Collector:
    """Accumulates what a replay needs for its report, batch by batch, in bounded-per-event memory."""

    def __init__(self) -> None:
        self._labels: list[np.ndarray] = []
        self._risk: list[np.ndarray] = []
        self._alerted: list[np.ndarray] = []
        self._scenarios: list[str | None] = []
        self.events = 0
        self.invalid = 0
        self.labels_seen = 0
        self.unlabelled = 0
        self.alerts = 0
        self.severity: Counter[str] = Counter()
        self.action: Counter[str] = Counter()
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def add(self, outcome: Any, invalid: int = 0) -> None:
        self.invalid += invalid
        self.labels_seen += len(outcome.labels)
        n = len(outcome.scored)
        if not n:
            return
        self.events += n
        labels = np.fromiter((-1 if e.label is None else e.label for e in outcome.scored), dtype=np.int8, count=n)
        self._labels.append(labels)
        self._risk.append(np.asarray(outcome.risk, dtype=np.float64))
        self._alerted.append(np.asarray(outcome.alerted, dtype=bool))
        self._scenarios.extend(e.scenario for e in outcome.scored)
        self.alerts += len(outcome.alerts)
        for a in outcome.alerts:
            self.severity[a.severity] += 1
            self.action[a.action] += 1
        ts0, ts1 = outcome.scored[0].ts, outcome.scored[-1].ts
        self.first_ts = ts0 if self.first_ts is None else min(self.first_ts, ts0)
        self.last_ts = ts1 if self.last_ts is None else max(self.last_ts, ts1)

    def report(self, budget: float) -> dict[str, Any]:
        """The quality part of the replay report (see ``docs/replay.md`` for every key)."""
        y = np.concatenate(self._labels) if self._labels else np.empty(0, dtype=np.int8)
        s = np.concatenate(self._risk) if self._risk else np.empty(0)
        a = np.concatenate(self._alerted) if self._alerted else np.empty(0, dtype=bool)
        known = y >= 0
        yk, sk, ak = y[known].astype(np.int8), s[known], a[known]
        out: dict[str, Any] = {
            "events": self.events,
            "invalid": self.invalid,
            "label_events": self.labels_seen,
            "labelled_events": int(known.sum()),
            "positives": int(yk.sum()),
            "alerts": self.alerts,
            "alerts_per_1k": round(1000.0 * self.alerts / self.events, 3) if self.events else 0.0,
            "alert_rate": self.alerts / self.events if self.events else 0.0,
            "budget": budget,
            "severity": dict(sorted(self.severity.items())),
            "action": dict(sorted(self.action.items())),
            "roc_auc": roc_auc(yk, sk),
            "pr_auc": average_precision(yk, sk),
        }
        tp = int((ak & (yk == 1)).sum())
        pos = int(yk.sum())
        n_alert_known = int(ak.sum())
        # What a reviewer with this budget sees: the alerts the engine actually raised online.
        out["precision_at_budget"] = tp / n_alert_known if n_alert_known else None
        out["recall_at_budget"] = tp / pos if pos else None
        # The same budget spent offline on the best-ranked events (an upper bound for the online decision).
        k = int(round(budget * len(yk)))
        p_top, r_top = top_k_metrics(yk, sk, k)
        out["topk_precision_at_budget"] = p_top
        out["topk_recall_at_budget"] = r_top
        if any(sc is not None for sc in self._scenarios):
            sc_arr = np.array([sc or "" for sc in self._scenarios], dtype=object)
            per_attack: dict[str, Any] = {}
            per_benign: dict[str, Any] = {}
            for name in sorted(set(sc_arr) - {"", "normal"}):
                mask = sc_arr == name
                entry = {"events": int(mask.sum()), "alerted": int(a[mask].sum())}
                entry["rate"] = entry["alerted"] / entry["events"]
                (per_benign if name.startswith("benign_") else per_attack)[name] = entry
            out["per_scenario_recall"] = {k2: round(v["rate"], 4) for k2, v in per_attack.items()}
            out["per_scenario"] = per_attack
            out["benign_alert_rate"] = {k2: round(v["rate"], 4) for k2, v in per_benign.items()}
            out["benign"] = per_benign
        out["stream_seconds"] = (self.last_ts - self.first_ts) if self.first_ts is not None else 0.0
        return out
