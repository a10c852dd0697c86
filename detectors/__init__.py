"""Scoring: river-based unsupervised detectors, rules, calibration and the ensemble.

Importing the package registers the built-in detectors (``hst``, ``zscore``, ``coldstart``, ``rules``, ``rate``,
``supervised``, ``autoencoder``):
``available()`` lists them and ``build(name, params)`` makes one.
"""

from detectors import coldstart, hst, neural, rate, rules, supervised, zscore  # noqa: F401  (registers the built-ins)
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
