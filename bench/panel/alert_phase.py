"""Where a replay's alerts fall within the engine's window buckets: the alerts of a ``--scores-out`` file counted
by their event time's second modulo a bucket's width (5 s, the 1-minute window's twelfth, by default).

On a stream whose clock the mapping invents (KDD: one connection a second), a busy entity's 1-minute count drops
by a twelfth every 5 seconds, and a z-score that reads the drop as a shift puts the alerts on the seconds around
the bucket change (``bench/panel/README.md``, "`count_floor`"). On a real clock the alerts are spread evenly.

    python bench/panel/alert_phase.py $CACHE/scores/http__default.parquet
    python bench/panel/alert_phase.py $CACHE/scores/http__count-floor.parquet --width 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def alert_phases(path: Path, width: int = 5) -> np.ndarray:
    """Alerts of the scores file ``path`` per second of a ``width``-second bucket (index 0: the bucket's first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["event_time", "alerted"])
    times = t.column("event_time")
    micros = times.cast(pa.timestamp("us", tz=times.type.tz)).cast(pa.int64()).to_numpy()
    seconds = micros // 1_000_000
    alerted = t.column("alerted").to_numpy(zero_copy_only=False).astype(bool)
    return np.bincount(seconds[alerted] % width, minlength=width)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", type=Path, nargs="+")
    ap.add_argument("--width", type=int, default=5, help="the bucket's width in seconds (default: 60 / 12)")
    args = ap.parse_args(argv)
    for path in args.scores:
        counts = alert_phases(path, args.width)
        total = int(counts.sum())
        shares = " ".join(f"{c / total:.0%}" if total else "-" for c in counts)
        each = " ".join(map(str, counts))
        print(f"{path.name}: {total} alerts by second of a {args.width} s bucket: {each} ({shares})")


if __name__ == "__main__":
    main()
