"""TailCalibrator: p = (#past >= s + 1) / (n + 1) over a sliding window, exactly, at any batch split."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from detectors.calibration import TailCalibrator


def _brute(values: np.ndarray, window: int) -> np.ndarray:
    v = np.where(np.isnan(values), -np.inf, values)
    out = np.empty(len(v))
    for t in range(len(v)):
        past = v[max(0, t - window) : t]
        out[t] = ((past >= v[t]).sum() + 1) / (len(past) + 1)
    return out


def _stream(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.round(rng.standard_normal(n), 1)  # many ties
    v[::37] = np.nan
    v[5::101] = np.inf
    return v


@pytest.mark.parametrize("window,refresh_every", [(50, 7), (300, 64), (1000, 1000), (10, 256)])
def test_update_is_the_exact_windowed_tail_probability(window, refresh_every):
    v = _stream(2500, seed=window)
    cal = TailCalibrator(window, refresh_every)
    got = np.array([cal.update(s) for s in v])
    np.testing.assert_array_equal(got, _brute(v, window))
    assert cal.n == window and cal.count == len(v)


def test_update_many_equals_the_loop_at_any_split_and_leaves_the_same_state():
    v = _stream(4000, seed=1)
    loop = TailCalibrator(500, 32)
    expected = np.array([loop.update(s) for s in v])
    rng = np.random.default_rng(2)
    for sizes in ([1] * 50 + [4000], [7] * 600, None):
        cal = TailCalibrator(500, 32)
        parts, i = [], 0
        while i < len(v):
            k = sizes.pop(0) if sizes else int(rng.integers(1, 400))
            parts.append(cal.update_many(v[i : i + k]))
            i += k
        np.testing.assert_array_equal(np.concatenate(parts), expected)
        assert pickle.dumps(cal) == pickle.dumps(loop)


@pytest.mark.parametrize("start,size", [(0, 40), (30, 200), (333, 57), (480, 1200)])
def test_peek_many_is_pure_and_equals_update_many(start, size):
    """Before the window fills, across its wrap and for a batch longer than the window itself."""
    v = _stream(start + size, seed=start)
    cal = TailCalibrator(500, 32)
    cal.update_many(v[:start])
    state = pickle.dumps(cal)
    peeked = cal.peek_many(v[start:])
    assert pickle.dumps(cal) == state
    np.testing.assert_array_equal(peeked, cal.update_many(v[start:]))
    np.testing.assert_array_equal(peeked, _brute(v, 500)[start:])


def test_tail_is_pure_and_matches_the_next_update():
    v = _stream(333, seed=3)
    cal = TailCalibrator(100, 16)
    cal.update_many(v)
    state = pickle.dumps(cal)
    for s in (-5.0, 0.0, 0.3, 99.0, math.nan):
        p = cal.tail(s)
        assert pickle.dumps(cal) == state
        assert p == _brute(np.append(v, s), 100)[-1]
        assert pickle.loads(state).update(s) == p


def test_bounds():
    cal = TailCalibrator(window=20, refresh_every=5)
    assert cal.update(3.0) == 1.0  # nothing to compare with
    for s in range(100):
        p = cal.update(float(s))
        assert 0 < p <= 1
    assert p == 1 / 21  # a new maximum against a full window
    assert cal.update(-1e9) == 1.0
    assert cal.update(math.nan) == 1.0  # NaN ranks as -inf: never rare


def test_invalid_parameters_are_rejected():
    for kw in ({"window": 0}, {"refresh_every": 0}, {"window": 2.5}):
        with pytest.raises(ValueError):
            TailCalibrator(**kw)


def test_update_many_with_stop_ends_after_the_first_flagged_score_in_the_tail():
    """As the loop ``for s: p = update(s); if stop and p <= protect: break`` would, across refresh points."""
    v = _stream(3000, seed=8)
    flags = np.zeros(len(v), dtype=bool)
    flags[::7] = True
    loop = TailCalibrator(400, 32)
    expected = []
    for i, s in enumerate(v):
        p = loop.update(s)
        expected.append(p)
        if flags[i] and p <= 0.05:
            break
    cal = TailCalibrator(400, 32)
    got = cal.update_many(v, stop=flags, protect=0.05)
    assert 100 < len(got) < len(v)  # past a few refresh points
    np.testing.assert_array_equal(got, expected)
    assert pickle.dumps(cal) == pickle.dumps(loop)
