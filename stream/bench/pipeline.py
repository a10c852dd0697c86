"""``riskstream bench``: throughput of the replay pipeline beside river's reference pipeline, in the same run.

Both engines run on the same events in the same run: the one ``[engine] core`` names (compiled by default)
and the other, with their ratio and whether their scores are identical (they must be: ``tests/core/``).

Both pipelines get the same decoded events (decoding is timed once and added to both), so the ratio compares what
each does per event: riskstream's features + ensemble + decision against river's
``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)`` scoring then learning every event's raw
numeric fields (for the ULB credit-card file: Amount and V1..V28, river's own example).
"""

from __future__ import annotations

import gc
import platform
import time
from typing import Any

import numpy as np

from stream.compiled import new_engine
from stream.config import Settings
from stream.eval.metrics import average_precision, roc_auc
from stream.events import Event, Label, Login, Order
from stream.sources import ColumnMapping, FileSource, detect_format

__all__ = ["run_bench", "print_bench", "reference_x"]


def reference_x(e: Order | Login) -> dict[str, float]:
    """The raw numeric fields river's reference pipeline sees for an event."""
    if isinstance(e, Order):
        x = {"amount": e.amount}
        if e.items is not None:
            x["items"] = float(e.items)
    else:
        x = {"success": float(e.success)}
        if e.lat is not None and e.lon is not None:
            x["lat"], x["lon"] = e.lat, e.lon
    x.update(e.features)
    return x


def _load(settings: Settings, events: int, seed: int, input_path: str | None, fmt: str | None,
          mapping: ColumnMapping, limit: int | None) -> tuple[list[Event], float, str]:
    batch_size = int(settings.engine["batch_size"])
    if input_path is None:
        from stream.events import decode, encode
        from stream.sim import SimConfig, simulate

        raws = [encode(e) for e in simulate(SimConfig(events=events, seed=seed))]
        _RAW["records"] = raws
        t0 = time.perf_counter()
        decoded = [decode(r) for r in raws]
        return decoded, time.perf_counter() - t0, f"simulated stream: {events} events, seed {seed}"
    source = FileSource([input_path], batch_size=batch_size, format=fmt, mapping=mapping)
    out: list[Event] = []
    t0 = time.perf_counter()
    try:
        for batch in source:
            out.extend(batch.events)
            if limit is not None and len(out) >= limit:
                out = out[:limit]
                break
    finally:
        source.close()
    return out, time.perf_counter() - t0, f"{input_path} ({len(out)} events)"


def _run_engine(settings: Settings, events: list[Event]) -> dict[str, Any]:
    engine = new_engine(settings)
    batch_size = int(settings.engine["batch_size"])
    stages = {"features": 0.0, "detectors": 0.0, "decision": 0.0}
    risks: list[np.ndarray] = []
    alerts = 0
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, len(events), batch_size):
        outcome = engine.process(events[i : i + batch_size])
        risks.append(outcome.risk)
        alerts += len(outcome.alerts)
        for k, v in outcome.timings.items():
            stages[k] += v
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "stages": stages, "risk": np.concatenate(risks) if risks else np.empty(0),
            "alerts": alerts, "memory": engine.memory_stats()}


_RAW: dict[str, list[bytes]] = {}  # the simulated stream's JSON records, for the compiled engine's raw path


def _run_raw(settings: Settings, records: list[bytes]) -> dict[str, Any] | None:
    """The compiled engine from the JSON records themselves (decoding in the core: ``process_raw``), if its
    detection runs in the core."""
    engine = new_engine(settings.replace({"engine.core": "compiled"}))
    if getattr(engine, "detection", None) != "compiled":
        return None
    batch_size = int(settings.engine["batch_size"])
    risks: list[np.ndarray] = []
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, len(records), batch_size):
        outcome, _ = engine.process_raw(records[i : i + batch_size])  # type: ignore[attr-defined]
        risks.append(outcome.risk)
    return {"seconds": time.perf_counter() - t0, "risk": np.concatenate(risks) if risks else np.empty(0)}


def _run_csv(settings: Settings, path: str, mapping: ColumnMapping, limit: int | None) -> dict[str, Any] | None:
    """The compiled engine from the CSV file itself, end to end (reading and gunzipping the file, decoding in the
    core: ``process_csv``), if its detection runs in the core; ``read_seconds`` of it reading the file."""
    from pathlib import Path

    from stream.sources import CsvReader, open_text

    engine = new_engine(settings.replace({"engine.core": "compiled"}))
    if getattr(engine, "detection", None) != "compiled":
        return None
    batch_size = int(settings.engine["batch_size"])
    risks: list[np.ndarray] = []
    events = 0
    read = 0.0
    gc.collect()
    t0 = time.perf_counter()
    reader = CsvReader(Path(path).name, mapping)
    with open_text(path) as fh:
        chunks = reader.chunks(fh)
        while limit is None or events < limit:
            t_read = time.perf_counter()
            got = next(chunks, None)
            read += time.perf_counter() - t_read
            if got is None:
                break
            data, eof = got
            pos = 0
            while pos < len(data) and (limit is None or events < limit):
                want = batch_size if limit is None else min(batch_size, limit - events)
                outcome, _, stop = engine.process_csv(data, reader, pos, eof=eof, limit=want)  # type: ignore[attr-defined]
                risks.append(outcome.risk)
                events += len(outcome.risk)
                if stop == pos:
                    break
                pos = stop
            reader.carry(data[pos:])
    return {"seconds": time.perf_counter() - t0, "read_seconds": read,
            "risk": np.concatenate(risks) if risks else np.empty(0)}


def _run_reference(events: list[Event]) -> dict[str, Any]:
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))
    scored = [e for e in events if not isinstance(e, Label)]
    xs = [reference_x(e) for e in scored]  # built outside the timer: the engine's features are timed, this is not
    scores = np.empty(len(xs))
    gc.collect()
    t0 = time.perf_counter()
    for i, x in enumerate(xs):
        scores[i] = model.score_one(x)
        model.learn_one(x)
    return {"seconds": time.perf_counter() - t0, "risk": scores}


def run_bench(settings: Settings, *, events: int = 50_000, seed: int = 7, input_path: str | None = None,
              fmt: str | None = None, mapping: ColumnMapping | None = None, limit: int | None = None) -> dict[str, Any]:
    _RAW.clear()
    evs, decode_s, what = _load(settings, events, seed, input_path, fmt, mapping or ColumnMapping(), limit)
    # The decoded events stay in memory for every pipeline run; a full collection would walk all of them (284,807
    # objects for ULB) however little each pipeline allocates. A replay holds one batch, so they go to the
    # permanent generation: every row is timed as a long-running process would run it.
    gc.collect()
    gc.freeze()
    try:
        return _run_all(settings, evs, decode_s, what, input_path, fmt, mapping, limit)
    finally:
        gc.unfreeze()


def _run_all(settings: Settings, evs: list[Event], decode_s: float, what: str, input_path: str | None,
             fmt: str | None, mapping: ColumnMapping | None, limit: int | None) -> dict[str, Any]:
    raw_run = _run_raw(settings, _RAW.pop("records")) if "records" in _RAW else None
    csv_run = None
    if input_path is not None and mapping is not None and not mapping.is_identity and \
            (fmt or detect_format(input_path)) == "csv":
        csv_run = _run_csv(settings, input_path, mapping, limit)
    n = len(evs)
    scored = [e for e in evs if not isinstance(e, Label)]
    labels = np.array([-1 if e.label is None else e.label for e in scored], dtype=np.int8)
    core = settings.engine.get("core", "compiled")
    other_core = "python" if core == "compiled" else "compiled"
    ours = _run_engine(settings, evs)
    other = _run_engine(settings.replace({"engine.core": other_core}), evs)
    ref = _run_reference(evs)
    other_total = decode_s + other["seconds"]
    ours_total = decode_s + ours["seconds"]
    ref_total = decode_s + ref["seconds"]
    known = labels >= 0

    def quality(risk: np.ndarray) -> dict[str, float | None]:
        if not known.any():
            return {"roc_auc": None, "pr_auc": None}
        return {"roc_auc": roc_auc(labels[known], risk[known]), "pr_auc": average_precision(labels[known], risk[known])}

    stage_total = decode_s + sum(ours["stages"].values())
    return {
        "input": what,
        "events": n,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "decode_seconds": round(decode_s, 3),
        "riskstream": {
            "seconds": round(ours_total, 3),
            "events_per_second": round(n / ours_total, 1),
            "stage_share": {"decode": round(decode_s / stage_total, 4),
                            **{k: round(v / stage_total, 4) for k, v in ours["stages"].items()}},
            "alerts": ours["alerts"],
            "feature_memory": ours["memory"],
            **quality(ours["risk"]),
        },
        "river_reference": {
            "pipeline": "MinMaxScaler() | HalfSpaceTrees(seed=42), score_one then learn_one",
            "seconds": round(ref_total, 3),
            "events_per_second": round(n / ref_total, 1),
            **quality(ref["risk"]),
        },
        "speedup": round(ref_total / ours_total, 3),
        "engines": {
            "configured": core,
            core: {"events_per_second": round(n / ours_total, 1), "seconds": round(ours_total, 3)},
            other_core: {"events_per_second": round(n / other_total, 1), "seconds": round(other_total, 3)},
            # per-event engine time only (decoding is the same Python decoding for both here)
            "compiled_vs_python": round((other["seconds"] if core == "compiled" else ours["seconds"])
                                        / (ours["seconds"] if core == "compiled" else other["seconds"]), 3),
            "identical_scores": bool(np.array_equal(ours["risk"], other["risk"])),
            "identical_alerts": ours["alerts"] == other["alerts"],
            # the compiled engine fed the JSON records (decoding in the core), end to end
            **({"compiled_raw": {"events_per_second": round(n / raw_run["seconds"], 1),
                                 "seconds": round(raw_run["seconds"], 3),
                                 "identical_scores": bool(np.array_equal(
                                     raw_run["risk"], ours["risk"] if core == "compiled" else other["risk"]))}}
               if raw_run is not None else {}),
            # the compiled engine fed the CSV file itself (reading, gunzip and decoding in the run), end to end
            **({"compiled_csv": {
                "events_per_second": round(n / csv_run["seconds"], 1),
                "seconds": round(csv_run["seconds"], 3),
                "read_seconds": round(csv_run["read_seconds"], 3),
                "vs_river": round(ref_total / csv_run["seconds"], 3),
                "vs_river_model_only": round(ref["seconds"] / csv_run["seconds"], 3),
                "identical_scores": bool(np.array_equal(
                    csv_run["risk"][:n], ours["risk"] if core == "compiled" else other["risk"]))}}
               if csv_run is not None else {}),
        },
        "config_hash": settings.config_hash,
    }


def print_bench(result: dict[str, Any]) -> None:
    from rich.table import Table

    from stream.eval.report import console

    t = Table(title=f"riskstream bench — {result['input']}", title_justify="left")
    t.add_column("pipeline")
    t.add_column("events/s", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("ROC AUC", justify="right")
    t.add_column("PR AUC", justify="right")
    for key, name in (("riskstream", "riskstream replay pipeline"), ("river_reference", "river MinMaxScaler|HST")):
        r = result[key]
        t.add_row(name, f"{r['events_per_second']:,.0f}", f"{r['seconds']:.2f}",
                  "n/a" if r.get("roc_auc") is None else f"{r['roc_auc']:.4f}",
                  "n/a" if r.get("pr_auc") is None else f"{r['pr_auc']:.4f}")
    eng = result["engines"]
    other = "python" if eng["configured"] == "compiled" else "compiled"
    t.add_row(f"riskstream, {other} engine", f"{eng[other]['events_per_second']:,.0f}", f"{eng[other]['seconds']:.2f}",
              "same scores" if eng["identical_scores"] else "[red]scores differ[/]", "")
    if "compiled_raw" in eng:
        r = eng["compiled_raw"]
        t.add_row("riskstream compiled, from JSON records", f"{r['events_per_second']:,.0f}", f"{r['seconds']:.2f}",
                  "same scores" if r["identical_scores"] else "[red]scores differ[/]", "")
    if "compiled_csv" in eng:
        r = eng["compiled_csv"]
        t.add_row("riskstream compiled, from the CSV file", f"{r['events_per_second']:,.0f}", f"{r['seconds']:.2f}",
                  "same scores" if r["identical_scores"] else "[red]scores differ[/]", "")
    console.print(t)
    if "compiled_csv" in eng:
        r = eng["compiled_csv"]
        console.print(f"compiled engine from the CSV file / river: [bold]{r['vs_river']:.2f}x[/] (river's time "
                      f"with the Python decoding both get), {r['vs_river_model_only']:.2f}x (river's model alone)")
    shares = ", ".join(f"{k} {v:.0%}" for k, v in result["riskstream"]["stage_share"].items())
    console.print(f"riskstream ({eng['configured']} engine) / river speed ratio: [bold]{result['speedup']:.2f}x[/]   "
                  f"stage share: {shares}")
    same = "yes" if eng["identical_scores"] else "[red]no[/]"
    console.print(f"compiled / python engine (engine time, decoding excluded): "
                  f"[bold]{eng['compiled_vs_python']:.2f}x[/]   identical scores: {same}")
