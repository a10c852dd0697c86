"""Experiment (not a default, not a config option): a floor on the z-score's scale relative to the feature's level.

The z-score's scale is 1.4826 x MAD, else 1.2533 x the mean absolute deviation, else ``1e-9 x max(1, |median|)``
(`detectors/zscore.py`). A feature that sits at a high level and barely moves, a busy entity's 24-hour count for
one, gets a scale of a fraction of a percent of its level, and then a wobble of its counting (the 12-bucket
windows' sawtooth, `bench/panel/README.md`, "What the z-score's window really measured on HTTP") scores like an
anomaly. Here no feature's scale is below 1/12 of its level: ``1/12`` on the ``log1p`` scale (which is relative
already), ``max(1, |median|) / 12`` on the linear scale. Why 1/12: the engine counts a window in 12 buckets
(`stream.features.BUCKETS`), so its counts are only accurate to a twelfth of their level; a change smaller than
that is not something they measure. A count going from 1 to 2 still scores z = 4.9 (0.405 on the log scale;
the clip is 5), and one that doubles at any level z = 8.3, clipped to 5.

The value comes from the engine's design, not from a stream; it was fixed, and this file committed, before any
stream was replayed with it. The idea itself came from diagnosing HTTP, so HTTP's figure is not a held-out one.
Patched into the Python reference engine (``[engine] core = "python"``) for one command, by wrapping
``RobustZScore._refresh``, so the report's configuration hash is the defaults'; the compiled core does not have it.

    python bench/panel/zscore_scale_floor.py replay $CACHE/kdd_http.csv.gz --type order \\
        --map ts=ts,label=label --set user_id=host,merchant_id=http,amount=0 \\
        --features duration,src_bytes,dst_bytes --budget 0.005 -q --report /tmp/http__scale-floor.json

``--log-only`` (first, before the command) floors only the features on the ``log1p`` scale. Added after the
first run, before its replays, on a guess: that SMTP's columns, logarithms already (levels of 5-10 on the linear
scale), were over-floored by ``|median| / 12``. Its replays refuted the guess (the same figures to three
decimals). What SMTP loses is a pass-through column on the log scale (next paragraph), not its linear level.

``--windowed-only`` floors only the features the engine counts over its bucketed windows: the names ending in a
window (``_1m``, ``_1h``, ``_24h``; ``detectors.zscore.is_window_feature``, which the ``count_floor`` option built
afterwards reads too), which are exactly what the 1/12 reasoning is about.
Registered (session 26) before its replays, after reading why SMTP fell: its ``dst_bytes`` column, a pass-through
that sits almost constant (``log1p`` scale 0.002), deviates by 0.12 at seven attacks in a row (z 9 by default, 0.2
under the floor). A user's measurement is not a bucketed count, and the floor has no reason to touch it.

Everything after the script's name (and ``--log-only`` / ``--windowed-only``) is a ``riskstream`` command line;
its ``-c`` file (if any) is used with ``[engine] core = "python"`` added.
Results: ``bench/panel/README.md``, "A floor on the z-score's scale".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import source_patch  # noqa: E402

#: The floor, as a fraction of the feature's level: the window counts' own resolution (fixed before any replay).
FLOOR = 1.0 / 12


def install(floor: float = FLOOR, log_only: bool = False, windowed_only: bool = False) -> None:
    """Wrap ``RobustZScore._refresh`` (where the median and scale are set) so no scale is below the floor; with
    ``log_only``, only the scales of features on the ``log1p`` scale (non-negative ones); with ``windowed_only``,
    only those of window features (``is_window_feature``)."""
    import numpy as np

    from detectors.zscore import RobustZScore, is_window_feature

    plain = RobustZScore._refresh

    def _refresh(self: RobustZScore) -> None:
        plain(self)
        level = np.where(self._log, 1.0, 0.0 if log_only else np.maximum(1.0, np.abs(self._med)))
        if windowed_only:
            level = level * np.array([is_window_feature(n) for n in self._names[: len(level)]])
        self._scale = np.maximum(self._scale, floor * level)

    RobustZScore._refresh = _refresh  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    variant = argv[0] if argv and argv[0] in ("--log-only", "--windowed-only") else None
    install(log_only=variant == "--log-only", windowed_only=variant == "--windowed-only")
    source_patch.run(argv[1:] if variant else argv, "zscore_scale_floor")


if __name__ == "__main__":
    main(sys.argv[1:])
