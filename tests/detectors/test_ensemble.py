"""Ensemble: calibrated evidence, an alert budget that holds, severity, forced blocks, reasons, state."""

from __future__ import annotations

import json
import math
import pickle
import random
from collections.abc import Sequence

import numpy as np
import pytest

from detectors import Detector, Ensemble, build
from detectors.calibration import TailCalibrator
from detectors.hst import HalfSpaceTrees
from detectors.rules import Rules
from detectors.text import number
from detectors.zscore import RobustZScore


def _stream(n: int, seed: int, outliers: Sequence[int] = ()) -> list[dict[str, float]]:
    rng = random.Random(seed)
    xs = [{"amount": rng.lognormvariate(3, 0.7), "v1": rng.gauss(0, 1), "v2": rng.gauss(0, 1),
           "n_1h": float(rng.randrange(3))} for _ in range(n)]
    for i in outliers:
        xs[i] = {"amount": 2.0, "v1": -9.0, "v2": 8.0, "n_1h": 14.0}
    return xs


def _ensemble(**kw) -> Ensemble:
    dets = {
        "hst": HalfSpaceTrees(n_trees=10, height=8, window_size=100),
        "zscore": RobustZScore(window=512, refresh_every=128),
        "rules": Rules(rules=[{"name": "burst", "when": "n_1h >= 10 and amount < 5", "score": 0.9},
                              {"name": "huge", "when": "amount > 1e6", "score": 1.0, "action": "block"}],
                       blocklists={"ip": ["203.0.113.9"]}),
    }
    kw.setdefault("calibration_window", 2000)
    kw.setdefault("min_history", 300)
    return Ensemble(dets, **kw)


def _run(ens: Ensemble, xs, batch: int, ids=None):
    out = []
    for i in range(0, len(xs), batch):
        out.append(ens.process_many(xs[i : i + batch], None if ids is None else ids[i : i + batch]))
    return out


def test_the_alert_budget_holds_on_stationary_traffic():
    ens = _ensemble(budget=0.01)
    xs = _stream(6000, seed=1)
    alert = np.concatenate([v.alert for v in _run(ens, xs, 1000)])
    assert not alert[:300].any()  # min_history
    rate = alert[2300:].mean()  # once the calibration window is full
    assert 0.005 <= rate <= 0.015


def test_outliers_alert_with_reasons_naming_their_features():
    outliers = [2500, 3100, 3700]
    ens = _ensemble()
    xs = _stream(4000, seed=2, outliers=outliers)
    vs = _run(ens, xs, 500)
    alert = np.concatenate([v.alert for v in vs])
    assert alert[outliers].all()
    v = vs[2500 // 500]
    i = 2500 % 500
    assert v.risk[i] == 1 - v.q[i] and v.q[i] <= ens.budget
    reasons = v.reasons(i, xs[2500])
    assert {r["detector"] for r in reasons} >= {"zscore", "rules"}
    assert all(set(r) == {"detector", "feature", "value", "detail", "contribution"} for r in reasons)
    contributions = [r["contribution"] for r in reasons if r["detector"] != "ensemble"]  # it explains the action
    assert all(c > 0 for c in contributions) and sum(contributions) == pytest.approx(1.0)
    zs = [r["feature"] for r in reasons if r["detector"] == "zscore"]
    assert set(zs) <= {"v1", "v2", "n_1h", "amount"} and "v1" in zs
    assert any(r["feature"] == "burst" for r in reasons if r["detector"] == "rules")
    json.dumps(reasons)  # plain data, ready for a sink
    quiet = int(np.flatnonzero(~v.alert)[0])
    assert v.reasons(quiet, xs[500 * (2500 // 500) + quiet]) == []


def test_severity_and_action_follow_q_relative_to_the_budget():
    ens = _ensemble(budget=0.05, severity={"critical": 0.1, "high": 0.4},
                    actions={"high": "block", "low": "allow"})
    vs = _run(ens, _stream(3000, seed=3), 3000)
    v = vs[0]
    seen = set()
    for i in range(len(v)):
        q = v.q[i]
        if not v.alert[i]:
            assert (v.severity[i], v.action[i]) == ("none", "allow")
            continue
        expected = "critical" if q <= 0.005 else "high" if q <= 0.02 else "low"
        assert v.severity[i] == expected
        assert v.action[i] == {"critical": "block", "high": "block", "low": "allow"}[expected]
        seen.add(expected)
    assert seen == {"critical", "high", "low"}


def test_an_action_from_the_severity_is_explained_first_in_the_reasons():
    ens = _ensemble(budget=0.05, severity={"critical": 0.1, "high": 0.4}, actions={"low": "allow"})
    xs = _stream(3000, seed=3)
    v = ens.process_many(xs)
    seen = set()
    for i in np.flatnonzero(v.alert).tolist():
        reasons = v.reasons(i, xs[i])
        assert not any("(review)" in str(r["detail"]) for r in reasons)  # a rule's own action only if it forces one
        if v.action[i] == "review":
            assert all(r["detector"] != "ensemble" for r in reasons)
            continue
        limit = {"critical": "0.1 x budget 0.05", "low": "budget 0.05"}[v.severity[i]]
        assert reasons[0] == {"detector": "ensemble", "feature": "severity", "value": None, "contribution": 0.0,
                              "detail": f"{v.severity[i]} severity means {v.action[i]}: q={number(v.q[i], 3)} "
                                        f"<= {limit}"}
        seen.add(v.action[i])
    assert seen == {"block", "allow"}


def test_block_rules_and_blocklists_force_a_block_even_before_min_history():
    ens = _ensemble()
    xs = _stream(50, seed=4)
    xs[10] = {**xs[10], "amount": 5e6}
    ids = [{"user": f"u{i}", "ip": "198.51.100.7"} for i in range(50)]
    ids[20] = {"user": "u20", "ip": "203.0.113.9"}
    v = ens.process_many(xs, ids)
    assert np.flatnonzero(v.alert).tolist() == [10, 20]
    assert v.action[10] == v.action[20] == "block" and v.severity[10] == "critical"
    assert v.forced[10] == [("rules", "huge")] and v.forced[20] == [("rules", "blocklist:ip")]
    first = v.reasons(20, xs[20])[0]
    assert first["feature"] == "blocklist:ip" and first["value"] == "203.0.113.9"
    assert v.reasons(10, xs[10])[0]["detail"].startswith("rule huge (block)")


def test_results_do_not_depend_on_batch_sizes():
    xs = _stream(2400, seed=5, outliers=[900, 1500, 2000])
    ids = [{"ip": "203.0.113.9" if i == 1700 else "10.0.0.1"} for i in range(len(xs))]
    runs = []
    for batch in (7, 256, 2400):
        vs = _run(_ensemble(), xs, batch, ids)
        runs.append((
            np.concatenate([v.risk for v in vs]),
            np.concatenate([v.alert for v in vs]),
            sum((v.severity for v in vs), []),
            sum((v.action for v in vs), []),
            {k: np.concatenate([v.p[k] for v in vs]) for k in ("hst", "zscore", "rules")},
        ))
    for other in runs[1:]:
        np.testing.assert_array_equal(other[0], runs[0][0])
        np.testing.assert_array_equal(other[1], runs[0][1])
        assert other[2] == runs[0][2] and other[3] == runs[0][3]
        for k in other[4]:
            np.testing.assert_array_equal(other[4][k], runs[0][4][k])


def test_batch_gate_answers_equal_the_per_score_gate(monkeypatch):
    """The gate answers whole batches with numpy (peek, then commit up to a refused min/max record); without
    its ``many`` every detector falls back to one call per score. Both give the same verdicts bit for bit."""
    from detectors import ensemble as ens_mod

    xs = _stream(3000, seed=8, outliers=[700, 1900, 2500])
    fast = _run(_ensemble(), xs, 600)
    monkeypatch.delattr(ens_mod._Gate, "many")
    slow = _run(_ensemble(), xs, 600)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a.risk, b.risk)
        np.testing.assert_array_equal(a.alert, b.alert)
        for k in a.p:
            np.testing.assert_array_equal(a.p[k], b.p[k])


def test_protect_keeps_flagged_events_out_of_learning():
    """With protect=0.5 a detector learns only events in its lower half: the learned count shows it."""
    ens = Ensemble({"zscore": RobustZScore(window=256, refresh_every=64)}, protect=0.5, min_history=0)
    v = ens.process_many(_stream(2000, seed=6))
    learned = ens.detectors["zscore"]._learned
    assert learned == int((v.p["zscore"] > 0.5).sum())
    assert 400 < learned < 1300


def test_pickle_round_trip_continues_identically():
    xs = _stream(1500, seed=7, outliers=[1200])
    ens = _ensemble()
    ens.process_many(xs[:800])
    twin = pickle.loads(pickle.dumps(ens))
    a, b = ens.process_many(xs[800:]), twin.process_many(xs[800:])
    np.testing.assert_array_equal(a.risk, b.risk)
    np.testing.assert_array_equal(a.alert, b.alert)
    assert a.reasons(400, xs[1200]) == b.reasons(400, xs[1200])


def test_config_dict_is_canonical_and_complete():
    a, b = _ensemble(), _ensemble()
    cfg = a.config_dict()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg == b.config_dict() and a.config_hash() == b.config_hash()
    assert cfg["detectors"]["hst"] == {"type": "hst", "params": {"features": None, "height": 8, "n_trees": 10,
                                                                  "seed": 42, "window_size": 100}}
    assert cfg["weights"] == {"hst": 1.0, "rules": 1.0, "zscore": 1.0}
    assert cfg["detectors"]["rules"]["params"]["blocklists"] == {"ip": ["203.0.113.9"]}
    assert set(cfg) == {"detectors", "weights", "budget", "calibration_window", "protect", "min_history",
                        "severity", "actions"}
    assert _ensemble(budget=0.01).config_hash() != a.config_hash()
    c = _ensemble()
    c.detectors["hst"] = HalfSpaceTrees(n_trees=10, height=8, window_size=100, seed=1)
    assert c.config_hash() != a.config_hash()


class _LabelCounter(Detector):
    """Scores by how many fraud labels it has learned: a detector that uses the delayed-label path."""

    def __init__(self) -> None:
        self.frauds = 0

    def score_one(self, x):
        return float(self.frauds)

    def learn_one(self, x):
        return None

    def learn_label(self, x, y):
        self.frauds += int(y)


def test_learn_label_reaches_every_detector():
    ens = Ensemble({"labels": _LabelCounter(), "zscore": build("zscore")})
    ens.learn_label({"a": 1.0}, 1)
    ens.learn_label({"a": 1.0}, 0)
    ens.learn_label({"a": 2.0}, 1)
    assert ens.detectors["labels"].frauds == 2


class _Skipper(Detector):
    """Breaks the contract: never calls its gate."""

    def score_one(self, x):
        return 0.0

    def learn_one(self, x):
        return None

    def process_many(self, xs, gate=None):
        return np.zeros(len(xs))


def test_a_detector_that_skips_its_gate_is_an_error():
    with pytest.raises(RuntimeError, match="called its gate 0 times for 3 events"):
        Ensemble({"bad": _Skipper()}).process_many([{}, {}, {}])


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"weights": {"nope": 1.0}}, "unknown detector"),
        ({"weights": {"zscore": -1.0}}, "weight"),
        ({"budget": 0.0}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"protect": 1.0}, "protect"),
        ({"min_history": -1}, "min_history"),
        ({"severity": {"urgent": 0.1}}, "severity keys"),
        ({"severity": {"high": 2.0}}, "severity"),
        ({"actions": {"low": "ignore"}}, "actions"),
        ({"actions": {"none": "allow"}}, "actions keys"),
    ],
)
def test_invalid_configuration_is_rejected(kw, match):
    with pytest.raises(ValueError, match=match):
        Ensemble({"zscore": build("zscore")}, **kw)
    with pytest.raises(ValueError):
        Ensemble({})
    with pytest.raises(ValueError):
        Ensemble({"x": object()})  # type: ignore[dict-item]


def test_tail_probabilities_and_risk_are_in_range():
    v = _ensemble().process_many(_stream(1000, seed=8))
    for p in v.p.values():
        assert ((p > 0) & (p <= 1)).all()
    assert ((v.risk >= 0) & (v.risk < 1)).all()
    np.testing.assert_allclose(v.evidence, sum(-np.log(p) for p in v.p.values()))
    assert math.isfinite(float(v.evidence.max()))


def test_a_detector_that_never_learns_is_calibrated_batchwise_exactly_like_through_its_gate():
    import random

    import numpy as np

    from detectors.rules import Rules

    class GatedRules(Rules):
        learns = True  # forces the per-event gate path

    rules = [{"name": "big", "when": "a > 2.6", "score": 0.9}, {"name": "mid", "when": "a > 0.5", "score": 0.4}]
    rng = random.Random(2)
    xs = [{"a": rng.gauss(0, 1)} for _ in range(3000)]
    fast = Ensemble({"rules": Rules(rules=rules)}, budget=0.01, min_history=100)
    slow = Ensemble({"rules": GatedRules(rules=rules)}, budget=0.01, min_history=100)
    vf = [fast.process_many(xs[i : i + 700]) for i in range(0, len(xs), 700)]
    vs = [slow.process_many(xs[i : i + 300]) for i in range(0, len(xs), 300)]
    for key in ("q", "evidence"):
        np.testing.assert_array_equal(np.concatenate([getattr(v, key) for v in vf]),
                                      np.concatenate([getattr(v, key) for v in vs]))
    np.testing.assert_array_equal(np.concatenate([v.p["rules"] for v in vf]),
                                  np.concatenate([v.p["rules"] for v in vs]))
    assert 0 < np.concatenate([v.alert for v in vf]).mean() < 0.05


def test_evidence_risk_takes_a_supervised_probability_as_it_is():
    """risk = "evidence": a probabilistic detector enters as p = 1 - P (no rank), and with it alone the risk is
    P itself; alerts still follow the rank q, so the budget holds; the default ranks as before."""
    import random

    import numpy as np

    from detectors.base import Detector

    class Prob(Detector):
        probabilistic = True

        def score_one(self, x):
            return x["p"]

        def learn_one(self, x):
            return None

    rng = random.Random(3)
    xs = [{"p": rng.random() ** 4} for _ in range(3000)]
    ev = Ensemble({"m": Prob()}, budget=0.01, min_history=100, risk="evidence")
    v = ev.process_many(xs)
    np.testing.assert_allclose(v.risk, [x["p"] for x in xs], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v.p["m"], [1 - x["p"] for x in xs])
    assert 0.005 < v.alert[1000:].mean() < 0.02
    ranked = Ensemble({"m": Prob()}, budget=0.01, min_history=100).process_many(xs)
    np.testing.assert_array_equal(ranked.risk, 1 - ranked.q)
    np.testing.assert_array_equal(ranked.p["m"], TailCalibrator(20000).update_many([x["p"] for x in xs]))
    assert 0.005 < ranked.alert[1000:].mean() < 0.02
    assert "risk" in ev.config_dict() and "risk" not in Ensemble({"m": Prob()}).config_dict()
    with pytest.raises(ValueError, match="risk must be one of"):
        Ensemble({"m": Prob()}, risk="probability")


def test_a_checkpoint_from_before_the_risk_option_loads_as_rank():
    xs = _stream(1200, seed=9)
    ens = _ensemble()
    ens.process_many(xs[:600])
    del ens.__dict__["risk"]  # what an older checkpoint holds
    twin = pickle.loads(pickle.dumps(ens))
    ref = _ensemble()
    ref.process_many(xs[:600])
    np.testing.assert_array_equal(twin.process_many(xs[600:]).risk, ref.process_many(xs[600:]).risk)


def test_a_z_score_calibrated_gaussian_reads_its_own_scale_and_learns_as_ranked():
    """``calibration={"zscore": "gaussian"}``: the z-score's ``p`` is ``exp(-z**2 / 2)`` (evidence ``z**2 / 2``),
    while its gate reads the rank, so the detector learns the same events and scores the same raw values."""
    from types import SimpleNamespace

    def joined(vs):
        cat = np.concatenate
        return SimpleNamespace(raw={k: cat([v.raw[k] for v in vs]) for k in vs[0].raw},
                               p={k: cat([v.p[k] for v in vs]) for k in vs[0].p},
                               evidence=cat([v.evidence for v in vs]), risk=cat([v.risk for v in vs]),
                               alert=cat([v.alert for v in vs]))

    xs = _stream(3000, 5, outliers=[2000, 2500])
    ranked = _ensemble()
    scaled = _ensemble(calibration={"zscore": "gaussian"})
    vr, vs = joined(_run(ranked, xs, 250)), joined(_run(scaled, xs, 250))
    assert np.array_equal(vr.raw["zscore"], vs.raw["zscore"]) and np.array_equal(vr.p["hst"], vs.p["hst"])
    z = vs.raw["zscore"]
    assert vs.p["zscore"].tolist() == [max(math.exp(-0.5 * v * v), 1e-12) for v in z.tolist()]
    assert np.allclose(vs.evidence - vr.evidence, 0.5 * z * z + np.log(vr.p["zscore"]), atol=1e-9)
    assert not np.array_equal(vr.p["zscore"], vs.p["zscore"])
    assert vs.alert[2000] and vs.alert[2500]
    # batch splits do not matter, and the option is part of the configuration (and of nothing when "rank")
    assert joined(_run(_ensemble(calibration={"zscore": "gaussian"}), xs, 777)).risk.tolist() == vs.risk.tolist()
    assert scaled.config_dict()["calibration"] == {"zscore": "gaussian"}
    assert _ensemble(calibration={"zscore": "rank"}).config_hash() == _ensemble().config_hash()
    # an ensemble pickled before the option continues ranked
    old = pickle.loads(pickle.dumps(ranked))
    del old.__dict__["calibration"]
    assert old.calibration is None and "calibration" not in old.config_dict()


@pytest.mark.parametrize(("calibration", "match"), [
    ({"hst": "gaussian"}, "cannot be \"gaussian\": its scores are not z-scores"),
    ({"zscore": "normal"}, "must be one of rank, gaussian"),
    ({"nope": "rank"}, "unknown detector 'nope'"),
])
def test_a_bad_calibration_is_refused_with_its_reason(calibration, match):
    with pytest.raises(ValueError, match=match):
        _ensemble(calibration=calibration)
