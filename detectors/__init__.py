"""Scoring: river-based unsupervised detectors, rules, calibration and the ensemble.

Importing the package registers the built-in detectors (``hst``, ``zscore``, ``coldstart``, ``rules``,
``priors``, ``rate``, ``supervised``, ``autoencoder``, ``multitask``):
``available()`` lists them and ``build(name, params)`` makes one.
"""

from detectors import (  # noqa: F401  (registers the built-ins)
    coldstart,
    hst,
    multitask,
    neural,
    priors,
    rate,
    rules,
    supervised,
    zscore,
)
from detectors.base import Detector, Features, Gate
from detectors.calibration import TailCalibrator
from detectors.ensemble import Ensemble, Verdicts
from detectors.registry import available, build, register

__all__ = [
    "Detector",
    "Ensemble",
    "Features",
    "Gate",
    "TailCalibrator",
    "Verdicts",
    "available",
    "build",
    "register",
]
