"""The text of alert reasons: numbers to a few significant digits, the statistics a detector measured against,
and a rule's own action only when it forces one."""

from __future__ import annotations

import pytest

from detectors.hst import HalfSpaceTrees
from detectors.rules import Rules
from detectors.text import number, number_keeping
from detectors.zscore import RobustZScore


@pytest.mark.parametrize("value, text", [
    (0.07111956018540594, "0.07112"), (0.21000000000000002, "0.21"), (6.0, "6"), (-3.0, "-3"), (242.5193, "242.5"),
    (5968.100000000001, "5968"), (1558.1524685687014, "1558"), (2592000.0, "2592000"), (3.2e-05, "3.2e-05"),
    (-0.0, "0"), (float("nan"), "nan"),
])
def test_numbers_keep_four_significant_digits_and_no_float_noise(value, text):
    assert number(value) == text


def test_a_rounded_clause_value_never_contradicts_its_clause():
    assert number(9.99996) == "10"
    assert number_keeping(9.99996, lambda v: v < 10) == "9.99996"
    assert number_keeping(10.00004, lambda v: v > 10) == "10.00004"


def _zscore(values):
    det = RobustZScore(window=64, refresh_every=64, min_count=8)
    for v in values:
        det.learn_one({"f": v})
    return det


def test_zscore_reason_shows_value_median_scale_and_z():
    det = _zscore([-1.0, -3.0] * 32)  # signed: linear scale; median -2, every deviation 1: scale 1.4826
    assert det.describe({"f": -20.0}, "f") == "f=-20 (median -2, scale 1.48, z=12.1)"


def test_zscore_reason_on_the_log_scale_gives_the_median_in_the_features_units():
    e1 = 1.718281828459045  # log1p(e - 1) = 1: the log-scale median is 0.5 (0.6487 back in units), scale 0.7413
    det = _zscore([0.0, e1] * 32)
    assert det.describe({"f": 20.0}, "f") == "f=20 (median 0.6487, log1p scale 0.741, z=3.43)"


def test_zscore_reason_of_a_constant_feature_says_it_was_constant():
    assert _zscore([1.0] * 64).describe({"f": 3.0}, "f") == "f=3 (constant 1 in the learned window)"


def test_hst_reason_rounds_the_value_and_the_learned_range():
    det = HalfSpaceTrees(n_trees=4, height=4, window_size=10, seed=1)
    for i in range(40):
        det.learn_one({"age": 0.1 + i * 0.0123456789})
    text = det.describe({"age": 0.07111956018540594}, "age")
    assert text.startswith("age=0.07112 (") and "0.0123456789" not in text and "learned range [" in text


def test_rule_reason_rounds_clause_values_and_names_an_action_only_when_it_forces_one():
    r = Rules(rules=[{"name": "tiny", "when": "amount < 10 and ratio >= 0.2", "score": 0.9},
                     {"name": "huge", "when": "amount > 1e6", "action": "block"}])
    assert r.describe({"amount": 9.99996, "ratio": 0.21000000000000002}, "tiny") == \
        "rule tiny: amount=9.99996 < 10 and ratio=0.21 >= 0.2"
    assert r.describe({"amount": 5e6}, "huge") == "rule huge (block): amount=5000000 > 1000000"
