"""``bench/panel/alert_phase.py``: alerts counted by their second within a window bucket."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("alert_phase", ROOT / "bench/panel/alert_phase.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_alerts_are_counted_by_second_of_the_bucket_and_the_rest_are_not(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    seconds = [0, 4, 5, 9, 10, 13, 14, 2, 3]
    alerted = [True, True, True, True, True, True, False, False, False]
    times = pa.array([epoch + dt.timedelta(seconds=s, milliseconds=250) for s in seconds], pa.timestamp("ms", "UTC"))
    pq.write_table(pa.table({"event_time": times, "alerted": alerted}), tmp_path / "s.parquet")
    counts = _module().alert_phases(tmp_path / "s.parquet", width=5)
    # alerted seconds 0, 4, 5, 9, 10, 13 -> second 0 of a bucket three times, 4 twice, 3 once
    assert counts.tolist() == [3, 0, 0, 1, 2]
