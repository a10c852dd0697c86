"""detectors.base: the Frame a micro-batch travels in, and ask_gate."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from detectors.base import Frame, ask_gate


def test_a_frame_is_a_read_only_sequence_of_its_rows_with_a_shared_matrix() -> None:
    rows = [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}, {"a": 5.0, "b": 6.0}]
    f = Frame(rows)
    rows.append({"a": 7.0})  # the frame keeps its own list
    assert isinstance(f, Sequence) and not isinstance(f, list)
    assert len(f) == 3 and f[1] is rows[1] and list(f) == rows[:3] and f.rows == rows[:3]
    assert f[1:] == rows[1:3] and type(f[1:]) is list
    assert f.names == ("a", "b") and f.matrix.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert f.columns(["a", "b"]) is f.matrix and f.columns(["b"]) is f.columns(["b"])  # built once, shared
    with pytest.raises(ValueError):
        f.matrix[0, 0] = 9.0
    assert f.has_keys_outside({"a", "b"}).tolist() == [False, False, False]


def test_ragged_rows_get_nan_where_a_key_is_missing() -> None:
    f = Frame([{"a": 1.0}, {}, {"b": 2.0, "a": 3.0}])
    m = f.columns(["a", "b"])
    assert [[None if math.isnan(v) else v for v in row] for row in m.tolist()] == [[1.0, None], [None, None],
                                                                                  [3.0, 2.0]]
    assert f.has_keys_outside({"a"}).tolist() == [False, False, True]
    assert Frame().matrix.shape == (0, 0) and len(Frame()) == 0


def test_a_frame_pickles_as_its_rows() -> None:
    f = Frame([{"a": 1.0}, {"a": 2.0}])
    f.columns(["a"])
    back = pickle.loads(pickle.dumps(f))
    assert isinstance(back, Frame) and back.rows == f.rows and back.columns(["a"]).tolist() == [[1.0], [2.0]]


class _Counting:
    """A gate learning scores below 0.5, counting its calls; ``many`` answers a run the same way."""

    def __init__(self, batch: bool) -> None:
        self.calls = 0
        if batch:
            self.many = self._many

    def __call__(self, s: float) -> bool:
        self.calls += 1
        return s < 0.5

    def _many(self, scores: np.ndarray, stop: np.ndarray | None = None) -> np.ndarray:
        ok = scores < 0.5
        if stop is not None:
            ends = np.flatnonzero(~ok & stop)
            ok = ok[: ends[0] + 1] if len(ends) else ok
        self.calls += len(ok)
        return ok


@pytest.mark.parametrize("batch", [False, True], ids=["per-score", "many"])
def test_ask_gate_asks_in_order_and_stops_after_the_first_refusal_flagged_to_stop(batch: bool) -> None:
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3])
    gate = _Counting(batch)
    assert ask_gate(gate, scores).tolist() == [True, False, True, False, True] and gate.calls == 5
    gate = _Counting(batch)
    stop = np.array([False, False, False, True, False])
    assert ask_gate(gate, scores, stop).tolist() == [True, False, True, False] and gate.calls == 4
