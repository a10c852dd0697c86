"""RobustZScore: exact windowed median/MAD, refreshed at fixed learned counts, aggregated by RMS."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from detectors.zscore import RobustZScore


def _learn(det: RobustZScore, xs) -> None:
    for x in xs:
        det.learn_one(x)


def test_score_is_the_rms_of_clipped_robust_z_against_the_window():
    rng = np.random.default_rng(0)
    a = rng.lognormal(1, 0.5, 300)  # non-negative: scored on the log scale
    b = rng.standard_t(3, 300) - 10  # signed: scored on the linear scale
    det = RobustZScore(window=128, refresh_every=64, clip=4.0, min_count=10)
    _learn(det, [{"a": float(u), "b": float(v)} for u, v in zip(a, b, strict=True)])  # 300 -> refresh at 256
    wa, wb = a[256 - 128 : 256], b[256 - 128 : 256]  # the window as of the last refresh
    x = {"a": 9.5, "b": -30.0}
    la = np.log1p(wa)
    za = abs(np.log1p(9.5) - np.median(la)) / (1.4826 * np.median(np.abs(la - np.median(la))))
    zb = abs(-30.0 - np.median(wb)) / (1.4826 * np.median(np.abs(wb - np.median(wb))))
    expected = math.sqrt((min(za, 4.0) ** 2 + min(zb, 4.0) ** 2) / 2)
    assert det.score_one(x) == pytest.approx(expected, rel=1e-12)
    assert dict(det.explain(x, top=2))["b"] == pytest.approx(min(zb, 4.0))


def test_statistics_change_only_at_refresh_points():
    rng = random.Random(1)
    det = RobustZScore(window=64, refresh_every=32, min_count=8)
    _learn(det, [{"a": rng.gauss(0, 1)} for _ in range(64)])
    probe = {"a": 2.5}
    s = det.score_one(probe)
    _learn(det, [{"a": rng.gauss(50, 1)} for _ in range(31)])
    assert det.score_one(probe) == s
    det.learn_one({"a": 50.0})  # the 32nd learned event since the last refresh: new statistics
    assert det.score_one(probe) != s


def test_cold_detector_scores_zero_until_the_first_refresh():
    det = RobustZScore(window=32, refresh_every=16, min_count=4)
    for i in range(15):
        assert det.score_one({"a": 100.0 * i}) == 0.0
        det.learn_one({"a": float(i)})
    det.learn_one({"a": 3.0})
    assert det.score_one({"a": 100.0}) > 0


def test_zero_mad_falls_back_to_mean_absolute_deviation_then_to_a_tiny_scale():
    det = RobustZScore(window=100, refresh_every=100, min_count=10, clip=1000.0, log_nonneg=False)
    # 'flag' is 0 ninety times and 1 ten times: MAD is 0, mean |x - median| is 0.1
    _learn(det, [{"flag": 1.0 if i % 10 == 0 else 0.0, "const": 7.0} for i in range(100)])
    assert det.score_one({"flag": 1.0, "const": 7.0}) == pytest.approx(1.0 / (1.2533 * 0.1) / math.sqrt(2))
    assert det.score_one({"flag": 0.0, "const": 7.0}) == 0.0
    assert det.score_one({"flag": 0.0, "const": 7.001}) == pytest.approx(1000.0 / math.sqrt(2))


def test_non_negative_features_are_scored_on_the_log_scale():
    rng = random.Random(2)
    amounts = [rng.lognormvariate(6, 1) for _ in range(256)]
    log_det = RobustZScore(window=256, refresh_every=256, min_count=10, clip=100.0)
    lin_det = RobustZScore(window=256, refresh_every=256, min_count=10, clip=100.0, log_nonneg=False)
    _learn(log_det, [{"amount": a} for a in amounts])
    _learn(lin_det, [{"amount": a} for a in amounts])
    big, tiny = {"amount": float(np.median(amounts) * 20)}, {"amount": float(np.median(amounts) / 20)}
    # on the log scale a 20x larger and a 20x smaller amount are about equally unusual
    assert log_det.score_one(big) == pytest.approx(log_det.score_one(tiny), rel=0.2)
    assert lin_det.score_one(big) > 5 * lin_det.score_one(tiny)
    assert "log1p scale" in log_det.describe(big, "amount")


def test_missing_features_do_not_count_and_rare_features_wait_for_min_count():
    rng = random.Random(3)
    det = RobustZScore(window=64, refresh_every=32, min_count=20, log_nonneg=False)
    _learn(det, [{"a": rng.gauss(0, 1), **({"rare": 1.0} if i % 5 == 0 else {})} for i in range(64)])
    assert det.score_one({"rare": 1e6}) == 0.0  # 13 values < min_count: not scored; 'a' missing
    assert det.explain({"rare": 1e6}) == []
    full = det.score_one({"a": 3.0})
    assert det.score_one({"a": 3.0, "unknown": 5.0}) == full
    assert det.score_one({"a": math.nan}) == 0.0
    assert det.score_one({"a": math.inf}) == pytest.approx(det.clip)


def test_top_k_keeps_the_largest_z_scores():
    rng = random.Random(4)
    det = RobustZScore(window=64, refresh_every=64, min_count=8, top_k=1, clip=50.0, log_nonneg=False)
    _learn(det, [{f"f{j}": rng.gauss(0, 1) for j in range(5)} for _ in range(64)])
    one = det.score_one({"f0": 0.0, "f1": 0.0, "f2": 0.0, "f3": 0.0, "f4": 6.0})
    two = det.score_one({"f0": 6.0, "f1": 0.0, "f2": 0.0, "f3": 0.0, "f4": 6.0})
    assert one == pytest.approx(det.explain({"f4": 6.0})[0][1])
    assert two >= one


def test_ranks_an_injected_fraud_pattern_first():
    rng = random.Random(5)
    det = RobustZScore(window=512, refresh_every=128)
    xs = [{"amount": rng.lognormvariate(3, 1), "v1": rng.gauss(0, 1), "v2": rng.gauss(0, 1)}
          for _ in range(3000)]
    for i in range(1000, 3000, 250):
        xs[i] = {"amount": 1.0, "v1": -7.0, "v2": 6.0}
    scores = det.process_many(xs)
    top = set(np.argsort(-scores)[:8].tolist())
    assert top == set(range(1000, 3000, 250))


def test_invalid_parameters_are_rejected():
    for bad in ({"window": 0}, {"refresh_every": 5000}, {"clip": 0.0}, {"top_k": 0}, {"features": "abc"},
                {"min_count": -1}, {"clip": math.inf}):
        with pytest.raises(ValueError):
            RobustZScore(**bad)


@pytest.mark.parametrize("ragged", [False, True], ids=["complete-rows", "one-missing-value"])
def test_each_ring_holds_exactly_the_last_window_learned_values(ragged):
    """Complete batches take the one-slice path, a missing value the per-value scatter: same windows."""
    rng = np.random.default_rng(7)
    rows = [{"a": float(u), "b": float(v)} for u, v in rng.normal(size=(333, 2))]
    if ragged:
        del rows[150]["b"]
    det = RobustZScore(window=50, refresh_every=40, min_count=8)  # runs between refreshes wrap the ring
    for i in range(0, len(rows), 37):
        det.process_many(rows[i : i + 37])
    for j, f in enumerate(det._names):
        learned = [r[f] for r in rows if f in r]
        assert det._fill[j] == len(learned)
        assert sorted(det._ring[j].tolist()) == sorted(learned[-50:])


@pytest.mark.parametrize("shape", [(40, 2048), (3, 10), (5, 2), (7, 1), (4, 3)])
def test_row_median_is_numpys_median_bit_for_bit(shape):
    from detectors.zscore import _row_median

    rng = np.random.default_rng(shape[1])
    a = np.round(rng.standard_normal(shape), 2)  # ties
    a[0, :] = 1.0
    assert np.array_equal(_row_median(a), np.median(a, axis=1))
