"""The detector contract.

A detector is a small river-style estimator: its constructor arguments are its whole configuration, it is
cloned with :meth:`clone` and checkpointed with :mod:`pickle`, and it takes plain ``dict[str, float]`` feature
vectors. Higher raw scores mean more anomalous; the raw scale is the detector's own business, because the
ensemble calibrates every detector's raw scores online into tail probabilities.

Prequential order is the rule: an event is scored by a model that has not seen it, and learned from only if
the caller's gate lets it (the ensemble refuses to learn from events its calibrated score puts in the tail,
like river's ``AnomalyFilter(protect_anomaly_detector=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, overload

import numpy as np
from river import base

__all__ = ["Detector", "Features", "Frame", "Gate", "ask_gate"]

Features = dict[str, float]
#: Called once per event, in order, with that event's raw score; returns True when the detector may learn it.
Gate = Callable[[float], bool]


def ask_gate(gate: Gate, scores: np.ndarray, stop: np.ndarray | None = None) -> np.ndarray:
    """Ask ``gate`` whether the detector may learn each of ``scores``, in order, as a loop of ``gate(s)`` calls
    would, stopping right after the first refused score whose ``stop`` flag is set.

    A vectorised :meth:`Detector.process_many` calls it with the raw scores of a run of events it has scored;
    the ensemble's gate turns each score into a tail probability on the way, so every score must be asked
    once, in order.

    Parameters
    ----------
    gate
        The learning gate. A gate object may answer a whole run at once through a ``many(scores, stop)`` method
        with exactly these semantics (the ensemble's calibrating gate does, with numpy); a plain callable is
        called score by score.
    scores
        Raw scores, in event order.
    stop
        Per score, whether a refusal must end the run (the detector's state for the next events depends on it,
        as when HST's refused row would have moved its min-max scaler); ``None``: ask every score.

    Returns
    -------
    np.ndarray
        The answers (``True``: learn), one per score asked: all of ``scores``, or the prefix ending at the
        first refused score flagged to stop.

    >>> ask_gate(lambda s: s < 0.5, np.array([0.1, 0.9, 0.2, 0.7]), stop=np.array([False, False, False, True]))
    array([ True, False,  True, False])
    >>> ask_gate(lambda s: s < 0.5, np.array([0.1, 0.9, 0.2]), stop=np.array([False, True, False]))
    array([ True, False])
    """
    many = getattr(gate, "many", None)
    if many is not None:
        return many(scores, stop)
    out = []
    flags = stop.tolist() if stop is not None else None
    for i, s in enumerate(scores.tolist()):
        ok = bool(gate(s))
        out.append(ok)
        if not ok and flags is not None and flags[i]:
            break
    return np.array(out, dtype=bool)


class Frame(Sequence[Features]):
    """One micro-batch of feature vectors: the list of dicts, and the same values as a float matrix built once
    for every detector that wants one.

    A ``Frame`` has its rows (:attr:`rows`, plain ``dict[str, float]``) and is a read-only sequence of them, so
    a detector that does not know frames takes it as any ``Sequence[Features]`` (``len``, indexing, iteration;
    a slice is a plain list). The vectorised detectors (HST, z-score, rules) ask :meth:`columns` for the
    features they track instead of each reading the dicts again: the matrix (:attr:`matrix`, over
    :attr:`names`) is built on the first such call and shared; column ``j`` of :meth:`columns` holds
    ``float(row[names[j]])``, ``NaN`` where a row lacks the key. The arrays are read-only (several detectors
    share them).

    >>> f = Frame([{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 4.0}])
    >>> len(f), f[1], f.names
    (2, {'a': 3.0, 'c': 4.0}, ('a', 'b', 'c'))
    >>> f.columns(["c", "a", "zz"]).tolist()
    [[nan, 1.0, nan], [4.0, 3.0, nan]]
    >>> f.has_keys_outside({"a", "b"}).tolist()
    [False, True]
    """

    __slots__ = ("rows", "_names", "_index", "_matrix", "_uniform", "_cache")

    def __init__(self, rows: Iterable[Features] = ()) -> None:
        self.rows: list[Features] = list(rows)
        self._matrix: np.ndarray | None = None
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> Features: ...

    @overload
    def __getitem__(self, i: slice) -> list[Features]: ...

    def __getitem__(self, i: int | slice) -> Features | list[Features]:
        return self.rows[i]

    def __iter__(self) -> Iterator[Features]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"Frame({len(self.rows)} rows)"

    def __reduce__(self) -> Any:
        return (Frame, (self.rows,))

    def _build(self) -> np.ndarray:
        rows = self.rows
        n = len(rows)
        names: tuple[str, ...] = tuple(rows[0]) if n else ()
        k = len(names)
        m = None
        # The common case: every row has the first row's keys (one feature extractor, one event type).
        # Equal lengths plus an itemgetter that finds every key means exactly the same keys.
        if k and all(len(x) == k for x in rows):
            get = itemgetter(*names) if k > 1 else (lambda x, g=itemgetter(names[0]): (g(x),))
            try:
                m = np.fromiter(chain.from_iterable(map(get, rows)), dtype=np.float64, count=n * k).reshape(n, k)
            except KeyError:
                m = None
        self._uniform = m is not None
        if m is None:
            names = tuple(dict.fromkeys(chain.from_iterable(rows)))
            index = {f: j for j, f in enumerate(names)}
            m = np.full((n, len(names)), math.nan)
            for i, x in enumerate(rows):
                if x:
                    m[i, [index[f] for f in x]] = np.fromiter(x.values(), dtype=np.float64, count=len(x))
        m.setflags(write=False)
        self._names = names
        self._index = {f: j for j, f in enumerate(names)}
        self._matrix = m
        return m

    @property
    def names(self) -> tuple[str, ...]:
        """Every key of any row, in order of first appearance: the columns of :attr:`matrix`."""
        if self._matrix is None:
            self._build()
        return self._names

    @property
    def matrix(self) -> np.ndarray:
        """All the rows over :attr:`names`, shape ``(len(self), len(names))``, ``NaN`` where a row lacks a key."""
        return self._matrix if self._matrix is not None else self._build()

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The rows over ``names``: shape ``(len(self), len(names))``, ``NaN`` where a row lacks a name."""
        key = tuple(names)
        got = self._cache.get(key)
        if got is not None:
            return got
        m = self._matrix if self._matrix is not None else self._build()
        index = self._index
        if key == self._names:
            out = m
        elif all(f in index for f in key):
            out = m[:, [index[f] for f in key]]
        else:
            out = np.full((len(self.rows), len(key)), math.nan)
            pos = [j for j, f in enumerate(key) if f in index]
            if pos:
                out[:, pos] = m[:, [index[key[j]] for j in pos]]
        out.setflags(write=False)
        self._cache[key] = out
        return out

    def has_keys_outside(self, known: Collection[str]) -> np.ndarray:
        """Per row, whether it has a key not in ``known``."""
        if self._matrix is None:
            self._build()
        if self._uniform:
            return np.full(len(self.rows), any(f not in known for f in self._names), dtype=bool)
        return np.fromiter((any(f not in known for f in x) for x in self.rows), dtype=bool, count=len(self.rows))


class Detector(base.Base):
    """Base class of riskstream detectors (river's ``Base`` gives ``clone``, ``_get_params`` and ``repr``)."""

    #: Whether scores are probabilities of fraud in [0, 1] (a supervised model): with the ensemble's
    #: ``risk = "evidence"`` they enter the evidence as ``-ln(1 - P)`` instead of through a rank calibration.
    probabilistic = False

    #: Whether scores are root-mean-square z-scores (unit-free, ~N(0, 1) per feature on normal traffic): the
    #: ensemble can then read them on their own scale (``[ensemble.calibration] <name> = "gaussian"``) instead
    #: of ranking them.
    z_scale = False

    def score_one(self, x: Features) -> float:
        """Raw anomaly score of ``x``; pure: it changes neither ``x`` nor the model. Finite, even cold."""
        raise NotImplementedError

    def learn_one(self, x: Features) -> None:
        """Update the model with ``x``."""
        raise NotImplementedError

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        """The features that push ``x``'s score up most, as ``(name, contribution)``, largest first."""
        return []

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        """Score each ``x`` in order, then learn it if ``gate(score)`` allows (always, without a gate).

        Must return exactly what the loop below returns, whatever the batch size; a subclass overrides it only
        with a faster version proven equal (see ``tests/detectors/test_conformance.py``).
        """
        out = np.empty(len(xs), dtype=np.float64)
        for i, x in enumerate(xs):
            s = self.score_one(x)
            out[i] = s
            if gate is None or gate(s):
                self.learn_one(x)
        return out

    def learn_label(self, x: Features, y: int) -> None:
        """Learn from a delayed ground-truth label. Unsupervised detectors ignore it."""
        return None

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {}
