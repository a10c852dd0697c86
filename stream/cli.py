"""The ``riskstream`` command: thin wrappers that validate, set up logging, call one library function, and map
errors to one-line messages and exit codes (2: bad configuration or argument; 1: a failure while running)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from stream.config import Settings, load_settings
from stream.errors import ERRORS, ConfigError

__all__ = ["main", "cli"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("riskstream")


def _fail_cleanly(fn: F) -> F:
    """Turn riskstream's own errors into ``riskstream: error: <message>`` and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
        except ERRORS as e:
            click.echo(f"riskstream: error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("riskstream: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _settings(config: str | None, overrides: dict[str, Any]) -> Settings:
    return load_settings(config, overrides={k: v for k, v in overrides.items() if v is not None})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="riskstream")
def cli(verbose: int) -> None:
    """riskstream: a streaming risk-control engine for e-commerce.

    \b
    First run:   riskstream demo
    Backtest:    riskstream replay events.jsonl.gz --budget 0.01 --report report.json
    Production:  riskstream run --config riskstream.toml
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)


# --- simulate ----------------------------------------------------------------------------------------------------


def _attack_overrides(specs: Sequence[str]) -> dict[str, float]:
    from stream.simulate import AttackRates

    known = set(AttackRates.__dataclass_fields__)
    out: dict[str, float] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        if not eq:
            raise ConfigError(f"--attack: expected NAME=RATE, got {spec!r}")
        if name not in known:
            raise ConfigError(f"--attack: unknown attack {name!r}; known: {', '.join(sorted(known))}")
        try:
            rate = float(value)
        except ValueError:
            raise ConfigError(f"--attack {name}: rate must be a number, not {value!r}") from None
        if rate < 0:
            raise ConfigError(f"--attack {name}: rate must be >= 0")
        out[name] = rate
    return out


def _sim_config(events: int, seed: int, users: int | None, attacks: Sequence[str]):
    import dataclasses

    from stream.simulate import AttackRates, SimConfig

    rates = dataclasses.replace(AttackRates(), **_attack_overrides(attacks))
    kwargs: dict[str, Any] = {"events": events, "seed": seed, "attacks": rates}
    if users is not None:
        kwargs["users"] = users
    return SimConfig(**kwargs)


@cli.command()
@click.option("--events", "-n", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="How many events to generate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: same seed, same stream.")
@click.option("--users", type=click.IntRange(min=10), default=None, help="Number of users (default scales with --events).")
@click.option("--attack", "attacks", multiple=True, metavar="NAME=RATE",
              help="Override an attack's rate (see docs/simulator.md), e.g. --attack card_testing=2.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Output file (.jsonl or .jsonl.gz).")
@_fail_cleanly
def simulate(events: int, seed: int, users: int | None, attacks: tuple[str, ...], out: str) -> None:
    """Generate realistic labelled e-commerce traffic with injected attacks."""
    from stream.simulate import simulate as run_sim
    from stream.simulate import write_jsonl

    cfg = _sim_config(events, seed, users, attacks)
    n = write_jsonl(run_sim(cfg), out)
    click.echo(f"wrote {n} events to {out}", err=True)


# --- replay ------------------------------------------------------------------------------------------------------


def _mapping_options(fn: F) -> F:
    opts = [
        click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
                     help="Input format (default: from the file name)."),
        click.option("--type", "etype", type=click.Choice(["order", "login", "label"]), default=None,
                     help="Event type of every record, when the data has no `type` column."),
        click.option("--map", "map_spec", multiple=True, metavar="FIELD=COLUMN,...",
                     help="Map event fields onto your columns, e.g. ts=TX_DATETIME,user_id=CUSTOMER_ID."),
        click.option("--set", "set_spec", multiple=True, metavar="FIELD=VALUE,...",
                     help="Fill a field your data lacks with a constant, e.g. merchant_id=unknown."),
        click.option("--features", "feature_cols", default="auto", show_default=True,
                     help="Columns passed through as numeric features: auto (every unmapped numeric column), "
                          "none, or a comma-separated list."),
        click.option("--drop", default=None, metavar="COL,...",
                     help="Columns never passed through as features (ids, leaked labels)."),
        click.option("--ts-origin", default=None,
                     help="Origin of a numeric ts column given in seconds (ISO-8601 or epoch seconds; default 0)."),
        click.option("--ts-unit", type=click.Choice(["s", "ms"]), default="s", show_default=True,
                     help="Unit of a numeric ts column: seconds from --ts-origin, or epoch milliseconds."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _mapping(fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit):
    from stream.sources import Mapping

    return Mapping.parse(type=etype, map_spec=list(map_spec), set_spec=list(set_spec), features=feature_cols,
                         drop=drop, ts_origin=ts_origin, ts_unit=ts_unit)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None, help="Config TOML laid over the defaults.")
@click.option("--budget", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Alert budget: the fraction of events that may alert (overrides engine.budget).")
@_mapping_options
@click.option("--alerts-out", type=click.Path(dir_okay=False), default=None, help="Write alerts to this JSONL file.")
@click.option("--db", default=None, help="Write alerts to this SQLAlchemy URL (sqlite:///alerts.db, postgresql+psycopg://...).")
@click.option("--dead-letters", type=click.Path(dir_okay=False), default=None,
              help="Write invalid records (reason + original bytes) to this JSONL file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the metrics report as JSON.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Events per micro-batch.")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="Print the N riskiest alerts.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary (the report file still has it all).")
@_fail_cleanly
def replay(inputs, config, budget, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit,
           alerts_out, db, dead_letters, report, batch_size, top, quiet) -> None:
    """Backtest recorded events (JSONL or CSV, optionally .gz) through the engine and report detection quality."""
    from stream.sources import FileSource

    settings = _settings(config, {"engine.budget": budget, "engine.batch_size": batch_size})
    mapping = _mapping(fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit)
    source = FileSource(list(inputs), batch_size=int(settings.engine["batch_size"]), format=fmt, mapping=mapping)
    result = run_replay_with_outputs(source, settings, alerts_out=alerts_out, db=db, dead_letters=dead_letters,
                                     quiet=quiet, top=top, input_bytes=sum(_size(p) for p in inputs))
    if report:
        Path(report).write_bytes(orjson.dumps(dict(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        if not quiet:
            click.echo(f"report written to {report}", err=True)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def run_replay_with_outputs(source, settings: Settings, *, alerts_out=None, db=None, dead_letters=None,
                            quiet=False, top=5, input_bytes=0, title="replay"):
    """Open the requested sinks, replay with a progress bar, print the summary; shared by replay and demo."""
    from sinks.deadletter import JsonlDeadLetterSink
    from sinks.jsonl import JsonlSink
    from sinks.sql import SqlSink
    from stream import report as rpt
    from stream.replay import replay as run

    sinks: list[Any] = []
    top_alerts = rpt.TopAlerts(top)
    db_url = db or settings.sinks.get("database") or None
    jsonl_path = alerts_out or settings.sinks.get("jsonl") or None
    dl_path = dead_letters or settings.sinks.get("dead_letter") or None
    if jsonl_path:
        Path(jsonl_path).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(JsonlSink(jsonl_path))
    if db_url:
        sinks.append(SqlSink(db_url))
    dl = None
    if dl_path:
        Path(dl_path).parent.mkdir(parents=True, exist_ok=True)
        dl = JsonlDeadLetterSink(dl_path)
    try:
        with rpt.progress(quiet, title, total_bytes=input_bytes, source=source) as advance:
            def on_batch(batch, outcome):
                top_alerts.offer(outcome.alerts)
                advance(batch, outcome)

            result = run(source, settings, sinks=sinks, dead_letters=dl, on_batch=on_batch)
    finally:
        for s in sinks:
            s.close()
        if dl is not None:
            dl.close()
    if not quiet:
        rpt.print_summary(result, top_alerts.best(), outputs={"alerts": jsonl_path, "database": db_url,
                                                              "dead letters": dl_path})
    return result


# --- demo --------------------------------------------------------------------------------------------------------


@cli.command()
@click.option("--events", "-n", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--dir", "out_dir", type=click.Path(file_okay=False), default="riskstream-demo", show_default=True,
              help="Folder for the simulated stream, alerts (JSONL + SQLite) and the report.")
@click.option("--budget", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.01,
              show_default=True)
@_fail_cleanly
def demo(events: int, seed: int, out_dir: str, budget: float) -> None:
    """Simulate a realistic stream with attacks, replay it, and show alerts with their reasons. No server needed."""
    from stream.simulate import simulate as run_sim
    from stream.simulate import write_jsonl
    from stream.sources import FileSource

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream_path = out / "events.jsonl.gz"
    click.echo(f"1/2 simulating {events:,} events (seed {seed}) -> {stream_path}", err=True)
    write_jsonl(run_sim(_sim_config(events, seed, None, ())), stream_path)
    settings = load_settings(None, overrides={"engine.budget": budget})
    for stale in ("alerts.jsonl", "alerts.db", "alerts.db-wal", "alerts.db-shm"):
        (out / stale).unlink(missing_ok=True)  # a fresh demo, not an append to the last one
    click.echo("2/2 replaying through the engine", err=True)
    source = FileSource([stream_path], batch_size=int(settings.engine["batch_size"]))
    result = run_replay_with_outputs(
        source, settings, alerts_out=str(out / "alerts.jsonl"), db=f"sqlite:///{out / 'alerts.db'}",
        dead_letters=str(out / "dead-letters.jsonl"), top=8, input_bytes=stream_path.stat().st_size, title="demo",
    )
    (out / "report.json").write_bytes(orjson.dumps(dict(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    click.echo(f"\nNext: riskstream replay {stream_path} --budget 0.005 --report {out / 'report-0.5pct.json'}", err=True)


# --- bench -------------------------------------------------------------------------------------------------------


@cli.command()
@click.option("--events", "-n", type=click.IntRange(min=1000), default=50_000, show_default=True,
              help="Size of the simulated stream (ignored with --input).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--input", "input_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Benchmark on this recorded file instead of a simulated stream (mapping options apply).")
@_mapping_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N records of --input.")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@_fail_cleanly
def bench(events, seed, input_path, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit, limit,
          config, out) -> None:
    """Events/s of the replay pipeline beside river's reference pipeline (MinMaxScaler | HalfSpaceTrees), same run."""
    from stream import bench as b

    settings = _settings(config, {})
    mapping = _mapping(fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit)
    result = b.run_bench(settings, events=events, seed=seed, input_path=input_path, fmt=fmt, mapping=mapping,
                         limit=limit)
    b.print_bench(result)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


# --- config ------------------------------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None)
@_fail_cleanly
def config_show(config: str | None) -> None:
    """Print the effective configuration (defaults + file + environment) and its detection hash."""
    s = load_settings(config)
    click.echo(f"# source: {s.source}\n# config_hash: {s.config_hash}\n")
    click.echo(s.to_toml())


def main(argv: Sequence[str] | None = None) -> None:
    from stream import cli_ext  # noqa: F401  (registers run / alerts / label commands when present)

    cli.main(args=list(argv) if argv is not None else None, prog_name="riskstream")


if __name__ == "__main__":  # pragma: no cover
    main()
