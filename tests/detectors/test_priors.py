"""The priors detector: stated evidence that a burst cannot make look normal (issue 13's cold-start bursts)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.coldstart import ColdStart
from detectors.ensemble import Ensemble
from detectors.priors import Priors
from detectors.zscore import RobustZScore
from stream.config import default_settings, load_settings
from stream.errors import ConfigError

BOT = {"name": "bot_speed_order", "when": "account_age_days < 0.000694 and order_amount >= 0", "p": 0.001}


@pytest.mark.parametrize("spec,message", [
    ({"name": "x", "when": "a < 1", "p": 0.0}, "'p' (its rate in genuine traffic) must be a number with 0 < p < 1"),
    ({"name": "x", "when": "a < 1", "p": 1.0}, "0 < p < 1, got 1.0"),
    ({"name": "x", "when": "a < 1", "p": True}, "0 < p < 1, got True"),
    ({"name": "x", "when": "a < 1"}, "prior 'x': 'p' is missing"),
    ({"name": "x", "when": "a < 1", "p": 0.1, "score": 2}, "prior 'x': unknown key(s) score"),
    ({"name": "x", "when": "a <", "p": 0.1}, "prior 'x': cannot parse clause"),
])
def test_a_bad_prior_is_refused_with_its_reason(spec, message):
    with pytest.raises(ValueError) as e:
        Priors(rules=[spec])
    assert message in str(e.value)


def test_a_bad_prior_in_a_config_file_is_one_line_naming_it(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[detectors.priors.rules]]\nname = "fast"\nwhen = "account_age_days < 0.001"\np = 2\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env={})
    assert "fast" in str(e.value) and "0 < p < 1" in str(e.value) and "\n" not in str(e.value)


def test_the_default_prior_fires_on_orders_of_accounts_under_a_minute_old_only():
    d = Priors(rules=default_settings().detectors["priors"]["rules"])
    assert d.score_one({"account_age_days": 0.0, "order_amount": 25.0}) == pytest.approx(0.999)
    assert d.score_one({"account_age_days": 59.0 / 86400, "order_amount": 25.0}) > 0
    assert d.score_one({"account_age_days": 61.0 / 86400, "order_amount": 25.0}) == 0.0
    # a login's account age counts from when the engine first saw the user: never a prior
    assert d.score_one({"account_age_days": 0.0, "ip_logins_1m": 1.0}) == 0.0


def _burst_stream(n: int = 6000, burst: int = 2000, seed: int = 0):
    """Orders whose first ``burst`` are 80 % bot farm (accounts 0 s old, shared devices); then normal traffic
    with 3 % of other frauds the features cannot see."""
    rng = np.random.default_rng(seed)
    xs, y = [], []
    for i in range(n):
        bot = i < burst and rng.random() < 0.8
        age = 0.0 if bot else float(rng.exponential(40.0)) + 0.01
        xs.append({"account_age_days": age, "order_amount": float(rng.lognormal(3, 1)),
                   "device_users_24h": float(rng.integers(3, 8) if bot else 1)})
        y.append(1 if bot or (i >= burst and rng.random() < 0.03) else 0)
    return xs, np.array(y)


def _auc(y, s):
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # ties: mean rank
        m = s == v
        ranks[m] = ranks[m].mean()
    pos = y == 1
    return (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())


def _ensemble(priors: bool) -> Ensemble:
    dets = {"cold": ColdStart(low=["account_age_days"], high=["device_users_24h"], window=512, refresh_every=64,
                              min_count=32),
            "z": RobustZScore(window=512, refresh_every=64, min_count=32)}
    if priors:
        dets["prior"] = Priors(rules=[BOT])
    return Ensemble(dets, calibration_window=2000, min_history=100, risk="evidence")


def test_a_burst_from_the_first_event_on_ranks_above_later_traffic_only_with_the_prior():
    """Every window learns the burst as normal (cold start inside it); the stated evidence does not."""
    xs, y = _burst_stream()
    risk = {}
    for with_prior in (False, True):
        ens = _ensemble(with_prior)
        risk[with_prior] = np.concatenate([ens.process_many(xs[i:i + 500]).risk for i in range(0, len(xs), 500)])
    assert _auc(y, risk[False]) < 0.7
    assert _auc(y, risk[True]) > 0.85
    bots = np.array([x["account_age_days"] == 0.0 for x in xs])
    assert np.quantile(risk[True][bots], 0.1) > np.quantile(risk[True][~bots], 0.95)  # 90 % of them in the top 5 %
    # and its evidence is the stated -ln p, not a rank
    ens = _ensemble(True)
    v = ens.process_many(xs[:500])
    assert np.allclose(-np.log(v.p["prior"][bots[:500]]), -math.log(0.001))


def test_a_review_arm_is_named_after_the_rarest_fired_prior_and_the_highest_scored_rule():
    from detectors.bandit import drivers
    from detectors.rules import Rules

    pri = Priors(rules=[{"name": "common", "when": "a > 0", "p": 0.2}, {"name": "rare", "when": "a > 1", "p": 0.001}])
    rules = Rules(rules=[{"name": "weak", "when": "a > 0", "score": 0.3}, {"name": "strong", "when": "a > 1",
                                                                            "score": 0.9}])
    xs = [{"a": 2.0}, {"a": 2.0}]
    contrib = {"prior": np.array([5.0, 0.1]), "rules": np.array([0.1, 5.0])}
    assert drivers(contrib, {"prior": pri, "rules": rules}, xs, [[], []]) == ["prior:rare", "rules:strong"]


def test_a_prior_on_an_unknown_feature_is_a_config_error_naming_the_prior(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[detectors.priors.rules]]\nname = "fast"\nwhen = "acount_age_days < 0.001"\np = 0.01\n')
    with pytest.raises(ConfigError, match="prior 'fast' names unknown feature 'acount_age_days'"):
        load_settings(cfg, env={})
