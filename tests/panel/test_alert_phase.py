"""``bench/panel/alert_phase.py``: alerts counted by their second within a window bucket."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def test_alerts_are_counted_by_second_of_the_bucket_and_the_rest_are_not(tmp_path: Path, panel_script):
    import pyarrow as pa
    import pyarrow.parquet as pq

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    seconds = [0, 4, 5, 9, 10, 13, 14, 2, 3]
    alerted = [True, True, True, True, True, True, False, False, False]
    times = pa.array([epoch + dt.timedelta(seconds=s, milliseconds=250) for s in seconds], pa.timestamp("ms", "UTC"))
    pq.write_table(pa.table({"event_time": times, "alerted": alerted}), tmp_path / "s.parquet")
    counts = panel_script("alert_phase").alert_phases(tmp_path / "s.parquet", width=5)
    # alerted seconds 0, 4, 5, 9, 10, 13 -> second 0 of a bucket three times, 4 twice, 3 once
    assert counts.tolist() == [3, 0, 0, 1, 2]
