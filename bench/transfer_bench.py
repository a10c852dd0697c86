"""Transfer (issue 15): does scoring an entity with little history by its cohort's fraud rate help on cold starts?

Replays one labelled stream twice with ``riskstream replay`` — once with a base configuration, once with the same
plus the cohort prior (``[links] risk_prior``: ``risk_<kind>_shrunk_<w>`` in the supervised model's features) —
one replay after the other, then reads each run's ``--scores-out`` and computes, for both:

- the overall ROC AUC and average precision (AP) of the risk over the scored events with a label (orders only),
  and the report's ``eval`` block (the handbook's protocol, when ``--eval-from`` is given);
- **first N events**: AP over the events that are among their entity's first N in stream order (terminal =
  ``merchant``, customer = ``user``), N = 10 and 50 — the issue's cold-start measure;
- **fewer than N labels**: AP over the events whose entity had fewer than N labels *arrived* when the event was
  scored (label arrival = the event's time + the delay, rounded up to the next drop; for the simulator, the label
  event's own time) — "little history" as the label-derived features see it, which is what a prior can change.

Usage (one command per figure in docs/detectors.md and bench/README.md)::

    python bench/transfer_bench.py handbook            # bench/results/transfer_handbook.json
    python bench/transfer_bench.py sim --seed 7        # bench/results/transfer_sim_seed7.json
    python bench/transfer_bench.py handbook --tag handbook_logreg --base bench/handbook/handbook-logreg.toml \
        --prior bench/handbook/handbook-logreg-prior.toml   # bench/results/transfer_handbook_logreg.json

``handbook`` builds the handbook README's 2018-06-15 .. 2018-08-14 subset of the shared data file once (in
``--work``) and replays it with its protocol (labels 7 days late in hourly drops, test week 2018-08-08..14);
``sim`` simulates ``--events`` events (labels 36 h late, the simulator's default) and replays them with
``bench/sim-transfer.toml``. The base and prior configurations are ``--base`` and ``--prior``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
NS = (10, 50)
BOOT = 200  # paired bootstrap rounds of the AP differences
HANDBOOK_MAP = ("ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,amount=TX_AMOUNT,label=TX_FRAUD,"
                "event_id=TRANSACTION_ID")
HANDBOOK_DELAY, HANDBOOK_EVERY = 7 * 86400.0, 3600.0


def _riskstream() -> list[str]:
    exe = Path(sys.executable).with_name("riskstream")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stream.cli"]


def _run(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def handbook_subset(work: Path) -> Path:
    """The handbook README's subset: rows from 2018-06-15 to 2018-08-14, in the file's (time) order."""
    out = work / "handbook-0615.csv.gz"
    if out.exists():
        return out
    from stream.eval.data import shared_data_dir

    src = shared_data_dir("fraud_handbook") / "transactions.csv.gz"
    tmp = out.with_suffix(".part")
    with gzip.open(src, "rt") as f, gzip.open(tmp, "wt") as g:
        g.write(f.readline())
        for line in f:
            day = line.split(",", 2)[1]
            if "2018-06-15" <= day < "2018-08-15":
                g.write(line)
    tmp.rename(out)
    return out


def _ap(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else None


def _strata(ev: dict[str, np.ndarray], kinds: dict[str, str]) -> dict[str, np.ndarray]:
    """Boolean masks over the scored labelled orders ``ev`` (stream order): first N events of its entity, and
    fewer than N labels of its entity arrived by its time, per entity kind and N."""
    out: dict[str, np.ndarray] = {}
    n = len(ev["ts"])
    for kind, col in kinds.items():
        _, codes = np.unique(ev[col], return_inverse=True)
        order = np.argsort(codes, kind="stable")  # by entity, stream order within
        sc = codes[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sc)) + 1]
        first = np.repeat(starts, np.diff(np.r_[starts, n]))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - first
        # labels of the same entity arrived by each event's time: one sorted key (entity, arrival), searched at
        # (entity, ts); times < 1e10 s, so code * 1e10 + time keeps both exact in a double
        arr = codes * 1e10 + np.minimum(ev["arrival"], 1e10 - 1)
        arrived = np.searchsorted(np.sort(arr), codes * 1e10 + ev["ts"], side="right") - \
            np.searchsorted(np.sort(arr), codes * 1e10, side="left")
        for k in NS:
            out[f"{kind}_first_{k}_events"] = rank < k
            out[f"{kind}_under_{k}_labels"] = arrived < k
    return out


def _scored(scores: Path, entities: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Labels, risks and entity columns of the scored labelled orders, in scoring order."""
    t = pq.read_table(scores, columns=["event_id", "event_type", "label", "risk"])
    t = t.filter(pc.and_(pc.equal(t["event_type"], "order"), pc.is_valid(t["label"])))
    ids = t["event_id"].to_numpy(zero_copy_only=False).astype(str)
    where = {e: i for i, e in enumerate(entities["event_id"])}
    idx = np.array([where[e] for e in ids])  # every scored order is in the input (KeyError otherwise)
    return t["label"].to_numpy().astype(int), t["risk"].to_numpy(), {k: v[idx] for k, v in entities.items()}


def measure(y: np.ndarray, s: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, Any]:
    res: dict[str, Any] = {"events": int(len(y)), "frauds": int(y.sum()), "roc_auc": float(roc_auc_score(y, s)),
                           "average_precision": _ap(y, s), "strata": {}}
    for name, mask in masks.items():
        res["strata"][name] = {"events": int(mask.sum()), "frauds": int(y[mask].sum()), "ap": _ap(y[mask], s[mask])}
    return res


def paired_bootstrap(y: np.ndarray, s0: np.ndarray, s1: np.ndarray, rounds: int = BOOT, seed: int = 0) -> list[float]:
    """The 2.5 and 97.5 percentiles of AP(s1) - AP(s0) over events resampled with replacement (both runs scored
    the same events in the same order, so each resample pairs them)."""
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(rounds):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            d.append(average_precision_score(y[i], s1[i]) - average_precision_score(y[i], s0[i]))
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if d else []


def handbook_entities(path: Path) -> dict[str, np.ndarray]:
    t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        include_columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID"],
        column_types={"TRANSACTION_ID": pa.string(), "CUSTOMER_ID": pa.string(), "TERMINAL_ID": pa.string(),
                      "TX_DATETIME": pa.timestamp("s")}))  # naive: UTC, as the replay reads it
    ts = t["TX_DATETIME"].cast(pa.int64()).to_numpy().astype(float)
    return {"event_id": t["TRANSACTION_ID"].to_numpy(zero_copy_only=False).astype(str), "ts": ts,
            "arrival": np.ceil((ts + HANDBOOK_DELAY) / HANDBOOK_EVERY) * HANDBOOK_EVERY,
            "terminal": t["TERMINAL_ID"].to_numpy(zero_copy_only=False).astype(str),
            "customer": t["CUSTOMER_ID"].to_numpy(zero_copy_only=False).astype(str)}


def sim_entities(path: Path) -> dict[str, np.ndarray]:
    from stream.events import decode

    rows, arrival = [], {}
    with gzip.open(path, "rb") as f:
        for line in f:
            e = decode(line)
            if e.type == "order":
                rows.append((e.event_id, e.ts, e.merchant_id, e.user_id))
            elif e.type == "label":
                arrival[e.ref_event_id] = e.ts
    cols = list(zip(*rows, strict=True))
    return {"event_id": np.array(cols[0], dtype=str), "ts": np.array(cols[1], dtype=float),
            "merchant": np.array(cols[2], dtype=str), "user": np.array(cols[3], dtype=str),
            "arrival": np.array([arrival.get(e, np.inf) for e in cols[0]], dtype=float)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", choices=["handbook", "sim"])
    ap.add_argument("--base", default=None, help="config without the prior")
    ap.add_argument("--prior", default=None, help="config with the prior")
    ap.add_argument("--seed", type=int, default=7, help="sim: simulator seed")
    ap.add_argument("--events", type=int, default=200_000, help="sim: events to simulate")
    ap.add_argument("--work", default=os.environ.get("TRANSFER_WORK", "/tmp/transfer"), help="scratch folder")
    ap.add_argument("--reuse", action="store_true", help="recompute from the scores of an earlier run in --work")
    ap.add_argument("--tag", default=None, help="name of the outputs (default handbook, sim_seed<seed>)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/transfer_<tag>.json)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rs = _riskstream()
    if args.data == "handbook":
        base = args.base or str(HERE / "handbook" / "handbook-boosting.toml")
        prior = args.prior or str(HERE / "handbook" / "handbook-boosting-prior.toml")
        inp = handbook_subset(work)
        replay_args = ["--type", "order", "--map", HANDBOOK_MAP, "--features", "none",
                       "--drop", "TX_FRAUD_SCENARIO,TX_TIME_SECONDS,TX_TIME_DAYS",
                       "--label-delay", "7d", "--label-every", "1h", "--eval-from", "2018-08-08",
                       "--eval-to", "2018-08-14", "--known-from", "2018-07-25", "--k", "100", "-q"]
        entities = handbook_entities(inp)
        kinds = {"terminal": "terminal", "customer": "customer"}
        tag = "handbook"
    else:
        base = args.base or str(HERE / "sim-transfer.toml")
        prior = args.prior or str(HERE / "sim-transfer-prior.toml")
        inp = work / f"sim{args.events // 1000}k_seed{args.seed}.jsonl.gz"
        if not inp.exists():
            _run([*rs, "simulate", "--events", str(args.events), "--seed", str(args.seed), "--out", str(inp)])
        replay_args = ["-q"]
        entities = sim_entities(inp)
        kinds = {"merchant": "merchant", "user": "user"}
        tag = f"sim_seed{args.seed}"
    tag = args.tag or tag
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--reuse"]
    results: dict[str, Any] = {"data": args.data, "input": inp.name,
                               "command": " ".join(["python", "bench/transfer_bench.py", *given]), "runs": {}}
    out = Path(args.out) if args.out else HERE / "results" / f"transfer_{tag}.json"
    before = json.loads(out.read_text()) if args.reuse and out.exists() else {}
    scored = {}
    for name, cfg in (("base", base), ("prior", prior)):
        scores, report = work / f"{tag}_{name}.parquet", work / f"{tag}_{name}.json"
        secs = before.get("runs", {}).get(name, {}).get("seconds")
        if not (args.reuse and scores.exists() and report.exists()):
            secs = round(_run([*rs, "replay", str(inp), "-c", cfg, *replay_args, "--scores-out", str(scores),
                               "--report", str(report)]), 1)
        rep = json.loads(report.read_text())
        y, s, ev = _scored(scores, entities)
        scored[name] = (y, s, ev)
        run = {"config": os.path.relpath(cfg, HERE.parent), "config_hash": rep.get("config_hash"),
               "seconds": secs, **measure(y, s, _strata(ev, kinds))}
        if "eval" in rep:
            run["eval"] = rep["eval"]
        results["runs"][name] = run
    (y, s0, ev), (y1, s1, _) = scored["base"], scored["prior"]
    assert np.array_equal(y, y1), "both runs scored the same events"
    b, p = results["runs"]["base"], results["runs"]["prior"]
    masks = {"all": np.ones(len(y), dtype=bool), **_strata(ev, kinds)}
    results["delta"] = {}
    for k, m in masks.items():
        b_ap = b["average_precision"] if k == "all" else b["strata"][k]["ap"]
        p_ap = p["average_precision"] if k == "all" else p["strata"][k]["ap"]
        if b_ap is not None and p_ap is not None:
            results["delta"][k] = {"ap": p_ap - b_ap, "ci95": paired_bootstrap(y[m], s0[m], s1[m])}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["delta"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
