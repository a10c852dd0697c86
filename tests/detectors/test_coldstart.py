"""The cold-start detector: one-sided tails with ties on the event's side, Fisher's sum, nothing from a constant or
absent signal, reasons that name the signal, its value and its tail, and one-line errors for a bad configuration."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from detectors.coldstart import ColdStart
from detectors.ensemble import Ensemble
from stream.config import load_settings
from stream.errors import ConfigError
from stream.pipeline import build_ensemble


def _fed(det: ColdStart, rows: list[dict[str, float]]) -> ColdStart:
    for x in rows:
        det.learn_one(x)
    return det


def test_p_is_the_one_sided_empirical_tail_with_ties_on_the_events_side():
    det = _fed(ColdStart(low=["age"], high=["users"], window=10, refresh_every=10, min_count=10),
               [{"age": float(a), "users": float(u)} for a, u in enumerate([0, 0, 0, 0, 0, 0, 1, 1, 2, 5])])
    # age 3: four learned values are <= 3 (0, 1, 2, 3); users 1: four are >= 1 (1, 1, 2, 5)
    assert det.score_one({"age": 3.0}) == pytest.approx(-math.log(5 / 11))
    assert det.score_one({"users": 1.0}) == pytest.approx(-math.log(5 / 11))
    assert det.score_one({"age": 3.0, "users": 1.0}) == pytest.approx(-2 * math.log(5 / 11))  # Fisher's sum
    # beyond everything learned: the smallest p, 1 / (n + 1)
    assert det.score_one({"age": -1.0, "users": 9.0}) == pytest.approx(2 * math.log(11))
    # the other tail is no evidence: old accounts, unshared devices
    assert det.score_one({"age": 100.0, "users": 0.0}) == 0.0


def test_a_constant_or_absent_signal_contributes_nothing():
    rng = random.Random(3)
    rows = [{"age": rng.uniform(0, 100), "users": 1.0} for _ in range(512)]
    det = _fed(ColdStart(low=["age"], high=["users", "never_seen"], window=256, refresh_every=64, min_count=32), rows)
    young = {"age": 0.5, "users": 1.0, "never_seen": 7.0}
    only_age = ColdStart(low=["age"], high=[], window=256, refresh_every=64, min_count=32)
    _fed(only_age, rows)
    assert det.score_one(young) == only_age.score_one(young) > 3.0
    assert det.score_one({"users": 1.0}) == 0.0
    assert det.score_one({}) == 0.0 and det.score_one({"age": math.nan}) == 0.0
    # a value most of the window shares gives p near 1, never a small one
    mostly = _fed(ColdStart(low=[], high=["users"], window=100, refresh_every=100, min_count=10),
                  [{"users": 0.0 if i % 10 else 3.0} for i in range(100)])
    assert mostly.score_one({"users": 0.0}) == 0.0
    assert mostly.score_one({"users": 3.0}) == pytest.approx(-math.log(11 / 101))


def test_young_and_shared_events_rank_above_ordinary_ones_in_an_ensemble():
    rng = random.Random(5)

    def ordinary():
        return {"account_age_days": rng.uniform(1, 300), "device_users_24h": float(rng.random() < 0.05),
                "order_amount": rng.lognormvariate(3, 1)}

    ens = Ensemble({"coldstart": ColdStart(window=1024, refresh_every=128, min_count=64)}, budget=0.02)
    ens.process_many([ordinary() for _ in range(3000)])
    fraud = [{"account_age_days": 0.0, "device_users_24h": 4.0, "order_amount": rng.lognormvariate(3, 1)}
             for _ in range(10)]
    rows = [ordinary() for _ in range(990)] + fraud
    order = list(range(1000))
    rng.shuffle(order)
    v = ens.process_many([rows[i] for i in order])
    is_fraud = np.array([i >= 990 for i in order])
    assert v.alert[is_fraud].all() and v.alert[~is_fraud].sum() <= 20


def test_reasons_name_the_signal_its_value_and_its_tail():
    det = _fed(ColdStart(low=["account_age_days"], high=["device_users_24h"], window=200, refresh_every=100,
                         min_count=50),
               [{"account_age_days": float(10 + i), "device_users_24h": 0.0} for i in range(200)])
    x = {"account_age_days": 0.0, "device_users_24h": 3.0, "other": 1.0}
    assert [f for f, _ in det.explain(x)] == ["account_age_days", "device_users_24h"]  # equal p: config order
    assert det.describe(x, "account_age_days") == \
        "account_age_days=0 is in the low tail: 0 of 200 learned values are <= it (p=0.004975)"
    assert det.describe(x, "device_users_24h") == \
        "device_users_24h=3 is in the high tail: 0 of 200 learned values are >= it (p=0.004975)"
    assert det.explain({"account_age_days": 500.0, "device_users_24h": 0.0}) == []  # no evidence, no reason


@pytest.mark.parametrize("params,message", [
    ({"low": "account_age_days"}, "low must be a list of feature names, got 'account_age_days'"),
    ({"high": ["x", 3]}, "high must be a list of feature names"),
    ({"low": ["a"], "high": ["a"]}, "signal 'a' is both in low and in high"),
    ({"low": [], "high": []}, "coldstart needs at least one signal in low or high"),
    ({"window": 10, "refresh_every": 20}, "refresh_every (20) must not exceed window (10)"),
    ({"min_count": 0}, "min_count must be a positive integer, got 0"),
])
def test_a_bad_configuration_is_one_line(params, message):
    with pytest.raises(ValueError) as e:
        ColdStart(**params)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_defaults_build_it_and_a_config_file_can_set_its_signals(tmp_path):
    det = build_ensemble(load_settings()).detectors["coldstart"]
    assert det.low == ["account_age_days"] and "device_users_24h" in det.high
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.coldstart]\nlow = []\nhigh = ["ip_users_24h"]\n')
    assert build_ensemble(load_settings(cfg)).detectors["coldstart"].high == ["ip_users_24h"]
    cfg.write_text('[detectors.coldstart]\nlow = "account_age_days"\n')
    with pytest.raises((ConfigError, ValueError)) as e:
        build_ensemble(load_settings(cfg))
    assert "low must be a list of feature names" in str(e.value) and "\n" not in str(e.value)
