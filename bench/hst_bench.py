"""Events per second: river's reference HST pipeline against riskstream's vectorised HalfSpaceTrees.

Both get the same 50,000 x 29 feature dicts (the first rows of the ULB credit-card file, V1..V28 and Amount; a
seeded synthetic stream of the same shape if the file is absent) and score then learn every event:

* river: ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)`` (river's defaults: 10 trees of
  height 8, window 250), one ``score_one`` + ``learn_one`` per event;
* ours with river's parameters, in micro-batches (``--batch``); the scores are checked equal to river's;
* ours with riskstream's defaults (25 trees of height 15), which river would need ~11 s just to build.

Times are CPU time of this process (so other jobs on a shared machine do not inflate them) and include
building the trees (at the first learned event). Usage::

    python bench/hst_bench.py [--events 50000] [--batch 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import os
import time

import numpy as np

from detectors import hst
from detectors.hst import HalfSpaceTrees
from stream.eval.data import shared_data_dir

#: The ULB file in the shared data folder (RISKSTREAM_DATA, else ../shared/data beside the repository).
ULB = str(shared_data_dir("creditcard_ulb", must_exist=False) / "creditcard.csv.gz")


def load(n: int) -> tuple[list[dict[str, float]], str]:
    if os.path.exists(ULB):
        xs = []
        with gzip.open(ULB, "rt", newline="") as f:
            reader = csv.reader(f)
            names = next(reader)[1:30]
            for row in reader:
                xs.append({k: float(v) for k, v in zip(names, row[1:30], strict=True)})
                if len(xs) == n:
                    break
        return xs, f"ULB credit card, first {len(xs)} rows x 29 features"
    rng = np.random.default_rng(42)
    data = rng.standard_t(4, (n, 29))
    data[:, 28] = rng.lognormal(3, 1.2, n)
    names = [f"V{j}" for j in range(1, 29)] + ["Amount"]
    return [dict(zip(names, map(float, row), strict=True)) for row in data], f"synthetic {n} x 29"


def river_run(xs: list[dict[str, float]]) -> tuple[np.ndarray, float]:
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))
    out = np.empty(len(xs))
    t0 = time.process_time()
    for i, x in enumerate(xs):
        out[i] = model.score_one(x)
        model.learn_one(x)
    return out, time.process_time() - t0


def ours_run(xs: list[dict[str, float]], batch: int, **params: int) -> tuple[np.ndarray, float]:
    hst._build_trees_cached.cache_clear()  # time the tree building too
    det = HalfSpaceTrees(seed=42, **params)
    t0 = time.process_time()
    parts = [det.process_many(xs[i : i + batch]) for i in range(0, len(xs), batch)]
    return np.concatenate(parts), time.process_time() - t0


def best(fn, repeat: int):  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(fn())
    return min(runs, key=lambda r: r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs each")
    args = ap.parse_args()
    xs, what = load(args.events)
    n = len(xs)
    print(f"{what}; batch {args.batch}; best of {args.repeat}; load average {os.getloadavg()[0]:.2f}")
    ref, t_river = best(lambda: river_run(xs), args.repeat)
    same, t_same = best(lambda: ours_run(xs, args.batch, n_trees=10, height=8), args.repeat)
    _, t_default = best(lambda: ours_run(xs, args.batch), args.repeat)
    exact = np.array_equal(same, ref)
    rows = [
        ("river MinMaxScaler | HST (10 trees, h8)", t_river),
        ("riskstream hst, river's params (10, h8)", t_same),
        ("riskstream hst, defaults (25 trees, h15)", t_default),
    ]
    print(f"{'pipeline':<44} {'events/s':>10} {'CPU us/ev':>9} {'vs river':>9}")
    for name, t in rows:
        print(f"{name:<44} {n / t:10.0f} {t / n * 1e6:9.2f} {t_river / t:8.1f}x")
    print(f"scores identical to river's (same parameters): {exact}")
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
