"""RateDetector: breakouts of the value, of its trailing means and of its seasonal change; rest-period
suppression; bucket mode (events counted per time bucket) equal to series mode on the bucket counts."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from detectors import available, build
from detectors.rate import RateDetector


def _feed(det: RateDetector, values, feature: str = "v") -> np.ndarray:
    return det.process_many([{feature: float(v)} for v in values])


def _plain(**kw) -> RateDetector:
    """Only the value channel (no level or seasonal channels)."""
    params = {"feature": "v", "history": 50, "levels": (), "level_weights": (), "season": None, "warmup": 8,
              "rest": 5}
    params.update(kw)
    return RateDetector(**params)


def test_a_spike_scores_its_breakout_of_the_recent_range():
    det = _plain()
    _feed(det, [i % 10 for i in range(100)])  # the last 50 steps span [0, 9]
    assert det.score_one({"v": 9.0}) == 0.0
    assert det.score_one({"v": -0.0}) == 0.0
    e = (18.0 - 9.0) / 9.0
    assert det.score_one({"v": 18.0}) == pytest.approx(e / (e + 0.02), rel=1e-12)
    e_low = (0.0 - -4.5) / 9.0
    assert det.score_one({"v": -4.5}) == pytest.approx(e_low / (e_low + 0.02), rel=1e-12)
    assert det.explain({"v": 18.0}) == [("v", det.score_one({"v": 18.0}))]
    assert "breaks above its range [0, 9]" in det.describe({"v": 18.0}, "v")


def test_the_range_forgets_what_left_the_history_window():
    det = _plain(history=50)
    _feed(det, [100.0] + [i % 10 for i in range(49)])
    assert det.score_one({"v": 50.0}) == 0.0  # 100 is still in the last 50 steps
    det.learn_one({"v": 5.0})
    assert det.score_one({"v": 50.0}) > 0.99  # ... and now it is not


def test_a_burst_alerts_once_at_its_start_then_rests():
    det = _plain(rest=5, rest_factor=0.1)
    _feed(det, [i % 10 for i in range(100)])
    first = det.score_one({"v": 18.0})
    det.learn_one({"v": 18.0})  # raw breakout 1.0 remembered for 5 steps
    e = (27.0 - 18.0) / 18.0  # a bigger value right after: a smaller breakout, which does not beat 1.0
    assert det.score_one({"v": 27.0}) == pytest.approx(0.1 * e / (0.1 * e + 0.02), rel=1e-12)
    e_big = (60.0 - 18.0) / 18.0  # one that beats it keeps its full score
    assert det.score_one({"v": 60.0}) == pytest.approx(e_big / (e_big + 0.02), rel=1e-12)
    _feed(det, [5.0] * 5)  # the rest period is over
    assert det.score_one({"v": 27.0}) == pytest.approx(e / (e + 0.02), rel=1e-12)
    assert first > 0.95


def test_a_level_shift_inside_the_value_range_is_caught_by_the_level_channel():
    rng = random.Random(3)
    base = [10.0 * (i % 2) + rng.uniform(-0.5, 0.5) for i in range(600)]  # mean ~5, values in [-0.5, 10.5]
    shifted = [9.0 + rng.uniform(-0.3, 0.3) for _ in range(30)]  # every point inside [-0.5, 10.5]
    full = RateDetector(feature="v", history=500, season=None)
    scores = _feed(full, base + shifted)
    value_only = _plain(history=500, warmup=64, rest=100)
    assert _feed(value_only, base + shifted)[600:].max() == 0.0
    assert scores[600:].max() > 0.5
    assert scores[100:600].max() < scores[600:].max() / 2
    peak = int(np.argmax(scores[600:]))
    probe = RateDetector(feature="v", history=500, season=None)
    _feed(probe, base + shifted[:peak])
    assert "mean of v over" in probe.describe({"v": shifted[peak]}, "v")


def _hourly_days(days: int, broken_day: int | None, seed: int = 5) -> list[dict[str, float]]:
    """Hourly values high from 08:00 to 20:00 and low at night; on ``broken_day`` the day stays low."""
    rng = random.Random(seed)
    out = []
    for h in range(days * 24):
        day, hour = divmod(h, 24)
        high = 8 <= hour < 20 and day != broken_day
        out.append({"v": (50.0 if high else 10.0) + rng.gauss(0, 2), "ts": 1.7e9 + 3600.0 * h})
    return out


def test_a_missing_daily_rise_is_caught_by_the_seasonal_channel():
    xs = _hourly_days(40, broken_day=35)
    day = slice(35 * 24 + 8, 35 * 24 + 20)
    seasonal = RateDetector(feature="v", time_feature="ts", season=86400.0, history=2000, season_window=6)
    no_season = RateDetector(feature="v", time_feature="ts", season=None, history=2000, season_window=6)
    s1, s0 = seasonal.process_many(xs), no_season.process_many(xs)
    assert s1[day].max() > 0.5
    assert s0[day].max() < 0.1
    assert s1[24 * 20 : 24 * 35].max() < s1[day].max() / 4  # ordinary days stay quiet once it has seen a few
    assert seasonal._lag == 24


def test_process_many_equals_the_loop_with_time_and_a_gate():
    xs = _hourly_days(12, broken_day=10)

    def gate_factory():
        calls = {"n": 0}

        def gate(s: float) -> bool:
            calls["n"] += 1
            return s < 0.5 and calls["n"] % 13 != 0

        return gate

    ref = RateDetector(feature="v", time_feature="ts", history=100, season_window=4, warmup=10)
    gate = gate_factory()
    expected = []
    for x in xs:
        s = ref.score_one(x)
        expected.append(s)
        if gate(s):
            ref.learn_one(x)
    det = RateDetector(feature="v", time_feature="ts", history=100, season_window=4, warmup=10)
    gate = gate_factory()
    got = np.concatenate([det.process_many(xs[i : i + 7], gate) for i in range(0, len(xs), 7)])
    np.testing.assert_array_equal(got, expected)
    assert pickle.dumps(det) == pickle.dumps(ref)


def _events(counts: list[int], seed: int = 11, t0: float = 60.0 * 28_333_334) -> list[list[dict[str, float]]]:
    """``counts[b]`` events spread over minute ``b`` (each with an amount)."""
    rng = random.Random(seed)
    return [[{"ts": t0 + 60.0 * b + 60.0 * (k + rng.random()) / (n + 1), "amount": rng.uniform(1, 9)}
             for k in range(n)] for b, n in enumerate(counts)]


def test_bucket_mode_scores_each_event_with_its_buckets_running_count():
    rng = random.Random(2)
    counts = [rng.randint(3, 8) for _ in range(300)] + [0, 0] + [rng.randint(3, 8) for _ in range(50)] + [40]
    buckets = _events(counts)
    det = RateDetector(feature=None, time_feature="ts", bucket=60.0, history=200, season=None, warmup=16)
    series = RateDetector(feature="n", history=200, season=None, warmup=16, upward=True)
    ordinary = []
    for b, events in enumerate(buckets):
        expected = series.score_one({"n": float(len(events))})
        got = []
        for x in events:  # score, then learn, event by event
            got.append(det.score_one(x))
            det.learn_one(x)
        if events:
            assert got[-1] == expected, f"bucket {b}"  # its last event sees the bucket's full count
        if b < len(buckets) - 1:
            ordinary.extend(got)
        series.learn_one({"n": float(len(events))})
    assert max(ordinary[len(ordinary) // 2 :]) < 0.5  # an ordinary minute, even while it fills, is quiet
    assert max(got[:8]) == 0.0  # the burst's first 8 events are an ordinary minute so far
    assert got[-1] > 0.95


def test_bucket_mode_is_pure_checkpointable_and_sums_a_feature():
    counts = [4, 5, 6, 5, 4] * 40
    buckets = _events(counts, seed=4)
    flat = [x for events in buckets for x in events]
    det = RateDetector(feature="amount", time_feature="ts", bucket=60.0, history=100, season=3600.0, warmup=8)
    det.process_many(flat[:500])
    twin = pickle.loads(pickle.dumps(det))
    before = pickle.dumps(det)
    probe = {"ts": flat[-1]["ts"] + 3 * 60.0, "amount": 500.0}  # opens a new bucket after two empty ones
    assert det.score_one(probe) > 0.9
    det.explain(probe)
    det.describe(probe, "amount")
    assert pickle.dumps(det) == before
    np.testing.assert_array_equal(det.process_many(flat[500:]), twin.process_many(flat[500:]))
    assert det._lag == 60
    no_time = pickle.dumps(det)
    assert det.score_one({"amount": 3.0}) == 0.0
    det.learn_one({"amount": 3.0})
    assert pickle.dumps(det) == no_time  # an event without a time is not learned
    total = det._total
    det.learn_one({"ts": flat[0]["ts"], "amount": 2.5})  # late: counted in the open bucket
    assert det._total == total + 2.5


def test_registered_and_buildable():
    assert "rate" in available()
    det = build("rate", {"feature": "merchant_orders_1m", "history": 1000})
    assert isinstance(det, RateDetector) and det.history == 1000
    with pytest.raises(ValueError, match="rate"):
        build("rate", {"windows": 3})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bucket": 60.0}, "time_feature"),
        ({"feature": None}, "feature is required"),
        ({"levels": (10, 30), "level_weights": (1.0,)}, "one weight per level"),
        ({"levels": (1,), "level_weights": (1.0,)}, "levels"),
        ({"rest_factor": 1.5}, "rest_factor"),
        ({"history": 0}, "history"),
        ({"half": 0.0}, "half"),
        ({"season": -1.0}, "season"),
        ({"season_weight": math.nan}, "season_weight"),
        ({"bucket": 60.0, "time_feature": "ts", "upward": False}, "upward"),
    ],
)
def test_invalid_configuration_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RateDetector(**kwargs)


def test_non_finite_values_score_zero_and_are_not_learned():
    det = _plain()
    _feed(det, [i % 10 for i in range(60)])
    state = pickle.dumps(det)
    for v in (math.nan, math.inf, -math.inf):
        assert det.score_one({"v": v}) == 0.0
        det.learn_one({"v": v})
    assert pickle.dumps(det) == state
    assert det.score_one({"v": 1e308}) == pytest.approx(1.0)


def test_upward_ignores_drops():
    both, up = _plain(), _plain(upward=True)
    for det in (both, up):
        _feed(det, [i % 10 for i in range(100)])
    assert both.score_one({"v": -9.0}) > 0.9
    assert up.score_one({"v": -9.0}) == 0.0
    assert up.score_one({"v": 18.0}) == both.score_one({"v": 18.0})


def test_a_long_silence_fills_the_windows_with_zeros():
    counts = [5, 6, 7, 6] * 20
    flat = [x for events in _events(counts) for x in events]
    det = RateDetector(feature=None, time_feature="ts", bucket=60.0, history=40, season=None, warmup=8)
    det.process_many(flat)
    after_a_year = {"ts": flat[-1]["ts"] + 365 * 86400.0}
    assert det.score_one(after_a_year) > 0.99  # 1 event against a history of empty minutes
    det.learn_one(after_a_year)
    assert det._channels[0].hi[0][1] == 0.0 and det._channels[0].lo[0][1] == 0.0
    assert det._n < 300
