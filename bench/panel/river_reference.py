"""A reference number measured here, not published: river's `MinMaxScaler() | HalfSpaceTrees(seed=42)`, score then
learn, over a panel stream's numeric columns in file order (the pipeline creditcard_ulb/README.md measured on ULB).

    python bench/panel/river_reference.py kdd_http.csv.gz duration,src_bytes,dst_bytes \
        --out bench/panel/results/river_http.json

Reports exact ROC AUC and average precision (stream.eval.metrics) and precision / recall of the top 0.5 % of
scores (the panel's budget, ranked offline over the whole stream).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch import default_cache  # noqa: E402

from stream.eval.metrics import average_precision, roc_auc, top_k_metrics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", help="a cache file name (or path)")
    ap.add_argument("columns", help="comma-separated feature columns")
    ap.add_argument("--label", default="label")
    ap.add_argument("--budget", type=float, default=0.005)
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from river import anomaly, preprocessing

    path = Path(args.file) if Path(args.file).exists() else args.cache / args.file
    cols = args.columns.split(",")
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    ys, ss = [], []
    t0 = time.time()
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            x = {c: float(row[c]) for c in cols}
            ss.append(model.score_one(x))
            model.learn_one(x)
            ys.append(int(float(row[args.label])))
    y, s = np.asarray(ys), np.asarray(ss)
    k = max(1, int(round(args.budget * len(y))))
    p, r = top_k_metrics(y, s, k)
    out = {"pipeline": "MinMaxScaler() | HalfSpaceTrees(seed=42), score then learn", "file": path.name,
           "columns": cols, "events": len(y), "positives": int(y.sum()), "roc_auc": roc_auc(y, s),
           "pr_auc": average_precision(y, s), "budget": args.budget, "precision_at_budget": p,
           "recall_at_budget": r, "seconds": round(time.time() - t0, 1)}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
