"""Exact detection-quality metrics, computed from every score (no approximation, no sampling).

>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
0.8333
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["roc_auc", "average_precision", "paired_bootstrap", "top_k_metrics", "Collector", "WindowCollector",
           "card_precision_at_k", "detection_delays"]


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


def _weighted_curves(order_y: np.ndarray, ends: np.ndarray, w: np.ndarray) -> tuple[float | None, float | None]:
    """ROC AUC and AP of scores already sorted from the highest, tie groups ending at ``ends``, each event counted
    ``w`` times (a bootstrap draw). Equal to :func:`roc_auc` and :func:`average_precision` with every weight 1."""
    wp = np.where(order_y == 1, w, 0.0)
    wn = w - wp
    tp = np.cumsum(wp)[ends]
    fp = np.cumsum(wn)[ends]
    pos, neg = tp[-1], fp[-1]
    if pos <= 0:
        return None, None
    tp_before = np.r_[0.0, tp[:-1]]
    neg_in = np.diff(np.r_[0.0, fp])
    pos_in = tp - tp_before
    # each negative is beaten by the positives ranked above it, and ties with those of its own group at one half
    roc = None if neg <= 0 else float(np.sum(neg_in * (tp_before + 0.5 * pos_in)) / (pos * neg))
    keep = tp + fp > 0
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=keep)
    ap = float(np.sum(pos_in * precision) / pos)
    return roc, ap


def paired_bootstrap(y: Sequence[int] | np.ndarray, a: Sequence[float] | np.ndarray,
                     b: Sequence[float] | np.ndarray, rounds: int = 1000, seed: int = 0,
                     alerted: tuple[Sequence[bool] | np.ndarray, Sequence[bool] | np.ndarray] | None = None,
                     ) -> dict[str, Any]:
    """How far two scorings ``a`` and ``b`` of the same labelled events differ, beyond sampling noise.

    A stratified paired bootstrap: each round draws the positives and the negatives with replacement (the same
    draw for ``a`` and ``b``, so what the two share cancels) and measures ``b - a`` in ROC AUC and in average
    precision. Returns the differences on the events themselves (``d_roc_auc``, ``d_ap``), the 2.5th and 97.5th
    percentiles of the rounds' differences (``*_lo``, ``*_hi``), the rounds, the seed and the class counts.
    Seeded: the same inputs give the same interval. With ``alerted`` (whether each event alerted under ``a`` and
    under ``b``), the precision of the alerts too (``precision_*``, ``d_precision``: a report's
    ``precision_at_budget``); a round whose draw holds no alert of one of them counts no difference.

    >>> y = [0, 0, 0, 1, 1, 0, 1, 0]
    >>> r = paired_bootstrap(y, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    >>> r["d_roc_auc"], r["d_roc_auc_lo"], r["d_roc_auc_hi"]
    (0.0, 0.0, 0.0)
    """
    ya = np.asarray(y, dtype=np.int8)
    sa, sb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (ya.shape == sa.shape == sb.shape) or ya.ndim != 1:
        raise ValueError("labels and both scorings must be one array each, of one length")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    pos_idx, neg_idx = np.flatnonzero(ya == 1), np.flatnonzero(ya == 0)
    if len(pos_idx) == 0 or len(neg_idx) == 0:
        raise ValueError("both classes must be present")
    sorted_ = []
    for s in (sa, sb):
        order = np.argsort(-s, kind="mergesort")
        ss = s[order]
        ends = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
        sorted_.append((order, ya[order], ends))
    ones = np.ones(len(ya))
    (roc_a, ap_a), (roc_b, ap_b) = (_weighted_curves(oy, ends, ones) for _, oy, ends in sorted_)
    hits = None
    if alerted is not None:
        al = [np.asarray(x, dtype=bool) for x in alerted]
        if len(al) != 2 or any(x.shape != ya.shape for x in al):
            raise ValueError("alerted must be two boolean arrays as long as the labels")
        hits = [(x & (ya == 1)).astype(np.float64) for x in al], [x.astype(np.float64) for x in al]

    def precision(w: np.ndarray) -> tuple[float, float] | None:
        (ha, hb), (na, nb) = hits  # type: ignore[misc]
        da, db = float(w @ na), float(w @ nb)
        return None if not (da and db) else (float(w @ ha) / da, float(w @ hb) / db)

    prec = precision(ones) if hits is not None else None
    rng = np.random.default_rng(seed)
    d_roc, d_ap, d_prec = np.empty(rounds), np.empty(rounds), np.zeros(rounds)
    n = len(ya)
    for r in range(rounds):
        w = np.zeros(n)
        w[pos_idx] = np.bincount(rng.integers(0, len(pos_idx), len(pos_idx)), minlength=len(pos_idx))
        w[neg_idx] = np.bincount(rng.integers(0, len(neg_idx), len(neg_idx)), minlength=len(neg_idx))
        (ra, pa), (rb, pb) = (_weighted_curves(oy, ends, w[order]) for order, oy, ends in sorted_)
        d_roc[r] = rb - ra
        d_ap[r] = pb - pa
        if prec is not None:
            got = precision(w)
            d_prec[r] = 0.0 if got is None else got[1] - got[0]
    out: dict[str, Any] = {"roc_auc_a": roc_a, "roc_auc_b": roc_b, "ap_a": ap_a, "ap_b": ap_b,
                           "d_roc_auc": roc_b - roc_a, "d_ap": ap_b - ap_a}
    diffs = {"d_roc_auc": d_roc, "d_ap": d_ap}
    if prec is not None:
        out.update(precision_a=prec[0], precision_b=prec[1], d_precision=prec[1] - prec[0])
        diffs["d_precision"] = d_prec
    for key, rounds_of in diffs.items():  # the 95 % interval of each difference
        out[f"{key}_lo"], out[f"{key}_hi"] = (float(v) for v in np.percentile(rounds_of, [2.5, 97.5]))
    return {**out, "rounds": rounds, "seed": seed, "positives": len(pos_idx), "negatives": len(neg_idx)}


def top_k_metrics(y: np.ndarray, s: np.ndarray, k: int) -> tuple[float | None, float | None]:
    """Precision and recall of the ``k`` highest scores (ties broken by input order)."""
    if k <= 0 or len(y) == 0:
        return None, None
    order = np.argsort(-s, kind="mergesort")[:k]
    tp = int(y[order].sum())
    pos = int(y.sum())
    return tp / min(k, len(y)), (tp / pos if pos else None)


#: Distinct dead-letter reasons a :class:`Collector` counts one by one; more fall under :data:`OTHER_REASONS`.
MAX_REASONS = 1000
OTHER_REASONS = "(other reasons)"


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
        self.reasons: Counter[str] = Counter()
        # Per detector, its calibrated tail probability p of each labelled event (NaN where it did not score the
        # event: a detector of the other event type): float32 (p's resolution is 1 / calibration window).
        self._p: dict[str, list[np.ndarray]] = {}
        self._known = 0

    def _keep_detectors(self, outcome: Any, labels: np.ndarray) -> None:
        known = labels >= 0
        k = int(known.sum())
        if not k:
            return
        calibrated = getattr(outcome, "calibrated", None) or {}
        for name in calibrated:
            if name not in self._p:
                self._p[name] = [np.full(self._known, np.nan, dtype=np.float32)]
        for name, parts in self._p.items():
            v = calibrated.get(name)
            parts.append(np.asarray(v, dtype=np.float32)[known] if v is not None
                         else np.full(k, np.nan, dtype=np.float32))
        self._known += k

    def detectors(self, y_known: np.ndarray) -> dict[str, dict[str, Any]]:
        """Each detector on its own: ROC AUC and AP of its evidence (``-p``) over the labelled events it scored."""
        out: dict[str, dict[str, Any]] = {}
        for name, parts in sorted(self._p.items()):
            p = np.concatenate(parts)
            m = ~np.isnan(p)
            yk, sk = y_known[m], -p[m].astype(np.float64)
            out[name] = {"scored": int(m.sum()), "positives": int(yk.sum()),
                         "roc_auc": roc_auc(yk, sk), "pr_auc": average_precision(yk, sk)}
        return out

    def add(self, outcome: Any, invalid: int = 0, reasons: Iterable[str] = ()) -> None:
        """Count one batch: its scored events and labels, and ``invalid`` dead letters refused for ``reasons``."""
        self.invalid += invalid
        for reason in reasons:
            if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            self.reasons[reason] += 1
        self.labels_seen += len(outcome.labels)
        n = len(outcome.scored)
        if not n:
            return
        self.events += n
        labels = np.fromiter((-1 if e.label is None else e.label for e in outcome.scored), dtype=np.int8, count=n)
        self._labels.append(labels)
        self._keep_detectors(outcome, labels)
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

    def rates(self, elapsed: float) -> dict[str, float | None]:
        """Throughput over ``elapsed`` seconds: ``events_per_second`` counts every record read (orders, logins,
        label events, refused records), ``scored_per_second`` the orders and logins scored (a replay with
        delayed labels adds a label event per labelled record, which the first counts)."""
        if elapsed <= 0:
            return {"events_per_second": None, "scored_per_second": None}
        return {"events_per_second": round((self.events + self.invalid + self.labels_seen) / elapsed, 1),
                "scored_per_second": round(self.events / elapsed, 1)}

    def add_arrays(self, outcome: Any, *, labels: np.ndarray, scenarios: list[str | None],
                   ts: tuple[float, float] | None, n_labels: int, invalid: int = 0,
                   reasons: Iterable[str] = ()) -> None:
        """:meth:`add` of a batch whose events are not objects (the raw replay path): ``labels`` (-1 unknown) and
        ``scenarios`` of its scored events in order, ``ts`` the first and last one's time, ``n_labels`` label
        events; ``outcome`` gives the risk, alerted flags and alerts."""
        self.invalid += invalid
        for reason in reasons:
            if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            self.reasons[reason] += 1
        self.labels_seen += n_labels
        n = len(labels)
        if not n:
            return
        self.events += n
        self._labels.append(np.asarray(labels, dtype=np.int8))
        self._keep_detectors(outcome, np.asarray(labels))
        self._risk.append(np.asarray(outcome.risk, dtype=np.float64))
        self._alerted.append(np.asarray(outcome.alerted, dtype=bool))
        self._scenarios.extend(scenarios)
        self.alerts += len(outcome.alerts)
        for a in outcome.alerts:
            self.severity[a.severity] += 1
            self.action[a.action] += 1
        assert ts is not None
        ts0, ts1 = ts
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
            "detectors": self.detectors(yk),
            # most frequent first (a list: the report's keys are written sorted)
            "dead_letter_reasons": [{"reason": r, "count": n} for r, n in self.reasons.most_common(10)],
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
                events, alerted = int(mask.sum()), int(a[mask].sum())
                entry: dict[str, float] = {"events": events, "alerted": alerted, "rate": alerted / events}
                (per_benign if name.startswith("benign_") else per_attack)[name] = entry
            out["per_scenario_recall"] = {k2: round(v["rate"], 4) for k2, v in per_attack.items()}
            out["per_scenario"] = per_attack
            out["benign_alert_rate"] = {k2: round(v["rate"], 4) for k2, v in per_benign.items()}
            out["benign"] = per_benign
        last, first = self.last_ts, self.first_ts
        out["stream_seconds"] = last - first if last is not None and first is not None else 0.0
        return out


DAY = 86400.0


def card_precision_at_k(day: np.ndarray, card: np.ndarray, y: np.ndarray, s: np.ndarray, k: int,
                        known_since: dict[str, float] | None = None, *,
                        drop_detected: bool = False) -> tuple[float | None, list[float]]:
    """The handbook's daily card precision@k: mean over days of the fraud share among the day's top-k cards.

    For each day, every card (entity) gets the maximum risk of its events that day; cards already known to be
    compromised before the day starts (``known_since[card]`` = when a fraud label for it arrived) are removed;
    the ``k`` riskiest remaining cards are checked, and a card counts when it had a fraud that day.
    ``day`` is the day index (``floor(ts / 86400)``) of each event. Returns the mean and the per-day values.
    With ``drop_detected`` a fraud card found in a day's top-k is also removed from the days after it, as the
    handbook's ``card_precision_top_k`` does (an investigator blocks the card the day it is found).

    >>> import numpy as np
    >>> day = np.array([0, 0, 0, 0, 1, 1]); card = np.array(["a", "a", "b", "c", "a", "b"], dtype=object)
    >>> y = np.array([0, 1, 0, 0, 1, 0]); s = np.array([0.1, 0.9, 0.8, 0.2, 0.9, 0.5])
    >>> card_precision_at_k(day, card, y, s, 2)
    (0.5, [0.5, 0.5])
    >>> card_precision_at_k(day, card, y, s, 2, known_since={"a": 0.5 * 86400})  # day 1 drops card a
    (0.25, [0.5, 0.0])
    >>> card_precision_at_k(day, card, y, s, 2, drop_detected=True)  # a was found on day 0
    (0.25, [0.5, 0.0])
    """
    known_since = known_since or {}
    detected: set[str] = set()
    per_day: list[float] = []
    for d in np.unique(day).tolist():
        m = day == d
        best: dict[str, float] = {}
        fraud: dict[str, int] = {}
        for c, yi, si in zip(card[m].tolist(), y[m].tolist(), s[m].tolist(), strict=True):
            if known_since.get(c, np.inf) < d * DAY or c in detected:
                continue
            if si > best.get(c, -np.inf):
                best[c] = si
            if yi == 1:
                fraud[c] = 1
        if not best:
            continue
        top = sorted(best, key=lambda c: (-best[c], c))[:k]
        found = [c for c in top if fraud.get(c, 0)]
        per_day.append(len(found) / k)
        if drop_detected:
            detected.update(found)
    return (float(np.mean(per_day)) if per_day else None), per_day


def detection_delays(ts: np.ndarray, scenario: np.ndarray, entity: np.ndarray, alerted: np.ndarray
                     ) -> dict[str, dict[str, Any]]:
    """Per attack scenario: instances (scenario + entity), how many alerted, and the median / p90 seconds
    from an instance's first event to its first alert (events of scenario ``None``/``normal``/``benign_*``
    are not attacks).

    >>> import numpy as np
    >>> ts = np.array([0.0, 5.0, 9.0, 1.0, 2.0]); sc = np.array(["x", "x", "x", "x", None], dtype=object)
    >>> ent = np.array(["u1", "u1", "u1", "u2", "u3"], dtype=object); al = np.array([0, 1, 1, 0, 1], dtype=bool)
    >>> detection_delays(ts, sc, ent, al)["x"]
    {'instances': 2, 'detected': 1, 'median_delay_s': 5.0, 'p90_delay_s': 5.0}
    """
    first: dict[tuple[str, str], float] = {}
    hit: dict[tuple[str, str], float] = {}
    for t, sc, e, a in zip(ts.tolist(), scenario.tolist(), entity.tolist(), alerted.tolist(), strict=True):
        if sc is None or sc in ("", "normal", "0") or str(sc).startswith("benign_"):
            continue
        key = (str(sc), str(e))
        if key not in first or t < first[key]:
            first[key] = t
        if a and (key not in hit or t < hit[key]):
            hit[key] = t
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({k[0] for k in first}):
        keys = [k for k in first if k[0] == name]
        delays = np.array([hit[k] - first[k] for k in keys if k in hit])
        out[name] = {
            "instances": len(keys),
            "detected": int(len(delays)),
            "median_delay_s": float(np.median(delays)) if len(delays) else None,
            "p90_delay_s": float(np.percentile(delays, 90)) if len(delays) else None,
        }
    return out


def event_columns(events: Sequence[Any]) -> dict[str, Any]:
    """What :class:`WindowCollector` reads of scored events, as columns: ``ts``, ``label`` (-1: none), ``card`` (the
    user id, else the event id), ``fraud_id`` (the event id of an event labelled 1, else None) and ``scenario``;
    and what ``replay --scores-out`` writes (:class:`stream.eval.scores.ScoresWriter`): ``event_id``, ``type``
    and ``user_id`` (None: none). The raw replay paths build the same columns in the core, with no event object
    (their ``scored.columns()``)."""
    return {"ts": np.array([e.ts for e in events], dtype=np.float64),
            "label": np.array([-1 if e.label is None else e.label for e in events], dtype=np.int8),
            "card": [getattr(e, "user_id", None) or e.event_id for e in events],
            "fraud_id": [e.event_id if e.label == 1 else None for e in events],
            "scenario": [e.scenario for e in events],
            "event_id": [e.event_id for e in events], "type": [e.type for e in events],
            "user_id": [getattr(e, "user_id", None) or None for e in events]}


class WindowCollector:
    """What the handbook-style evaluation needs: per-event time, card, label, risk, alert and scenario, kept
    for the events inside ``[eval_from, eval_to)`` (epoch seconds; None = open), while the stream runs whole.

    Cards with a fraud label that *arrived* (a label event) are remembered for the known-compromised rule of
    :func:`card_precision_at_k`, whatever the window.

    ``known_from`` sets the report's ``handbook_protocol`` block apart: there a card counts as known only through
    frauds of transactions at or after ``known_from`` (the handbook's training start: its test set drops the
    cards whose frauds it saw in its training week and the delay period after it, no earlier ones), and a card
    found in a day's top-k leaves the later days' card precision (``drop_detected``).
    """

    def __init__(self, eval_from: float | None = None, eval_to: float | None = None, k: int = 100,
                 known_from: float | None = None) -> None:
        self.eval_from = eval_from
        self.eval_to = eval_to
        self.k = k
        self.known_from = known_from
        self._cols: dict[str, list[Any]] = {n: [] for n in ("ts", "card", "y", "s", "a", "sc")}
        # event id -> (card, ts), for events labelled fraud (to map labels when they arrive)
        self._fraud_card: dict[str, tuple[str, float]] = {}
        self.known_since: dict[str, float] = {}
        self.protocol_known_since: dict[str, float] = {}  # the same, counting frauds at or after known_from

    def add(self, outcome: Any) -> None:
        lo = -np.inf if self.eval_from is None else self.eval_from
        hi = np.inf if self.eval_to is None else self.eval_to
        known = getattr(outcome.scored, "columns", None)
        cols = known() if known is not None else None
        # the raw replay paths give the columns without an event object per record; events give them here
        self._add_columns(event_columns(outcome.scored) if cols is None else cols, outcome, lo, hi)
        for lab in outcome.labels:
            if lab.label == 1:
                seen = self._fraud_card.pop(lab.ref_event_id, None)
                if seen is None:
                    continue
                card, tx_ts = seen
                self.known_since.setdefault(card, lab.ts)
                if self.known_from is None or tx_ts >= self.known_from:
                    self.protocol_known_since.setdefault(card, lab.ts)

    def _add_columns(self, c: dict[str, Any], outcome: Any, lo: float, hi: float) -> None:
        ts = np.asarray(c["ts"], dtype=np.float64)
        for i, fid in enumerate(c["fraud_id"]):
            if fid is not None:
                self._fraud_card[fid] = (c["card"][i], float(ts[i]))
        keep = np.flatnonzero((ts >= lo) & (ts < hi)).tolist()
        if not keep:
            return
        cols = self._cols
        risk, alerted, labels = (np.asarray(outcome.risk).tolist(), np.asarray(outcome.alerted).tolist(),
                                 np.asarray(c["label"]).tolist())
        cols["ts"].extend(ts[keep].tolist())
        cols["card"].extend(c["card"][i] for i in keep)
        cols["y"].extend(labels[i] for i in keep)
        cols["s"].extend(risk[i] for i in keep)
        cols["a"].extend(alerted[i] for i in keep)
        cols["sc"].extend(c["scenario"][i] for i in keep)

    def arrays(self) -> dict[str, np.ndarray]:
        c = self._cols
        return {"ts": np.asarray(c["ts"], dtype=np.float64), "card": np.asarray(c["card"], dtype=object),
                "y": np.asarray(c["y"], dtype=np.int8), "s": np.asarray(c["s"], dtype=np.float64),
                "a": np.asarray(c["a"], dtype=bool), "sc": np.asarray(c["sc"], dtype=object)}

    def report(self) -> dict[str, Any]:
        """``eval_events``, ``roc_auc``, ``pr_auc``, ``card_precision_at_k`` (+ per day) and ``detection_delay``."""
        v = self.arrays()
        known = v["y"] >= 0
        yk, sk = v["y"][known], v["s"][known]
        day = np.floor(v["ts"][known] / DAY).astype(np.int64)
        cpk, per_day = card_precision_at_k(day, v["card"][known], yk, sk, self.k, self.known_since)
        out: dict[str, Any] = {
            "eval_from": self.eval_from, "eval_to": self.eval_to, "eval_events": int(len(v["y"])),
            "labelled_events": int(known.sum()), "positives": int(yk.sum()),
            "roc_auc": roc_auc(yk, sk), "pr_auc": average_precision(yk, sk),
            "k": self.k, "card_precision_at_k": cpk, "card_precision_per_day": [round(p, 4) for p in per_day],
        }
        # The handbook's test set also drops every transaction of a card known to be compromised before its day
        # (known through frauds since its training start), and its card precision drops the cards found earlier.
        cards = v["card"][known]
        hk = self.protocol_known_since
        fresh = np.array([hk.get(c, np.inf) >= d * DAY for c, d in zip(cards.tolist(), day.tolist(), strict=True)],
                         dtype=bool)
        hcpk, hper_day = card_precision_at_k(day[fresh], cards[fresh], yk[fresh], sk[fresh], self.k,
                                             drop_detected=True)
        out["handbook_protocol"] = {
            "known_from": self.known_from, "events": int(fresh.sum()), "positives": int(yk[fresh].sum()),
            "roc_auc": roc_auc(yk[fresh], sk[fresh]), "pr_auc": average_precision(yk[fresh], sk[fresh]),
            "card_precision_at_k": hcpk, "card_precision_per_day": [round(p, 4) for p in hper_day]}
        if any(sc is not None for sc in v["sc"].tolist()):
            out["detection_delay"] = detection_delays(v["ts"], v["sc"], v["card"], v["a"])
        return out
