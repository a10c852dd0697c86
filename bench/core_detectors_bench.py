"""The detection stage, Python reference vs compiled core: µs per event of the default ensembles (HST, z-score,
rules, calibration, decision) on the same feature vectors, in the same run.

The vectors are what the default Engine hands its order and login ensembles on ``riskstream simulate --seed 7``
(features and link features), recorded once from a Python Engine run. Timed, per event type, in batches of
``--batch`` events as the engine calls them:

- Python: ``Ensemble.process_many(dicts)`` (the reference);
- Rust: ``DetectorCore.process(names, matrix)`` on prebuilt NaN-for-absent matrices (the compiled engine will
  hand the core rows it builds natively; building the matrix from dicts is timed apart, as "matrix").

Alerts are checked equal, so the two timings are of the same work. Build the core with
``scripts/build-core.sh --release`` first.

    python bench/core_detectors_bench.py                  # 100 000 events
    python bench/core_detectors_bench.py --events 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import math
import time
from itertools import islice
from typing import Any

import numpy as np

from detectors.compiled import compile_ensemble
from stream.config import default_settings
from stream.pipeline import Engine, build_ensemble
from stream.sim import SimConfig, simulate


class _Recorder:
    """Stands in for one of the Engine's ensembles and keeps copies of the feature dicts it is given."""

    def __init__(self, ens: Any) -> None:
        self.ens = ens
        self.xs: list[dict[str, float]] = []

    def process_many(self, xs: Any, entity_ids: Any = None) -> Any:
        self.xs.extend(dict(x) for x in xs)
        return self.ens.process_many(xs, entity_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ens, name)


def engine_vectors(events: int, seed: int) -> dict[str, list[dict[str, float]]]:
    engine = Engine(default_settings())
    rec = {k: _Recorder(e) for k, e in engine.ensembles.items()}
    engine.ensembles = rec  # type: ignore[assignment]
    it = iter(simulate(SimConfig(events=events, seed=seed)))
    while chunk := list(islice(it, 2000)):
        engine.process(chunk)
    return {k: r.xs for k, r in rec.items()}


def matrix(xs: list[dict[str, float]]) -> tuple[list[str], np.ndarray]:
    names = list(dict.fromkeys(k for x in xs for k in x))
    return names, np.array([[x.get(k, math.nan) for k in names] for x in xs], dtype=np.float64).reshape(
        len(xs), len(names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs (fresh ensembles each)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    vecs = engine_vectors(args.events, args.seed)
    print(f"recorded the engine's vectors in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{len(v)} {k}s" for k, v in vecs.items()))
    settings = default_settings()
    total = {"python": 0.0, "rust": 0.0, "matrix": 0.0}
    n_all = 0
    for kind, xs in vecs.items():
        batches = [xs[i : i + args.batch] for i in range(0, len(xs), args.batch)]
        t = time.perf_counter()
        mats = [matrix(b) for b in batches]
        t_matrix = time.perf_counter() - t
        best = {"python": math.inf, "rust": math.inf}
        alerts = {}
        for _ in range(args.repeat):
            py = build_ensemble(settings)
            t = time.perf_counter()
            a_py = [py.process_many(b).alert for b in batches]
            best["python"] = min(best["python"], time.perf_counter() - t)
            core = compile_ensemble(build_ensemble(settings))
            t = time.perf_counter()
            a_rs = [core.process(names, m)["alert"] for names, m in mats]
            best["rust"] = min(best["rust"], time.perf_counter() - t)
            alerts = {"python": np.concatenate(a_py), "rust": np.concatenate(a_rs)}
        same = bool(np.array_equal(alerts["python"], alerts["rust"]))
        n = len(xs)
        n_all += n
        total["python"] += best["python"]
        total["rust"] += best["rust"]
        total["matrix"] += t_matrix
        print(f"{kind:6s} {n:7d} events, {int(alerts['rust'].sum())} alerts (same in both: {same}): "
              f"python {best['python'] / n * 1e6:6.2f} µs/event, rust {best['rust'] / n * 1e6:5.2f} µs/event "
              f"(x{best['python'] / best['rust']:.1f}); matrix from dicts {t_matrix / n * 1e6:.2f} µs/event")
        if not same:
            raise SystemExit("the alerts differ: see tests/core/test_detectors_differential.py")
    print(f"all    {n_all:7d} events: python {total['python'] / n_all * 1e6:6.2f} µs/event, "
          f"rust {total['rust'] / n_all * 1e6:5.2f} µs/event (x{total['python'] / total['rust']:.1f})")


if __name__ == "__main__":
    main()
