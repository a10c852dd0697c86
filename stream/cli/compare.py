"""``riskstream compare``: replay reports of the same stream side by side (registered on :data:`stream.cli.cli`).

Comparing two detector configurations is two ``replay --report`` runs on the same recorded traffic and one
``compare``: the first report is the baseline, every other column shows its value and its difference to it. The
reports must describe the same stream (same events, positives, time span and evaluation window); otherwise the
numbers would not be comparable and the command says which one differs.

With each replay's ``--scores-out`` file (``--scores``, in the reports' order), every difference of ROC AUC, PR
AUC and precision at the budget gets its 95 % interval from a stratified paired bootstrap of the labelled events
(``stream.eval.metrics.paired_bootstrap``): an interval that holds 0 says the difference could be the draw of
which events were fraud, not the configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.base import fail_cleanly
from stream.errors import ConfigError

__all__ = ["compare", "compare_reports", "load_report"]

#: What makes two reports the same stream: (label, getter); a value one report lacks is not compared.
_SAME_STREAM: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("events", lambda r: r.get("events")),
    ("positives", lambda r: r.get("positives")),
    ("stream_seconds", lambda r: r.get("stream_seconds")),
    ("eval.eval_events", lambda r: (r.get("eval") or {}).get("eval_events")),
    ("eval.positives", lambda r: (r.get("eval") or {}).get("positives")),
)


def load_report(path: str | Path) -> dict[str, Any]:
    """A ``riskstream replay --report`` file, or :class:`ConfigError` naming the file and what is wrong."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{p}: not JSON ({e})") from None
    if not isinstance(data, dict) or "events" not in data or "config_hash" not in data:
        raise ConfigError(f"{p}: not a riskstream replay report (no 'events' / 'config_hash')")
    return data


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _scenario(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get(key) or {}).get(name)


def _delay(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: ((r.get("eval") or {}).get("detection_delay") or {}).get(name, {}).get("median_delay_s")


def _detector(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: ((r.get("detectors") or {}).get(name) or {}).get(key)


def _rows(reports: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(metric, one value per report) for every metric some report has, in reading order."""
    rows: list[tuple[str, list[Any]]] = []

    def add(label: str, get: Callable[[dict[str, Any]], Any]) -> None:
        values = [get(r) for r in reports]
        if any(v is not None for v in values):
            rows.append((label, values))

    add("config", lambda r: f"{r.get('config_source', '?')} ({r['config_hash']})")
    add("budget", lambda r: r.get("budget"))
    add("label delay (s)", lambda r: r.get("label_delay_s"))
    add("alerts", lambda r: r.get("alerts"))
    add("alerts per 1k events", lambda r: r.get("alerts_per_1k"))
    add("precision at budget", lambda r: r.get("precision_at_budget"))
    add("recall at budget", lambda r: r.get("recall_at_budget"))
    add("PR AUC (average precision)", lambda r: r.get("pr_auc"))
    add("ROC AUC", lambda r: r.get("roc_auc"))
    # each detector alone (its calibrated evidence over the labelled events it scored): which one sees the signal
    for d in sorted({d for r in reports for d in r.get("detectors") or {}}):
        add(f"{d} alone: PR AUC", _detector(d, "pr_auc"))
        add(f"{d} alone: ROC AUC", _detector(d, "roc_auc"))
    evals = [r.get("eval") or {} for r in reports]
    if any(e.get("eval_from") is not None or e.get("eval_to") is not None for e in evals):
        add("eval window: PR AUC", lambda r: (r.get("eval") or {}).get("pr_auc"))
        add("eval window: ROC AUC", lambda r: (r.get("eval") or {}).get("roc_auc"))
    ks = {e.get("k") for e in evals if e.get("k") is not None}
    k = f"@{ks.pop()}" if len(ks) == 1 else "@k"
    add(f"card precision{k} (daily)", lambda r: (r.get("eval") or {}).get("card_precision_at_k"))

    def protocol(r: dict[str, Any]) -> dict[str, Any]:
        hp = (r.get("eval") or {}).get("handbook_protocol") or {}
        return hp if hp.get("known_from") is not None else {}

    if any(protocol(r) for r in reports):
        add("handbook protocol: ROC AUC", lambda r: protocol(r).get("roc_auc"))
        add("handbook protocol: PR AUC", lambda r: protocol(r).get("pr_auc"))
        add(f"handbook protocol: card precision{k}", lambda r: protocol(r).get("card_precision_at_k"))
    scenarios = sorted({s for r in reports for s in r.get("per_scenario_recall") or {}})
    for s in scenarios:
        add(f"recall {s}", _scenario(s, "per_scenario_recall"))
    for s in scenarios:
        add(f"median delay {s} (s)", _delay(s))
    for s in sorted({s for r in reports for s in r.get("benign_alert_rate") or {}}):
        add(f"alerted {s}", _scenario(s, "benign_alert_rate"))
    add("events/s", lambda r: r.get("events_per_second"))
    return rows


def _intervals(reports: Sequence[dict[str, Any]], names: Sequence[str], scores: Sequence[str | Path],
               rounds: int) -> list[tuple[str, list[Any]]]:
    """Rows of the 95 % paired bootstrap interval of each difference to the baseline, from the scores files."""
    from stream.eval.metrics import average_precision, paired_bootstrap
    from stream.eval.scores import read_labelled

    if len(scores) != len(reports):
        raise ConfigError(f"--scores: {len(scores)} file(s) for {len(reports)} reports; give one per report, in "
                          "the same order")
    loaded = [read_labelled(p) for p in scores]
    for name, path, report, (ids, y, risk, _) in zip(names, scores, reports, loaded, strict=True):
        if ids != loaded[0][0]:
            raise ConfigError(f"{path} and {scores[0]} do not hold the same events in the same order")
        ap, want = (average_precision(y, risk) if len(y) else None), report.get("pr_auc")
        if want is not None and (ap is None or abs(ap - want) > 1e-9):
            raise ConfigError(f"{path} is not the scores of {name}: its PR AUC is {ap}, the report's {want}")
    rows: dict[str, list[Any]] = {k: [None] for k in ("roc_auc", "ap", "precision")}
    _, y, risk0, alert0 = loaded[0]
    for _, _, risk, alert in loaded[1:]:
        b = paired_bootstrap(y, risk0, risk, rounds=rounds, alerted=(alert0, alert))
        for key, out in (("d_roc_auc", "roc_auc"), ("d_ap", "ap"), ("d_precision", "precision")):
            lo, hi = b.get(f"{key}_lo"), b.get(f"{key}_hi")
            rows[out].append(None if lo is None else f"[{lo:+.4f}, {hi:+.4f}]")
    return [("Δ PR AUC, 95 % interval", rows["ap"]), ("Δ ROC AUC, 95 % interval", rows["roc_auc"]),
            ("Δ precision at budget, 95 % interval", rows["precision"])]


def compare_reports(reports: Sequence[dict[str, Any]], names: Sequence[str],
                    scores: Sequence[str | Path] | None = None, rounds: int = 1000) -> dict[str, Any]:
    """The comparison of ``reports`` (the first is the baseline): ``{"reports": names, "rows": [{"metric",
    "values", "delta"}]}``, ``delta[i]`` = value i - baseline for numbers (``None`` for the baseline and for text).
    With ``scores`` (each report's ``--scores-out`` file), rows of the bootstrap intervals of the differences.

    Raises :class:`ConfigError` when the reports are not of the same stream, or a scores file is not its report's.
    """
    if len(reports) < 2:
        raise ConfigError("compare needs at least two reports")
    base = reports[0]
    for name, r in zip(names[1:], reports[1:], strict=True):
        for label, get in _SAME_STREAM:
            if None not in (get(r), get(base)) and get(r) != get(base):  # (a report may lack the eval section)
                raise ConfigError(f"{names[0]} and {name} are not of the same stream: {label} {get(base)!r} vs "
                                  f"{get(r)!r} (replay the same input with the same --eval-from/--eval-to)")
    rows = []
    for metric, values in _rows(reports):
        b = _num(values[0])
        delta: list[float | None] = [None]
        for v in values[1:]:
            x = _num(v)
            delta.append(None if b is None or x is None else x - b)
        rows.append({"metric": metric, "values": values, "delta": delta})
    if scores:
        at = next((i + 1 for i, r in enumerate(rows) if r["metric"] == "ROC AUC"), len(rows))
        extra = [{"metric": m, "values": v, "delta": [None] * len(v)} for m, v in _intervals(reports, names, scores,
                                                                                              rounds)]
        rows[at:at] = extra
    return {"reports": list(names), "rows": rows}


def _cell(metric: str, v: Any, d: float | None) -> str:
    """A value and its difference to the baseline: counts as integers, seconds and rates to one decimal, shares
    and scores to three."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int) or abs(v) >= 1000:
        fmt, dfmt = ",.0f", "+,.0f"
    elif metric.endswith("(s)") or "per 1k" in metric:
        fmt, dfmt = ",.1f", "+,.1f"
    else:
        fmt, dfmt = ".3f", "+.3f"
    text = format(v, fmt)
    if d is None:
        return text
    return f"{text} (=)" if d == 0 else f"{text} ({format(d, dfmt)})"


@click.command("compare")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the comparison as JSON.")
@click.option("--scores", multiple=True, type=click.Path(dir_okay=False),
              help="Each report's replay --scores-out file, in the reports' order (repeat): adds the 95 % paired "
                   "bootstrap interval of each difference in ROC AUC, PR AUC and precision at the budget.")
@click.option("--rounds", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap rounds of --scores.")
@fail_cleanly
def compare(reports: tuple[str, ...], out: str | None, scores: tuple[str, ...], rounds: int) -> None:
    """Put replay reports of the same stream side by side; the first is the baseline.

    \b
    riskstream replay week.jsonl.gz -c a.toml --budget 0.005 -q --report a.json --scores-out a.parquet
    riskstream replay week.jsonl.gz -c b.toml --budget 0.005 -q --report b.json --scores-out b.parquet
    riskstream compare a.json b.json --scores a.parquet --scores b.parquet
    """
    from rich.console import Console
    from rich.table import Table

    names = list(reports)
    result = compare_reports([load_report(p) for p in names], names, scores=list(scores), rounds=rounds)
    table = Table(title="riskstream compare (differences to the first report)", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(Path(name).name, justify="right")
    for row in result["rows"]:
        cells = (_cell(row["metric"], v, d) for v, d in zip(row["values"], row["delta"], strict=True))
        table.add_row(row["metric"], *cells)
    Console().print(table)
    if out:
        Path(out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        click.echo(f"comparison written to {out}")
