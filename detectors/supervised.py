"""Online supervised learning from delayed labels: P(fraud) from river learners trained on label events only.

:class:`Supervised` is a detector whose ``learn_one`` does nothing: it learns only through
:meth:`Supervised.learn_label`, which the engine calls when a label event arrives and is joined to the feature
vector its event was scored with. So it never sees a label the system could not have known at that moment in
event time, and its score does not depend on how the unlabelled stream is batched (``process_many`` is trivially
exact).

Models (``model``):

- ``"logreg"``: ``StandardScaler | LogisticRegression`` (river), the handbook's first baseline, online;
- ``"forest"``: river's adaptive random forest (``forest.ARFClassifier``), the tree ensemble;
- ``"both"`` (default): the mean of the two probabilities;
- ``"mlp"``: a small ``tanh`` network in numpy (:class:`detectors.neural.MLPClassifier`) trained online with Adam
  on class-balanced replay of the newest ``max_rows`` labelled rows of each class (one step every 4 labels, a
  minibatch of 64 drawn half from the frauds, half from the legitimate events, seeded); no under-sampler;
- ``"boosting"``: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``) refit from scratch
  on the labelled vectors kept so far, when the learner becomes ready and then every ``refit_every`` labels
  (sooner while the labels are few: whenever their number doubled). Labels still arrive one at a time and
  nothing is learnt before its label arrives; the model between two refits is fixed. It keeps every fraud and a
  ``legit_keep`` share of the legitimate events (at least as many as frauds), the newest ``max_rows`` of each, in
  a float32 ring, so its memory is bounded (``2 * max_rows * len(features) * 4`` bytes). Online trees grow one
  split at a time from a few hundred examples; refitting on everything kept reads the same labels far better
  (handbook test week AP 0.69 against the adaptive random forest's 0.54, see ``bench/handbook/README.md``).

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
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import compose, forest, imblearn, linear_model, optim, preprocessing

from detectors.base import Detector, Features, ask_gate
from detectors.neural import MLPClassifier, _sizes
from detectors.registry import register

__all__ = ["Supervised"]

_MODELS = ("logreg", "forest", "both", "boosting", "mlp")
_CLIP = 1e9


class _Ring:
    """The newest ``cap`` rows of one class, as a float32 matrix that fills up, then wraps."""

    def __init__(self, cap: int, width: int) -> None:
        self.rows = np.zeros((min(cap, 1024), width), dtype=np.float32)
        self.cap = cap
        self.n = 0  # rows ever added

    def add(self, row: np.ndarray) -> None:
        i = self.n % self.cap
        if i >= len(self.rows):  # grow geometrically up to cap: a short stream does not pay for cap rows
            grown = np.zeros((min(self.cap, 2 * len(self.rows)), self.rows.shape[1]), dtype=np.float32)
            grown[: len(self.rows)] = self.rows
            self.rows = grown
        self.rows[i] = row
        self.n += 1

    def view(self) -> np.ndarray:
        return self.rows[: min(self.n, self.cap)]


class _Boosting:
    """Gradient-boosted trees refit on the kept labelled rows (see the module docstring, model ``"boosting"``)."""

    threads = 1  # class default for instances pickled before the attribute existed

    def __init__(self, names: Sequence[str], refit_every: int, max_rows: int, legit_keep: float, seed: int,
                 threads: int = 1) -> None:
        self.names = list(names)  # fixed at the first label when the detector reads every feature
        self.threads = threads
        self.refit_every = refit_every
        self.max_rows = max_rows
        self.legit_keep = legit_keep
        self.seed = seed
        self._rng = random.Random(seed)
        self._rings: list[_Ring] | None = None
        self.labels = 0  # labels seen
        self.fitted_at = 0  # labels seen at the last refit (0: never fitted)
        self.refits = 0
        self.model: Any = None

    def learn_one(self, z: dict[str, float], y: int) -> None:
        if not self.names:
            self.names = sorted(z)
        if self._rings is None:
            self._rings = [_Ring(self.max_rows, len(self.names)), _Ring(self.max_rows, len(self.names))]
        self.labels += 1
        legit, fraud = self._rings
        keep = self._rng.random() < self.legit_keep
        if y or keep or legit.n < fraud.n:
            (fraud if y else legit).add(self._row(z))

    def refit_if_due(self) -> None:
        """Refit when never fitted, or after ``refit_every`` labels (or as many as at the last refit, if fewer)."""
        if self.fitted_at and self.labels - self.fitted_at < min(self.refit_every, self.fitted_at):
            return
        from sklearn.ensemble import HistGradientBoostingClassifier  # heavy import, only for this model

        assert self._rings is not None
        legit, fraud = (r.view() for r in self._rings)
        if not len(legit) or not len(fraud):
            return
        x = np.concatenate([legit, fraud])
        y = np.concatenate([np.zeros(len(legit), dtype=np.int8), np.ones(len(fraud), dtype=np.int8)])
        with _threads(self.threads):
            self.model = HistGradientBoostingClassifier(random_state=self.seed).fit(x, y)
        self.fitted_at = self.labels
        self.refits += 1

    def _row(self, z: dict[str, float]) -> np.ndarray:
        return np.fromiter((z.get(k, 0.0) for k in self.names), dtype=np.float32, count=len(self.names))

    def predict_many(self, zs: Sequence[dict[str, float]]) -> np.ndarray:
        if self.model is None or not zs:
            return np.zeros(len(zs))
        x = np.stack([self._row(z) for z in zs])
        with _threads(self.threads):
            p = self.model.predict_proba(x)[:, 1]
        return np.where(np.isfinite(p), p, 0.0)


_CONTROLLER: Any = None


def _threads(n: int) -> Any:
    """Cap scikit-learn's OpenMP threads: one consumer process per core is the deployment this engine expects,
    and on small batches extra threads cost more than they save. One controller, made once scikit-learn's
    OpenMP runtime is loaded (``threadpool_limits`` would scan the loaded libraries on every call: ~1 ms)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the controller must see
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n, user_api="openmp")


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
        ``"logreg"``, ``"forest"``, ``"both"`` (mean of the two probabilities), ``"boosting"`` or ``"mlp"``.
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
        Learning rate of the logistic regression (SGD), and of the ``"mlp"`` network's Adam.
    seed
        Seed of the under-sampler and the forest.
    refit_every
        ``"boosting"``: labels between two refits, once the labels are many.
    max_rows
        ``"boosting"`` and ``"mlp"``: newest labelled rows kept per class.
    legit_keep
        ``"boosting"``: share of legitimate labels kept (every fraud is kept), in (0, 1].
    threads
        ``"boosting"``: OpenMP threads scikit-learn may use to fit and predict.
    hidden
        ``"mlp"``: widths of the network's ``tanh`` hidden layers.
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
        refit_every: int = 10_000,
        max_rows: int = 200_000,
        legit_keep: float = 0.2,
        threads: int = 1,
        hidden: Sequence[int] = (32, 16),
    ) -> None:
        if model not in _MODELS:
            raise ValueError(f"model must be one of {', '.join(_MODELS)}, not {model!r}")
        if not (isinstance(pos_share, int | float) and 0 < pos_share < 1):
            raise ValueError(f"pos_share must be in (0, 1), got {pos_share!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an integer >= 1, got {warmup!r}")
        if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
        for name, v in (("refit_every", refit_every), ("max_rows", max_rows), ("threads", threads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(legit_keep, int | float) and 0 < legit_keep <= 1):
            raise ValueError(f"legit_keep must be in (0, 1], got {legit_keep!r}")
        self.model = model
        self.features = list(features)
        self.refit_every = refit_every
        self.max_rows = max_rows
        self.legit_keep = float(legit_keep)
        self.threads = threads
        self.hidden = list(_sizes("hidden", hidden))
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
        if model == "boosting":
            self._models["boosting"] = _Boosting(self.features, refit_every, max_rows, self.legit_keep, seed,
                                                 threads)
        if model == "mlp":
            self._models["mlp"] = MLPClassifier(self.features, self.hidden, self.lr, max_rows, seed)
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
        return float(self._score_many([x])[0])

    def learn_one(self, x: Features) -> None:
        """No-op: this detector learns from labels only (:meth:`learn_label`)."""
        return None

    def process_many(self, xs: Sequence[Features], gate: Any = None) -> np.ndarray:
        """``[self.score_one(x) for x in xs]``, each score shown to ``gate`` (which may keep state) though nothing
        is learnt from unlabelled events; the boosted trees predict the whole batch in one call."""
        out = self._score_many(xs)
        if gate is not None and len(out):
            ask_gate(gate, out)
        return out

    def _score_many(self, xs: Sequence[Features]) -> np.ndarray:
        if not self.ready or not xs:
            return np.zeros(len(xs))
        zs = [self._x(x) for x in xs]
        total = np.zeros(len(zs))
        for m in self._models.values():
            if isinstance(m, _Boosting | MLPClassifier):
                total += m.predict_many(zs)
            else:
                for i, z in enumerate(zs):
                    p = m.predict_proba_one(z).get(1, 0.0)
                    total[i] += p if math.isfinite(p) else 0.0
        return total / len(self._models)

    def learn_label(self, x: Features, y: int) -> None:
        y = 1 if y else 0
        self.counts[y] += 1
        z = self._x(x)
        for m in self._models.values():
            m.learn_one(z, y)
        boost = self._models.get("boosting")
        if boost is not None and self.ready:
            boost.refit_if_due()

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        """For the logistic regression: ``|weight * scaled value|`` of the features pushing towards fraud; for the
        ``"mlp"`` network: gradient x standardised input of its logit."""
        mlp = self._models.get("mlp")
        if mlp is not None:
            return mlp.explain(self._x(x), top) if self.ready else []
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
        yield {"model": "boosting", "warmup": 2, "refit_every": 50}
        yield {"model": "mlp", "warmup": 2, "hidden": [8]}
