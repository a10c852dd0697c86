"""HalfSpaceTrees gives exactly river's scores at any batch split; its extensions behave as documented."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from river import anomaly, compose, preprocessing

from detectors.hst import HalfSpaceTrees, build_trees


def _stream(n: int, n_features: int, seed: int) -> list[dict[str, float]]:
    """Skewed, drifting features with occasional new extremes (so the min-max scaler keeps moving)."""
    rng = random.Random(seed)
    xs = []
    for i in range(n):
        x = {f"v{j}": rng.gauss(j * 0.1 * (1 + i / n), 1 + j % 3) for j in range(n_features)}
        x["amount"] = rng.lognormvariate(3, 1)
        if i % 97 == 50:
            x[f"v{i % n_features}"] *= 8
        xs.append(x)
    return xs


def _river(n_trees: int, height: int, window: int, seed: int) -> compose.Pipeline:
    return compose.Pipeline(
        preprocessing.MinMaxScaler(),
        anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=seed),
    )


def _river_scores(model: compose.Pipeline, xs, gate=None) -> np.ndarray:
    out = []
    for x in xs:
        s = model.score_one(x)
        out.append(s)
        if gate is None or gate(s):
            model.learn_one(x)
    return np.array(out, dtype=np.float64)


def _walk(node, d, k, feat, thr, names, t, height):
    if d == height:
        return
    assert names[feat[d][t * 2**d + k]] == node.feature
    assert thr[d][t * 2**d + k] == node.threshold
    _walk(node.children[0], d + 1, 2 * k, feat, thr, names, t, height)
    _walk(node.children[1], d + 1, 2 * k + 1, feat, thr, names, t, height)


@pytest.mark.parametrize("n_trees,height,n_features,seed", [(3, 6, 5, 42), (2, 11, 29, 1), (4, 4, 1, 7)])
def test_trees_are_rivers_trees(n_trees, height, n_features, seed):
    names = sorted(f"x{j}" for j in range(n_features))
    ref = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, seed=seed)
    ref.learn_one({n: 0.5 for n in names})
    feat, thr = build_trees(n_features, n_trees, height, seed)
    for t in range(n_trees):
        _walk(ref.trees[t], 0, 0, feat, thr, names, t, height)


@pytest.mark.parametrize("n_trees,height,window", [(5, 8, 50), (10, 8, 250), (3, 12, 30)])
def test_scores_equal_rivers_pipeline_at_any_batch_size(n_trees, height, window):
    xs = _stream(1000, 7, seed=window)
    expected = _river_scores(_river(n_trees, height, window, 42), xs)
    assert (expected > 0).any()
    for batch in (1, 7, 64, 1000):
        det = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=42)
        got = np.concatenate([det.process_many(xs[i : i + batch]) for i in range(0, len(xs), batch)])
        np.testing.assert_array_equal(got, expected, err_msg=f"batch {batch}")
    det = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window, seed=42)
    loop = []
    for x in xs:
        loop.append(det.score_one(x))
        det.learn_one(x)
    np.testing.assert_array_equal(np.array(loop), expected)


def test_gated_learning_equals_rivers_gated_loop():
    """Refusing the highest scores (which often carry new minima/maxima) must not break exactness."""
    xs = _stream(1200, 5, seed=3)
    threshold = float(np.quantile(_river_scores(_river(6, 9, 60, 5), xs), 0.9))
    expected = _river_scores(_river(6, 9, 60, 5), xs, lambda s: s <= threshold)
    for batch in (1, 13, 500):
        det = HalfSpaceTrees(n_trees=6, height=9, window_size=60, seed=5)
        gate = lambda s: s <= threshold  # noqa: E731
        got = np.concatenate([det.process_many(xs[i : i + batch], gate) for i in range(0, len(xs), batch)])
        np.testing.assert_array_equal(got, expected, err_msg=f"batch {batch}")


def test_feature_subset_equals_river_on_those_features():
    xs = _stream(800, 6, seed=11)
    keep = ["v4", "amount", "v1"]
    expected = _river_scores(_river(4, 7, 40, 9), [{k: x[k] for k in keep} for x in xs])
    det = HalfSpaceTrees(n_trees=4, height=7, window_size=40, seed=9, features=keep)
    np.testing.assert_array_equal(det.process_many(xs), expected)


def test_scores_are_zero_during_the_first_window_then_in_unit_interval():
    det = HalfSpaceTrees(n_trees=5, height=6, window_size=100, seed=1)
    xs = _stream(400, 4, seed=2)
    scores = det.process_many(xs)
    assert (scores[:100] == 0).all()
    assert ((scores[100:] > 0) & (scores[100:] <= 1)).all()


def test_missing_feature_follows_the_reference_mass():
    """A missing feature goes where most of the reference window went: it looks typical, not anomalous."""
    rng = random.Random(4)
    det = HalfSpaceTrees(n_trees=15, height=8, window_size=200, seed=3)
    det.process_many([{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)} for _ in range(1000)])
    typical = det.score_one({"a": 0.0, "b": 0.0})
    missing = det.score_one({"a": 0.0})
    extreme = det.score_one({"a": 0.0, "b": 4.5})
    assert missing < extreme
    assert abs(missing - typical) < abs(extreme - typical)
    assert det.score_one({"a": 0.0, "b": math.nan}) == missing


def test_trees_track_every_feature_of_the_first_window():
    """A feature the first events lack but later first-window events carry is split on; one first seen after the
    first window is not."""
    rng = random.Random(6)
    xs = [{"a": rng.gauss(0, 1)} for _ in range(5)]
    xs += [{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)} for _ in range(395)]
    det = HalfSpaceTrees(n_trees=10, height=8, window_size=50, seed=2)
    scores = det.process_many(xs)
    assert det._names == ["a", "b"]
    assert (scores[:50] == 0).all() and (scores[50:] > 0).all()
    assert det.score_one({"a": 0.0, "b": 6.0}) > det.score_one({"a": 0.0, "b": 0.0})
    assert det.score_one({"a": 0.0, "b": 0.0, "c": 1e9}) == det.score_one({"a": 0.0, "b": 0.0})


def test_new_features_after_the_first_learn_are_ignored():
    det = HalfSpaceTrees(n_trees=4, height=6, window_size=20, seed=1)
    xs = _stream(200, 3, seed=5)
    det.process_many(xs)
    x = dict(xs[-1])
    assert det.score_one({**x, "brand_new": 1e9}) == det.score_one(x)


def test_explain_names_the_isolating_feature():
    rng = random.Random(8)
    det = HalfSpaceTrees(n_trees=20, height=8, window_size=200, seed=2)
    det.process_many([{f"f{j}": rng.gauss(0, 1) for j in range(5)} for _ in range(1200)])
    x = {"f0": 0.1, "f1": -0.2, "f2": 0.0, "f3": 9.0, "f4": 0.3}
    top = det.explain(x, top=2)
    assert top[0][0] == "f3"
    assert top[0][1] > 0 and len(top) <= 2
    assert "f3" in det.describe(x, "f3")


def test_invalid_parameters_are_rejected():
    for bad in ({"n_trees": 0}, {"height": 0}, {"window_size": 1.5}, {"features": []}, {"height": 19}):
        with pytest.raises(ValueError):
            HalfSpaceTrees(**bad)


def test_a_pickle_from_before_the_first_window_buffer_loads_and_continues():
    xs = _stream(600, 3, seed=8)
    det = HalfSpaceTrees(n_trees=4, height=6, window_size=50, seed=2)
    det.process_many(xs[:300])
    state = pickle.loads(pickle.dumps(det)).__getstate__()  # a copy: nothing shared with det
    del state["_pending"]  # what an older checkpoint holds (its trees were built at the first learned event)
    old = HalfSpaceTrees.__new__(HalfSpaceTrees)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.process_many(xs[300:]), det.process_many(xs[300:]))
