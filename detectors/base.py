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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from river import base

__all__ = ["Detector", "Features", "Gate"]

Features = dict[str, float]
#: Called once per event, in order, with that event's raw score; returns True when the detector may learn it.
Gate = Callable[[float], bool]


class Detector(base.Base):
    """Base class of riskstream detectors (river's ``Base`` gives ``clone``, ``_get_params`` and ``repr``)."""

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
