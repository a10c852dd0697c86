"""Adaptive ensemble weights (detectors/adaptive.py) on their own, in the ensemble, and in the engine."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from detectors.adaptive import WeightAdapter, _auc
from detectors.ensemble import Ensemble
from detectors.rules import Rules
from stream.compiled import new_engine
from stream.config import default_settings
from stream.errors import ConfigError
from stream.events import Label, Order
from stream.pipeline import Engine


def test_auc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)
    pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert _auc(pos, neg) == pytest.approx(pairs)


def _train(a: WeightAdapter, n: int, rng: np.random.Generator) -> None:
    """'good' gives frauds large evidence, 'bad' gives it to legitimate events, 'blind' sees nothing."""
    for i in range(n):
        y = int(rng.random() < 0.2)
        good = rng.exponential(1.0) + (3.0 if y else 0.0)
        bad = rng.exponential(1.0) + (0.0 if y else 2.0)
        a.remember(f"e{i}", [good, bad, 0.0])
        assert a.learn(f"e{i}", y)


def test_weights_follow_the_measured_separation_and_keep_the_total():
    prior = {"good": 1.0, "bad": 1.0, "blind": 2.0}
    a = WeightAdapter(list(prior), prior, prior_positives=20, window=1000, refresh_every=50)
    a.remember("x", [1, 1, 1])
    assert a.weights() == prior  # before any measurement: the configured weights
    _train(a, 2000, np.random.default_rng(1))
    w = a.weights()
    assert sum(w.values()) == pytest.approx(sum(prior.values()))
    # 'good' takes the share of 'bad'; 'blind' never fired, so it is not measured and keeps its own
    assert w["good"] > 1.9 and w["bad"] < 0.1 and w["blind"] == 2.0
    assert a.auc["good"] > 0.9 and a.auc["bad"] < 0.2 and a.auc["blind"] == pytest.approx(0.5)
    # few frauds: mostly the prior still
    b = WeightAdapter(list(prior), prior, prior_positives=1000, window=1000, refresh_every=50)
    _train(b, 500, np.random.default_rng(1))
    assert abs(b.weights()["good"] - 1.0) < 0.2 and b.weights()["blind"] == 2.0


def test_a_blind_detector_does_not_change_the_others_weights():
    """Its share handed to the others would scale S up while it stays blind (more alerts against older sums)."""
    with_blind = WeightAdapter(["good", "bad", "blind"], {"good": 1.0, "bad": 1.0, "blind": 3.0},
                               prior_positives=20, window=1000, refresh_every=50)
    without = WeightAdapter(["good", "bad"], {"good": 1.0, "bad": 1.0}, prior_positives=20, window=1000,
                            refresh_every=50)
    _train(with_blind, 2000, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    for i in range(2000):  # the same draws as _train, without the blind column
        y = int(rng.random() < 0.2)
        good = rng.exponential(1.0) + (3.0 if y else 0.0)
        bad = rng.exponential(1.0) + (0.0 if y else 2.0)
        without.remember(f"e{i}", [good, bad])
        assert without.learn(f"e{i}", y)
    w, v = with_blind.weights(), without.weights()
    assert w["good"] == v["good"] and w["bad"] == v["bad"] and w["blind"] == 3.0
    assert w["good"] > 1.9


def test_a_muted_detector_stays_muted_and_unknown_or_late_labels_teach_nothing():
    prior = {"good": 1.0, "bad": 1.0, "blind": 0.0}
    a = WeightAdapter(list(prior), prior, refresh_every=10, max_pending=5)
    assert not a.learn("never-scored", 1)
    for i in range(6):
        a.remember(f"e{i}", [1.0, 1.0, 1.0])
    assert not a.learn("e0", 1)  # forgotten: max_pending, the oldest first
    assert a.learn("e5", 1) and not a.learn("e5", 1)  # one label per event
    _train(a, 500, np.random.default_rng(2))
    assert a.weights()["blind"] == 0.0


def test_bad_parameters_are_refused():
    for kw in ({"window": 1}, {"refresh_every": 0}, {"max_pending": True}, {"prior_positives": -1}):
        with pytest.raises(ValueError):
            WeightAdapter(["a"], {"a": 1.0}, **kw)
    with pytest.raises(ValueError, match="unknown adaptive parameter"):
        Ensemble({"rules": Rules(rules=[{"name": "r", "when": "a > 1"}])}, adaptive={"windw": 10})


def test_snapshot_round_trip_continues_identically():
    prior = {"good": 1.0, "bad": 1.0, "blind": 1.0}
    a = WeightAdapter(list(prior), prior, refresh_every=7)
    _train(a, 300, np.random.default_rng(3))
    b = pickle.loads(pickle.dumps(a))
    _train(a, 300, np.random.default_rng(4))
    _train(b, 300, np.random.default_rng(4))
    assert a.weights() == b.weights()


# -- the engine ------------------------------------------------------------------------------------------------

#: A rule that fires on tiny amounts, which are all legitimate: with the rules' default weight 2 it takes the
#: budget from the z-score, which sees the frauds (the huge amounts).
_RULES = [{"name": "tiny", "when": "order_amount < 1", "score": 0.9}]


def _settings(adaptive: bool, core: str = "python"):
    over = {"engine.budget": 0.02, "engine.core": core, "ensemble.min_history": 100,
            "detectors.hst.enabled": False, "detectors.coldstart.enabled": False, "detectors.rules.rules": _RULES,
            "links.graph": False, "ensemble.adaptive.enabled": False}
    if adaptive:
        over.update({"ensemble.adaptive.enabled": True, "ensemble.adaptive.refresh_every": 200,
                     "ensemble.adaptive.prior_positives": 10})
    return default_settings().replace(over)


def _stream(n_days: int = 8, per_day: int = 1500):
    rng = random.Random(7)
    days = []
    for d in range(n_days):
        day = []
        for i in range(per_day):
            u = rng.random()
            amount = 0.5 if u < 0.03 else 9000.0 * (1 + rng.random()) if u < 0.04 else rng.uniform(10, 200)
            day.append(Order(event_id=f"o{d}-{i}", ts=d * 86400.0 + i * 50.0, user_id=f"u{rng.randrange(300)}",
                             order_id=f"o{d}-{i}", amount=amount, currency="EUR", merchant_id="m1",
                             label=1 if amount > 5000 else 0))
        days.append(day)
    return days


def _replay(engine: Engine, split: int | None = None) -> list[tuple[int, int]]:
    """Each day through the engine, its labels arriving at the start of the next day; per day, (frauds alerted,
    tiny legitimate amounts alerted)."""
    out: list[tuple[int, int]] = []
    labels: list[Label] = []
    for day in _stream():
        events = labels + day
        step = split or len(events)
        alerts = [a for i in range(0, len(events), step) for a in engine.process(events[i:i + step]).alerts]
        by_id = {e.event_id: e for e in day}
        out.append((sum(by_id[a.event_id].label for a in alerts),
                     sum(by_id[a.event_id].amount < 1 for a in alerts)))
        t = day[-1].ts + 1
        labels = [Label(event_id=f"l-{e.event_id}", ts=t, ref_event_id=e.event_id, label=e.label) for e in day]
    return out


def test_adaptive_weights_mute_a_detector_the_labels_contradict():
    fixed = _replay(Engine(_settings(False)))
    eng = Engine(_settings(True))
    adaptive = _replay(eng)
    assert fixed[0] == adaptive[0]  # the first day: no label has arrived yet, the same alerts
    late_fixed, late_adaptive = [sum(d[k] for d in fixed[3:]) for k in (0, 1)], \
        [sum(d[k] for d in adaptive[3:]) for k in (0, 1)]
    assert late_adaptive[0] > late_fixed[0]  # more frauds alerted
    assert late_adaptive[1] < late_fixed[1] / 2  # far fewer tiny legitimate orders
    w = eng.ensembles["order"].adapter.weights()
    assert w["rules"] < 0.5 < w["zscore"]
    # the same labels at other batch cuts: the same alerts (weights change at fixed label counts)
    assert adaptive == _replay(Engine(_settings(True)), split=333)


def test_state_survives_a_snapshot_and_the_compiled_engine_runs_it_in_the_core():
    eng = Engine(_settings(True))
    days = _stream(n_days=3)
    eng.process(days[0])
    eng.process([Label(event_id=f"l-{e.event_id}", ts=days[0][-1].ts + 1, ref_event_id=e.event_id, label=e.label)
                 for e in days[0]])
    twin = Engine(_settings(True))
    twin.restore(eng.snapshot())
    a, b = eng.process(days[1]), twin.process(days[1])
    assert [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]
    assert np.array_equal(a.risk, b.risk)
    compiled = new_engine(_settings(True, core="compiled"))
    assert type(compiled) is not Engine and compiled.detection == "compiled"
    compiled.process(days[0])
    compiled.process([Label(event_id=f"l-{e.event_id}", ts=days[0][-1].ts + 1, ref_event_id=e.event_id,
                            label=e.label) for e in days[0]])
    c = compiled.process(days[1])
    assert [x.alert_id for x in c.alerts] == [x.alert_id for x in a.alerts]
    assert np.abs(c.risk - a.risk).max() <= 1e-9
    assert compiled.core.weights("order")[0] == [twin.ensembles["order"]._weights[n] for n in
                                                 twin.ensembles["order"].detectors]


def test_adaptive_off_keeps_the_configuration_hash_and_bad_values_are_config_errors():
    fixed = default_settings().replace({"ensemble.adaptive.enabled": False})
    assert fixed.config_hash == fixed.replace(
        {"ensemble.adaptive.window": 99}).config_hash  # off: its parameters do not change what alerts
    assert default_settings().config_hash != default_settings().replace({"ensemble.adaptive.window": 99}).config_hash
    assert _settings(True).config_hash != _settings(False).config_hash
    with pytest.raises(ConfigError):
        Engine(default_settings().replace({"ensemble.adaptive.enabled": True, "ensemble.adaptive.window": 0}))


def test_average_precision_takes_ties_as_one_threshold_and_matches_counting():
    from detectors.adaptive import _average_precision

    assert _average_precision(np.array([3.0, 1.0]), np.array([2.0])) == (1.0 + 2.0 / 3.0) / 2.0
    assert _average_precision(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    rng = np.random.default_rng(4)
    pos, neg = rng.integers(0, 6, 30).astype(float), rng.integers(0, 5, 70).astype(float)
    # by hand: each distinct threshold, highest first, adds precision-so-far x the positives it admits
    total, tp, n = 0.0, 0, 0
    for t in sorted(set(pos) | set(neg), reverse=True):
        k, m = int((pos == t).sum()), int((pos == t).sum() + (neg == t).sum())
        tp, n = tp + k, n + m
        total += tp / n * k
    assert _average_precision(pos, neg) == pytest.approx(total / len(pos), rel=1e-12)


def test_an_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="adaptive measure must be one of stream_precision, precision, auc"):
        WeightAdapter(["a"], {"a": 1.0}, measure="f1")


def test_the_weighted_average_precision_counts_each_class_at_its_weight():
    from detectors.adaptive import _average_precision

    # ranked 3 (+), 2 (-), 1 (+): with each negative counted 10 times the second positive's precision is 2 / 12
    assert _average_precision(np.array([3.0, 1.0]), np.array([2.0]), 1.0, 10.0) == (1.0 + 2.0 / 12.0) / 2.0
    rng = np.random.default_rng(5)
    pos, neg = rng.integers(0, 6, 30).astype(float), rng.integers(0, 5, 70).astype(float)
    # the same as replicating each event as many times as its weight (integer weights)
    big_pos, big_neg = np.repeat(pos, 3), np.repeat(neg, 20)
    assert _average_precision(pos, neg, 3.0, 20.0) == pytest.approx(_average_precision(big_pos, big_neg), rel=1e-12)


def _run_measure(measure: str, n: int, window: int) -> dict[str, float]:
    rng = np.random.default_rng(11)
    a = WeightAdapter(["strong", "weak"], {"strong": 1.0, "weak": 1.0}, prior_positives=2, window=window,
                      refresh_every=10, measure=measure)
    for i in range(n):
        y = int(rng.random() < 0.02)  # 1 fraud in 50: the windows keep every fraud, few legitimate events
        strong = rng.normal(3.0 if y else 0.0, 1.0)
        weak = rng.normal(1.0 if y else 0.0, 1.0)
        a.remember(f"e{i}", [max(strong, 0.0), max(weak, 0.0)])  # evidence, -ln p
        a.learn(f"e{i}", y)
    return a.weights()


def test_stream_precision_weighs_the_classes_as_they_arrived_once_a_window_is_full():
    """Until a window is full the windows hold every label, so both measures agree. Past it, the legitimate window
    holds a sliver of the legitimate labels: on the windows' mix a weak detector's precision looks near a strong
    one's; counted at the stream's mix, the strong one's weight is larger."""
    assert _run_measure("stream_precision", 2000, 5000) == _run_measure("precision", 2000, 5000)
    stream, windows = _run_measure("stream_precision", 20000, 400), _run_measure("precision", 20000, 400)
    assert stream["strong"] / stream["weak"] > windows["strong"] / windows["weak"] > 1.0
