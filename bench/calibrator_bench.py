"""The compiled tail calibrator alone: ns per `TailCalibrator.update`, over normal scores (no locality between one
rank and the next, as for HST's or the z-score's scores), after a warm-up that fills the window.

    python bench/calibrator_bench.py                          # the build in stream/
    python bench/calibrator_bench.py --core /tmp/a.so --core /tmp/b.so --rounds 4   # builds alternating

Each ``--core`` is a built ``_core.abi3.so`` (``core/target/release/lib_core.so`` copied), loaded in its own child
process; the rounds alternate between them so that the machine's drift falls on all of them alike. Prints each
round and each build's median (the figure ``bench/README.md`` quotes).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.machinery, importlib.util, sys, time
import numpy as np
path, window, refresh, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if path:
    loader = importlib.machinery.ExtensionFileLoader("stream._core", path)
    spec = importlib.util.spec_from_file_location("stream._core", path, loader=loader)
    core = importlib.util.module_from_spec(spec); loader.exec_module(core)
else:
    import stream._core as core
xs = np.random.default_rng(1).standard_normal(n + window * 2)
cal = core.TailCalibrator(window, refresh)
cal.update_many(xs[: window * 2])  # the window full, a few refreshes done
t = time.perf_counter()
cal.update_many(xs[window * 2 :])
print((time.perf_counter() - t) / n * 1e9)
"""


def one(core: str, window: int, refresh: int, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, core, str(window), str(refresh), str(n)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core", action="append", default=[], help="a built _core.abi3.so (repeatable; default: stream/)")
    ap.add_argument("--window", type=int, default=20_000)
    ap.add_argument("--refresh-every", type=int, default=256)
    ap.add_argument("--updates", type=int, default=950_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    cores = args.core or [""]
    times: dict[str, list[float]] = {c: [] for c in cores}
    for r in range(args.rounds):
        for c in cores:
            times[c].append(one(c, args.window, args.refresh_every, args.updates))
            print(f"round {r + 1} {c or 'stream/'}: {times[c][-1]:.1f} ns an update", flush=True)
    for c, ts in times.items():
        print(f"{c or 'stream/'}: median {statistics.median(ts):.1f} ns an update over {len(ts)} rounds")


if __name__ == "__main__":
    main()
