"""The window-count experiment of ``bench/panel/interpolated_windows.py``: it still applies to
``stream/features.py``, and it does what ``bench/panel/README.md`` says (a steady rate's bucketed count is a
sawtooth of 1/12 of its level; counted in proportion it is flat)."""

from __future__ import annotations

import importlib.util
import types
from array import array
from pathlib import Path

import pytest

import stream.features as features

ROOT = Path(__file__).resolve().parents[2]


def _experiment() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("interpolated_windows", ROOT / "bench/panel/interpolated_windows.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _patched_features() -> types.ModuleType:
    patched = types.ModuleType("patched_features")
    patched.__dict__["__name__"] = "patched_features"
    exec(compile(_experiment().patched_source(), "patched_features", "exec"), patched.__dict__)  # noqa: S102
    return patched


def _counts(roll, width: float, times: list[float], fractional: bool) -> list[float]:
    """The window count before each event of one entity, events at ``times``, one window of 12 buckets."""
    rec = [0.0, 0.0, 0.0, array("d")]
    out: list[float] = []
    counts = []
    for t in times:
        out.clear()
        roll(rec, 1.0, [t / width if fractional else t // width], out)
        counts.append(out[0])
    return counts


def test_the_experiment_still_applies_to_the_feature_code():
    src = _experiment().patched_source()
    assert "_emit(q, b, f, n, s, out)" in src
    assert src.count("t / g for g in") == 3


def test_a_steady_rate_is_a_sawtooth_in_buckets_and_flat_in_proportion():
    width = 100.0  # a window of 1,200 s in 12 buckets; one event a second
    times = [float(t) for t in range(6000)]
    bucketed = _counts(features._roll, width, times, fractional=False)[2000:]
    flat = _counts(_patched_features()._roll, width, times, fractional=True)[2000:]
    # bucketed: between 12 and 13 buckets' worth, climbing across each bucket and dropping when one leaves
    assert min(bucketed) == 1200 and max(bucketed) == 1299
    drops = sum(1 for a, b in zip(bucketed, bucketed[1:], strict=False) if b < a)
    assert drops == 39  # one at each bucket boundary after the first of these 4,000 events (t = 2100, ..., 5900)
    # in proportion: the true 1,200 s window's count, to within one event
    assert max(abs(c - 1200) for c in flat) <= 1.0


def test_source_patch_stops_when_the_code_it_rewrites_is_gone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench/panel"))
    import source_patch

    try:
        source_patch.patched("stream/features.py", [("no such line in the file", "x")], "test")
    except SystemExit as e:
        assert "stream/features.py changed" in str(e)
    else:
        raise AssertionError("a missing piece must stop the experiment")
