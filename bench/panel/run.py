"""The real-data panel in one command: replay every stream of bench/panel/streams.toml, one at a time, and write
bench/panel/results/<stream>__<config>.json plus the table, results/panel.md.

    python bench/panel/fetch.py                 # once: materialise the external streams into the cache
    python bench/panel/run.py                   # every stream, default configuration + leave-one-out column
    python bench/panel/run.py --only ecom --only smtp
    python bench/panel/run.py --config my.toml --label mine     # an alternative configuration for every stream
    python bench/panel/run.py --table-only      # rebuild results/panel.md from the result files

Configurations. `default` is the embedded defaults (no -c). `--config FILE --label NAME` replays every stream with
that file laid over the defaults (results/<stream>__NAME.json). `--tune` replays every candidate value of each
setting in tuning.toml on every stream (results/<stream>__<label>-<value>.json, the candidate's file beside them).
`loo` is the leave-one-out configuration: for each stream, the values tuning.toml's rule picks from the *other*
streams' results only (`leave_one_out_config`). Every candidate was replayed on every stream, so run.py does not
replay it again: it records under `loo` which candidate's result it is (`"same_as"`), and the table says so.
NAB's `loo` is `riskstream nab --grid ../nab/grid.toml`: each of NAB's seven categories scored with the rate
detector's parameters chosen on the other six (its defaults were chosen on NAB, so its default row is in sample).

Budget rule (the same for all): --budget from [panel] budget in streams.toml (0.005, the engine's default), and
precision / recall at the budget are those of the alerts the engine raised online (report keys
precision_at_budget / recall_at_budget). NAB streams are scored by `riskstream nab` (NAB's windowed score), which
has no ROC AUC; their row shows the NAB standard score instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from fetch import STREAMS, default_cache, load_streams  # noqa: E402

from stream.config import DEFAULTS  # noqa: E402  (the embedded defaults, parsed once by the package)

RESULTS = HERE / "results"
TUNING = HERE / "tuning.toml"
#: The rate detector's candidates, cross-validated by NAB category for NAB's leave-one-out row.
NAB_GRID = HERE.parent / "nab" / "grid.toml"
METRICS = ("roc_auc", "pr_auc", "precision_at_budget", "recall_at_budget")


def riskstream_command() -> list[str]:
    """`riskstream` of this interpreter's environment, run from the checkout the panel lives in."""
    return [sys.executable, "-m", "stream.cli"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def shared_data(must_exist: bool = True) -> Path:
    sys.path.insert(0, str(ROOT))
    from stream.eval.data import shared_data_dir

    return Path(shared_data_dir(must_exist=must_exist))


def stream_file(stream: dict, cache: Path, data: Path | None) -> Path:
    if "convert" in stream or stream["source"].startswith("github:"):
        return cache / stream["file"]
    return (data if data is not None else shared_data()) / stream["file"]


def load_tuning(path: Path = TUNING) -> list[dict]:
    """The settings the panel tunes, each with its candidate values (tuning.toml's ``[[tuned]]``)."""
    if not path.exists():
        return []
    tuned = tomllib.loads(path.read_text()).get("tuned", [])
    for t in tuned:
        if not t.get("values") or "min_gain" not in t or t["key"].count(".") < 1:
            raise SystemExit(f"{path}: each [[tuned]] needs a dotted key, values and min_gain ({t!r})")
    return tuned


def candidate_label(tuned: dict, value: float) -> str:
    return f"{tuned['label']}-{value:g}"


def settings_toml(settings: dict[str, Any], comment: str) -> str:
    """Dotted-key settings as a TOML file laid over the defaults, each table once (TOML refuses a table defined
    twice, so two keys of ``[ensemble.weights]`` go under one header)."""
    tables: dict[str, list[str]] = {}
    for key, value in settings.items():
        table, leaf = key.rsplit(".", 1)
        tables.setdefault(table, []).append(f"{leaf} = {value!r}")
    lines = [f"# {comment}"]
    for table, rows in tables.items():
        lines += [f"[{table}]", *rows]
    return "\n".join(lines) + "\n"


def candidate_config(tuned: dict, value: float, results: Path) -> Path:
    """One candidate's configuration file (laid over the defaults), written beside its results."""
    path = results / f"{candidate_label(tuned, value)}.toml"
    path.write_text(settings_toml({tuned["key"]: value}, "a candidate of bench/panel/tuning.toml"))
    return path


class MissingResult(Exception):
    """A candidate's result the rule needs was not replayed (``run.py --tune`` replays them all)."""


def _measure(stream: dict, results: Path, label: str) -> tuple[float, float]:
    """ROC AUC and AP of one stream's result (the handbook's by its protocol)."""
    f = results / f"{stream['name']}__{label}.json"
    if not f.exists():
        raise MissingResult(f"{f} is missing: run `python bench/panel/run.py --tune` first")
    m = measured(stream, json.loads(f.read_text()))
    if m["roc_auc"] is None or m["pr_auc"] is None:
        raise MissingResult(f"{f} has no ROC AUC or AP")
    return float(m["roc_auc"]), float(m["pr_auc"])


#: The panel's standing tolerance for a change to a default (since the cold-start detector joined): no stream's
#: ROC AUC may fall by more than this, nor its AP by more than this fraction of it.
ROC_AUC_TOLERANCE = 0.005
AP_TOLERANCE = 0.05
#: The noise-aware veto (registered in bench/panel/README.md, "Deciding a candidate", before any candidate was
#: measured under it): a loss beyond the tolerance vetoes only when the paired bootstrap's 95 % interval of the
#: difference lies wholly below zero; rounds and seed of the bootstrap.
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0
#: A candidate must gain this much to be adopted: the mean ROC AUC over the voting streams (tuning.toml's
#: min_gain), or the mean relative AP by the AP tolerance.
MIN_ROC_AUC_GAIN = 0.001


def choose(tuned: dict, streams: Sequence[dict], results: Path) -> tuple[float, list[tuple[float, float]]]:
    """tuning.toml's rule over ``streams`` (NAB reads no detector setting and does not vote): from the first value,
    move to the next while the mean ROC AUC over the streams gains at least ``min_gain`` over the value picked so
    far and no stream falls below the first value's figures by more than the panel's tolerance (ROC AUC
    ``ROC_AUC_TOLERANCE``, AP ``AP_TOLERANCE`` of it). The pick, and the mean ROC AUC of every value."""
    voters = [s for s in streams if s["kind"] != "nab"]
    if not voters:
        raise MissingResult("no other stream to tune on")
    figures = {v: [_measure(s, results, candidate_label(tuned, v)) for s in voters] for v in tuned["values"]}
    means = [(v, sum(roc for roc, _ in figures[v]) / len(voters)) for v in tuned["values"]]
    start = figures[tuned["values"][0]]
    pick, best = means[0]
    for v, m in means[1:]:
        if m - best < tuned["min_gain"]:
            break
        if any(roc < roc0 - ROC_AUC_TOLERANCE or ap < ap0 * (1 - AP_TOLERANCE)
               for (roc, ap), (roc0, ap0) in zip(figures[v], start, strict=True)):
            break
        pick, best = v, m
    return pick, means


def default_value(key: str) -> Any:
    """The value of a dotted key in the embedded defaults (stream/defaults/riskstream.toml); None when the file
    leaves it to the component's own default."""
    node: Any = DEFAULTS
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def current_value(tuned: dict) -> Any:
    """The value in force: the defaults file's, else the first candidate (tuning.toml lists the setting as it was
    before the panel tuned it first)."""
    v = default_value(tuned["key"])
    return tuned["values"][0] if v is None else v


def leave_one_out_config(stream: dict, streams: Sequence[dict], results: Path = RESULTS,
                         tuning: Sequence[dict] | None = None) -> dict | None:
    """``stream``'s leave-one-out configuration: for each tuned setting, the value tuning.toml's rule picks from the
    *other* streams' candidate results (each setting's candidates were replayed with the others at their defaults).
    None when nothing is tuned or ``stream`` reads no tuned setting (NAB): its score is the default's. Otherwise
    ``{"picks": {key: value}, "why": ...}`` plus ``"same_as"``, the label of the result that is that configuration
    when one was replayed already (the picks differ from the defaults in at most one setting), else ``"config"``,
    the settings to replay."""
    tuning = load_tuning() if tuning is None else tuning
    if not tuning or stream["kind"] == "nab":  # NAB reads no detector setting
        return None
    picks, why, differ = {}, [], []
    for t in tuning:
        pick, means = choose(t, streams, results)
        picks[t["key"]] = pick
        why.append(f"{t['key']} = {pick:g} (the other streams' mean ROC AUC "
                   + ", ".join(f"{v:g}: {m:.4f}" for v, m in means) + ")")
        if pick != current_value(t):
            differ.append((t, pick))
    out: dict[str, Any] = {"picks": picks, "why": "picked on the other streams: " + "; ".join(why)}
    if not differ:
        out["same_as"] = "default"
    elif len(differ) == 1:
        out["same_as"] = candidate_label(*differ[0])
    else:
        out["config"] = {t["key"]: v for t, v in differ}
    return out


def loo_config_file(stream: dict, settings: dict[str, Any], results: Path) -> Path:
    """A leave-one-out configuration that no candidate replay covers (several picks differ from the defaults)."""
    path = results / f"loo-{stream['name']}.toml"
    path.write_text(settings_toml(settings, f"leave-one-out picks for {stream['name']} (bench/panel/tuning.toml's "
                                            "rule on the other streams)"))
    return path


def replay_command(stream: dict, path: Path, config: Path | None, budget: float, report: Path,
                   label_delay: str | None = None, label_every: str | None = None,
                   scores: Path | None = None) -> list[str]:
    args = list(stream.get("args", []))
    if label_delay is not None and "--label-delay" not in args:  # a stream with its own delay keeps it
        args += ["--label-delay", label_delay]
        if label_every is not None:
            args += ["--label-every", label_every]
    cmd = [*riskstream_command(), "replay", str(path), *args, "--budget", str(budget)]
    if config is not None:
        cmd += ["-c", str(config)]
    if scores is not None:
        cmd += ["--scores-out", str(scores)]
    return [*cmd, "-q", "--report", str(report)]


def nab_command(report: Path, data: Path | None, grid: Path | None = None) -> list[str]:
    out = report.relative_to(ROOT) if report.is_relative_to(ROOT) else report  # run from ROOT; the file says so
    cmd = [*riskstream_command(), "nab", "--out", str(out)]
    if grid is not None:
        cmd += ["--grid", str(grid.relative_to(ROOT) if grid.is_relative_to(ROOT) else grid)]
    return cmd + (["--data", str(data / "nab")] if data is not None else [])


def printable(cmd: Sequence[str], cache: Path, data: Path | None) -> str:
    """The command as the README shows it: `riskstream`, $CACHE and $DATA for the folders, results/ relative."""
    parts = list(cmd)
    if parts[:3] == riskstream_command():
        parts = ["riskstream", *parts[3:]]
    out = []
    for part in parts:
        s = str(part).replace(str(RESULTS), "bench/panel/results").replace(str(cache), "$CACHE")
        # a panel of cached streams only needs no shared folder: then there is nothing to abbreviate
        s = s.replace(str(data if data is not None else shared_data(must_exist=False)), "$DATA")
        s = s.replace(str(ROOT) + "/", "")
        out.append(s if _SAFE.fullmatch(s) else f'"{s}"')
    return " ".join(out)


_SAFE = re.compile(r"[A-Za-z0-9_./=,:$@%+-]+")


def phase_labels(stream: dict, label: str) -> list[str]:
    """The results that stand for ``label`` on ``stream`` in the rule: its own, then for a stream whose clock the
    mapping invents (``clock_offsets`` in streams.toml) the same replay with the clock moved by each offset
    (README, "The invented clock's phase")."""
    return [label] + [f"{label}+{offset}s" for offset in stream.get("clock_offsets", [])]


def run_stream(stream: dict, label: str, config: Path | None, *, budget: float, cache: Path, data: Path | None,
               results: Path, label_delay: str | None = None, label_every: str | None = None,
               nab_grid: Path | None = None, phases: bool = False) -> dict:
    """Replay ``stream`` with ``config`` as ``label``; with ``phases``, also at each of its ``clock_offsets`` (a
    shifted copy written into the cache by ``shift_clock.py``), as ``<label>+<offset>s``."""
    if stream["kind"] != "nab":
        path = stream_file(stream, cache, data)
        if not path.exists():
            hint = "python bench/panel/fetch.py" if "convert" in stream else "the shared data folder"
            return {"stream": stream["name"], "config": label, "missing": str(path), "hint": hint}
    entry = _run_one(stream, label, config, budget=budget, cache=cache, data=data, results=results,
                     label_delay=label_delay, label_every=label_every, nab_grid=nab_grid)
    if phases and stream["kind"] != "nab":
        from shift_clock import shift, shifted_name

        for offset in stream.get("clock_offsets", []):
            shifted = shifted_name(path, offset)
            if not shifted.exists() or shifted.stat().st_mtime < path.stat().st_mtime:
                shift(path, offset)
            _run_one(stream, f"{label}+{offset}s", config, budget=budget, cache=cache, data=data, results=results,
                     label_delay=label_delay, label_every=label_every, path=shifted)
    return entry


def _run_one(stream: dict, label: str, config: Path | None, *, budget: float, cache: Path, data: Path | None,
             results: Path, label_delay: str | None = None, label_every: str | None = None,
             nab_grid: Path | None = None, path: Path | None = None) -> dict:
    report = results / f"{stream['name']}__{label}.json"
    if stream["kind"] == "nab":
        cmd = nab_command(report, data, nab_grid)
    else:
        path = path or stream_file(stream, cache, data)
        scores = scores_file(cache, f"{stream['name']}__{label}")
        scores.parent.mkdir(parents=True, exist_ok=True)
        cmd = replay_command(stream, path, config, budget, report, label_delay, label_every, scores)
    started = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, env=_env(), stdout=sys.stderr)  # stdout: the table only
    entry = {"stream": stream["name"], "config": label, "config_file": str(config) if config else None,
             "command": printable(cmd, cache, data), "wall_seconds": round(time.time() - started, 1),
             "report": report.name}
    (results / f"{stream['name']}__{label}.command.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def scores_file(cache: Path, run: str) -> Path:
    """Where a replay's per-event scores are kept (the cache, never the repository): ``<stream>__<label>``."""
    return cache / "scores" / f"{run}.parquet"


def decide(streams: Sequence[dict], results: Path, cache: Path, label: str, against: str = "default",
           rounds: int = BOOTSTRAP_ROUNDS) -> dict:
    """The panel's rule for a candidate configuration ``label`` against ``against`` (README, "Deciding a
    candidate"). Per voting stream: the figures of both, the difference, and whether the stream vetoes: its ROC AUC
    falls by more than ``ROC_AUC_TOLERANCE`` or its AP by more than ``AP_TOLERANCE`` of it, *and* the stratified
    paired bootstrap's 95 % interval of that difference lies wholly below zero. Where the two replays' per-event
    scores are not both in the cache, or the figure is a protocol's subset (the handbook's), the tolerance alone
    decides, as before this rule. Adopted: no veto, and the mean ROC AUC gains ``MIN_ROC_AUC_GAIN`` or the mean
    relative AP gains ``AP_TOLERANCE``.

    A stream with ``clock_offsets`` (an invented clock) counts by its means over the phases (`phase_labels`), and
    its loss vetoes only when the bootstrap puts it below zero at every phase; the table shows phase 0's interval."""
    from stream.eval.metrics import paired_bootstrap
    from stream.eval.scores import read_labelled

    rows = []
    for s in streams:
        if s["kind"] == "nab":
            continue
        pairs = list(zip(phase_labels(s, against), phase_labels(s, label), strict=True))
        for la, lb in pairs:
            for f in (results / f"{s['name']}__{la}.json", results / f"{s['name']}__{lb}.json"):
                if not f.exists():
                    raise MissingResult(f"{f} is missing: replay it first (run.py replays every clock phase)")
        report_a = json.loads((results / f"{s['name']}__{against}.json").read_text())
        ma, mb = (_phase_mean(s, results, [p[i] for p in pairs]) for i in (0, 1))
        row: dict[str, Any] = {"stream": s["name"], "roc_auc": (ma["roc_auc"], mb["roc_auc"]),
                               "ap": (ma["pr_auc"], mb["pr_auc"]),
                               "precision_at_budget": (ma["precision_at_budget"], mb["precision_at_budget"])}
        d_roc = mb["roc_auc"] - ma["roc_auc"]
        d_ap = mb["pr_auc"] - ma["pr_auc"]
        roc_loss = d_roc < -ROC_AUC_TOLERANCE
        ap_loss = d_ap < -AP_TOLERANCE * ma["pr_auc"]
        files = [(scores_file(cache, f"{s['name']}__{la}"), scores_file(cache, f"{s['name']}__{lb}"))
                 for la, lb in pairs]
        boot = None
        protocol = bool(((report_a.get("eval") or {}).get("handbook_protocol") or {}).get("known_from"))
        if (roc_loss or ap_loss) and not protocol and all(sa.exists() and sb.exists() for sa, sb in files):
            boots = []
            for sa, sb in files:
                _, ya, ra, _ = read_labelled(sa)
                _, yb, rb, _ = read_labelled(sb)
                if len(ya) != len(yb) or (ya != yb).any():
                    raise SystemExit(f"{s['name']}: the two replays scored different labelled events")
                boots.append(paired_bootstrap(ya, ra, rb, rounds=rounds, seed=BOOTSTRAP_SEED))
            boot = boots[0]
            roc_loss = roc_loss and all(b["d_roc_auc_hi"] < 0 for b in boots)
            ap_loss = ap_loss and all(b["d_ap_hi"] < 0 for b in boots)
        row.update(d_roc_auc=d_roc, d_ap=d_ap, d_ap_relative=d_ap / ma["pr_auc"] if ma["pr_auc"] else None,
                   bootstrap=boot, veto=bool(roc_loss or ap_loss), phases=len(pairs))
        rows.append(row)
    if not rows:
        raise MissingResult("no voting stream")
    mean_roc = sum(r["d_roc_auc"] for r in rows) / len(rows)
    rel = [r["d_ap_relative"] for r in rows if r["d_ap_relative"] is not None]
    mean_ap = sum(rel) / len(rel) if rel else 0.0
    gains = mean_roc >= MIN_ROC_AUC_GAIN or mean_ap >= AP_TOLERANCE
    vetoes = [r["stream"] for r in rows if r["veto"]]
    return {"label": label, "against": against, "streams": rows, "mean_d_roc_auc": mean_roc,
            "mean_d_ap_relative": mean_ap, "gains": gains, "vetoes": vetoes, "adopt": gains and not vetoes,
            "rule": {"roc_auc_tolerance": ROC_AUC_TOLERANCE, "ap_tolerance": AP_TOLERANCE,
                     "min_roc_auc_gain": MIN_ROC_AUC_GAIN, "bootstrap_rounds": rounds,
                     "bootstrap_seed": BOOTSTRAP_SEED}}


def _phase_mean(stream: dict, results: Path, labels: Sequence[str]) -> dict:
    """ROC AUC, AP and precision at the budget of ``stream``'s results ``labels``, each the mean over them."""
    ms = [measured(stream, json.loads((results / f"{stream['name']}__{la}.json").read_text())) for la in labels]
    keys = ("roc_auc", "pr_auc", "precision_at_budget")
    return {k: sum(m[k] for m in ms) / len(ms) for k in keys}


def decision_table(d: dict) -> str:
    """The decision as markdown: one row per stream, then the verdict."""
    def pair(v: tuple) -> str:
        return f"{_f(v[0])} → {_f(v[1])}"

    def interval(b: dict | None, key: str) -> str:
        return "—" if b is None else f"[{b[key + '_lo']:+.4f}, {b[key + '_hi']:+.4f}]"

    lines = [f"`{d['label']}` against `{d['against']}`:", "",
             "| stream | ROC AUC | AP | precision at the budget | Δ ROC AUC (95 % bootstrap) | Δ AP (95 % bootstrap) "
             "| veto |", "|---|---|---|---|---|---|---|"]
    for r in d["streams"]:
        b = r["bootstrap"]
        name = r["stream"] + (f" (mean of {r['phases']} clock phases)" if r.get("phases", 1) > 1 else "")
        lines.append(f"| {name} | {pair(r['roc_auc'])} | {pair(r['ap'])} | {pair(r['precision_at_budget'])} "
                     f"| {r['d_roc_auc']:+.4f} {interval(b, 'd_roc_auc')} | {r['d_ap']:+.4f} {interval(b, 'd_ap')} "
                     f"| {'**yes**' if r['veto'] else 'no'} |")
    verdict = "adopt" if d["adopt"] else "keep the defaults"
    why = [f"mean Δ ROC AUC {d['mean_d_roc_auc']:+.4f}", f"mean relative Δ AP {d['mean_d_ap_relative']:+.1%}",
           "gains" if d["gains"] else "does not gain enough",
           f"vetoes: {', '.join(d['vetoes'])}" if d["vetoes"] else "no veto"]
    return "\n".join(lines) + f"\n\n**{verdict}** ({'; '.join(why)}).\n"


# ------------------------------------------------------------------------------------------------------- the table


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def measured(stream: dict, report: dict) -> dict:
    """The table's numbers from one report (replay or nab)."""
    if stream["kind"] == "nab":
        cv = report.get("cross_validation")  # leave-one-out: parameters chosen on the other categories
        std = cv["parameters_held_out"]["standard"] if cv else report["rate"]["profiles"]["standard"]
        return {"nab_standard": std["score"], "events": report["rate"].get("points")}
    ev = report.get("eval") or {}
    proto = ev.get("handbook_protocol") or {}
    use_proto = bool(proto.get("known_from"))
    return {
        "events": report.get("events"),
        "positives": proto.get("positives") if use_proto else report.get("positives"),
        "scored": proto.get("events") if use_proto else report.get("labelled_events"),
        "roc_auc": proto.get("roc_auc") if use_proto else report.get("roc_auc"),
        "pr_auc": proto.get("pr_auc") if use_proto else report.get("pr_auc"),
        "precision_at_budget": report.get("precision_at_budget"),
        "recall_at_budget": report.get("recall_at_budget"),
        "alerts": report.get("alerts"),
        "config_hash": report.get("config_hash"),
    }


def _cell(text: str) -> str:
    """Text inside a markdown table cell: a literal | is escaped."""
    return text.replace("|", "\\|")


def published_cell(stream: dict) -> str:
    cells = []
    for p in stream.get("published", []):
        vals = []
        for key, name in (("roc_auc", "ROC AUC"), ("ap", "AP"), ("precision", "P"), ("recall", "R"),
                          ("nab_standard", "NAB")):
            if key in p:
                vals.append(f"{name} {p[key]:g}")
        tag = " (measured)" if p.get("kind") == "measured" else ""
        cells.append(_cell(f"{p['model']}{tag}: {', '.join(vals)}"))
    return "<br>".join(cells) or "—"


def table(streams: Sequence[dict], results: Path, labels: Sequence[str], budget: float) -> str:
    head = ("| stream | config | events (positives) | ROC AUC | AP | precision @ budget | recall @ budget "
            "(ceiling) | published baselines |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in streams:
        for label in labels:
            f = results / f"{s['name']}__{label}.json"
            if not f.exists():
                continue
            rep = json.loads(f.read_text())
            same_as = rep.get("same_as")
            # a leave-one-out whose picks are the defaults' (tuned, the same on the other streams) or that has no
            # pick at all (nothing tuned, or NAB, which reads no tuned setting)
            why = "" if same_as != "default" else ": the same picks" if rep.get("picks") else ": nothing tuned"
            if same_as:
                f2 = results / f"{s['name']}__{same_as}.json"
                rep = json.loads(f2.read_text())
            m = measured(s, rep)
            shown = label
            if same_as:
                shown = f"{label} (= {same_as}{why})"
            pub = published_cell(s) if label == labels[0] else "″"
            if s["kind"] == "nab":
                if rep.get("cross_validation"):
                    shown = f"{label} (each category with the parameters chosen on the other six)"
                lines.append(f"| {_cell(s['title'])} | {shown} | {m['events']:,} points | NAB standard "
                             f"**{m['nab_standard']:.2f}** | — | — | — | {pub} |")
                continue
            scored = f"{m['events']:,} ({m['positives']:,})"
            mark = ""
            if m["scored"] not in (None, m["events"]):
                scored = f"{m['events']:,}; scored {m['scored']:,} ({m['positives']:,})"
                mark = " †"
            all_pos = rep.get("positives") or 0
            ceiling = min(1.0, budget * m["events"] / all_pos) if all_pos else None
            lines.append(f"| {_cell(s['title'])} | {shown} | {scored} | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | "
                         f"{_f(m['precision_at_budget'])}{mark} | {_f(m['recall_at_budget'])}{mark} "
                         f"({_f(ceiling, 2)}) | {pub} |")
    return "\n".join(lines) + "\n"


def detector_table(streams: Sequence[dict], results: Path, label: str) -> str:
    """Each detector alone under one configuration: ROC AUC / AP of its calibrated evidence over the labelled
    events it scored (report key ``detectors``), beside the ensemble's. Empty when no report has them."""
    rows = []
    names: set[str] = set()
    for s in streams:
        f = results / f"{s['name']}__{label}.json"
        if s["kind"] == "nab" or not f.exists():
            continue
        rep = json.loads(f.read_text())
        if rep.get("same_as"):
            rep = json.loads((results / f"{s['name']}__{rep['same_as']}.json").read_text())
        if rep.get("detectors"):
            rows.append((s, rep))
            names.update(rep["detectors"])
    if not rows:
        return ""
    cols = sorted(names)
    lines = [f"| stream ({label}) | ensemble | " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) + 1)]
    for s, rep in rows:
        cells = [f"{_f(rep.get('roc_auc'))} / {_f(rep.get('pr_auc'))}"]
        for c in cols:
            d = rep["detectors"].get(c)
            cells.append("—" if d is None else f"{_f(d.get('roc_auc'))} / {_f(d.get('pr_auc'))}")
        lines.append(f"| {_cell(s['title'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tuning_table(tuned: dict, streams: Sequence[dict], results: Path) -> str:
    """One tuned setting's candidates on every stream (ROC AUC / AP / precision at the budget), their mean ROC AUC,
    and the pick of tuning.toml's rule over all the streams."""
    voters = [s for s in streams if s["kind"] != "nab"]
    pick, means = choose(tuned, voters, results)
    lines = [f"| `{tuned['key']}` | " + " | ".join(_cell(s["title"]) for s in voters) + " | mean ROC AUC |",
             "|---|" + "---:|" * (len(voters) + 1)]
    for value, mean in means:
        cells = []
        for s in voters:
            m = measured(s, json.loads((results / f"{s['name']}__{candidate_label(tuned, value)}.json").read_text()))
            cells.append(f"{_f(m['roc_auc'])} / {_f(m['pr_auc'])} / {_f(m['precision_at_budget'])}")
        shown = f"**{value:g}** (pick)" if value == pick else f"{value:g}"
        lines.append(f"| {shown} | " + " | ".join(cells) + f" | {mean:.4f} |")
    return "\n".join(lines) + "\n"


def write_table(streams: Sequence[dict], results: Path, labels: Sequence[str], budget: float,
                name: str = "panel.md") -> str:
    text = (f"Budget {budget:g} of the events for every stream; precision / recall of the engine's online alerts "
            "(ceiling: the recall a perfect ranking could reach with that many alerts, budget x events / positives). "
            "† ROC AUC and AP on the scored subset, precision and recall over the whole replay.\n\n"
            + table(streams, results, labels, budget))
    alone = detector_table(streams, results, labels[0])
    if alone:
        text += ("\nEach detector alone (ROC AUC / AP of its calibrated evidence over every labelled event of the "
                 "replay, the handbook's whole replay included; report key `detectors`), beside the ensemble's "
                 "figures over the same events:\n\n" + alone)
    (results / name).write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=Path, default=STREAMS)
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default: stream.eval.data)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--only", action="append", help="stream name (repeatable)")
    ap.add_argument("--config", type=Path, help="an alternative configuration for every stream")
    ap.add_argument("--label", help="name of the --config results (default: the file's stem)")
    ap.add_argument("--no-default", action="store_true", help="skip the default configuration")
    ap.add_argument("--leave-one-out", dest="loo", action=argparse.BooleanOptionalAction, default=True,
                    help="also the leave-one-out picks (default on; from the --tune results, no replay)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--tuning", type=Path, default=TUNING, help="the settings tuned on the panel (tuning.toml)")
    ap.add_argument("--setting", action="append", metavar="KEY",
                    help="with --tune: replay only this tuned setting's candidates (repeatable)")
    ap.add_argument("--tune", action="store_true",
                    help="replay every candidate value of tuning.toml on every stream (then the leave-one-out picks "
                         "and the table)")
    ap.add_argument("--label-delay", metavar="DURATION",
                    help="labels revealed this late (replay's --label-delay) on every stream without its own; the "
                         "results are labelled '<config>+labels<DURATION>' (no NAB, no leave-one-out)")
    ap.add_argument("--label-every", metavar="DURATION",
                    help="with --label-delay: the labels arrive in drops every DURATION (replay's --label-every)")
    ap.add_argument("--decide", metavar="LABEL",
                    help="the rule for the replayed candidate LABEL against the defaults (with --label-delay: both "
                         "with those labels); replays nothing, writes results/decision__LABEL.md")
    args = ap.parse_args(argv)

    if args.decide:
        panel, streams = load_streams(args.streams)
        if args.only:
            streams = [s for s in streams if s["name"] in args.only]
        suffix = f"+labels{args.label_delay}" if args.label_delay else ""
        d = decide(streams, args.results, args.cache, args.decide + suffix, "default" + suffix)
        text = decision_table(d)
        (args.results / f"decision__{args.decide}{suffix}.md").write_text(text)
        (args.results / f"decision__{args.decide}{suffix}.json").write_text(json.dumps(d, indent=1) + "\n")
        print(text, end="")
        return
    if args.tune and args.label_delay:
        raise SystemExit("--tune picks on the panel without labels (the rule reads those results); drop --label-delay")
    panel, streams = load_streams(args.streams)
    every = list(streams)  # the leave-one-out picks look at every other stream, not only those of --only
    budget = float(panel.get("budget", 0.005))
    if args.only:
        unknown = set(args.only) - {s["name"] for s in streams}
        if unknown:
            raise SystemExit(f"unknown stream(s): {', '.join(sorted(unknown))}")
        streams = [s for s in streams if s["name"] in args.only]
    args.results.mkdir(parents=True, exist_ok=True)
    labels = [] if args.no_default else ["default"]
    if args.config:
        labels.append(args.label or args.config.stem)
    if args.loo and not args.label_delay:
        labels.append("loo")
    suffix = f"+labels{args.label_delay}" if args.label_delay else ""
    if args.label_delay:
        streams = [s for s in streams if s["kind"] != "nab"]

    tuning = load_tuning(args.tuning)
    if args.tune and not args.table_only:
        for t in tuning:
            if args.setting and t["key"] not in args.setting:
                continue
            for value in t["values"]:
                cfg = candidate_config(t, value, args.results)
                for s in streams:
                    if s["kind"] == "nab":
                        continue
                    entry = run_stream(s, candidate_label(t, value) + suffix, cfg, budget=budget, cache=args.cache,
                                       data=args.data, results=args.results, label_delay=args.label_delay,
                                       label_every=args.label_every)
                    print(f"{s['name']} [{candidate_label(t, value)}{suffix}]: {entry.get('wall_seconds')} s",
                          file=sys.stderr)
            try:
                pick, means = choose(t, streams, args.results)
            except MissingResult as e:
                print(f"{t['key']}: no pick, {e}", file=sys.stderr)
                continue
            print(f"{t['key']}: the panel picks {pick:g} (mean ROC AUC "
                  + ", ".join(f"{v:g}: {m:.4f}" for v, m in means) + ")", file=sys.stderr)
            if pick != current_value(t):
                print(f"{t['key']}: the defaults say {current_value(t)!r}, not the panel's pick", file=sys.stderr)
    if args.tune:
        try:
            text = "".join(tuning_table(t, every, args.results) + "\n" for t in tuning)
        except MissingResult as e:
            print(f"no tuning table yet: {e}", file=sys.stderr)
        else:
            (args.results / "tuning.md").write_text(
                "Each candidate on every stream: ROC AUC / AP / precision at the budget "
                "(`python bench/panel/run.py --tune`; the rule is in bench/panel/tuning.toml).\n\n" + text)
            print(text, end="")
    if not args.table_only:
        for s in streams:
            for label in labels:
                if label == "loo":
                    continue
                cfg = args.config if label != "default" else None
                entry = run_stream(s, label + suffix, cfg, budget=budget, cache=args.cache, data=args.data,
                                   results=args.results, label_delay=args.label_delay,
                                   label_every=args.label_every, phases=True)
                if "missing" in entry:
                    print(f"{s['name']}: skipped, {entry['missing']} is missing ({entry['hint']})", file=sys.stderr)
                else:
                    print(f"{s['name']} [{label}{suffix}]: {entry['wall_seconds']} s  {entry['command']}",
                          file=sys.stderr)
    for s in streams if "loo" in labels else []:
        if s["kind"] == "nab":  # NAB reads no tuned setting: its own parameters, cross-validated by category
            if not args.table_only:
                entry = run_stream(s, "loo", None, budget=budget, cache=args.cache, data=args.data,
                                   results=args.results, nab_grid=NAB_GRID)
                print(f"{s['name']} [loo]: {entry['wall_seconds']} s  {entry['command']}", file=sys.stderr)
            continue
        try:
            loo = leave_one_out_config(s, [o for o in every if o["name"] != s["name"]], args.results, tuning)
        except MissingResult as e:
            print(f"{s['name']}: no leave-one-out pick, {e}", file=sys.stderr)
            continue
        if loo is None:
            loo = {"same_as": "default", "why": "nothing is tuned: the configuration tuned on the other streams "
                                                "is the default"}
        if "config" in loo:  # picks no candidate replay covers: replay them
            if args.table_only:
                continue
            cfg = loo_config_file(s, loo.pop("config"), args.results)
            entry = run_stream(s, "loo", cfg, budget=budget, cache=args.cache, data=args.data, results=args.results)
            report = json.loads((args.results / f"{s['name']}__loo.json").read_text())
            report["loo"] = loo
            (args.results / f"{s['name']}__loo.json").write_text(json.dumps(report, indent=1) + "\n")
            print(f"{s['name']} [loo]: {entry.get('wall_seconds')} s", file=sys.stderr)
            continue
        if not (args.results / f"{s['name']}__{loo['same_as']}.json").exists():
            continue
        (args.results / f"{s['name']}__loo.json").write_text(json.dumps(loo, indent=1) + "\n")
    labels = [label + suffix for label in labels]
    if not labels:
        return
    print(write_table(streams, args.results, labels, budget, name=table_name(args, labels, suffix)), end="")


def table_name(args: argparse.Namespace, labels: Sequence[str], suffix: str) -> str:
    """``panel.md`` (``panel+labels1h.md``) only for the whole panel's defaults and their leave-one-out row, the
    table the README quotes; a candidate's or a partial run's table goes beside it, named by its labels, so
    replaying a candidate never overwrites the standing table."""
    whole = not (args.config or args.only or args.no_default) and (args.loo or bool(args.label_delay))
    return f"panel{suffix}.md" if whole else "panel__" + "__".join(labels) + ".md"


if __name__ == "__main__":
    main()
