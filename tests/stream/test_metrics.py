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
