"""The supervised detector: learns only from labels, cold-starts at 0.0, separates frauds, pickles."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
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


@pytest.mark.parametrize("model", ["logreg", "forest", "both", "boosting"])
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


def test_boosting_refits_on_schedule_and_stays_fixed_between_refits() -> None:
    det = Supervised(model="boosting", warmup=5, refit_every=300, seed=4)
    boost = det._models["boosting"]
    data = _data(2000, 5)
    probe = [x for x, _ in _data(50, 6)]
    fits: list[int] = []
    ready_at = None
    scores_at_fit = None
    for x, y in data:
        before = boost.refits
        det.learn_label(x, y)
        if ready_at is None and det.ready:
            ready_at = boost.labels
        if boost.refits != before:
            fits.append(boost.labels)
            scores_at_fit = det.process_many(probe)
        elif scores_at_fit is not None:
            # between refits, labels are stored but the model does not move
            np.testing.assert_array_equal(det.process_many(probe), scores_at_fit)
    assert fits[0] == ready_at  # the first fit comes the moment both classes reached the warm-up
    gaps = np.diff(fits)
    assert all(g == min(300, f) for g, f in zip(gaps, fits[:-1], strict=False))  # doubling, then every 300
    assert fits[-1] + 300 > len(data)


def test_boosting_keeps_every_fraud_a_share_of_legit_and_at_most_max_rows() -> None:
    det = Supervised(model="boosting", warmup=2, refit_every=10_000, max_rows=400, legit_keep=0.25, seed=1)
    boost = det._models["boosting"]
    data = _data(3000, 7)
    for x, y in data:
        det.learn_label(x, y)
    legit, fraud = boost._rings
    n_fraud = sum(y for _, y in data)
    assert fraud.n == n_fraud  # every fraud kept
    assert 0.2 * (3000 - n_fraud) < legit.n < 0.3 * (3000 - n_fraud)
    assert len(legit.view()) == 400 and len(legit.rows) == 400  # the ring never outgrows max_rows
    assert boost.names == ["amount", "noise", "risk"]


def test_boosting_scores_batches_like_single_events_and_pickles() -> None:
    det = Supervised(model="boosting", warmup=5, refit_every=200, seed=2)
    for x, y in _data(1200, 8):
        det.learn_label(x, y)
    xs = [x for x, _ in _data(40, 9)]
    batch = det.process_many(xs)
    np.testing.assert_array_equal(batch, [det.score_one(x) for x in xs])
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.process_many(xs), batch)
    with pytest.raises(ValueError, match="legit_keep"):
        Supervised(model="boosting", legit_keep=0.0)
    with pytest.raises(ValueError, match="refit_every"):
        Supervised(model="boosting", refit_every=0)
