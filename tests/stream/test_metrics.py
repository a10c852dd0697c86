from __future__ import annotations

import numpy as np
import pytest

from stream.eval.metrics import (
    MAX_REASONS,
    OTHER_REASONS,
    Collector,
    average_precision,
    roc_auc,
    top_k_metrics,
)


def brute_auc(y, s):
    pos = [b for a, b in zip(y, s, strict=True) if a == 1]
    neg = [b for a, b in zip(y, s, strict=True) if a == 0]
    total = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def brute_ap(y, s):
    # scikit-learn's definition: sum over distinct thresholds of (R_n - R_{n-1}) P_n
    pairs = sorted(zip(s, y, strict=True), key=lambda t: -t[0])
    P = sum(y)
    ap, prev_r, tp, seen = 0.0, 0.0, 0, 0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += pairs[j][1]
            seen += 1
            j += 1
        r = tp / P
        ap += (r - prev_r) * (tp / seen)
        prev_r = r
        i = j
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_exact_auc_and_ap_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y * 0.7, 1)  # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(brute_ap(y, s), abs=1e-12)


def test_degenerate_inputs():
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert average_precision([0, 0], [0.1, 0.2]) is None
    assert roc_auc([0, 1], [0.1, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.9, 0.1]) == 0.0


def test_top_k():
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.7])
    p, r = top_k_metrics(y, s, 2)
    assert (p, r) == (0.5, 1 / 3)


class _NoEvents:
    scored: list = []
    labels: list = []


def test_collector_counts_dead_letter_reasons_in_bounded_memory():
    c = Collector()
    c.add(_NoEvents(), invalid=3, reasons=["a: is missing"] * 3)
    distinct = [f"b: not {i}" for i in range(MAX_REASONS + 5)]
    c.add(_NoEvents(), invalid=len(distinct), reasons=distinct)
    assert len(c.reasons) == MAX_REASONS + 1
    assert c.reasons[OTHER_REASONS] == 6 and sum(c.reasons.values()) == c.invalid
    top = c.report(0.01)["dead_letter_reasons"]
    assert top[:2] == [{"reason": OTHER_REASONS, "count": 6}, {"reason": "a: is missing", "count": 3}]
    assert len(top) == 10


class _Batch:
    """An outcome as the engines return it: scored events with labels, risk, and each detector's p."""

    def __init__(self, labels, calibrated, ts=0.0):
        self.scored = [type("E", (), {"label": y, "scenario": None, "ts": ts})() for y in labels]
        self.labels: list = []
        self.alerts: list = []
        self.risk = np.zeros(len(labels))
        self.alerted = np.zeros(len(labels), dtype=bool)
        self.calibrated = {k: np.asarray(v, dtype=np.float64) for k, v in calibrated.items()}


def test_each_detector_is_scored_alone_over_the_labelled_events_it_scored():
    rng = np.random.default_rng(3)
    c = Collector()
    ys, ps, qs = [], [], []
    for i in range(5):
        y = rng.integers(0, 2, 200)
        y[:3] = -1  # unlabelled events count for neither detector
        good = np.where(y == 1, rng.uniform(0, 0.2, 200), rng.uniform(0.1, 1, 200))  # small p on frauds
        cal = {"good": good}
        if i % 2 == 0:  # "late" scores only some batches (a detector of one event type); NaN inside a batch too
            late = rng.uniform(0, 1, 200)
            late[10:20] = np.nan
            cal["late"] = late
            qs.append(np.where(y >= 0, late, np.nan)[y >= 0])
        else:
            qs.append(np.full(int((y >= 0).sum()), np.nan))
        c.add(_Batch([None if v < 0 else int(v) for v in y], cal))
        ys.append(y[y >= 0])
        ps.append(good[y >= 0])
    rep = c.report(0.01)["detectors"]
    y, p, q = np.concatenate(ys), np.concatenate(ps), np.concatenate(qs)
    assert rep["good"] == {"scored": len(y), "positives": int(y.sum()), "roc_auc": pytest.approx(brute_auc(y, -p)),
                           "pr_auc": pytest.approx(average_precision(y, -p))}
    assert rep["good"]["roc_auc"] > 0.8
    m = ~np.isnan(q)
    assert rep["late"]["scored"] == int(m.sum()) < len(y)
    assert rep["late"]["roc_auc"] == pytest.approx(brute_auc(y[m], -q[m]))


def test_the_paired_bootstrap_measures_the_events_themselves_and_its_weights_are_replication():
    from stream.eval.metrics import _weighted_curves, paired_bootstrap

    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(2, 50))
        y = rng.integers(0, 2, n).astype(np.int8)
        if y.sum() in (0, n):
            continue
        s = np.round(rng.normal(size=n), 1)  # ties
        order = np.argsort(-s, kind="mergesort")
        ends = np.r_[np.flatnonzero(np.diff(s[order])), n - 1]
        w = rng.integers(0, 3, n)
        roc, ap = _weighted_curves(y[order], ends, w[order].astype(np.float64))
        yy, ss = np.repeat(y, w), np.repeat(s, w)
        if yy.sum() in (0, len(yy)):
            continue
        assert roc == pytest.approx(roc_auc(yy, ss), abs=1e-12)
        assert ap == pytest.approx(average_precision(yy, ss), abs=1e-12)
    y = (rng.random(4000) < 0.02).astype(int)
    a = rng.normal(size=4000) + 2.0 * y
    r = paired_bootstrap(y, a, a, rounds=50)
    assert (r["d_roc_auc"], r["d_roc_auc_lo"], r["d_roc_auc_hi"], r["d_ap_lo"], r["d_ap_hi"]) == (0.0,) * 5
    assert r["roc_auc_a"] == pytest.approx(roc_auc(y, a)) and r["ap_a"] == pytest.approx(average_precision(y, a))
    # b separates the classes better: the whole interval is above 0; worse: below
    b = a + 1.0 * y
    up = paired_bootstrap(y, a, b, rounds=200, seed=1)
    assert up["d_roc_auc_lo"] > 0 and up["d_ap_lo"] > 0
    down = paired_bootstrap(y, b, a, rounds=200, seed=1)
    assert down["d_roc_auc_hi"] < 0 and down["d_roc_auc"] == pytest.approx(-up["d_roc_auc"])
    # noise alone: the interval holds 0, and the same seed gives the same interval
    c = a + 0.05 * rng.normal(size=4000)
    same = paired_bootstrap(y, a, c, rounds=200, seed=2)
    assert same["d_roc_auc_lo"] < 0 < same["d_roc_auc_hi"]
    assert same == paired_bootstrap(y, a, c, rounds=200, seed=2)
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap([0, 0], [1.0, 2.0], [1.0, 2.0])
