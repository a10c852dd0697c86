"""The multi-task learner (``detectors/multitask.py``): one trunk shared by the order and the login learner."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from detectors.multitask import MultiTask
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.compiled import new_engine
from stream.config import ConfigError, default_settings
from stream.events import Label, Login, Order
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


def _pair(shared: bool, **kw) -> tuple[MultiTask, MultiTask]:
    params = {"warmup": 5, "hidden": [8], "head": [4], "step_every": 2, "batch": 16, "seed": 3, **kw}
    order, login = MultiTask(shared=shared, **params), MultiTask(shared=shared, **params)
    order.join_tasks({"order": order, "login": login})
    return order, login


def _labelled(rng: random.Random, n: int, extra: str) -> list[tuple[dict[str, float], int]]:
    """Vectors where ``signal`` separates fraud, with a feature only this event type carries."""
    out = []
    for _ in range(n):
        y = int(rng.random() < 0.3)
        out.append(({"signal": rng.gauss(3.0 if y else 0.0, 0.5), "noise": rng.random(), extra: rng.random()}, y))
    return out


def test_each_type_scores_with_its_own_head_and_stays_silent_until_its_own_labels_arrive():
    order, login = _pair(shared=True)
    assert order.model is login.model and (order.task, login.task) == ("order", "login")
    rng = random.Random(1)
    for x, y in _labelled(rng, 300, "login_only"):
        login.learn_label(x, y)
    probe = [{"signal": 3.0, "noise": 0.5}, {"signal": 0.0, "noise": 0.5}]
    assert login.ready and not order.ready
    assert order.process_many(probe).tolist() == [0.0, 0.0], "no order label yet: the order score is the prior"
    hi, lo = login.process_many(probe)
    assert hi > 0.9 > 0.1 > lo, "the login head learned the signal"
    assert login.explain({"signal": 3.0, "noise": 0.5})[0][0] == "signal"


def test_a_login_label_moves_the_order_score_only_when_the_trunk_is_shared():
    probe = [{"signal": s, "noise": 0.5, "order_only": 0.5} for s in (-1.0, 0.0, 1.5, 3.0)]
    moved = {}
    for shared in (True, False):
        order, login = _pair(shared=shared)
        rng = random.Random(2)
        for x, y in _labelled(rng, 40, "order_only"):
            order.learn_label(x, y)
        assert order.ready
        before = order.process_many(probe)
        for x, y in _labelled(rng, 200, "login_only"):
            login.learn_label(x, y)
        moved[shared] = float(np.abs(order.process_many(probe) - before).max())
    assert moved[False] == 0.0, "separate models: the login labels cannot touch the order model"
    assert moved[True] > 1e-3, "shared trunk: what the login labels taught reaches the order scores"


def test_features_of_both_types_share_one_input_column_per_name():
    order, login = _pair(shared=True, max_inputs=4)
    order.learn_label({"a": 1.0, "b": 2.0}, 0)
    login.learn_label({"b": 1.0, "c": 3.0, "d": 4.0, "e": 5.0}, 1)
    assert order.model.index == {"a": 0, "b": 1, "c": 2, "d": 3}, "one column per name, first come, up to 4"
    rows = order.model.rows([{"e": 1.0, "b": np.inf, "a": 2.0}])
    assert np.isnan(rows[0, 1:]).all() and rows[0, 0] == pytest.approx(np.log1p(2.0))


def test_bad_parameters_are_refused_in_one_line():
    for kw, text in (({"shared": "yes"}, "shared must be true or false"), ({"head": []}, "head must be"),
                     ({"batch": 1}, "batch must be at least 2"), ({"max_inputs": 0}, "max_inputs must be")):
        with pytest.raises(ValueError, match=text):
            MultiTask(**kw)
    with pytest.raises(ConfigError, match="detectors.multitask: .*shared must be true or false"):
        Engine(default_settings().replace({"detectors.multitask": {"shared": 1}}))


# -- in the engine -----------------------------------------------------------------------------------------


def _settings(**mt):
    return default_settings().replace({"detectors.multitask": {"warmup": 5, **mt}, "ensemble.min_history": 100})


def _events(n: int = 12_000, seed: int = 5) -> list:
    return list(simulate(SimConfig(events=n, seed=seed, login_labels=True, label_delay_s=1800.0)))


def _run(engine, events, batch: int) -> np.ndarray:
    return np.concatenate([engine.process(events[i : i + batch]).risk for i in range(0, len(events), batch)])


@pytest.mark.parametrize("shared", [True, False])
def test_the_engine_joins_the_two_types_and_a_checkpoint_keeps_the_sharing(shared):
    events = _events()
    full = _run(Engine(_settings(shared=shared)), events, 500)
    half = len(events) // 2
    first = Engine(_settings(shared=shared))
    r_a = _run(first, events[:half], 500)
    second = Engine(_settings(shared=shared))
    second.restore(first.snapshot())
    r_b = _run(second, events[half:], 377)
    np.testing.assert_array_equal(full, np.concatenate([r_a, r_b]))
    order = second.ensembles["order"].detectors["multitask"]
    login = second.ensembles["login"].detectors["multitask"]
    assert (order.task, login.task) == ("order", "login")
    assert (order.model is login.model) is shared
    assert order.ready and login.ready, "both types' labels reached their heads"
    if shared:
        assert set(order.model.heads) == {"order", "login"}
    else:
        assert set(order.model.heads) == {"order"} and set(login.model.heads) == {"login"}


def test_the_compiled_engine_hands_the_learner_the_same_labels_and_scores_alike():
    events = _events(8000, seed=9)
    python = Engine(_settings())
    compiled = new_engine(_settings())
    assert type(compiled).__name__ == "CompiledEngine" and compiled.detection == "python"
    np.testing.assert_array_equal(_run(python, events, 1000), _run(compiled, events, 613))
    assert compiled.ensembles["login"].detectors["multitask"].ready


def test_simulated_login_labels_are_opt_in_and_leave_the_events_as_they_were():
    plain = list(simulate(SimConfig(events=20_000, seed=4)))
    with_logins = list(simulate(SimConfig(events=20_000, seed=4, login_labels=True)))
    strip = [(type(e), e.ts, e.user_id, e.label, e.scenario) for e in plain if not isinstance(e, Label)]
    other = [(type(e), e.ts, e.user_id, e.label, e.scenario) for e in with_logins if not isinstance(e, Label)]
    n = min(len(strip), len(other))
    assert n > 19_000 and strip[:n] == other[:n]
    kinds = {e.event_id: type(e) for e in with_logins}
    refs = [(kinds.get(e.ref_event_id), e.label, e.source) for e in with_logins if isinstance(e, Label)]
    assert {k for k, _, _ in refs} >= {Order, Login}
    assert all(src == "account_review" for k, y, src in refs if k is Login and y == 1)
    plain_kinds = {e.event_id: type(e) for e in plain}
    assert {plain_kinds.get(e.ref_event_id) for e in plain if isinstance(e, Label)} == {Order}


def test_replay_with_login_labels_alerts_with_the_learners_reasons(tmp_path):
    stream = tmp_path / "s.jsonl.gz"
    res = CliRunner().invoke(cli, ["simulate", "--events", "30000", "--seed", "3", "--login-labels",
                                   "--out", str(stream)])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "mt.toml"
    cfg.write_text("[ensemble.weights]\nmultitask = 3.0\n[detectors.multitask]\nwarmup = 5\n")
    out, rep = tmp_path / "alerts.jsonl", tmp_path / "report.json"
    res = CliRunner().invoke(cli, ["replay", str(stream), "-c", str(cfg), "--alerts-out", str(out), "--report",
                                   str(rep), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(rep.read_text())["events"] > 0
    reasons = [(a.event_type, r) for a in read_alerts(out) for r in a.reasons if r["detector"] == "multitask"]
    assert {t for t, _ in reasons} == {"order", "login"}, "both heads drive alerts"
    assert all(r["feature"] for _, r in reasons)
