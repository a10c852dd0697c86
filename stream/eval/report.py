"""Terminal output for replay, demo and bench: a progress bar, the summary table and the top alerts (rich)."""

from __future__ import annotations

import contextlib
import heapq
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from detectors.text import number
from sinks.alert import Alert

__all__ = ["progress", "print_summary", "TopAlerts", "format_reason", "console"]

# Piped or captured output gets a wide page rather than rich's 80 columns, so alert reasons stay readable.
console = Console(stderr=False, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress(quiet: bool, title: str, *, total_bytes: int = 0, source: Any = None,
             console: Console | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr when it is a terminal (or on ``console``), advanced with each batch and outcome.

    With ``total_bytes`` and a ``source`` that reports ``bytes_read`` (a file source: a ``.gz`` counts compressed
    bytes against its compressed size) the bar shows the share of the input read, events/s and the time left;
    otherwise (a Kafka replay) a running count. The yielded callable's ``task`` is the rich task (None when quiet).
    """
    if quiet or (console is None and not sys.stderr.isatty()):
        yield _Advance()
        return
    sized = total_bytes > 0 and hasattr(source, "bytes_read")
    counts = TextColumn("{task.fields[events]:,} events, {task.fields[alerts]:,} alerts, "
                        "{task.fields[invalid]:,} invalid")
    columns: list[str | ProgressColumn] = [TextColumn(f"[bold]{title}[/]"), BarColumn()]
    if sized:
        columns += [TaskProgressColumn(), counts, _EventRate(), TextColumn("eta"), TimeRemainingColumn()]
    else:
        columns += [counts, _EventRate(), TimeElapsedColumn()]
    with Progress(*columns, console=console or err_console, transient=True) as bar:
        task = bar.add_task(title, total=total_bytes if sized else None, events=0, alerts=0, invalid=0)
        advance = _Advance(bar, task, source if sized else None)
        yield advance
        advance.done()


class _EventRate(ProgressColumn):
    """Records (events, labels and invalid ones) per second since the bar started."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{task.fields['events'] / elapsed:,.0f} events/s" if elapsed else "- events/s")


class _Advance:
    """What :func:`progress` yields: called with each batch and its outcome, it moves the bar on."""

    def __init__(self, bar: Progress | None = None, task_id: TaskID | None = None, source: Any = None) -> None:
        self.bar, self.task_id, self.source = bar, task_id, source
        self.events = self.alerts = self.invalid = 0

    @property
    def task(self) -> Task | None:
        return None if self.bar is None or self.task_id is None else self.bar.tasks[self.task_id]

    def __call__(self, batch: Any, outcome: Any) -> None:
        if self.bar is None or self.task_id is None:
            return
        self.events += len(batch)
        self.alerts += len(outcome.alerts)
        self.invalid += len(batch.invalid)
        if self.source is not None:  # bytes of the input read, of its total size
            self.bar.update(self.task_id, completed=self.source.bytes_read, events=self.events, alerts=self.alerts,
                            invalid=self.invalid)
        else:
            self.bar.update(self.task_id, advance=len(batch), events=self.events, alerts=self.alerts,
                            invalid=self.invalid)

    def done(self) -> None:
        """The input was read to its end (or to where it broke): the bar shows how far that was."""
        if self.bar is not None and self.task_id is not None and self.source is not None:
            self.bar.update(self.task_id, completed=self.source.bytes_read)


class TopAlerts:
    """Keeps the ``n`` highest-scoring alerts seen (ties: earliest first)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[float, int, Alert]] = []
        self._seq = 0

    def offer(self, alerts: Sequence[Alert]) -> None:
        if self.n <= 0:  # --top 0: keep none (and never look at an empty heap's top)
            return
        for a in alerts:
            self._seq += 1
            item = (a.score, -self._seq, a)
            if len(self._heap) < self.n:
                heapq.heappush(self._heap, item)
            elif item > self._heap[0]:
                heapq.heapreplace(self._heap, item)

    def best(self) -> list[Alert]:
        return [a for _, _, a in sorted(self._heap, reverse=True)]


def format_reason(r: Mapping[str, Any], *, detail: bool = True) -> str:
    """One reason as text, numbers to a few significant digits:
    ``zscore: merchant_orders_1m=14 (median 1, scale 0.741, z=17.5)``; a rule shows its clause values
    (``rules: rule shared_device: device_users_24h=6 >= 3``), the ensemble why the action is not review.
    A detail that starts with ``feature=`` (the detectors' own) is shown as it is; ``detail=False`` keeps to
    ``feature=value``."""
    det = r.get("detector", "?")
    feat = r.get("feature")
    value = r.get("value")
    text = r.get("detail")
    if feat is None or value is None:
        return f"{det}: {text or feat or ''}".strip()
    vtxt = number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
    head = f"{det}: {feat}={vtxt}"
    if not detail or not text:
        return head
    if str(text).startswith(f"{feat}="):
        return f"{det}: {text}"
    return f"{head} ({text})"


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def print_summary(report: Mapping[str, Any], top: Sequence[Alert], outputs: Mapping[str, str | None]) -> None:
    t = Table(title="riskstream replay", show_header=False, title_justify="left")
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    rows = [
        ("events scored", f"{report['events']:,}"),
        ("invalid (dead-lettered)", f"{report['invalid']:,}"),
        ("alerts", f"{report['alerts']:,}  ({report['alerts_per_1k']} per 1k, budget {report['budget'] * 1000:g})"),
        ("ROC AUC (exact)", _fmt(report.get("roc_auc"))),
        ("PR AUC (average precision)", _fmt(report.get("pr_auc"))),
        ("precision of alerts", _fmt(report.get("precision_at_budget"))),
        ("recall of alerts", _fmt(report.get("recall_at_budget"))),
        ("events/s", f"{report['events_per_second']:,.0f}" if report.get("events_per_second") else "n/a"),
        ("config hash", report.get("config_hash", "")),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if report.get("dead_letter_reasons"):
        rt = Table(title="dead-letter reasons", title_justify="left")
        rt.add_column("records", justify="right")
        rt.add_column("reason")
        for r in report["dead_letter_reasons"][:5]:
            rt.add_row(f"{r['count']:,}", r["reason"])
        console.print(rt)
    if report.get("per_scenario"):
        st = Table(title="per scenario (share of the scenario's events alerted)", title_justify="left")
        st.add_column("scenario")
        st.add_column("events", justify="right")
        st.add_column("alerted", justify="right")
        st.add_column("rate", justify="right")
        for name, e in {**report["per_scenario"], **report.get("benign", {})}.items():
            style = "green" if not name.startswith("benign_") else "yellow"
            st.add_row(f"[{style}]{name}[/]", f"{e['events']:,}", f"{e['alerted']:,}", f"{e['rate']:.3f}")
        console.print(st)
    if top:
        at = Table(title=f"top {len(top)} alerts", title_justify="left", show_lines=True)
        at.add_column("score", justify="right")
        at.add_column("severity")
        at.add_column("action")
        at.add_column("event")
        at.add_column("entity")
        at.add_column("reasons")
        for a in top:
            lines: list[str] = []
            for r in a.reasons:
                line = format_reason(r)
                if line not in lines:
                    lines.append(line)
            reasons = "\n".join(lines[:4])
            at.add_row(f"{a.score:.4f}", a.severity, a.action, f"{a.event_type} {a.event_id}", a.entity_key, reasons)
        console.print(at)
    written = [f"{k}: {v}" for k, v in outputs.items() if v]
    if written:
        console.print("written: " + "; ".join(written))
