"""``riskstream run``: the long-running consumer-group member (registered on :data:`stream.cli.cli`)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import orjson

from stream.cli.base import fail_cleanly
from stream.config import load_settings
from stream.errors import ConfigError, SourceError

__all__ = ["run", "JsonFormatter"]


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: ``ts``, ``level``, ``logger``, then ``event`` and its fields
    (structured
    runtime records) or ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event:
            out["event"] = event
            out.update(getattr(record, "fields", {}) or {})
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


log = logging.getLogger("riskstream.runtime")

#: Consecutive in-process restarts after a transient Kafka error before the member gives up (exit 1); a run that
#: lasted RESTART_RESET_S resets the count.
MAX_RESTARTS = 5
RESTART_RESET_S = 60.0


def run_with_restarts(run: Callable[[], None], *, sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> None:
    """``run()``, started again after a transient Kafka error (a connection refused or reset while a broker
    restarts) instead of exiting: the member leaves the group without a checkpoint and joins again, resuming
    from its last checkpoints exactly as a restarted process would (what a kill -9 and a restart prove in the
    fault suite). Backoff 1, 2, 4 ... 30 s; after MAX_RESTARTS in a row the error is raised."""
    from kafka.errors import KafkaConnectionError  # kafka-python >= 3 (pyproject): its one connection error

    restarts = 0
    while True:
        started = clock()
        try:
            run()
            return
        except KafkaConnectionError as e:
            if clock() - started >= RESTART_RESET_S:
                restarts = 0
            if restarts >= MAX_RESTARTS:
                raise
            backoff = min(30.0, 2.0 ** restarts)
            restarts += 1
            log.warning("event=restart error=%s retry_in_s=%s attempt=%d note=\"a transient Kafka error; this member "
                        "leaves the group and joins again from its checkpoints\"", f"{type(e).__name__}: {e}",
                        backoff, restarts, exc_info=True)
            sleep(backoff)


def _setup_logging(fmt: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr)
    ours = logging.getLogger("riskstream")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)  # a service logs its assignments, restores and progress by default
    if fmt == "json":
        for h in root.handlers:
            h.setFormatter(JsonFormatter())


@click.command()
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Config TOML laid over the defaults ([kafka], [state], [sinks], detectors).",
)
@click.option("--group-id", default=None, help="Consumer group id (overrides kafka.group_id).")
@click.option(
    "--bootstrap",
    default=None,
    metavar="HOST:PORT[,...]",
    help="Kafka bootstrap servers (overrides kafka.bootstrap_servers and RISKSTREAM_KAFKA_BOOTSTRAP).",
)
@click.option(
    "--state-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Checkpoint directory of the local state store (overrides state.dir).",
)
@click.option(
    "--event-time-clock",
    is_flag=True,
    help="Stamp alerts' detected_at with the event time instead of the wall clock, so the output is "
    "byte-comparable with a replay (tests, backfills).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus /metrics and /healthz on this port (overrides metrics.port; 0 = off).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the metrics server (0.0.0.0 to be scraped from other hosts or containers).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: 'event=checkpoint key=value' lines; json: one JSON object per line.",
)
@fail_cleanly
def run(
    config: str | None,
    group_id: str | None,
    bootstrap: str | None,
    state_dir: str | None,
    event_time_clock: bool,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
) -> None:
    """Consume orders, logins and labels from Kafka as one member of a consumer group; publish alerts.

    \b
    Alerts go to the alerts topic (kafka.alerts_topic), plus the SQL store (sinks.database or
    RISKSTREAM_DATABASE_URL) and a JSONL file (sinks.jsonl) when configured; undecodable records go to
    kafka.dead_letter_topic with the reason in a header. State is checkpointed per partition (state.dir)
    every kafka.checkpoint_interval_s, on rebalance and on stop: sinks flushed, then state saved with its
    offsets, then offsets committed. SIGTERM or Ctrl-C stops after the current batch, checkpoints and
    leaves the group (exit 0). Start more processes with the same group id to share the partitions.
    With --metrics-port (or metrics.port), /metrics (Prometheus) and /healthz are served meanwhile.
    """
    from stream.kafka import RuntimeStats, run_consumer
    from stream.kafka.client import KAFKA_ERRORS

    overrides = {
        "kafka.group_id": group_id,
        "kafka.bootstrap_servers": bootstrap,
        "state.dir": state_dir,
        "metrics.port": metrics_port,
    }
    settings = load_settings(config, overrides={k: v for k, v in overrides.items() if v is not None})
    _setup_logging(log_format)
    stats = RuntimeStats()
    server = None
    port = int(settings.metrics.get("port") or 0)
    if port:
        from stream.kafka.observability import start_metrics_server

        try:
            server = start_metrics_server(stats, port, metrics_host)
        except OSError as e:
            raise ConfigError(f"metrics: cannot listen on {metrics_host}:{port}: {e.strerror or e}") from None
    try:
        run_with_restarts(lambda: run_consumer(settings, event_time_clock=event_time_clock,
                                               install_signal_handlers=True, stats=stats))
    except KAFKA_ERRORS as e:
        raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e
    finally:
        if server is not None:
            server.close()
