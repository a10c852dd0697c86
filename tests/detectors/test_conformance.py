"""One conformance suite for every registered detector (``registry.available()``), each with the parameter
sets its ``_unit_test_params`` yields. The checks live in :mod:`detectors.testing`, where a plug-in author runs
the same ones on their own detector (``tests/detectors/test_plugins.py`` runs them on the shipped example).

A detector that cannot satisfy a check opts out in ``OPT_OUTS`` with a written reason; the suite skips that
check for it and prints the reason.
"""

from __future__ import annotations

import copy

import pytest

from detectors import Detector, available, testing
from detectors.registry import REGISTRY

#: (detector name, check name) -> why the check does not apply. Empty: every built-in passes every check.
OPT_OUTS: dict[tuple[str, str], str] = {}

CASES = [
    pytest.param(name, params, id=f"{name}-{i}")
    for name in available()
    for i, params in enumerate(REGISTRY[name]._unit_test_params())
]


def _opt_out(name: str, check: str) -> None:
    reason = OPT_OUTS.get((name, check))
    if reason:
        pytest.skip(f"{name} opts out of {check}: {reason}")


def _factory(name: str, params: dict) -> testing.Factory:
    return lambda: REGISTRY[name](**copy.deepcopy(params))


def test_every_builtin_is_registered():
    assert {"hst", "zscore", "rules"} <= set(available())
    for name in available():
        assert issubclass(REGISTRY[name], Detector)
        assert list(REGISTRY[name]._unit_test_params()), f"{name} yields no _unit_test_params"


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("check", [c for c in testing.CHECKS if c != "process_many"])
def test_conformance(name, params, check):
    _opt_out(name, check)
    testing.run_check(check, _factory(name, params))


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("gated", [False, True, "batch"], ids=["no-gate", "gate", "batch-gate"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("frame", [False, True], ids=["list", "frame"])
def test_process_many_equals_the_loop(name, params, gated, ragged, frame):
    """Whatever the batch split, whether the batch comes as a list or as a Frame (the shared matrix) and
    whether the gate answers one score or a batch at a time."""
    _opt_out(name, "process_many")
    testing.check_process_many(_factory(name, params), gated=gated, ragged_features=ragged, frame=frame)


class Forgetful(Detector):
    """Scores by a counter that score_one advances: impure."""

    def __init__(self) -> None:
        self.n = 0

    def score_one(self, x):
        self.n += 1
        return float(self.n)

    def learn_one(self, x):
        pass


def test_a_check_that_fails_names_itself():
    with pytest.raises(AssertionError, match="conformance check 'pure' failed: score_one gave"):
        testing.check_detector(Forgetful)
    assert testing.check_detector(Forgetful, skip={c: "a test of the report" for c in testing.CHECKS}) == {
        c: "skipped: a test of the report" for c in testing.CHECKS}
    with pytest.raises(ValueError, match="written reason"):
        testing.check_detector(Forgetful, skip={"pure": ""})
