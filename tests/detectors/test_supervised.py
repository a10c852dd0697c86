"""The supervised detector: learns only from labels, cold-starts at 0.0, separates frauds, pickles."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors import build
from detectors.supervised import Supervised


def _data(n: int, seed: int = 0) -> list[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = int(rng.random() < 0.05)
        x = {"amount": rng.gauss(250.0, 30.0) if y else rng.gauss(60.0, 25.0), "risk": float(y and rng.random() < 0.7),
             "noise": rng.random()}
        out.append((x, y))
    return out


def _auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("model", ["logreg", "forest", "both"])
def test_learns_from_labels_and_ranks_frauds_first(model: str) -> None:
    det = Supervised(model=model, warmup=10, n_models=3, seed=1)
    train, test = _data(1500, 1), _data(600, 2)
    assert det.score_one(test[0][0]) == 0.0  # prior before labels
    for x, _ in train:
        det.learn_one(x)  # unlabelled learning is a no-op
    assert not det.ready and det.score_one(test[0][0]) == 0.0
    for x, y in train:
        det.learn_label(x, y)
    scores = [(det.score_one(x), y) for x, y in test]
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s, _ in scores)
    auc = _auc([s for s, y in scores if y], [s for s, y in scores if not y])
    assert auc > 0.95


def test_scoring_is_pure_and_pickles() -> None:
    det = Supervised(model="both", warmup=5, n_models=2)
    for x, y in _data(500):
        det.learn_label(x, y)
    x = {"amount": 240.0, "risk": 1.0, "noise": 0.3}
    before = dict(x)
    s = det.score_one(x)
    assert det.score_one(x) == s and x == before
    again = pickle.loads(pickle.dumps(det))
    assert again.score_one(x) == s
    assert det.clone().score_one(x) == 0.0  # a clone starts empty


def test_features_selects_inputs_and_bad_values_stay_finite() -> None:
    det = Supervised(model="logreg", warmup=2, features=["amount"])
    for x, y in _data(300):
        det.learn_label({**x, "noise": float("nan")}, y)
    s = det.score_one({"amount": float("inf"), "other": 1e300})
    assert math.isfinite(s)
    assert [f for f, _ in det.explain({"amount": 300.0})] == ["amount"]


def test_registered_and_validated() -> None:
    assert isinstance(build("supervised", {"model": "logreg"}), Supervised)
    with pytest.raises(ValueError):
        build("supervised", {"model": "svm"})
    with pytest.raises(ValueError):
        Supervised(pos_share=1.5)


def test_ratio_features_let_a_linear_model_use_a_mean_it_cannot_form_from_sum_and_count() -> None:
    # fraud = an amount far above the customer's mean; sums and counts vary over a wide range, so the mean
    # (sum / count) carries the signal and neither the sum nor the count alone does
    rng = random.Random(3)

    def event() -> tuple[dict[str, float], int]:
        n = rng.randint(1, 40)
        mean = math.exp(rng.uniform(math.log(5.0), math.log(2000.0)))
        y = int(rng.random() < 0.1)
        amount = mean * (rng.uniform(4.0, 6.0) if y else rng.uniform(0.5, 1.5))
        return {"amount": amount, "sum": n * mean, "count": float(n)}, y

    data = [event() for _ in range(6000)]
    train, test = data[:4000], data[4000:]

    def auc_of(features: list[str]) -> float:
        det = Supervised(model="logreg", features=features, warmup=5, lr=0.05, seed=2)
        for x, y in train:
            det.learn_label(x, y)
        s = [(det.score_one(x), y) for x, y in test]
        return _auc([p for p, y in s if y], [p for p, y in s if not y])

    with_mean = auc_of(["amount", "sum/count", "amount/sum"])
    assert with_mean > 0.95
    without = auc_of(["amount", "sum", "count"])
    assert with_mean > without + 0.05, (with_mean, without)
    det = Supervised(model="logreg", features=["a/b"], warmup=1)
    assert det._x({"a": 3.0, "b": 2.0}) == {"a/b": 1.5}
    assert det._x({"a": 3.0, "b": 0.0}) == {"a/b": 0.0} == det._x({"a": 3.0})
    assert det._x({"a": float("nan"), "b": 2.0}) == {"a/b": 0.0}
    for bad in ("a/", "/b", "a/b/c"):
        with pytest.raises(ValueError, match="ratio"):
            Supervised(features=[bad])
