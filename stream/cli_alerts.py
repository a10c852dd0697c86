"""``riskstream alerts tail``: follow the alerts topic (registered on :data:`stream.cli.cli` by
:mod:`stream.cli_ext`).

The ``alerts`` group is shared with :mod:`stream.cli_db` (``alerts query``): whichever module loads first
creates it, the other adds to it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click

from sinks.alert import SEVERITIES, Alert
from stream.cli import _fail_cleanly, cli
from stream.config import load_settings

__all__ = ["alerts_group", "alerts_tail", "render_alert", "SEVERITY_STYLES"]

#: rich styles of the severities in pretty output.
SEVERITY_STYLES = {"low": "dim", "medium": "yellow", "high": "bold red", "critical": "bold white on red"}


def _alerts_group() -> None:
    """Read alerts: query the alert store, or follow the alerts topic."""


#: Shared with ``stream/cli_db.py`` (``alerts query``): created here only if that module did not already.
alerts_group: click.Group = cli.commands.get("alerts") or cli.group("alerts")(_alerts_group)  # type: ignore[assignment]


def render_alert(alert: Alert, *, reasons: int = 3) -> str:
    """One alert as rich markup: a head line (event time, score, severity, action, entity, event) and its top
    ``reasons``, one per indented line."""
    from rich.markup import escape

    from stream.report import format_reason

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


@alerts_group.command("tail")
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
@_fail_cleanly
def alerts_tail(config: str | None, bootstrap: str | None, topic: str | None, group_id: str | None,
                from_beginning: bool, severity: str | None, entity: str | None, fmt: str,
                max_alerts: int | None, timeout: float | None) -> None:
    """Follow the alerts topic and print each alert once (repeats of an alert id are dropped).

    \b
    riskstream alerts tail --severity high
    riskstream alerts tail --from-beginning --entity user:u42 --format json --timeout 5
    """
    from rich.console import Console

    from stream.errors import ConfigError
    from stream.subscriber import AlertSubscriber

    settings = load_settings(config)
    k = settings.kafka
    servers = bootstrap or str(k["bootstrap_servers"])
    name = topic or str(k["alerts_topic"])
    if not name:
        raise ConfigError("no alerts topic: pass --topic or set kafka.alerts_topic")
    try:
        sub = AlertSubscriber(servers, name, group_id=group_id, from_beginning=from_beginning,
                              severity=severity, entity=entity, idle_timeout_s=timeout)
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
