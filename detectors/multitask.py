"""Multi-task learning from delayed labels: one network shared by order risk and login risk.

Orders and logins are scored by separate ensembles (different feature spaces, different normal behaviour), and
a supervised learner in each learns from its own type's labels only. But the two tasks look at the same
entities through many of the same features: a login from a device and an IP the account never used and an
order shipped to a fresh address after such a login are one account takeover; an IP trying many accounts is
credential stuffing at login and card testing at checkout. :class:`MultiTask` lets each task learn from the
other's labels:

* **a shared feature encoder**: one input column per feature name, over the union of both types' features (a
  feature both vectors carry, such as ``user_devices_24h`` or ``ip_users_24h``, is one column and one set of
  input weights), then ``tanh`` layers (the *trunk*) that both tasks train;
* **two heads**: a small ``tanh`` network per event type from the trunk's output to the logit of P(fraud),
  trained on that type's labels only.

Each Adam step takes, for every task that has labels of both classes, a class-balanced minibatch drawn from
that task's replay rings (half frauds, half legitimate, seeded), and sums the tasks' binary cross-entropies:
the trunk gets the gradients of both, each head its own. A task with no labels yet still scores 0.0 (nothing
known), whatever the other learned.

The engine shares one model between the order and the login ensemble's ``multitask`` detectors (it calls
:meth:`MultiTask.join_tasks` after building them); a checkpoint pickles both ensembles at once, so the sharing
survives a restore. With ``shared = false`` each type keeps its own model of the same shape, trained on its own
labels: the two-separate-learners baseline the measurements compare against.

Like :class:`~detectors.supervised.Supervised`, it learns only from labels joined to the vector their event
was scored with, so ``process_many`` is trivially exact: the model changes only between batches (the engine
cuts batches at label events).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Frame, ask_gate
from detectors.neural import Net, RunningScaler, _positive, _positive_int, _sigmoid, _sizes, _symlog
from detectors.registry import register

__all__ = ["MultiTask", "SharedModel"]

_CLIP = 1e9


class SharedModel:
    """The network behind :class:`MultiTask`: an input index over feature names, a running scaler, the trunk,
    one head per task, and per task and class a ring of the newest ``max_rows`` labelled rows.

    Memory: the rings hold at most ``2 * max_rows * max_inputs * 4`` bytes per task (float32 rows, allocated as
    they fill); the weights and Adam's moments ``3 * sum(a * b + b)`` floats over the layer sizes.
    """

    def __init__(self, hidden: Sequence[int], head: Sequence[int], lr: float, max_inputs: int, max_rows: int,
                 step_every: int, batch: int, clip: float, seed: int) -> None:
        self.hidden = list(hidden)
        self.head = list(head)
        self.lr = lr
        self.max_inputs = max_inputs
        self.max_rows = max_rows
        self.step_every = step_every
        self.batch = batch
        self.clip = clip
        self.seed = seed
        self.index: dict[str, int] = {}  # feature name -> input column, in order of first labelled appearance
        self.names: list[str] = []
        self.scaler = RunningScaler(max_inputs, 1 << 62)
        self.trunk = Net([max_inputs, *self.hidden], lr, seed)
        self.heads: dict[str, Net] = {}
        self.rings: dict[str, list[Any]] = {}
        self.counts: dict[str, list[int]] = {}
        self.steps: dict[str, int] = {}
        self.labels = 0
        self._new: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)

    # -- rows ------------------------------------------------------------------------------------------------

    def _task(self, task: str) -> None:
        from detectors.supervised import _Ring

        if task not in self.heads:
            self.heads[task] = Net([self.hidden[-1], *self.head, 1], self.lr, self.seed + zlib.crc32(task.encode()))
            self.rings[task] = [_Ring(self.max_rows, self.max_inputs), _Ring(self.max_rows, self.max_inputs)]
            self.counts[task] = [0, 0]
            self.steps[task] = 0

    def rows(self, xs: Sequence[Features]) -> np.ndarray:
        """The vectors over the input columns, on the log scale; NaN where a vector lacks a feature (or carries a
        non-finite value), and in the columns no feature has taken yet."""
        out = np.full((len(xs), self.max_inputs), math.nan)
        k = len(self.names)
        if not k or not len(xs):
            return out
        if isinstance(xs, Frame):
            m = np.array(xs.columns(self.names), dtype=np.float64)
        else:
            index = self.index
            m = np.full((len(xs), k), math.nan)
            for i, x in enumerate(xs):
                for f, v in x.items():
                    j = index.get(f)
                    if j is not None and isinstance(v, int | float):
                        m[i, j] = v
        m[~np.isfinite(m)] = math.nan
        out[:, :k] = _symlog(np.clip(m, -_CLIP, _CLIP))
        return out

    def _inputs(self, rows: np.ndarray) -> np.ndarray:
        """Standardised, clipped inputs; a missing value and a column the scaler never saw enter as 0 (the mean)."""
        z = self.scaler.transform(rows, self.clip)
        return np.where(np.isnan(z) | (self.scaler.n == 0), 0.0, z)

    # -- learning --------------------------------------------------------------------------------------------

    def learn(self, task: str, x: Features, y: int) -> None:
        """One label of ``task``: index the vector's new features (while columns are free), keep the row in the
        task's ring of its class, and take an Adam step every ``step_every`` labels."""
        self._task(task)
        for f, v in x.items():
            if f not in self.index and len(self.names) < self.max_inputs and isinstance(v, int | float):
                self.index[f] = len(self.names)
                self.names.append(f)
        row = self.rows([x])[0]
        self.rings[task][y].add(row)
        self.counts[task][y] += 1
        self._new.append(row)
        self.labels += 1
        if self.labels % self.step_every == 0:
            self._step()

    def _step(self) -> None:
        # the scaler takes in the rows that arrived since the last step whether or not a task can train yet, so
        # they never pile up (a stream whose labels are all frauds would otherwise grow them without end)
        self.scaler.update(np.array(self._new))
        self._new = []
        ready = [t for t in sorted(self.heads) if all(r.n for r in self.rings[t])]
        if not ready:
            return
        half = self.batch // 2
        trunk_grads: list[np.ndarray] | None = None
        for task in ready:
            parts = []
            for ring in self.rings[task]:
                rows = ring.view()
                parts.append(rows[self._rng.integers(0, len(rows), size=half)])
            x = self._inputs(np.concatenate(parts).astype(np.float64))
            y = np.repeat([0.0, 1.0], half)[:, None]
            tacts = self.trunk.forward(x, exact=False)
            h = np.tanh(tacts[-1])
            head = self.heads[task]
            hacts = head.forward(h, exact=False)
            hgrads, dh = head.gradients(hacts, (_sigmoid(hacts[-1]) - y) / len(y))  # d BCE / d logit
            head.apply(hgrads)
            tg, _ = self.trunk.gradients(tacts, dh * (1.0 - h * h))
            trunk_grads = tg if trunk_grads is None else [a + b for a, b in zip(trunk_grads, tg, strict=True)]
            self.steps[task] += 1
        assert trunk_grads is not None
        self.trunk.apply(trunk_grads)

    # -- scoring ---------------------------------------------------------------------------------------------

    def trained(self, task: str, warmup: int) -> bool:
        return task in self.heads and min(self.counts[task]) >= warmup and self.steps[task] > 0

    def _forward(self, task: str, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        tacts = self.trunk.forward(self._inputs(rows))
        h = np.tanh(tacts[-1])
        return tacts, h, self.heads[task].forward(h)

    def predict(self, task: str, rows: np.ndarray) -> np.ndarray:
        p = _sigmoid(self._forward(task, rows)[2][-1][:, 0])
        return np.where(np.isfinite(p), p, 0.0)

    def explain(self, task: str, row: np.ndarray, top: int) -> list[tuple[str, float]]:
        """Gradient x input of the task's logit on the standardised features: the features pushing towards fraud."""
        tacts, h, hacts = self._forward(task, row[None, :])
        _, dh = self.heads[task].gradients(hacts, np.ones((1, 1)))
        _, dx = self.trunk.gradients(tacts, dh * (1.0 - h * h))
        contrib = (dx * tacts[0])[0]
        out = [(f, float(contrib[j])) for f, j in self.index.items() if contrib[j] > 0 and math.isfinite(contrib[j])]
        out.sort(key=lambda t: (-t[1], t[0]))
        return out[:top]


@register("multitask")
class MultiTask(Detector):
    """P(fraud) from a network whose trunk the order and the login learner share (see the module docstring).

    Parameters
    ----------
    hidden
        Widths of the shared trunk's ``tanh`` layers.
    head
        Widths of each task head's ``tanh`` layers (before its logit).
    shared
        ``True``: one model for both event types (multi-task); ``False``: one model per type, the same shape,
        each trained on its own type's labels (the baseline).
    lr
        Adam's learning rate.
    warmup
        Labels of each class a task needs before its score leaves the 0.0 prior.
    max_inputs
        Input columns: the first ``max_inputs`` feature names seen in labelled vectors take one each.
    max_rows
        Newest labelled rows kept per task and class for class-balanced replay.
    step_every
        Labels (of either task) between two Adam steps.
    batch
        Rows per task and step (half frauds, half legitimate).
    seed
        Seed of the initial weights and the replay draws.
    """

    probabilistic = True

    def __init__(self, hidden: Sequence[int] = (32,), head: Sequence[int] = (16,), shared: bool = True,
                 lr: float = 0.005, warmup: int = 20, max_inputs: int = 192, max_rows: int = 10_000,
                 step_every: int = 4, batch: int = 64, clip: float = 8.0, seed: int = 42) -> None:
        _sizes("hidden", hidden)
        _sizes("head", head)
        if not isinstance(shared, bool):
            raise ValueError(f"shared must be true or false, got {shared!r}")
        for name, v in (("warmup", warmup), ("max_inputs", max_inputs), ("max_rows", max_rows),
                        ("step_every", step_every)):
            _positive_int(name, v)
        _positive_int("batch", batch)
        if batch < 2:
            raise ValueError(f"batch must be at least 2 (half frauds, half legitimate), got {batch!r}")
        _positive("lr", lr)
        _positive("clip", clip)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.hidden = list(hidden)
        self.head = list(head)
        self.shared = shared
        self.lr = float(lr)
        self.warmup = warmup
        self.max_inputs = max_inputs
        self.max_rows = max_rows
        self.step_every = step_every
        self.batch = batch
        self.clip = float(clip)
        self.seed = seed
        #: The event type this detector scores (set by :meth:`join_tasks`; ``"default"`` on its own).
        self.task = "default"
        self.model = SharedModel(self.hidden, self.head, self.lr, max_inputs, max_rows, step_every, batch,
                                 self.clip, seed)

    def join_tasks(self, by_task: dict[str, MultiTask]) -> None:
        """Called by the engine with each event type's ``multitask`` detector (``{"order": ..., "login": ...}``):
        each scores its type; with ``shared``, all of them use this detector's model."""
        for task, det in by_task.items():
            det.task = task
            if self.shared:
                det.model = self.model

    @property
    def ready(self) -> bool:
        return self.model.trained(self.task, self.warmup)

    def score_one(self, x: Features) -> float:
        return float(self._score_many([x])[0])

    def learn_one(self, x: Features) -> None:
        """No-op: this detector learns from labels only (:meth:`learn_label`)."""
        return None

    def process_many(self, xs: Sequence[Features], gate: Any = None) -> np.ndarray:
        """``[self.score_one(x) for x in xs]``, each score shown to ``gate``; nothing is learnt from unlabelled
        events."""
        out = self._score_many(xs)
        if gate is not None and len(out):
            ask_gate(gate, out)
        return out

    def _score_many(self, xs: Sequence[Features]) -> np.ndarray:
        if not self.ready or not len(xs):
            return np.zeros(len(xs))
        return self.model.predict(self.task, self.model.rows(xs))

    def learn_label(self, x: Features, y: int) -> None:
        self.model.learn(self.task, x, 1 if y else 0)

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        if not self.ready:
            return []
        return self.model.explain(self.task, self.model.rows([x])[0], top)

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"warmup": 2, "hidden": [8], "head": [4], "max_inputs": 16}
        yield {"warmup": 3, "shared": False, "step_every": 2, "batch": 8}
