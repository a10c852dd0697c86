"""Scoring: river-based unsupervised detectors, rules, calibration and the ensemble."""

from detectors.base import Detector, Features, Gate
from detectors.registry import available, build, register

__all__ = ["Detector", "Features", "Gate", "available", "build", "register"]
