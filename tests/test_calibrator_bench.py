"""``bench/calibrator_bench.py``: each build named by ``--core`` is the one timed (loaded from its file in a child
process), the rounds alternate between them, and a median is printed for each."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("calibrator_bench", ROOT / "bench/calibrator_bench.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_two_builds_alternate_and_each_gets_its_median(capsys):
    built = ROOT / "stream" / "_core.abi3.so"
    bench.main(["--core", str(built), "--core", "", "--window", "200", "--updates", "3000", "--rounds", "2"])
    lines = capsys.readouterr().out.splitlines()
    rounds = [line for line in lines if line.startswith("round")]
    assert [line.split(":")[0] for line in rounds] == [f"round {r} {c}" for r in (1, 2) for c in (built, "stream/")]
    medians = [line for line in lines if "median" in line]
    assert len(medians) == 2 and all(float(re.search(r"median ([0-9.]+) ns", m).group(1)) > 0 for m in medians)


def test_a_core_that_is_not_an_extension_fails_loudly(tmp_path):
    bad = tmp_path / "not_a_core.so"
    bad.write_bytes(b"nothing")
    with pytest.raises(Exception, match="returned non-zero exit status"):
        bench.main(["--core", str(bad), "--window", "200", "--updates", "1000", "--rounds", "1"])
