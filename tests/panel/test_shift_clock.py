"""``bench/panel/shift_clock.py``: the same rows, the invented clock moved."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest


def test_every_ts_moves_and_nothing_else_does(tmp_path: Path, panel_script):
    src = tmp_path / "kdd_x.csv.gz"
    with gzip.open(src, "wt") as f:
        f.write("ts,duration,label\n0,-2.30,0\n1,1.5,1\n2,0.1,0\n")
    out = panel_script("shift_clock").shift(src, 1800)
    assert out == tmp_path / "kdd_x+1800s.csv.gz"
    with gzip.open(out, "rt") as f:
        assert f.read() == "ts,duration,label\n1800,-2.30,0\n1801,1.5,1\n1802,0.1,0\n"


def test_a_file_without_an_integer_clock_first_is_refused_by_name(tmp_path: Path, panel_script):
    mod = panel_script("shift_clock")
    src = tmp_path / "a.csv.gz"
    with gzip.open(src, "wt") as f:
        f.write("Time,V1\n0,1\n")
    with pytest.raises(SystemExit, match="first column is not ts"):
        mod.shift(src, 60)
    with gzip.open(src, "wt") as f:
        f.write("ts,V1\n0.5,1\n")
    with pytest.raises(SystemExit, match=r"a.csv.gz:2: ts is not an integer"):
        mod.shift(src, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv.gz"]  # no partial copy left behind
