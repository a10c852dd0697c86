"""``riskstream label import|export``: review outcomes and chargebacks into the store, and out as label events."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

import click
import orjson

from stream.cli.base import fail_cleanly, parse_since
from stream.cli.db import config_option, db_option, resolve_database
from stream.config import load_settings
from stream.errors import SourceError
from stream.events import from_dict

__all__ = ["label", "write_label_events", "send_label_events"]


def write_label_events(events: Sequence[dict[str, Any]], out: IO[bytes]) -> int:
    """Write label events as JSON lines, each checked to decode as a ``label`` event; returns the count."""
    for e in events:
        from_dict(e)  # the same validation the engine applies; a bad one raises InvalidEvent
        out.write(orjson.dumps(e) + b"\n")
    out.flush()
    return len(events)


def send_label_events(keyed: Sequence[tuple[str, dict[str, Any]]], bootstrap: str, topic: str, *,
                      timeout_s: float = 30.0, bootstrap_timeout_ms: int | None = None) -> int:
    """Produce ``(key, label event)`` pairs to a Kafka topic (``acks=all``); returns how many were acked."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from sinks.errors import SinkError

    for _, e in keyed:
        from_dict(e)
    from stream.kafka.client import DEFAULT_BOOTSTRAP_TIMEOUT_MS, unreachable

    boot_ms = bootstrap_timeout_ms or DEFAULT_BOOTSTRAP_TIMEOUT_MS
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="riskstream-label",
                                 max_block_ms=int(timeout_s * 1000), bootstrap_timeout_ms=boot_ms)
    except KafkaError as e:
        raise unreachable(bootstrap, e, boot_ms) from e
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


@click.group("label")
def label() -> None:
    """Review outcomes and chargebacks: store them, and turn them into label events for the learner."""


@label.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option
@config_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Input format (default: from the file name; .gz allowed).")
@click.option("--source", type=click.Choice(["review", "chargeback"]), default=None,
              help="Source of records that do not name one.")
@fail_cleanly
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
@db_option
@config_option
@click.option("--since", default=None, metavar="WHEN",
              help="Only feedback at or after WHEN (30m, 2d, ISO-8601).")
@click.option("--out", "-o", default="-", show_default=True, metavar="FILE",
              help="JSON-lines file of label events ('-': standard output).")
@click.option("--kafka", "bootstrap", default=None, metavar="HOST:PORT",
              help="Send the label events to Kafka instead (key: the user id), e.g. 127.0.0.1:9092.")
@click.option("--topic", default=None, help="Kafka topic (default: kafka.labels_topic).")
@click.option("--event-time-delay", default=None, metavar="DURATION",
              help="Time each label at its event's time plus DURATION (1d, 12h, 0) instead of when it was "
                   "recorded, for a replay of the recorded stream; events that never alerted are left out.")
@click.option("--every-record", is_flag=True,
              help="One label per stored record (default: per event, from its latest record).")
@fail_cleanly
def label_export(db: str | None, config: str | None, since: str | None, out: str, bootstrap: str | None,
                 topic: str | None, event_time_delay: str | None, every_record: bool) -> None:
    """Turn stored review outcomes and chargebacks into `label` events (JSON lines, or a Kafka topic).

    \b
    One label per event: its latest record wins (a re-reviewed event says what its last verdict says);
    --every-record exports every stored record instead. Console verdicts: fraud -> 1, legitimate -> 0;
    unsure is not stored as a label. For a replay, time the labels in the stream's event time:
      riskstream label export --db URL --event-time-delay 1d -o labels.jsonl
      riskstream replay events.jsonl.gz labels.jsonl -c cfg.toml
    """
    from sinks.feedback import FeedbackStore
    from stream.eval.delayed_labels import parse_duration

    since_ts = parse_since(since) if since else None
    delay = None if event_time_delay is None else parse_duration(event_time_delay)
    store = FeedbackStore(resolve_database(db, config))
    try:
        keyed = store.label_events(since=since_ts, latest=not every_record, event_time_delay=delay)
    finally:
        store.close()
    if bootstrap:
        kafka = load_settings(config).kafka
        name = topic or str(kafka["labels_topic"])
        n = send_label_events(keyed, bootstrap, name, bootstrap_timeout_ms=int(kafka["bootstrap_timeout_ms"]))
        click.echo(f"sent {n} label events to {name} at {bootstrap}", err=True)
        return
    events = [e for _, e in keyed]
    if out == "-":
        n = write_label_events(events, sys.stdout.buffer)
    else:
        with open(out, "wb") as fh:
            n = write_label_events(events, fh)
    click.echo(f"wrote {n} label events to {'stdout' if out == '-' else out}", err=True)
