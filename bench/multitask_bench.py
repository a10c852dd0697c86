"""Multi-task (issue 15): does one network shared by order risk and login risk beat two separate learners?

For each seed, simulates a stream with labelled logins as well as orders (``riskstream simulate --login-labels``:
70 % of attack events and 2 % of the others get a label 36 h later, median), then replays it with
``riskstream replay`` three times, one run after the other:

- ``defaults``: the default configuration (no learner);
- ``separate``: the defaults plus the ``multitask`` detector with ``shared = false``: one network per event type,
  each trained on its own type's labels;
- ``shared``: the same detector with ``shared = true``: one trunk for both types, a head per type; nothing else
  differs (:func:`learner_config`).

A few hundred labels train these networks, so one run is noisy: ``separate`` and ``shared`` run once per learner
seed (``--learner-seeds``, the seed of the initial weights and the replay draws), and the comparison pairs the
runs of one seed.

From each run's ``--scores-out`` it computes, per event type and over every event with its ground truth (the
simulator's ``label``; most events never get a label event): ROC AUC and average precision (AP) of the learner's
own score and of the ensemble's risk; the same in the stream's first half (fewer labels arrived: where sharing
should help most); and per scenario — account takeover orders and logins, credential-stuffing logins — AP against
the type's legitimate events and recall among the alerts. ``delta`` is shared minus separate per learner seed,
with a paired bootstrap 95 % interval of the AP difference; ``summary`` averages each figure over every stream
and learner seed.

Usage (the figures in docs/detectors.md)::

    python bench/multitask_bench.py --seeds 7 11 13 --learner-seeds 1 2    # bench/results/multitask_sim.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from transfer_bench import _ap, _riskstream, _run, paired_bootstrap  # noqa: E402


def learner_config(shared: bool, seed: int) -> str:
    """The defaults plus the ``multitask`` detector: shared or one model per type, and the seed of its weights."""
    return f"[detectors.multitask]\nshared = {'true' if shared else 'false'}\nseed = {seed}\n"

SCENARIOS = (("order", "account_takeover"), ("login", "account_takeover"), ("login", "credential_stuffing"))


def _columns(path: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    cols = {k: t[k].to_numpy(zero_copy_only=False) for k in ("event_id", "event_type", "scenario", "risk",
                                                              "alerted")}
    cols["label"] = t["label"].fill_null(-1).to_numpy()
    if "raw_multitask" in t.column_names:
        cols["learner"] = t["raw_multitask"].to_numpy()
    return cols


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def measure(c: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = len(c["risk"])
    first_half = np.arange(n) < n // 2
    for typ in ("order", "login"):
        m = (c["event_type"] == typ) & (c["label"] >= 0)
        y = c["label"][m].astype(int)
        res: dict[str, Any] = {"events": int(m.sum()), "frauds": int(y.sum())}
        for what in ("risk", "learner"):
            if what not in c:
                continue
            s = c[what][m]
            h = first_half[m]
            res[what] = {"roc_auc": _auc(y, s), "ap": _ap(y, s), "first_half_ap": _ap(y[h], s[h])}
        out[typ] = res
    for typ, scen in SCENARIOS:
        m = (c["event_type"] == typ) & ((c["scenario"] == scen) | (c["label"] == 0))
        y = (c["scenario"][m] == scen).astype(int)
        res = {"events": int(y.sum()), "recall_alerted": float(c["alerted"][m][y == 1].mean()) if y.sum() else None}
        for what in ("risk", "learner"):
            if what in c:
                res[f"{what}_ap"] = _ap(y, c[what][m])
        out[f"{typ}_{scen}"] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--learner-seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", default=os.environ.get("MULTITASK_WORK", "/tmp/multitask"), help="scratch folder")
    ap.add_argument("--out", default=str(HERE / "results" / "multitask_sim.json"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rs = _riskstream()
    given = argv if argv is not None else sys.argv[1:]
    results: dict[str, Any] = {"command": " ".join(["python", "bench/multitask_bench.py", *given]),
                               "configs": {"separate": learner_config(False, 0), "shared": learner_config(True, 0)},
                               "seeds": {}}
    figures: dict[str, dict[str, list[float]]] = {"separate": {}, "shared": {}}
    for seed in args.seeds:
        inp = work / f"sim{args.events // 1000}k_seed{seed}_logins.jsonl.gz"
        if not inp.exists():
            _run([*rs, "simulate", "--events", str(args.events), "--seed", str(seed), "--login-labels",
                  "--out", str(inp)])
        with gzip.open(inp, "rb") as f:
            labels = sum(1 for line in f if b'"type":"label"' in line)
        per: dict[str, Any] = {"input": inp.name, "label_events": labels, "runs": {}, "delta": {}}
        runs = [("defaults", None)] + [(f"{kind}_seed{ls}", learner_config(kind == "shared", ls))
                                       for ls in args.learner_seeds for kind in ("separate", "shared")]
        cols = {}
        for name, text in runs:
            scores = work / f"seed{seed}_{name}.parquet"
            cfg_args: list[str] = []
            if text is not None:
                cfg = work / f"{name}.toml"
                cfg.write_text(text)
                cfg_args = ["-c", str(cfg)]
            secs = round(_run([*rs, "replay", str(inp), *cfg_args, "-q", "--scores-out", str(scores)]), 1)
            cols[name] = _columns(scores)
            per["runs"][name] = {"seconds": secs, **measure(cols[name])}
            kind = name.split("_seed")[0]
            if kind in figures:
                for key, v in _flat(per["runs"][name]).items():
                    figures[kind].setdefault(key, []).append(v)
        for ls in args.learner_seeds:
            a, b = cols[f"separate_seed{ls}"], cols[f"shared_seed{ls}"]
            assert np.array_equal(a["event_id"], b["event_id"]), "both runs scored the same events in the same order"
            delta: dict[str, Any] = {}
            for typ in ("order", "login"):
                m = (a["event_type"] == typ) & (a["label"] >= 0)
                y = a["label"][m].astype(int)
                for what in ("learner", "risk"):
                    sa, sb = a[what][m], b[what][m]
                    d = average_precision_score(y, sb) - average_precision_score(y, sa) if 0 < y.sum() < len(y) \
                        else None
                    delta[f"{typ}_{what}_ap"] = {"shared_minus_separate": d,
                                                 "ci95": paired_bootstrap(y, sa, sb) if d is not None else []}
            per["delta"][f"learner_seed{ls}"] = delta
        results["seeds"][str(seed)] = per
        print(json.dumps({seed: per["delta"]}, indent=1), flush=True)
    results["summary"] = {kind: {k: float(np.mean(v)) for k, v in figs.items()} for kind, figs in figures.items()}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=1))
    print(f"wrote {args.out}")
    return 0


def _flat(run: dict[str, Any]) -> dict[str, float]:
    """A run's figures as ``{"order.learner.ap": 0.61, ...}`` (the numbers only)."""
    out: dict[str, float] = {}
    for k, v in run.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in _flat(v).items()})
        elif isinstance(v, int | float) and not isinstance(v, bool) and k not in ("seconds", "events", "frauds"):
            out[k] = float(v)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
