"""The neural detectors (``detectors/neural.py``): the autoencoder and the supervised ``model = "mlp"``.

The conformance suite runs on both through ``test_conformance.py`` (every registered detector with its
``_unit_test_params``); here it runs once more on the configurations the docs and benchmarks use, plus what the
suite cannot see: seeded determinism, checkpoint resume through the engine, an injected anomaly ranked first,
a separable problem learned from delayed labels, and reasons naming features in a replay's alerts.
"""

from __future__ import annotations

import json
import math
import pickle
import random

import numpy as np
import pytest
from click.testing import CliRunner

from detectors import build, testing
from detectors.neural import Autoencoder, Net, RunningScaler
from detectors.supervised import Supervised
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.config import ConfigError, default_settings
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


def _ae(**kw) -> Autoencoder:
    params = {"hidden": [8, 3, 8], "batch_size": 16, "warmup": 256, "lr": 0.01, "seed": 5}
    params.update(kw)
    return Autoencoder(**params)


@pytest.mark.parametrize("factory", [
    lambda: _ae(),
    lambda: Autoencoder(),  # the documented defaults
    lambda: Supervised(model="mlp", warmup=3),
], ids=["autoencoder-small", "autoencoder-defaults", "supervised-mlp"])
def test_conformance(factory):
    testing.check_detector(factory)


def _correlated(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        out.append({"a": a, "b": 2 * a + rng.gauss(0, 0.1), "c": b, "d": b - a + rng.gauss(0, 0.1),
                    "amount": math.exp(rng.gauss(3, 1))})
    return out


def test_same_seed_same_scores_other_seed_other_scores():
    xs = _correlated(3000, 1)
    s1 = _ae(seed=3).process_many(xs)
    s2 = _ae(seed=3).process_many(xs)
    s3 = _ae(seed=4).process_many(xs)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    assert (s1[:256] == 0).all() and (s1[300:] > 0).all(), "0.0 during warm-up, positive after"


def test_an_injected_point_that_breaks_the_correlations_ranks_first():
    """Each feature of the injected points is ordinary on its own (|z| < 2); only their relations are broken,
    which a per-feature z-score cannot see and a reconstruction must."""
    xs = _correlated(6000, 2)
    rng = random.Random(9)
    injected = []
    for i in range(3000, 6000, 300):
        a = rng.uniform(0.8, 1.2)
        xs[i] = {"a": a, "b": -2 * a, "c": 1.0, "d": -1.0 - a, "amount": 20.0}
        injected.append(i)
    det = _ae(warmup=512)
    scores = det.process_many(xs)
    y = np.zeros(len(xs))
    y[injected] = 1
    tail = slice(3000, None)
    assert testing._roc_auc(y[tail], scores[tail]) > 0.99
    top = det.explain(xs[injected[-1]], top=2)
    assert {f for f, _ in top} & {"b", "d"}, top
    line = det.describe(xs[injected[-1]], top[0][0])
    assert line.startswith(f"{top[0][0]}=") and "reconstructed as" in line


def test_the_scaler_forgets_past_its_horizon_and_ignores_non_finite():
    s = RunningScaler(1, horizon=100)
    s.update(np.full((100, 1), 5.0))
    s.update(np.array([[np.nan], [np.inf]]))
    assert s.mean[0] == 5.0 and s.n[0] == 100
    for _ in range(20):
        s.update(np.full((50, 1), 10.0))
    assert abs(s.mean[0] - 10.0) < 1e-3 and s.n[0] == 100


def test_net_gradients_match_finite_differences():
    net = Net([3, 4, 2, 3], lr=0.01, seed=0)
    x = np.random.default_rng(1).normal(size=(5, 3))

    def loss() -> float:
        return float(((net.forward(x)[-1] - x) ** 2).sum())

    acts = net.forward(x, exact=False)
    grads, _ = net.gradients(acts, 2 * (acts[-1] - x))
    w = net.w[1]
    eps = 1e-6
    w[0, 1] += eps
    up = loss()
    w[0, 1] -= 2 * eps
    down = loss()
    w[0, 1] += eps
    assert abs((up - down) / (2 * eps) - grads[1][0, 1]) < 1e-5


def test_memory_is_fixed():
    det = _ae()
    xs = _correlated(2000, 3)
    det.process_many(xs[:500])
    size = len(pickle.dumps(det))
    det.process_many(xs[500:])
    assert len(pickle.dumps(det)) == size


def test_bad_parameters_and_unknown_keys_are_refused_in_one_line():
    for bad in ({"hidden": []}, {"hidden": [0]}, {"lr": 0}, {"batch_size": 0}, {"clip": math.inf},
                {"features": "a"}, {"log_scale": "yes"}):
        with pytest.raises(ValueError):
            Autoencoder(**bad)
    with pytest.raises(ValueError, match="hidden"):
        Supervised(model="mlp", hidden=[])
    s = default_settings().replace({"detectors.autoencoder": {"hiden": [8]}})
    with pytest.raises(ConfigError) as e:
        Engine(s)
    assert "\n" not in str(e.value) and "hiden" in str(e.value)
    assert build("autoencoder", {"hidden": [4]}).hidden == [4]


# -- the supervised network --------------------------------------------------------------------------------


def _labelled(n: int, seed: int, rate: float = 0.01) -> list[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = int(rng.random() < rate)
        a = rng.gauss(2.0 if y else 0.0, 0.7)
        b = rng.gauss(-1.5 if y else 0.0, 0.7)
        out.append(({"a": a, "b": b, "noise": rng.gauss(0, 1), "amount": math.exp(rng.gauss(3, 1))}, y))
    return out


def test_mlp_learns_a_separable_problem_from_delayed_labels_and_is_silent_before_warmup():
    det = Supervised(model="mlp", warmup=20, seed=3)
    train, test = _labelled(6000, 1), _labelled(4000, 2)
    for x, _ in train[:200]:
        assert det.score_one(x) == 0.0
        det.learn_one(x)  # unlabelled events teach it nothing
    assert det.score_one(test[0][0]) == 0.0
    scores_before = []
    for i, (x, y) in enumerate(train):
        if not det.ready:
            scores_before.append(det.score_one(x))
        det.learn_label(x, y)
        if i == 200:
            assert not det.ready, "20 frauds need about 2,000 labels at a 1 % rate"
    assert det.ready and set(scores_before) == {0.0}
    s = det.process_many([x for x, _ in test])
    y = np.array([y for _, y in test])
    assert testing._roc_auc(y, s) > 0.9
    top = det.explain({"a": 2.5, "b": -2.0, "noise": 0.0, "amount": 20.0}, top=2)
    assert top and top[0][0] in ("a", "b"), top


def test_mlp_is_deterministic_and_resumes_from_a_pickle():
    data = _labelled(3000, 4, rate=0.05)
    probe = [x for x, _ in _labelled(200, 5)]
    a, b = Supervised(model="mlp", warmup=5, seed=1), Supervised(model="mlp", warmup=5, seed=1)
    for x, y in data[:1500]:
        a.learn_label(x, y)
        b.learn_label(x, y)
    c = pickle.loads(pickle.dumps(a))
    for x, y in data[1500:]:
        a.learn_label(x, y)
        c.learn_label(x, y)
    np.testing.assert_array_equal(a.process_many(probe), c.process_many(probe))
    np.testing.assert_array_equal(a.process_many(probe), [a.score_one(x) for x in probe])
    assert not np.array_equal(a.process_many(probe), b.process_many(probe))


# -- in the engine -----------------------------------------------------------------------------------------

_AE = {"hidden": [16, 4, 16], "batch_size": 32, "warmup": 500, "lr": 0.005}


def _settings(**extra):
    over = {"engine.budget": 0.02, "ensemble.min_history": 100, "detectors.autoencoder": dict(_AE),
            "ensemble.weights.autoencoder": 1.0}
    over.update(extra)
    return default_settings().replace(over)


def _run(engine: Engine, events, batch: int):
    risk = []
    for i in range(0, len(events), batch):
        risk.append(engine.process(events[i : i + batch]).risk)
    return np.concatenate(risk)


def test_engine_checkpoint_resume_equals_an_uninterrupted_run():
    events = list(simulate(SimConfig(events=5000, seed=3)))
    full = _run(Engine(_settings()), events, 400)
    half = len(events) // 2
    first = Engine(_settings())
    r_a = _run(first, events[:half], 400)
    second = Engine(_settings())
    second.restore(first.snapshot())
    r_b = _run(second, events[half:], 333)
    np.testing.assert_array_equal(full, np.concatenate([r_a, r_b]))
    ae = second.ensembles["order"].detectors["autoencoder"]
    assert ae.ready and ae._names, "the autoencoder was trained and scored in this run"


def test_replay_with_the_autoencoder_gives_reasons_naming_features(tmp_path):
    stream = tmp_path / "s.jsonl.gz"
    res = CliRunner().invoke(cli, ["simulate", "--events", "6000", "--seed", "5", "--out", str(stream)])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "ae.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n[ensemble.weights]\nautoencoder = 3.0\n"
                   "[detectors.autoencoder]\nhidden = [16, 4, 16]\nwarmup = 500\nlr = 0.005\n")
    out, rep = tmp_path / "alerts.jsonl", tmp_path / "report.json"
    res = CliRunner().invoke(cli, ["replay", str(stream), "--budget", "0.02", "-c", str(cfg), "--alerts-out",
                                   str(out), "--report", str(rep), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["events"] > 0
    reasons = [r for a in read_alerts(out) for r in a.reasons if r["detector"] == "autoencoder"]
    assert reasons, "some alert is driven by the autoencoder"
    for r in reasons:
        assert r["feature"] and r["detail"].startswith(f"{r['feature']}=") and "reconstructed as" in r["detail"]


def test_config_show_says_detection_falls_back_to_python_for_the_autoencoder(tmp_path):
    cfg = tmp_path / "ae.toml"
    cfg.write_text("[detectors.autoencoder]\n[ensemble.weights]\nautoencoder = 1.0\n")
    res = CliRunner().invoke(cli, ["config", "show", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert ("# engine: compiled; detection runs in Python: detector 'autoencoder' (Autoencoder) has no compiled "
            "version") in res.output
    res = CliRunner().invoke(cli, ["config", "show"])
    assert "# engine: compiled (features and detection in the core)" in res.output
    cfg.write_text("[detectors.autoencoder]\nhiden = [3]\n")
    res = CliRunner().invoke(cli, ["config", "show", "-c", str(cfg)])
    assert res.exit_code == 2 and "unexpected keyword argument 'hiden'" in res.output
