"""``riskstream console``: the analyst console (web app) over the alert store, and ``console adduser``."""

from __future__ import annotations

import os

import click

from stream.cli.base import fail_cleanly
from stream.cli.db import config_option, db_option, resolve_database
from stream.errors import ConfigError

__all__ = ["console"]

SECRET_ENV = "RISKSTREAM_CONSOLE_SECRET"
PASSWORD_ENV = "RISKSTREAM_CONSOLE_PASSWORD"


def _engine(db: str | None, config: str | None):  # -> Engine, migrated to the newest schema
    from sinks.migrations import upgrade
    from sinks.sql import create_sql_engine

    engine = create_sql_engine(resolve_database(db, config))
    upgrade(engine)
    return engine


@click.group("console", invoke_without_command=True)
@db_option
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--window-hours", type=click.FloatRange(min=0.25, max=24 * 7), default=6.0, show_default=True,
              help="A case is one entity's alerts inside one window of this many hours of event time.")
@click.option("--backtest-input", "backtest_inputs", multiple=True, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="A recorded stream (JSONL/CSV, as `riskstream replay` reads) the rules page may "
                                   "backtest on (repeatable).")
@click.option("--backtest-max-events", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="A rules-page backtest replays at most this many events per pack.")
@click.option("--publish-labels", is_flag=True,
              help="Also send each verdict's label events to the Kafka runtime's labels topic (kafka.labels_topic "
                   "at kafka.bootstrap_servers of --config, or RISKSTREAM_KAFKA_BOOTSTRAP), so running consumers "
                   "learn from it.")
@click.option("--metrics-url", "metrics_urls", multiple=True, metavar="URL",
              help="The /metrics of a `riskstream run --metrics-port` consumer (repeatable): the overview page shows "
                   "their lag and throughput, and fire rates per 1,000 events.")
@click.pass_context
@fail_cleanly
def console(ctx: click.Context, db: str | None, config: str | None, host: str, port: int,
            window_hours: float, backtest_inputs: tuple[str, ...], backtest_max_events: int,
            publish_labels: bool, metrics_urls: tuple[str, ...]) -> None:
    """Serve the analyst console: case queue, case pages, verdicts (which become label events), and the rules
    page (rule packs backtested on the --backtest-input files, deployed by an admin).

    \b
    riskstream console adduser alice --role admin --db URL     # first, a user (password prompted)
    riskstream console --db URL --port 8080                    # then open http://127.0.0.1:8080
    riskstream console --db URL --backtest-input last-week.jsonl.gz
    riskstream console --db URL --config riskstream.toml --publish-labels   # verdicts -> kafka.labels_topic
    riskstream console --db URL --metrics-url http://10.0.0.5:9400/metrics --metrics-url http://10.0.0.6:9400

    Sessions are signed with RISKSTREAM_CONSOLE_SECRET (without it, a random secret: every restart signs
    everyone out).
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from stream.config import load_settings
    from stream.console.app import create_app
    from stream.console.overview import check_metrics_url

    try:
        metrics_urls = tuple(check_metrics_url(u) for u in metrics_urls)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    settings = load_settings(config)
    publisher = None
    if publish_labels:  # the broker first: a console that cannot publish stops here, in one line
        from stream.console.publish import LabelPublisher

        kafka = settings.kafka
        publisher = LabelPublisher(str(kafka["bootstrap_servers"]), str(kafka["labels_topic"]),
                                   bootstrap_timeout_ms=int(kafka["bootstrap_timeout_ms"]))
        publisher.connect()
        click.echo(f"verdicts are published to {publisher.topic} at {publisher.bootstrap}", err=True)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        click.echo(f"note: {SECRET_ENV} is not set; sessions end when the console restarts", err=True)
    app = create_app(_engine(db, config), secret=secret, window_hours=window_hours, settings=settings,
                     backtest_inputs=backtest_inputs, backtest_max_events=backtest_max_events,
                     label_publisher=publisher, metrics_urls=metrics_urls)
    click.echo(f"riskstream console on http://{host}:{port}", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if publisher is not None:
            publisher.close()


@console.command("adduser")
@click.argument("name")
@click.option("--role", type=click.Choice(["analyst", "admin"]), required=True,
              help="analyst: work cases and record verdicts; admin: also read the audit trail (and deploy rules).")
@db_option
@config_option
@fail_cleanly
def adduser(name: str, role: str, db: str | None, config: str | None) -> None:
    """Add user NAME, or set a new password and role for it. The password comes from RISKSTREAM_CONSOLE_PASSWORD,
    else a prompt (asked twice)."""
    from stream.console.store import ConsoleStore

    password = os.environ.get(PASSWORD_ENV) or click.prompt("Password", hide_input=True, confirmation_prompt=True)
    engine = _engine(db, config)
    try:
        ConsoleStore(engine).add_user(name, password, role)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    finally:
        engine.dispose()
    click.echo(f"user {name} ({role}) saved", err=True)
