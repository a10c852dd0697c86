"""One conformance suite for every registered detector (``registry.available()``), each with the parameter
sets its ``_unit_test_params`` yields.

A detector that cannot satisfy a check opts out in ``OPT_OUTS`` with a written reason; the suite skips that
check for it and prints the reason.
"""

from __future__ import annotations

import copy
import math
import pickle
import random

import numpy as np
import pytest

from detectors import Detector, available
from detectors.base import Frame
from detectors.registry import REGISTRY

#: (detector name, check name) -> why the check does not apply. Empty: every built-in passes every check.
OPT_OUTS: dict[tuple[str, str], str] = {}

CASES = [
    pytest.param(name, params, id=f"{name}-{i}")
    for name in available()
    for i, params in enumerate(REGISTRY[name]._unit_test_params())
]
N_FEATURES = 6


def _opt_out(name: str, check: str) -> None:
    reason = OPT_OUTS.get((name, check))
    if reason:
        pytest.skip(f"{name} opts out of {check}: {reason}")


def _stream(n: int, seed: int, outlier_every: int = 40) -> tuple[list[dict[str, float]], np.ndarray]:
    """Correlated gaussian features f0..f5; every ``outlier_every``-th event is an obvious outlier."""
    rng = random.Random(seed)
    xs, ys = [], []
    for i in range(n):
        base = rng.gauss(0, 1)
        x = {f"f{j}": base * 0.5 + rng.gauss(0, 1) for j in range(N_FEATURES)}
        y = 0
        if i % outlier_every == outlier_every - 1 and i > 100:
            x["f0"] = 6.0 + rng.random()
            x["f1"] = -6.0 - rng.random()
            x["f2"] = 7.0
            y = 1
        xs.append(x)
        ys.append(y)
    return xs, np.array(ys)


def _ragged(xs: list[dict[str, float]], seed: int) -> list[dict[str, float]]:
    """The same stream with features missing here and there and new features appearing later."""
    rng = random.Random(seed)
    out = []
    for i, x in enumerate(xs):
        x = dict(x)
        if rng.random() < 0.15:
            del x[f"f{rng.randrange(N_FEATURES)}"]
        if i > len(xs) // 3:
            x["late_feature"] = rng.gauss(3, 1)
        if i > len(xs) // 2 and rng.random() < 0.3:
            x["sparse_new"] = rng.random()
        out.append(x)
    return out


def _build(name: str, params: dict) -> Detector:
    return REGISTRY[name](**copy.deepcopy(params))


def _loop(det: Detector, xs: list[dict[str, float]], gate=None) -> np.ndarray:
    out = []
    for x in xs:
        s = det.score_one(x)
        out.append(s)
        if gate is None or gate(s):
            det.learn_one(x)
    return np.array(out, dtype=np.float64)


class _Gate:
    """Refuses high scores and every 11th call: exercises both the score and the call order."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.calls = 0

    def __call__(self, s: float) -> bool:
        self.calls += 1
        return s <= self.threshold and self.calls % 11 != 0


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    pos = int(y.sum())
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def test_every_builtin_is_registered():
    assert {"hst", "zscore", "rules"} <= set(available())
    for name in available():
        assert issubclass(REGISTRY[name], Detector)
        assert list(REGISTRY[name]._unit_test_params()), f"{name} yields no _unit_test_params"


@pytest.mark.parametrize("name,params", CASES)
def test_scoring_is_pure(name, params):
    _opt_out(name, "pure")
    det = _build(name, params)
    xs, _ = _stream(400, seed=1)
    det.process_many(xs)
    probes = _ragged(_stream(30, seed=2)[0], seed=3) + [{}, {"f0": 50.0, "f1": -50.0, "unknown": 1.0}]
    before = pickle.dumps(det)
    for x in probes:
        x_before = dict(x)
        s1 = det.score_one(x)
        det.explain(x)
        s2 = det.score_one(x)
        assert x == x_before, "score_one/explain mutated its input"
        assert s1 == s2
    assert pickle.dumps(det) == before, "score_one/explain changed the model"


@pytest.mark.parametrize("name,params", CASES)
def test_clones_are_independent(name, params):
    _opt_out(name, "clone")
    det = _build(name, params)
    xs, _ = _stream(500, seed=4)
    det.process_many(xs[:250])
    probe = xs[250:300]
    expected = np.array([det.score_one(x) for x in probe])
    clone = det.clone()
    assert clone._get_params() == det._get_params()
    clone.process_many(xs[250:])
    got = np.array([det.score_one(x) for x in probe])
    np.testing.assert_array_equal(got, expected)
    fresh = _build(name, params)
    np.testing.assert_array_equal(_loop(clone.clone(), xs[:200]), _loop(fresh, xs[:200]))


@pytest.mark.parametrize("name,params", CASES)
def test_pickle_round_trip_continues_identically(name, params):
    _opt_out(name, "pickle")
    det = _build(name, params)
    xs = _ragged(_stream(700, seed=5)[0], seed=6)
    det.process_many(xs[:333])
    twin = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(det.process_many(xs[333:]), twin.process_many(xs[333:]))
    probe = xs[:50]
    np.testing.assert_array_equal([det.score_one(x) for x in probe], [twin.score_one(x) for x in probe])


@pytest.mark.parametrize("name,params", CASES)
def test_new_and_missing_features_give_finite_scores(name, params):
    _opt_out(name, "ragged")
    det = _build(name, params)
    xs = _ragged(_stream(600, seed=7)[0], seed=8)
    scores = det.process_many(xs)
    assert np.isfinite(scores).all()
    for x in ({}, {"only_new": 1.0}, {"f0": 1.0}, {"f0": math.nan, "f1": 0.0}):
        assert math.isfinite(det.score_one(x))
        det.learn_one(x)
    assert math.isfinite(det.score_one(xs[0]))
    for feature, contribution in det.explain(xs[-1]):
        assert isinstance(feature, str) and math.isfinite(contribution)


@pytest.mark.parametrize("name,params", CASES)
def test_cold_start_is_finite(name, params):
    _opt_out(name, "cold")
    for x in ({"f0": 1.0, "f1": -2.0}, {}, {"f0": 1e300}):
        det = _build(name, params)
        assert math.isfinite(det.score_one(x))
        assert det.explain(x) == [] or all(math.isfinite(c) for _, c in det.explain(x))
        det.learn_one(x)
        assert math.isfinite(det.score_one(x))


class _BatchGate(_Gate):
    """The same answers, also given a batch at a time through ``many`` (the protocol of ``consult``)."""

    def many(self, scores: np.ndarray, stop: np.ndarray | None = None) -> np.ndarray:
        out = []
        for i, s in enumerate(scores.tolist()):
            out.append(self(s))
            if not out[-1] and stop is not None and stop[i]:
                break
        return np.array(out, dtype=bool)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("gated", [False, True, "batch"], ids=["no-gate", "gate", "batch-gate"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("frame", [False, True], ids=["list", "frame"])
def test_process_many_equals_the_loop(name, params, gated, ragged, frame):
    """Whatever the batch split, whether the batch comes as a list or as a Frame (the shared matrix) and
    whether the gate answers one score or a batch at a time."""
    _opt_out(name, "process_many")
    xs = _stream(900, seed=9)[0]
    if ragged:
        xs = _ragged(xs, seed=10)
    threshold = math.inf
    if gated:
        ungated = _loop(_build(name, params), xs)
        threshold = float(np.quantile(ungated, 0.9))
    reference_gate = _Gate(threshold) if gated else None
    expected = _loop(_build(name, params), xs, reference_gate)
    wrap = Frame if frame else list
    for batch in (1, 7, 256):
        det = _build(name, params)
        gate = (_BatchGate if gated == "batch" else _Gate)(threshold) if gated else None
        got = np.concatenate([det.process_many(wrap(xs[i : i + batch]), gate) for i in range(0, len(xs), batch)])
        np.testing.assert_array_equal(got, expected, err_msg=f"batch size {batch}")
        if gate is not None:
            assert gate.calls == len(xs), "the gate must be called exactly once per event"


@pytest.mark.parametrize("name,params", CASES)
def test_ranks_obvious_outliers_above_chance(name, params):
    _opt_out(name, "roc_auc")
    det = _build(name, params)
    xs, y = _stream(1500, seed=11)
    scores = det.process_many(xs)
    assert _roc_auc(y[300:], scores[300:]) >= 0.5
