"""``riskstream alerts tail|query``: follow the alerts topic, or query the alert store.

``query`` reads ``--db URL``, else ``sinks.database`` from ``--config`` / ``RISKSTREAM_DATABASE_URL``; its
password is never printed.
"""

from __future__ import annotations

import csv
import io
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from sinks.alert import ACTIONS, SEVERITIES, Alert
from sinks.errors import SinkError
from stream.cli.base import fail_cleanly, is_duration, parse_since, parse_when
from stream.cli.db import config_option, db_option, resolve_database
from stream.config import load_settings
from stream.errors import ConfigError

__all__ = ["alerts", "alerts_tail", "alerts_query", "render_alert", "SEVERITY_STYLES", "parse_since", "format_alerts",
           "QUERY_FORMATS"]

_DAY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")

#: rich styles of the severities in pretty output.
SEVERITY_STYLES = {"low": "dim", "medium": "yellow", "high": "bold red", "critical": "bold white on red"}


@click.group("alerts")
def alerts() -> None:
    """Read alerts: query the alert store, or follow the alerts topic."""


#: The group under its older name.
alerts_group = alerts


def render_alert(alert: Alert, *, reasons: int = 3) -> str:
    """One alert as rich markup: a head line (event time, score, severity, action, entity, event) and its top
    ``reasons``, one per indented line."""
    from rich.markup import escape

    from stream.eval.report import format_reason

    when = datetime.fromtimestamp(alert.event_ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    style = SEVERITY_STYLES.get(alert.severity, "")
    sev = f"[{style}]{alert.severity.upper():<8}[/]" if style else f"{alert.severity.upper():<8}"
    head = (f"{when}  [bold]{alert.score:.4f}[/]  {sev}  {escape(alert.action):<7}  "
            f"[cyan]{escape(alert.entity_key)}[/]  {escape(alert.event_type)} {escape(alert.event_id)}")
    lines = [head] + [f"    - {escape(format_reason(r))}" for r in alert.reasons[:reasons]]
    return "\n".join(lines)


def _stop_on_sigterm() -> Any:
    """``docker stop`` sends SIGTERM: leave the loop like Ctrl-C does, so the subscriber closes cleanly.
    Returns the previous handler (None when not on the main thread, where handlers cannot be set)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


@alerts.command("tail")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="Config TOML laid over the defaults (for kafka.bootstrap_servers and kafka.alerts_topic).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Kafka bootstrap servers (default: kafka.bootstrap_servers / RISKSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--topic", default=None, help="Alerts topic (default: kafka.alerts_topic).")
@click.option("--group-id", default=None,
              help="Read as this consumer group and commit what was shown (default: no group, nothing "
                   "stored).")
@click.option("--from-beginning", is_flag=True,
              help="Start at the beginning of the topic instead of its end (with --group-id: only where the "
                   "group has no committed offset).")
@click.option("--severity", type=click.Choice(SEVERITIES), default=None,
              help="Only alerts of at least this severity.")
@click.option("--entity", default=None, metavar="KIND:ID",
              help="Only alerts involving this entity, e.g. user:u42 or device:d9.")
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty", show_default=True,
              help="pretty: colored lines with the top reasons; json: one alert JSON object per line.")
@click.option("--max", "max_alerts", type=click.IntRange(min=1), default=None,
              help="Stop after printing N alerts.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Stop after S seconds without a new alert (default: follow until interrupted).")
@click.option("--read-uncommitted", is_flag=True,
              help="Also show alerts of open and aborted transactions (debugging). By default only committed "
                   "ones are read (isolation_level=read_committed), each exactly once with kafka.exactly_once.")
@fail_cleanly
def alerts_tail(config: str | None, bootstrap: str | None, topic: str | None, group_id: str | None,
                from_beginning: bool, severity: str | None, entity: str | None, fmt: str,
                max_alerts: int | None, timeout: float | None, read_uncommitted: bool) -> None:
    """Follow the alerts topic and print each alert once (repeats of an alert id are dropped).

    Reads committed transactions only (see --read-uncommitted).

    \b
    riskstream alerts tail --severity high
    riskstream alerts tail --from-beginning --entity user:u42 --format json --timeout 5
    """
    from rich.console import Console

    from stream.errors import ConfigError
    from stream.kafka.subscriber import AlertSubscriber

    settings = load_settings(config)
    k = settings.kafka
    servers = bootstrap or str(k["bootstrap_servers"])
    name = topic or str(k["alerts_topic"])
    if not name:
        raise ConfigError("no alerts topic: pass --topic or set kafka.alerts_topic")
    try:
        sub = AlertSubscriber(servers, name, group_id=group_id, from_beginning=from_beginning,
                              severity=severity, entity=entity, idle_timeout_s=timeout,
                              read_committed=not read_uncommitted,
                              consumer_config={"bootstrap_timeout_ms": int(k["bootstrap_timeout_ms"])})
    except ValueError as e:
        raise ConfigError(f"--entity: {e}") from None
    console = Console(highlight=False, soft_wrap=True)
    if fmt == "pretty":
        target = f" (group {group_id})" if group_id else ""
        click.echo(f"following {name} at {servers}{target}; Ctrl-C to stop", err=True)
    previous = _stop_on_sigterm()
    shown = 0
    try:
        for alert in _limited(sub, max_alerts):
            if fmt == "json":
                sys.stdout.buffer.write(alert.to_json() + b"\n")
                sys.stdout.buffer.flush()
            else:
                console.print(render_alert(alert))
            shown += 1
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # Ctrl-C, docker stop, or the reader of a pipe went away: a normal end of a tail
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sub.close()
    if fmt == "pretty":
        plural = "s" if shown != 1 else ""
        click.echo(f"{shown} alert{plural} shown ({sub.duplicates} repeats dropped)", err=True)


def _limited(sub: Any, n: int | None) -> Iterator[Alert]:
    for i, alert in enumerate(sub, 1):
        yield alert
        if n is not None and i >= n:
            return


# --- alerts query (the alert store) -------------------------------------------------------------------------

QUERY_FORMATS = ("table", "json", "jsonl", "csv")


# --- formatting ---------------------------------------------------------------------------------------------

_CSV_COLUMNS = ("alert_id", "event_id", "event_type", "entity_key", "event_time", "detected_at", "score",
                "severity", "action", "config_hash", "topic", "partition", "offset", "entities", "reasons",
                "detector_scores")


def _top_reason(a: Alert) -> str:
    from stream.eval.report import format_reason

    return format_reason(a.reasons[0]) if a.reasons else ""


def format_alerts(alerts: Sequence[Alert], fmt: str) -> str:
    """Alerts as text: ``table`` (aligned columns), ``json`` (an array), ``jsonl`` (one per line) or ``csv``.

    ``json``/``jsonl`` hold :meth:`Alert.to_dict` (the alerts topic and JSONL sink format); ``csv`` holds its
    scalar fields and the nested ones (``entities``, ``reasons``, ``detector_scores``) as JSON text.
    """
    if fmt == "json":
        return orjson.dumps([a.to_dict() for a in alerts], option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "jsonl":
        return "".join(a.to_json().decode() + "\n" for a in alerts)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_CSV_COLUMNS)
        for a in alerts:
            d = a.to_dict()
            prov = d["provenance"]
            w.writerow([d["alert_id"], d["event_id"], d["event_type"], a.entity_key, d["event_time"],
                        d["detected_at"], d["score"], d["severity"], d["action"], d["config_hash"],
                        prov["topic"] or "", "" if prov["partition"] is None else prov["partition"],
                        "" if prov["offset"] is None else prov["offset"],
                        orjson.dumps(d["entities"]).decode(), orjson.dumps(d["reasons"]).decode(),
                        orjson.dumps(d["detector_scores"]).decode()])
        return buf.getvalue()
    if fmt == "table":
        header = ("event_time", "severity", "score", "action", "entity", "type", "event_id", "top reason")
        rows = [(a.to_dict()["event_time"], a.severity, f"{a.score:.4f}", a.action, a.entity_key,
                 a.event_type, a.event_id, _top_reason(a)) for a in alerts]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines = ["  ".join([*(str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)),
                            str(r[-1])]).rstrip() for r in [header, *rows]]
        return "\n".join(lines) + f"\n({len(alerts)} alert{'s' if len(alerts) != 1 else ''})\n"
    raise ConfigError(f"--format must be one of {', '.join(QUERY_FORMATS)}, not {fmt!r}")


@alerts.command("query")
@db_option
@config_option
@click.option("--entity", default=None, metavar="KIND:ID", help="Only this entity's alerts, e.g. user:u42.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only alerts whose event time is at or after WHEN: an ISO-8601 time, or a duration (30m, 1h, 2d, "
                   "1w) counted back from the event time of the newest alert in the store, not from the wall "
                   "clock: on a live store that is about now, and replayed or demo data (event times in the "
                   "past) is found too.")
@click.option("--from", "from_", default=None, metavar="WHEN",
              help="Only alerts whose event time is at or after WHEN (ISO-8601 or epoch seconds; instead of --since).")
@click.option("--to", default=None, metavar="WHEN",
              help="Only alerts whose event time is before WHEN (ISO-8601 or epoch seconds; a bare date: through "
                   "the end of that day).")
@click.option("--severity", type=click.Choice(SEVERITIES), default=None,
              help="Only alerts of at least this severity (high: high and critical), as in alerts tail.")
@click.option("--min-score", type=click.FloatRange(min=0, max=1), default=None, metavar="SCORE",
              help="Only alerts scored at least SCORE (0 to 1).")
@click.option("--action", type=click.Choice(ACTIONS), default=None, help="Only alerts with this action.")
@click.option("--rule", default=None, metavar="NAME",
              help="Only alerts that rule NAME fired on (one of their reasons is that rule).")
@click.option("--sort", type=click.Choice(["time", "score"]), default="time", show_default=True,
              help="time: the newest alerts, printed oldest first; score: the highest scores, printed highest "
                   "first.")
@click.option("--format", "fmt", type=click.Choice(QUERY_FORMATS), default="table", show_default=True,
              help="table for people; json (array), jsonl or csv for tools.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="At most this many alerts (0: all), the first ones in --sort order.")
@click.option("--table", "table_name", default="alerts", show_default=True, help="Alerts table name.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@fail_cleanly
def alerts_query(db: str | None, config: str | None, entity: str | None, since: str | None, from_: str | None,
                 to: str | None, severity: str | None, min_score: float | None, action: str | None,
                 rule: str | None, sort: str, fmt: str, limit: int, table_name: str, out: str | None) -> None:
    """Query the alert store by entity, event time, severity, score, action and rule.

    \b
    riskstream alerts query --db postgresql+psycopg://... --entity user:u42 --since 1h
    riskstream alerts query --severity critical --from 2024-05-01 --to 2024-05-07 --format csv -o critical.csv
    riskstream alerts query --db sqlite:///riskstream-demo/alerts.db --rule shared_device --sort score
    """
    from sinks.sql import SqlSink

    if entity is not None and ":" not in entity:
        raise ConfigError(f"--entity: expected KIND:ID such as user:u42, not {entity!r}")
    if since is not None and from_ is not None:
        raise ConfigError("--since and --from both set where the range starts: give one of them")
    start = parse_when("--from", from_)
    end = parse_when("--to", to)
    if end is not None and _DAY.match(to or ""):
        end += 86400.0  # a bare date: through the end of that day
    back = is_duration(since) if since is not None else False
    if since is not None and not back:
        start = parse_since(since)
    url = resolve_database(db, config)
    sink = SqlSink(url, table=table_name, create=False, retries=0)
    try:
        newest = sink.newest_event_ts() if back else None
        if back and newest is None:
            found = []  # an empty store: nothing to count back from, nothing to find
        else:
            if back:
                start = parse_since(str(since), now=newest)
            found = sink.query(entity_key=entity, since=start, until=end, min_severity=severity, min_score=min_score,
                               action=action, rule=rule, limit=limit or None, newest_first=True, sort=sort)
    except SinkError as e:
        if "does not exist" in str(e) or "no such table" in str(e):
            raise SinkError(f"{e} (create the schema with `riskstream db upgrade`)") from e
        raise
    finally:
        sink.close()
    if sort == "time":
        found.reverse()
    text = format_alerts(found, fmt)
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {len(found)} alerts to {out}", err=True)
    else:
        click.echo(text, nl=False)
