"""The detector conformance suite, for the built-in detectors and for yours.

Every detector riskstream runs must pass these checks; the built-ins' test (``tests/detectors/test_conformance.py``)
runs them, and a plug-in author runs them on their own class. Each check takes a *factory*, a callable that
returns a fresh detector with the configuration under test (a class whose defaults will do, or a lambda), and
raises ``AssertionError`` naming what failed:

================  ==================================================================================================
check             what it asserts
================  ==================================================================================================
``protocol``      the class follows the detector protocol (a ``Detector`` that implements ``score_one``/``learn_one``)
``pure``          ``score_one`` and ``explain`` change neither their input nor the model
``clone``         ``clone()`` gives an independent detector with the same parameters that scores as a fresh one
``pickle``        a pickled and unpickled detector (a checkpoint) continues exactly as the original
``ragged``        missing features, new features, ``NaN`` and ``{}`` give finite scores and explanations
``cold``          an untrained detector gives finite scores
``process_many``  ``process_many`` equals the score-then-learn loop at any batch split, with and without a gate,
                  on a list or a :class:`~detectors.base.Frame`
``roc_auc``       obvious outliers rank above ordinary events (ROC AUC >= 0.5)
================  ==================================================================================================

In one call::

    >>> from detectors.testing import check_detector
    >>> from detectors.zscore import RobustZScore
    >>> report = check_detector(RobustZScore, skip={"roc_auc": "a doctest that saves time"})
    >>> report["process_many"], report["roc_auc"]
    ('passed', 'skipped: a doctest that saves time')

or one pytest test per check::

    import pytest
    from detectors.testing import CHECKS, run_check

    @pytest.mark.parametrize("check", CHECKS)
    def test_conformance(check):
        run_check(check, lambda: MyDetector(q=0.99))

A check that cannot apply to a detector is skipped with a written reason (``skip={"roc_auc": "why"}``), never
silently.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from detectors.base import Detector, Frame
from detectors.registry import check_class

__all__ = ["CHECKS", "check_detector", "run_check", "check_protocol", "check_pure", "check_clone", "check_pickle",
           "check_ragged", "check_cold", "check_process_many", "check_roc_auc", "outlier_stream", "ragged"]

#: A callable that returns a fresh detector with the configuration under test.
Factory = Callable[[], Detector]
N_FEATURES = 6


def outlier_stream(n: int, seed: int, outlier_every: int = 40) -> tuple[list[dict[str, float]], np.ndarray]:
    """Correlated gaussian features f0..f5 and labels: every ``outlier_every``-th event past the 100th is an
    obvious outlier (label 1)."""
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


def ragged(xs: list[dict[str, float]], seed: int) -> list[dict[str, float]]:
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


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def _dumps(det: Detector) -> bytes:
    try:
        return pickle.dumps(det)
    except Exception as e:  # noqa: BLE001 - any pickling failure is the finding
        raise AssertionError(f"the detector does not pickle (checkpoints pickle it): {type(e).__name__}: {e}") from e


def _loop(det: Detector, xs: list[dict[str, float]], gate: Callable[[float], bool] | None = None) -> np.ndarray:
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


class _BatchGate(_Gate):
    """The same answers, also given a batch at a time through ``many`` (as the ensemble's gates answer)."""

    def many(self, scores: np.ndarray, stop: np.ndarray | None = None) -> np.ndarray:
        out = []
        for i, s in enumerate(scores.tolist()):
            out.append(self(s))
            if not out[-1] and stop is not None and stop[i]:
                break
        return np.array(out, dtype=bool)


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    pos = int(y.sum())
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


# -- the checks -------------------------------------------------------------------------------------------------


def check_protocol(factory: Factory) -> None:
    """The factory gives a :class:`~detectors.base.Detector` whose class implements ``score_one`` and
    ``learn_one`` (what a config's ``class`` is held to), and whose ``_get_params`` rebuilds it."""
    det = factory()
    try:
        check_class(type(det))
    except ValueError as e:
        raise AssertionError(str(e)) from None
    params = det._get_params()
    _require(isinstance(params, dict), "_get_params() must return a dict of the constructor's arguments")
    _require(type(det)(**params)._get_params() == params, "the class does not rebuild from its _get_params()")


def check_pure(factory: Factory) -> None:
    """``score_one`` and ``explain`` change neither their input nor the model, and score the same twice."""
    det = factory()
    xs, _ = outlier_stream(400, seed=1)
    det.process_many(xs)
    probes = ragged(outlier_stream(30, seed=2)[0], seed=3) + [{}, {"f0": 50.0, "f1": -50.0, "unknown": 1.0}]
    before = _dumps(det)
    for x in probes:
        x_before = dict(x)
        s1 = det.score_one(x)
        det.explain(x)
        s2 = det.score_one(x)
        _require(x == x_before, "score_one/explain mutated its input")
        _require(s1 == s2, f"score_one gave {s1} then {s2} for one input")
    _require(_dumps(det) == before, "score_one/explain changed the model")


def check_clone(factory: Factory) -> None:
    """A clone has the same parameters, starts fresh, and training it leaves the original alone."""
    det = factory()
    xs, _ = outlier_stream(500, seed=4)
    det.process_many(xs[:250])
    probe = xs[250:300]
    expected = np.array([det.score_one(x) for x in probe])
    clone = det.clone()
    _require(clone._get_params() == det._get_params(), "the clone's parameters differ")
    clone.process_many(xs[250:])
    got = np.array([det.score_one(x) for x in probe])
    np.testing.assert_array_equal(got, expected, err_msg="training the clone changed the original")
    fresh = factory()
    np.testing.assert_array_equal(_loop(clone.clone(), xs[:200]), _loop(fresh, xs[:200]),
                                  err_msg="a clone does not score as a fresh detector")


def check_pickle(factory: Factory) -> None:
    """A pickled detector (a checkpoint) continues exactly as the original."""
    det = factory()
    xs = ragged(outlier_stream(700, seed=5)[0], seed=6)
    det.process_many(xs[:333])
    twin = pickle.loads(_dumps(det))
    np.testing.assert_array_equal(det.process_many(xs[333:]), twin.process_many(xs[333:]),
                                  err_msg="the unpickled detector continues differently")
    probe = xs[:50]
    np.testing.assert_array_equal([det.score_one(x) for x in probe], [twin.score_one(x) for x in probe])


def check_ragged(factory: Factory) -> None:
    """Missing and new features, ``NaN`` and an empty vector give finite scores and explanations."""
    det = factory()
    xs = ragged(outlier_stream(600, seed=7)[0], seed=8)
    scores = det.process_many(xs)
    _require(bool(np.isfinite(scores).all()), "a score of a stream with missing and new features is not finite")
    for x in ({}, {"only_new": 1.0}, {"f0": 1.0}, {"f0": math.nan, "f1": 0.0}):
        _require(math.isfinite(det.score_one(x)), f"score_one({x}) is not finite")
        det.learn_one(x)
    _require(math.isfinite(det.score_one(xs[0])), "a score after learning odd vectors is not finite")
    for feature, contribution in det.explain(xs[-1]):
        _require(isinstance(feature, str) and math.isfinite(contribution),
                 f"explain() gave ({feature!r}, {contribution!r}); it must give (str, finite float) pairs")


def check_cold(factory: Factory) -> None:
    """An untrained detector gives finite scores and explanations."""
    for x in ({"f0": 1.0, "f1": -2.0}, {}, {"f0": 1e300}):
        det = factory()
        _require(math.isfinite(det.score_one(x)), f"cold score_one({x}) is not finite")
        _require(all(math.isfinite(c) for _, c in det.explain(x)), f"cold explain({x}) is not finite")
        det.learn_one(x)
        _require(math.isfinite(det.score_one(x)), f"score_one({x}) after learning it once is not finite")


def check_process_many(factory: Factory, *, gated: bool | str | None = None, ragged_features: bool | None = None,
                       frame: bool | None = None) -> None:
    """``process_many`` returns what the score-then-learn loop returns, at batch sizes 1, 7 and 256, and calls
    the gate once per event in order. Without arguments every variant runs: no gate, a gate called score by
    score (``gated=True``) and one answering batches (``gated="batch"``); a full and a ragged stream; a list
    and a :class:`~detectors.base.Frame`."""
    for g in ((False, True, "batch") if gated is None else (gated,)):
        for r in ((False, True) if ragged_features is None else (ragged_features,)):
            for f in ((False, True) if frame is None else (frame,)):
                _process_many_once(factory, g, r, f)


def _process_many_once(factory: Factory, gated: bool | str, ragged_features: bool, frame: bool) -> None:
    xs = outlier_stream(900, seed=9)[0]
    if ragged_features:
        xs = ragged(xs, seed=10)
    threshold = math.inf
    if gated:
        threshold = float(np.quantile(_loop(factory(), xs), 0.9))
    expected = _loop(factory(), xs, _Gate(threshold) if gated else None)
    wrap: Any = Frame if frame else list
    for batch in (1, 7, 256):
        det = factory()
        gate = (_BatchGate if gated == "batch" else _Gate)(threshold) if gated else None
        got = np.concatenate([det.process_many(wrap(xs[i : i + batch]), gate) for i in range(0, len(xs), batch)])
        np.testing.assert_array_equal(
            got, expected, err_msg=f"process_many differs from the loop at batch size {batch} (gate={gated!r}, "
                                   f"ragged={ragged_features}, frame={frame})")
        if gate is not None:
            _require(gate.calls == len(xs), f"the gate was called {gate.calls} times for {len(xs)} events")


def check_roc_auc(factory: Factory) -> None:
    """Obvious outliers rank above ordinary events (ROC AUC >= 0.5 after a 300-event warm-up)."""
    det = factory()
    xs, y = outlier_stream(1500, seed=11)
    scores = det.process_many(xs)
    auc = _roc_auc(y[300:], scores[300:])
    _require(auc >= 0.5, f"ROC AUC {auc:.3f} < 0.5 on obvious outliers")


#: Check name -> check, in the order :func:`check_detector` runs them.
_CHECKS: dict[str, Callable[[Factory], None]] = {
    "protocol": check_protocol,
    "pure": check_pure,
    "clone": check_clone,
    "pickle": check_pickle,
    "ragged": check_ragged,
    "cold": check_cold,
    "process_many": check_process_many,
    "roc_auc": check_roc_auc,
}
#: Every check's name.
CHECKS: tuple[str, ...] = tuple(_CHECKS)


def run_check(check: str, factory: Factory) -> None:
    """Run the check named ``check`` (one of :data:`CHECKS`) on detectors made by ``factory``."""
    try:
        fn = _CHECKS[check]
    except KeyError:
        raise ValueError(f"unknown check {check!r}; checks: {', '.join(CHECKS)}") from None
    fn(factory)


def check_detector(factory: Factory, *, skip: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run every check on detectors made by ``factory``; returns check -> ``"passed"`` or ``"skipped: <why>"``.

    ``skip`` maps a check that does not apply to the written reason why; the first failing check raises
    ``AssertionError`` with the check's name.
    """
    skip = dict(skip or {})
    unknown = set(skip) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s) to skip: {', '.join(sorted(unknown))}; checks: {', '.join(CHECKS)}")
    for check, why in skip.items():
        if not isinstance(why, str) or not why.strip():
            raise ValueError(f"skipping {check!r} needs a written reason")
    out: dict[str, str] = {}
    for check in CHECKS:
        if check in skip:
            out[check] = f"skipped: {skip[check]}"
            continue
        try:
            run_check(check, factory)
        except AssertionError as e:
            raise AssertionError(f"conformance check {check!r} failed: {e}") from e
        out[check] = "passed"
    return out
