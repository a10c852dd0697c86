"""The review allocator (detectors/bandit.py) on its own, in the ensemble, and in the engine's replay."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from detectors.bandit import ReviewAllocator
from detectors.ensemble import Ensemble
from detectors.rules import Rules
from stream.compiled import new_engine
from stream.config import default_settings
from stream.errors import ConfigError
from stream.events import Label, Order
from stream.pipeline import Engine


def test_posteriors_learn_only_from_verdicts_on_alerted_events():
    a = ReviewAllocator(seed=1)
    a.remember("e1", "hst")
    assert not a.learn("never-alerted", 1)  # a label on an event that never alerted teaches nothing
    assert a.posterior("hst") == (1, 1)
    assert a.learn("e1", 1)
    assert not a.learn("e1", 1)  # a second verdict on the same alert does not count twice
    assert a.posterior("hst") == (2, 1)


def test_pending_alerts_are_bounded():
    a = ReviewAllocator(max_pending=2)
    for i in range(3):
        a.remember(f"e{i}", "x")
    assert not a.learn("e0", 1)  # forgotten: the oldest went first
    assert a.learn("e2", 1)


def test_bad_parameters_are_refused():
    for kw in ({"seed": -1}, {"strength": -0.5}, {"resample_every": 0}, {"max_pending": True}):
        with pytest.raises(ValueError):
            ReviewAllocator(**kw)


def test_allocation_follows_reviewed_precision_and_is_seeded():
    """Two arms alert equally rare events; the precise one's verdicts say fraud, the other's legit: the precise
    arm's events then take the top ranks."""
    def trained(seed: int) -> ReviewAllocator:
        a = ReviewAllocator(seed=seed, resample_every=50, calibration_window=2000)
        for i in range(40):
            a.remember(f"p{i}", "precise")
            a.learn(f"p{i}", 1 if i % 10 else 0)  # 90 % fraud
            a.remember(f"n{i}", "noisy")
            a.learn(f"n{i}", 1 if i % 10 == 0 else 0)  # 10 % fraud
        return a

    rng = np.random.default_rng(0)
    q = rng.uniform(0, 1, 4000)
    arms = ["precise" if i % 2 else "noisy" for i in range(4000)]
    out = trained(3).allocate(q, arms, seen=0)
    top = np.argsort(out, kind="stable")[:200]
    share = np.mean([arms[i] == "precise" for i in top])
    assert share > 0.85
    # the same seed gives the same ranks; another seed other samples
    assert np.array_equal(out, trained(3).allocate(q, arms, seen=0))
    assert not np.array_equal(out, trained(4).allocate(q, arms, seen=0))


def test_allocation_does_not_depend_on_the_batch_split():
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1, 3000)
    arms = [random.Random(i).choice(["a", "b", "c"]) for i in range(3000)]
    whole = ReviewAllocator(seed=5, resample_every=100).allocate(q, arms, seen=0)
    a = ReviewAllocator(seed=5, resample_every=100)
    parts = [a.allocate(q[i:i + 77], arms[i:i + 77], seen=i) for i in range(0, 3000, 77)]
    assert np.array_equal(whole, np.concatenate(parts))


def test_snapshot_round_trip_continues_identically():
    a = ReviewAllocator(seed=2, resample_every=10)
    a.remember("e1", "x")
    a.learn("e1", 1)
    q = np.linspace(0.001, 1, 500)
    arms = ["x" if i % 3 else "y" for i in range(500)]
    a.allocate(q, arms, seen=0)
    b = pickle.loads(pickle.dumps(a))
    assert np.array_equal(a.allocate(q, arms, seen=500), b.allocate(q, arms, seen=500))
    assert b.posterior("x") == (2, 1)


def test_the_ensemble_refuses_unknown_bandit_parameters():
    with pytest.raises(ValueError, match="unknown bandit parameter"):
        Ensemble({"rules": Rules(rules=[{"name": "r", "when": "a > 1"}])}, bandit={"sed": 1})


# -- the engine ------------------------------------------------------------------------------------------------

#: Two rules fire at the same rate: "noisy" (higher score, so the fixed ensemble alerts it first) on tiny amounts,
#: whose reviews say legit; "precise" (lower score) on large amounts, whose reviews say fraud.
_RULES = [{"name": "noisy", "when": "order_amount < 1", "score": 0.9},
          {"name": "precise", "when": "order_amount > 5000", "score": 0.5}]


def _settings(bandit: bool):
    over = {"engine.budget": 0.02, "engine.core": "python", "ensemble.min_history": 100,
            "detectors.hst.enabled": False, "detectors.zscore.enabled": False, "detectors.rules.rules": _RULES,
            "links.graph": False, "ensemble.adaptive.enabled": False}  # the bandit's effect alone
    if bandit:
        over.update({"ensemble.bandit.enabled": True, "ensemble.bandit.seed": 1,
                     "ensemble.bandit.resample_every": 100})
    return default_settings().replace(over)


def _stream(n_days: int = 8, per_day: int = 1500):
    rng = random.Random(7)
    days = []
    for d in range(n_days):
        day = []
        for i in range(per_day):
            u = rng.random()
            amount = 0.5 if u < 0.02 else 6000.0 if u < 0.04 else rng.uniform(10, 200)
            day.append(Order(event_id=f"o{d}-{i}", ts=d * 86400.0 + i * 50.0, user_id=f"u{rng.randrange(300)}",
                             order_id=f"o{d}-{i}", amount=amount, currency="EUR", merchant_id="m1",
                             label=1 if amount > 5000 else 0))
        days.append(day)
    return days


def _replay(engine: Engine) -> list[list[str]]:
    """Each day through the engine; then that day's alerts are reviewed (true label) and fed back as label events
    at the start of the next day. Returns the rule each day's alerts fired."""
    fired: list[list[str]] = []
    verdicts: list[Label] = []
    for day in _stream():
        out = engine.process(verdicts + day)
        by_id = {e.event_id: e for e in day}
        fired.append(["precise" if by_id[a.event_id].amount > 5000 else "noisy" if by_id[a.event_id].amount < 1
                      else "other" for a in out.alerts])
        t = day[-1].ts + 1
        verdicts = [Label(event_id=f"v-{a.event_id}", ts=t, ref_event_id=a.event_id,
                          label=by_id[a.event_id].label) for a in out.alerts]
    return fired


def test_enabling_the_bandit_moves_alerts_to_the_arm_reviews_confirm():
    fixed = _replay(Engine(_settings(False)))
    bandit = _replay(Engine(_settings(True)))
    late_fixed = sum(d.count("precise") for d in fixed[4:])
    late_bandit = sum(d.count("precise") for d in bandit[4:])
    # the fixed ensemble keeps spending its slots on the higher-scored noisy rule; the allocator learns from the
    # verdicts that the precise rule's alerts are the frauds and gives them the slots
    assert late_bandit > 2 * late_fixed
    assert sum(d.count("noisy") for d in bandit[4:]) < sum(d.count("noisy") for d in fixed[4:])
    # deterministic with its seed
    assert bandit == _replay(Engine(_settings(True)))


def test_alerts_say_which_arm_got_the_slot_and_state_survives_a_snapshot():
    eng = Engine(_settings(True))
    days = _stream(n_days=3)
    out = eng.process(days[0])
    labels = [Label(event_id=f"v-{a.event_id}", ts=days[0][-1].ts + 1, ref_event_id=a.event_id, label=1)
              for a in out.alerts]
    eng.process(labels)
    assert any(r["detector"] == "bandit" for r in out.alerts[-1].reasons)
    stats = eng.ensembles["order"].allocator.stats()
    assert sum(s["frauds"] for s in stats.values()) == len(labels)
    twin = Engine(_settings(True))
    twin.restore(eng.snapshot())
    a, b = eng.process(days[1]), twin.process(days[1])
    assert [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]
    assert np.array_equal(a.risk, b.risk)


def test_the_compiled_engine_falls_back_to_python_when_the_bandit_is_on(caplog):
    s = _settings(True).replace({"engine.core": "compiled"})
    with caplog.at_level("WARNING"):
        eng = new_engine(s)
    assert type(eng) is Engine and eng.allocates
    assert type(new_engine(_settings(False).replace({"engine.core": "compiled"}))) is not Engine


def test_the_bandit_off_keeps_the_configuration_hash_and_bad_values_are_config_errors():
    assert default_settings().config_hash == default_settings().replace(
        {"ensemble.bandit.seed": 9}).config_hash  # off: its parameters do not change what alerts
    assert _settings(True).config_hash != _settings(False).config_hash
    with pytest.raises(ConfigError):
        Engine(default_settings().replace({"ensemble.bandit.enabled": True, "ensemble.bandit.strength": -1.0}))
