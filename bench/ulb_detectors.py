"""Detection quality and speed of the built-in detectors on the ULB credit-card stream.

Streams ``creditcard.csv.gz`` (284,807 transactions, features V1..V28 and Amount, label Class) in time order,
score-then-learn, through

* ``hst`` alone (every event learned),
* ``zscore`` alone (every event learned),
* an :class:`~detectors.ensemble.Ensemble` of both (calibrated, protected learning, ``risk = 1 - q``),
* river's reference ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)`` (``--river``; slow),
* the ``autoencoder`` alone and an ensemble of hst, zscore and the autoencoder (``--neural``),

and prints exact ROC AUC and average precision (rank-based, ties averaged / grouped) and CPU µs per event
(process time, so other jobs on a shared machine do not inflate it).

Usage::

    python bench/ulb_detectors.py [--path creditcard.csv.gz] [--batch 2000] [--limit N] [--river] [--neural]
                                  [--out results.json]

``--path`` defaults to ``creditcard_ulb/creditcard.csv.gz`` in the shared data folder (``RISKSTREAM_DATA``, else
``../shared/data`` beside the repository: :func:`stream.eval.data.shared_data_dir`).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import time
from collections.abc import Callable

import numpy as np

from detectors import Ensemble, build
from stream.eval.data import DataNotFound, shared_data_dir


def default_path() -> str:
    """The ULB file in the shared data folder; :class:`~stream.eval.data.DataNotFound` says where it looked."""
    return str(shared_data_dir("creditcard_ulb") / "creditcard.csv.gz")


def load(path: str, limit: int | None = None) -> tuple[list[dict[str, float]], np.ndarray]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        names = header[1:30]
        xs, ys = [], []
        for row in reader:
            xs.append({n: float(v) for n, v in zip(names, row[1:30], strict=True)})
            ys.append(int(float(row[30])))
            if limit is not None and len(xs) >= limit:
                break
    return xs, np.array(ys, dtype=np.int8)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties."""
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    _, first, counts = np.unique(ss, return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    pos = int(y.sum())
    neg = len(y) - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall step curve, one step per distinct score (scikit-learn's definition)."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tp = np.cumsum(ys)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def run(name: str, fn: Callable[[list[dict[str, float]]], np.ndarray], xs: list[dict[str, float]],
        y: np.ndarray, batch: int) -> tuple[str, float, float, float]:
    t0 = time.process_time()
    scores = np.concatenate([fn(xs[i : i + batch]) for i in range(0, len(xs), batch)])
    us = (time.process_time() - t0) / len(xs) * 1e6
    return name, roc_auc(y, scores), average_precision(y, scores), us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default=None, help="the ULB creditcard.csv.gz (default: in the shared data folder)")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--river", action="store_true", help="also run river's reference pipeline (slow)")
    ap.add_argument("--neural", action="store_true", help="also run the autoencoder, alone and in the ensemble")
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    args = ap.parse_args()
    try:
        path = args.path or default_path()
    except DataNotFound as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    xs, y = load(path, args.limit)
    print(f"{len(xs)} events, {int(y.sum())} frauds, batch {args.batch}")
    rows = []
    hst = build("hst")
    rows.append(run("hst", lambda b: hst.process_many(b), xs, y, args.batch))
    zs = build("zscore")
    rows.append(run("zscore", lambda b: zs.process_many(b), xs, y, args.batch))
    ens = Ensemble({"hst": build("hst"), "zscore": build("zscore")})
    verdicts = []

    def ens_batch(b: list[dict[str, float]]) -> np.ndarray:
        v = ens.process_many(b)
        verdicts.append(v)
        return v.risk

    rows.append(run("ensemble(hst+zscore)", ens_batch, xs, y, args.batch))
    if args.neural:
        ae = build("autoencoder")
        rows.append(run("autoencoder", lambda b: ae.process_many(b), xs, y, args.batch))
        ens3 = Ensemble({"hst": build("hst"), "zscore": build("zscore"), "autoencoder": build("autoencoder")})
        rows.append(run("ensemble(hst+zscore+ae)", lambda b: ens3.process_many(b).risk, xs, y, args.batch))
    if args.river:
        from river import anomaly, compose, preprocessing

        ref = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))

        def river_batch(b: list[dict[str, float]]) -> np.ndarray:
            out = np.empty(len(b))
            for i, x in enumerate(b):
                out[i] = ref.score_one(x)
                ref.learn_one(x)
            return out

        rows.append(run("river MinMaxScaler|HST", river_batch, xs, y, args.batch))
    print(f"{'detector':<24} {'ROC AUC':>8} {'AP':>8} {'CPU us/ev':>9}")
    for name, auc, apr, us in rows:
        print(f"{name:<24} {auc:8.4f} {apr:8.4f} {us:9.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"events": len(xs), "frauds": int(y.sum()), "batch": args.batch,
                       "rows": [{"detector": n, "roc_auc": a, "average_precision": p, "cpu_us_per_event": u}
                                for n, a, p, u in rows]}, f, indent=2)
    alert = np.concatenate([v.alert for v in verdicts])
    caught = int(y[alert].sum())
    print(f"ensemble alerts: {int(alert.sum())} ({alert.mean():.4%} of events; budget {ens.budget:.2%}), "
          f"{caught} frauds caught (precision {caught / max(1, int(alert.sum())):.3f}, "
          f"recall {caught / int(y.sum()):.3f})")


if __name__ == "__main__":
    main()
