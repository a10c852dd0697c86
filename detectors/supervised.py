"""Online supervised learning from delayed labels: P(fraud) from river learners trained on label events only.

:class:`Supervised` is a detector whose ``learn_one`` does nothing: it learns only through
:meth:`Supervised.learn_label`, which the engine calls when a label event arrives and is joined to the feature
vector its event was scored with. So it never sees a label the system could not have known at that moment in
event time, and its score does not depend on how the unlabelled stream is batched (``process_many`` is trivially
exact).

Models (``model``):

- ``"logreg"``: ``StandardScaler | LogisticRegression`` (river), the handbook's first baseline, online;
- ``"forest"``: river's adaptive random forest (``forest.ARFClassifier``), the tree ensemble;
- ``"both"`` (default): the mean of the two probabilities.

Fraud is rare (about 1 in 100 to 1 in 600), so every model sits inside river's ``RandomUnderSampler``, which
keeps all frauds and a random share of the legitimate events (``desired_dist`` = ``{0: 1 - pos_share,
1: pos_share}``): training is cheaper and the learners are not swamped by the majority class. Probabilities are
then biased upwards, which does not matter: the ensemble ranks scores, it does not read them as probabilities.

Until ``warmup`` labels of each class arrived the score is 0.0 (the prior of "nothing known"), so the
unsupervised detectors carry the ensemble on a cold start.

>>> import random
>>> rng = random.Random(1)
>>> det = Supervised(model="logreg", warmup=5, seed=1)
>>> det.score_one({"amount": 500.0})
0.0
>>> for _ in range(400):
...     y = int(rng.random() < 0.1)
...     det.learn_label({"amount": rng.gauss(300 if y else 50, 20), "noise": rng.random()}, y)
>>> det.score_one({"amount": 320.0, "noise": 0.5}) > 0.5 > det.score_one({"amount": 45.0, "noise": 0.5})
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from river import compose, forest, imblearn, linear_model, optim, preprocessing

from detectors.base import Detector, Features
from detectors.registry import register

__all__ = ["Supervised"]

_MODELS = ("logreg", "forest", "both")
_CLIP = 1e9


def _value(x: Features, name: str) -> float:
    v = x.get(name, 0.0)
    if v is None:
        return 0.0
    v = float(v)
    return v if math.isfinite(v) else 0.0


@register("supervised")
class Supervised(Detector):
    """P(fraud) from online learners trained on delayed labels.

    Parameters
    ----------
    model
        ``"logreg"``, ``"forest"`` or ``"both"`` (mean of the two probabilities).
    features
        Names of the features the learners read (``[]``: every feature of the vector). A name ``"a/b"`` is the
        ratio of features ``a`` and ``b`` (0 where ``b`` is 0), e.g. ``"user_amount_168h/user_orders_168h"``,
        the customer's mean amount over a week, which a linear model cannot form from the sum and the count.
    pos_share
        Share of frauds in the training sample the under-sampler aims for (in (0, 1)).
    warmup
        Labels of each class needed before the score leaves its 0.0 prior.
    n_models
        Trees of the forest.
    lr
        Learning rate of the logistic regression (SGD).
    seed
        Seed of the under-sampler and the forest.
    """

    probabilistic = True
    _ratios: dict[str, tuple[str, str]] = {}  # class default: instances pickled before ratios existed had none

    def __init__(
        self,
        model: str = "both",
        features: Sequence[str] = (),
        pos_share: float = 0.2,
        warmup: int = 20,
        n_models: int = 10,
        lr: float = 0.01,
        seed: int = 42,
    ) -> None:
        if model not in _MODELS:
            raise ValueError(f"model must be one of {', '.join(_MODELS)}, not {model!r}")
        if not (isinstance(pos_share, int | float) and 0 < pos_share < 1):
            raise ValueError(f"pos_share must be in (0, 1), got {pos_share!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an integer >= 1, got {warmup!r}")
        if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
        self.model = model
        self.features = list(features)
        self._ratios: dict[str, tuple[str, str]] = {}
        for name in self.features:
            if "/" in name:
                num, _, den = name.partition("/")
                if not num or not den or "/" in den:
                    raise ValueError(f"feature {name!r}: a ratio is 'numerator/denominator' (two feature names)")
                self._ratios[name] = (num, den)
        self.pos_share = float(pos_share)
        self.warmup = warmup
        self.n_models = n_models
        self.lr = float(lr)
        self.seed = seed
        dist = {0: 1.0 - self.pos_share, 1: self.pos_share}
        self._models: dict[str, Any] = {}
        if model in ("logreg", "both"):
            pipe: Any = compose.Pipeline(preprocessing.StandardScaler(),
                                         linear_model.LogisticRegression(optimizer=optim.SGD(self.lr)))
            self._models["logreg"] = imblearn.RandomUnderSampler(pipe, desired_dist=dist, seed=seed)
        if model in ("forest", "both"):
            self._models["forest"] = imblearn.RandomUnderSampler(
                forest.ARFClassifier(n_models=n_models, seed=seed), desired_dist=dist, seed=seed)
        self.counts = [0, 0]

    @property
    def ready(self) -> bool:
        """Whether enough labels of both classes arrived for the score to mean something."""
        return min(self.counts) >= self.warmup

    def _x(self, x: Features) -> dict[str, float]:
        names = self.features or x.keys()
        ratios = self._ratios
        out = {}
        for k in names:
            if k in ratios:
                num, den = ratios[k]
                d = _value(x, den)
                v = _value(x, num) / d if d else 0.0
            else:
                v = _value(x, k)
            out[k] = min(max(v, -_CLIP), _CLIP) if math.isfinite(v) else 0.0
        return out

    def score_one(self, x: Features) -> float:
        if not self.ready:
            return 0.0
        z = self._x(x)
        total = 0.0
        for m in self._models.values():
            p = m.predict_proba_one(z).get(1, 0.0)
            total += p if math.isfinite(p) else 0.0
        return total / len(self._models)

    def learn_one(self, x: Features) -> None:
        """No-op: this detector learns from labels only (:meth:`learn_label`)."""
        return None

    def learn_label(self, x: Features, y: int) -> None:
        y = 1 if y else 0
        self.counts[y] += 1
        z = self._x(x)
        for m in self._models.values():
            m.learn_one(z, y)

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        """For the logistic regression: ``|weight * scaled value|`` of the features pushing towards fraud."""
        m = self._models.get("logreg")
        if m is None or not self.ready:
            return []
        pipe = m.classifier
        scaler, lr = pipe.steps["StandardScaler"], pipe.steps["LogisticRegression"]
        zs = scaler.transform_one(self._x(x))
        contrib = [(k, lr.weights.get(k, 0.0) * v) for k, v in zs.items()]
        contrib = [(k, c) for k, c in contrib if c > 0 and math.isfinite(c)]
        contrib.sort(key=lambda t: (-t[1], t[0]))
        return contrib[:top]

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"model": "logreg"}
        yield {"model": "both", "n_models": 3, "warmup": 2}
