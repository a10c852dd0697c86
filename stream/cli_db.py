"""Database commands: ``riskstream alerts query``, ``db upgrade|current`` and ``label import|export``.

Imported by :mod:`stream.cli_ext`, it registers its commands on :data:`stream.cli.cli`. The ``alerts`` group
is shared with ``stream/cli_alerts.py`` (``alerts tail``): whichever module loads first creates it, the other
adds to it.

The database is ``--db URL``, else ``sinks.database`` from ``--config`` / ``RISKSTREAM_DATABASE_URL``. Its
password is never printed: messages name it as ``url.render_as_string(hide_password=True)``.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import orjson

from sinks.alert import SEVERITIES, Alert
from sinks.errors import SinkError
from stream.cli import _fail_cleanly, cli
from stream.config import load_settings
from stream.errors import ConfigError, SourceError
from stream.events import from_dict

__all__ = [
    "alerts", "db", "label", "parse_since", "resolve_database", "format_alerts", "write_label_events",
    "send_label_events", "QUERY_FORMATS",
]

QUERY_FORMATS = ("table", "json", "jsonl", "csv")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_since(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from ``30m`` / ``1h`` / ``2d`` / ``1w`` (that long before ``now``) or ISO-8601 text.

    >>> parse_since("1h", now=7200.0), parse_since("1970-01-01T00:01:00Z")
    (3600.0, 60.0)
    """
    m = _DURATION.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since: expected a duration (30m, 1h, 2d, 1w) or an ISO-8601 time, not {text!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def resolve_database(db: str | None, config: str | None) -> str:
    """``--db``, else ``sinks.database`` of the settings (config file, then ``RISKSTREAM_DATABASE_URL``)."""
    if db:
        return db
    url = str(load_settings(config).sinks.get("database") or "")
    if not url:
        raise ConfigError(
            "no database: pass --db URL, set sinks.database in the config, or RISKSTREAM_DATABASE_URL")
    return url


# --- formatting ---------------------------------------------------------------------------------------------

_CSV_COLUMNS = ("alert_id", "event_id", "event_type", "entity_key", "event_time", "detected_at", "score",
                "severity", "action", "config_hash", "topic", "partition", "offset", "entities", "reasons",
                "detector_scores")


def _top_reason(a: Alert) -> str:
    if not a.reasons:
        return ""
    r = a.reasons[0]
    head = ":".join(str(r[k]) for k in ("detector", "feature") if r.get(k) is not None)
    return f"{head} {r['detail']}" if r.get("detail") else head


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


# --- alerts query -------------------------------------------------------------------------------------------

_db_option = click.option("--db", default=None, metavar="URL",
                          help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/db or "
                               "sqlite:///alerts.db (default: sinks.database / RISKSTREAM_DATABASE_URL).")
_config_option = click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
                              help="Config TOML laid over the defaults (for sinks.database).")



def _alerts_group() -> None:
    """Read alerts: query the alert store, or follow the alerts topic."""


#: Shared with ``stream/cli_alerts.py`` (``alerts tail``): created here only if that module did not already.
alerts: click.Group = (cli.commands.get("alerts")  # type: ignore[assignment]
                       or cli.group("alerts")(_alerts_group))


@alerts.command("query")
@_db_option
@_config_option
@click.option("--entity", default=None, metavar="KIND:ID", help="Only this entity's alerts, e.g. user:u42.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only alerts whose event time is at or after WHEN: a duration back from now "
                   "(30m, 1h, 2d, 1w) or an ISO-8601 time.")
@click.option("--severity", type=click.Choice(SEVERITIES), default=None, help="Only alerts of this severity.")
@click.option("--format", "fmt", type=click.Choice(QUERY_FORMATS), default="table", show_default=True,
              help="table for people; json (array), jsonl or csv for tools.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="At most this many alerts (0: all), the newest ones; printed oldest first.")
@click.option("--table", "table_name", default="alerts", show_default=True, help="Alerts table name.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@_fail_cleanly
def alerts_query(db: str | None, config: str | None, entity: str | None, since: str | None,
                 severity: str | None, fmt: str, limit: int, table_name: str, out: str | None) -> None:
    """Query the alert store by entity, time and severity.

    \b
    riskstream alerts query --db postgresql+psycopg://... --entity user:u42 --since 1h
    riskstream alerts query --severity critical --since 2024-05-01 --format csv -o critical.csv
    """
    from sinks.sql import SqlSink

    if entity is not None and ":" not in entity:
        raise ConfigError(f"--entity: expected KIND:ID such as user:u42, not {entity!r}")
    since_ts = parse_since(since) if since else None
    url = resolve_database(db, config)
    sink = SqlSink(url, table=table_name, create=False, retries=0)
    try:
        found = sink.query(entity_key=entity, since=since_ts, severity=severity, limit=limit or None,
                           newest_first=True)
    except SinkError as e:
        if "does not exist" in str(e) or "no such table" in str(e):
            raise SinkError(f"{e} (create the schema with `riskstream db upgrade`)") from e
        raise
    finally:
        sink.close()
    found.reverse()
    text = format_alerts(found, fmt)
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {len(found)} alerts to {out}", err=True)
    else:
        click.echo(text, nl=False)


# --- db -----------------------------------------------------------------------------------------------------


@cli.group("db")
def db() -> None:
    """Create and migrate the database schema (alerts, review feedback, checkpoints)."""


@db.command("upgrade")
@_db_option
@_config_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@_fail_cleanly
def db_upgrade(db: str | None, config: str | None, revision: str) -> None:
    """Run the schema migrations up to REVISION (idempotent; safe while consumers run)."""
    from sinks.migrations import current, upgrade
    from sinks.sql import create_sql_engine, describe_error, hidden_url

    url = resolve_database(db, config)
    engine = create_sql_engine(url)
    try:
        before = current(engine)
        after = upgrade(engine, revision)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy or Alembic; the message is cleaned of the password
        from alembic.util import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, CommandError):
            raise ConfigError(f"--revision: {e}") from None
        if isinstance(e, SQLAlchemyError):
            reason, retriable = describe_error(e, engine.url.password)
            raise SourceError(f"cannot migrate {hidden_url(url)}: {reason}", retriable=retriable) from None
        raise
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"{hidden_url(url)}: schema already at revision {after}")
    else:
        click.echo(f"{hidden_url(url)}: schema upgraded from {before or '(empty)'} to {after}")


@db.command("current")
@_db_option
@_config_option
@_fail_cleanly
def db_current(db: str | None, config: str | None) -> None:
    """Print the schema revision of the database and the newest one this riskstream ships."""
    from sinks.migrations import current, head
    from sinks.sql import create_sql_engine, describe_error, hidden_url

    url = resolve_database(db, config)
    engine = create_sql_engine(url)
    try:
        rev = current(engine)
    except Exception as e:  # noqa: BLE001
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, SQLAlchemyError):
            reason, retriable = describe_error(e, engine.url.password)
            raise SourceError(f"cannot read {hidden_url(url)}: {reason}", retriable=retriable) from None
        raise
    finally:
        engine.dispose()
    newest = head()
    state = "up to date" if rev == newest else "run `riskstream db upgrade`"
    click.echo(f"{hidden_url(url)}: revision {rev or '(empty)'}, newest {newest} ({state})")


# --- label --------------------------------------------------------------------------------------------------


def write_label_events(events: Sequence[dict[str, Any]], out: IO[bytes]) -> int:
    """Write label events as JSON lines, each checked to decode as a ``label`` event; returns the count."""
    for e in events:
        from_dict(e)  # the same validation the engine applies; a bad one raises InvalidEvent
        out.write(orjson.dumps(e) + b"\n")
    out.flush()
    return len(events)


def send_label_events(keyed: Sequence[tuple[str, dict[str, Any]]], bootstrap: str, topic: str, *,
                      timeout_s: float = 30.0) -> int:
    """Produce ``(key, label event)`` pairs to a Kafka topic (``acks=all``); returns how many were acked."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from sinks.errors import SinkError

    for _, e in keyed:
        from_dict(e)
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="riskstream-label",
                                 max_block_ms=int(timeout_s * 1000))
    except KafkaError as e:
        raise SinkError(f"cannot connect to Kafka at {bootstrap}: {e}", retriable=True) from e
    try:
        futures = [producer.send(topic, key=k.encode(), value=orjson.dumps(e)) for k, e in keyed]
        producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)
    except KafkaError as e:
        raise SinkError(f"cannot send label events to {topic} at {bootstrap}: {e}", retriable=True) from e
    finally:
        producer.close(timeout=timeout_s)
    return len(keyed)


@cli.group("label")
def label() -> None:
    """Review outcomes and chargebacks: store them, and turn them into label events for the learner."""


@label.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_db_option
@_config_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Input format (default: from the file name; .gz allowed).")
@click.option("--source", type=click.Choice(["review", "chargeback"]), default=None,
              help="Source of records that do not name one.")
@_fail_cleanly
def label_import(file: str, db: str | None, config: str | None, fmt: str | None, source: str | None) -> None:
    """Store review outcomes / chargebacks from FILE (JSON lines or CSV) in the review_feedback table.

    \b
    Fields: event_id and/or alert_id, outcome (fraud|legit, or label 1|0), source (review|chargeback),
    ts (ISO-8601 or epoch ms), optional reviewer and user_id. Importing a file twice stores it once.
    The whole file is checked first; one bad record stores nothing.
    """
    from sinks.feedback import FeedbackStore, InvalidFeedback, read_feedback

    try:
        records = read_feedback(file, format=fmt, default_source=source)
    except InvalidFeedback as e:
        raise SourceError(str(e)) from None
    store = FeedbackStore(resolve_database(db, config))
    try:
        result = store.add(records)
    except InvalidFeedback as e:
        raise SourceError(f"{file}: {e}") from None
    finally:
        store.close()
    click.echo(f"{file}: stored {result.inserted} feedback records ({result.duplicates} already there)")


@label.command("export")
@_db_option
@_config_option
@click.option("--since", default=None, metavar="WHEN",
              help="Only feedback at or after WHEN (30m, 2d, ISO-8601).")
@click.option("--out", "-o", default="-", show_default=True, metavar="FILE",
              help="JSON-lines file of label events ('-': standard output).")
@click.option("--kafka", "bootstrap", default=None, metavar="HOST:PORT",
              help="Send the label events to Kafka instead (key: the user id), e.g. 127.0.0.1:9092.")
@click.option("--topic", default=None, help="Kafka topic (default: kafka.labels_topic).")
@_fail_cleanly
def label_export(db: str | None, config: str | None, since: str | None, out: str, bootstrap: str | None,
                 topic: str | None) -> None:
    """Turn stored review outcomes and chargebacks into `label` events (JSON lines, or a Kafka topic)."""
    from sinks.feedback import FeedbackStore

    since_ts = parse_since(since) if since else None
    store = FeedbackStore(resolve_database(db, config))
    try:
        keyed = store.label_events(since=since_ts)
    finally:
        store.close()
    if bootstrap:
        name = topic or str(load_settings(config).kafka["labels_topic"])
        n = send_label_events(keyed, bootstrap, name)
        click.echo(f"sent {n} label events to {name} at {bootstrap}", err=True)
        return
    events = [e for _, e in keyed]
    if out == "-":
        n = write_label_events(events, sys.stdout.buffer)
    else:
        with open(out, "wb") as fh:
            n = write_label_events(events, fh)
    click.echo(f"wrote {n} label events to {'stdout' if out == '-' else out}", err=True)
