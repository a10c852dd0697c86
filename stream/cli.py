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
@click.option("--users", type=click.IntRange(min=10), default=None,
              help="Number of users (default scales with --events).")
@click.option("--attack", "attacks", multiple=True, metavar="NAME=RATE",
              help="Override an attack's rate (see docs/simulator.md), e.g. --attack card_testing=2.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Output file (.jsonl or .jsonl.gz); required unless --to-kafka.")
@click.option("--to-kafka", is_flag=True,
              help="Produce to the config's input topics (kafka.orders_topic, logins_topic, labels_topic), "
                   "keyed by user id, instead of writing a file; missing topics are created co-partitioned.")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="With --to-kafka: bootstrap servers (default: kafka.bootstrap_servers / "
                   "RISKSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="With --to-kafka: config TOML for the topic names and the broker.")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="N",
              help="With --to-kafka: events per second (0: as fast as possible).")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --to-kafka: partitions of each input topic it creates (the same for all: the input "
                   "topics must be co-partitioned).")
@click.option("--replication-factor", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --to-kafka: replication factor of the topics it creates.")
@_fail_cleanly
def simulate(events: int, seed: int, users: int | None, attacks: tuple[str, ...], out: str | None,
             to_kafka: bool, bootstrap: str | None, config: str | None, rate: float, partitions: int,
             replication_factor: int) -> None:
    """Generate realistic labelled e-commerce traffic with injected attacks, to a file or to Kafka.

    \b
    riskstream simulate -n 200000 -o events.jsonl.gz
    riskstream simulate --to-kafka --rate 200 --config riskstream.toml
    """
    import time

    from stream.simulate import simulate as run_sim
    from stream.simulate import write_jsonl

    if to_kafka == (out is not None):
        raise click.UsageError("give either --out FILE or --to-kafka" if to_kafka else "--out is required "
                               "unless --to-kafka is given")
    if not to_kafka and (rate or bootstrap or config):
        raise click.UsageError("--rate, --bootstrap and --config apply to --to-kafka only")
    cfg = _sim_config(events, seed, users, attacks)
    if out is not None:
        n = write_jsonl(run_sim(cfg), out)
        click.echo(f"wrote {n} events to {out}", err=True)
        return
    from stream.kafka_bench import ensure_topics, produce_events
    from stream.kafka_io import input_topics

    settings = _settings(config, {"kafka.bootstrap_servers": bootstrap})
    servers = str(settings.kafka["bootstrap_servers"])
    topics = input_topics(settings)
    counts = ensure_topics(servers, topics, partitions=partitions, replication_factor=replication_factor)
    pace = f"{rate:g} events/s" if rate else "as fast as possible"
    click.echo(f"producing {events:,} events to {servers}: "
               + ", ".join(f"{t} ({counts[t]} partitions)" for t in topics) + f"; {pace}", err=True)
    started = time.monotonic()

    def progress(n: int) -> None:
        click.echo(f"  {n:,} events produced ({n / max(time.monotonic() - started, 1e-9):,.0f}/s)", err=True)

    every = 10_000 if not rate else max(100, int(rate * 30))
    result = produce_events(run_sim(cfg), settings, bootstrap=servers, rate=rate, on_progress=progress,
                            progress_every=every)
    click.echo(f"produced {result['events']:,} events (orders {result['orders']:,}, "
               f"logins {result['logins']:,}, labels {result['labels']:,}) in {result['seconds']:.1f} s "
               f"({result['events_per_second'] or 0:,.0f} events/s)", err=True)


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
@click.argument("inputs", nargs=-1, required=False, type=click.Path(dir_okay=False))
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="Config TOML laid over the defaults.")
@click.option("--budget", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Alert budget: the fraction of events that may alert (overrides engine.budget).")
@_mapping_options
@click.option("--kafka", "from_kafka", is_flag=True,
              help="Replay the config's input topics from Kafka instead of files (bounded: up to their "
                   "current end).")
@click.option("--kafka-topic", "kafka_topics", multiple=True, metavar="TOPIC",
              help="Replay this Kafka topic (repeatable; implies --kafka). Default with --kafka: the "
                   "config's input topics.")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Kafka bootstrap servers (default: kafka.bootstrap_servers / RISKSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--from-timestamp", default=None, metavar="WHEN",
              help="Kafka: start at the first record produced at or after WHEN (ISO-8601, UTC unless an "
                   "offset is given, or epoch seconds).")
@click.option("--to-timestamp", default=None, metavar="WHEN",
              help="Kafka: stop before the first record produced at or after WHEN.")
@click.option("--from-offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="Kafka: start at offset N of every partition (inclusive).")
@click.option("--to-offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="Kafka: stop at offset N of every partition (exclusive).")
@click.option("--alerts-out", type=click.Path(dir_okay=False), default=None, help="Write alerts to this JSONL file.")
@click.option("--db", default=None, help="Write alerts to this SQLAlchemy URL (sqlite:///alerts.db, postgresql+psycopg://...).")
@click.option("--dead-letters", type=click.Path(dir_okay=False), default=None,
              help="Write invalid records (reason + original bytes) to this JSONL file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the metrics report as JSON.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Events per micro-batch.")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="Print the N riskiest alerts.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary (the report file still has it all).")
@click.option("--label-delay", default=None, metavar="DURATION",
              help="Files: reveal each labelled event's label as a label event DURATION later (7d, 1h, 90s), so "
                   "label learners and entity risk learn only what a live system would know by then.")
@click.option("--label-every", default="0", show_default=True, metavar="DURATION",
              help="With --label-delay: labels arrive in drops every DURATION (0: each one exactly on time).")
@click.option("--k", "top_k", type=click.IntRange(min=1), default=100, show_default=True,
              help="Daily budget of entities (cards = user ids) for the card precision@k in the report's `eval`.")
@click.option("--eval-from", default=None, metavar="WHEN",
              help="Only events at or after WHEN (ISO-8601 date/time, UTC) count in the `eval` metrics; the stream "
                   "still runs from its start.")
@click.option("--eval-to", default=None, metavar="WHEN",
              help="Only events before WHEN count in the `eval` metrics (a bare date means the end of that day).")
@click.option("--known-from", default=None, metavar="WHEN",
              help="The report's `eval.handbook_protocol`: a card counts as known-compromised only through frauds "
                   "of transactions at or after WHEN (the handbook's training start); default: the whole stream.")
@click.option("--plot-dir", type=click.Path(file_okay=False), default=None,
              help="Write pr_curve.png and alerts_over_time.png (over the `eval` events) into this folder.")
@click.pass_context
@_fail_cleanly
def replay(ctx, inputs, config, budget, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin,
           ts_unit, from_kafka, kafka_topics, bootstrap, from_timestamp, to_timestamp, from_offset, to_offset,
           alerts_out, db, dead_letters, report, batch_size, top, quiet, label_delay, label_every, top_k,
           eval_from, eval_to, known_from, plot_dir) -> None:
    """Backtest recorded events (JSONL or CSV, optionally .gz) through the engine and report detection quality.

    \b
    From files:  riskstream replay events.jsonl.gz --budget 0.01 --report report.json
    From Kafka:  riskstream replay --kafka-topic orders --kafka-topic logins \\
                     --from-timestamp 2024-05-01T00:00Z --to-timestamp 2024-05-02T00:00Z
    \b
    A Kafka replay reads a bounded offset range (the topics' ends when it starts, unless --to-* says
    otherwise) without a consumer group, one engine per partition, in the same order as `riskstream run`.
    """
    kafka_opts = {"--bootstrap": bootstrap, "--from-timestamp": from_timestamp,
                  "--to-timestamp": to_timestamp, "--from-offset": from_offset, "--to-offset": to_offset}
    from_kafka = from_kafka or bool(kafka_topics)
    if inputs and from_kafka:
        raise click.UsageError("give INPUT files or --kafka/--kafka-topic, not both")
    if not inputs and not from_kafka:
        raise click.UsageError("nothing to replay: give INPUT files, or --kafka-topic TOPIC (or --kafka for "
                               "the config's input topics)")
    if not from_kafka and any(v is not None for v in kafka_opts.values()):
        used = ", ".join(k for k, v in kafka_opts.items() if v is not None)
        raise click.UsageError(f"{used}: only with --kafka or --kafka-topic")
    settings = _settings(config, {"engine.budget": budget, "engine.batch_size": batch_size})
    from stream.metrics import WindowCollector

    window = WindowCollector(_parse_day("--eval-from", eval_from, end=False),
                             _parse_day("--eval-to", eval_to, end=True), k=top_k,
                             known_from=_parse_day("--known-from", known_from, end=False))
    if from_kafka:
        if label_delay is not None:
            raise click.UsageError("--label-delay applies to INPUT files (a Kafka replay reads the labels topic)")
        file_only = {"--format": fmt, "--type": etype, "--map": map_spec, "--set": set_spec, "--drop": drop,
                     "--ts-origin": ts_origin}
        defaulted = (("--features", "feature_cols"), ("--ts-unit", "ts_unit"))
        file_only.update({name: True for name, param in defaulted
                          if ctx.get_parameter_source(param) is not click.core.ParameterSource.DEFAULT})
        misplaced = [k for k, v in file_only.items() if v]
        if misplaced:
            raise click.UsageError(f"{', '.join(misplaced)}: apply to INPUT files, not to a Kafka replay")
        result = _replay_kafka_with_outputs(
            settings, list(kafka_topics) or None, bootstrap=bootstrap,
            from_timestamp=_parse_when("--from-timestamp", from_timestamp),
            to_timestamp=_parse_when("--to-timestamp", to_timestamp), from_offset=from_offset,
            to_offset=to_offset, alerts_out=alerts_out, db=db, dead_letters=dead_letters, quiet=quiet,
            top=top, observe=window.add)
        result["eval"] = window.report()
    else:
        from stream.delayed_labels import DelayedLabels, parse_duration
        from stream.sources import FileSource

        mapping = _mapping(fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit)
        source: Any = FileSource(list(inputs), batch_size=int(settings.engine["batch_size"]), format=fmt,
                                 mapping=mapping)
        if label_delay is not None:
            source = DelayedLabels(source, parse_duration(label_delay), every=parse_duration(label_every))
        result = run_replay_with_outputs(source, settings, alerts_out=alerts_out, db=db,
                                         dead_letters=dead_letters, quiet=quiet, top=top,
                                         input_bytes=sum(_size(p) for p in inputs), observe=window.add)
        result["eval"] = window.report()
        if label_delay is not None:
            result["label_delay_s"] = source.delay
            result["label_every_s"] = source.every
            result["label_store"] = result.engine.label_store.stats()
        if plot_dir:
            import numpy as np

            from stream import plots

            v = window.arrays()
            known = v["y"] >= 0
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
            pr_png = plots.plot_pr_curve(v["y"][known], v["s"][known], Path(plot_dir) / "pr_curve.png")
            ot_png = plots.plot_alerts_over_time(v["ts"], v["a"], np.where(known, v["y"], 0),
                                                 Path(plot_dir) / "alerts_over_time.png")
            result["plots"] = [str(pr_png), str(ot_png)]
        if not quiet:
            e = result["eval"]
            click.echo(f"eval: {e['eval_events']:,} events, ROC AUC {e['roc_auc']}, AP {e['pr_auc']}, "
                       f"card precision@{e['k']} {e['card_precision_at_k']}", err=True)
    if report:
        Path(report).write_bytes(orjson.dumps(dict(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        if not quiet:
            click.echo(f"report written to {report}", err=True)


def _parse_day(option: str, text: str | None, *, end: bool) -> float | None:
    """Epoch seconds of an ISO-8601 date or time (UTC); a bare date is its start, or with ``end`` its end."""
    if text is None:
        return None
    from stream.errors import InvalidEvent
    from stream.events import parse_ts

    try:
        ts = parse_ts(text.strip(), option)
    except InvalidEvent as e:
        raise click.UsageError(f"{option}: {e.problem}") from None
    if end and len(text.strip()) == 10:  # YYYY-MM-DD: through the end of that day
        ts += 86400.0
    return ts


def _parse_when(option: str, text: str | None) -> float | None:
    """Epoch seconds from ISO-8601 text (UTC unless an offset is given) or a number of epoch seconds."""
    if text is None:
        return None
    from stream.errors import InvalidEvent
    from stream.events import parse_ts

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_ts(text, option)
    except InvalidEvent as e:
        raise ConfigError(f"{option}: {text!r} is not an ISO-8601 time or epoch seconds") from e


class _TimedSink:
    """Forwards to a sink and adds the time spent in it to ``clock["sinks"]`` (the report's stage share)."""

    def __init__(self, sink: Any, clock: dict[str, float]) -> None:
        import time

        self.sink = sink
        self.clock = clock
        self._now = time.perf_counter

    def add(self, item: Any) -> None:
        t0 = self._now()
        self.sink.add(item)
        self.clock["sinks"] += self._now() - t0

    def flush(self) -> None:
        t0 = self._now()
        self.sink.flush()
        self.clock["sinks"] += self._now() - t0

    def close(self) -> None:
        self.sink.close()


def _merged_feature_memory(engines: Any) -> dict[str, float]:
    """Per-unit ``features.stats()`` summed over the units (sizes per entity averaged by entity count)."""
    stats = [e.features.stats() for e in engines]
    out: dict[str, float] = {}
    for key in {k for st in stats for k in st}:
        if key.startswith("bytes_per_"):
            kind = key[len("bytes_per_"):]
            n = sum(st.get(f"entities_{kind}", 0.0) for st in stats)
            out[key] = round(sum(st.get(key, 0.0) * st.get(f"entities_{kind}", 0.0) for st in stats) / n, 1) \
                if n else 0.0
        else:
            out[key] = sum(st.get(key, 0.0) for st in stats)
    return dict(sorted(out.items()))


def _replay_kafka_with_outputs(settings: Settings, topics: list[str] | None, *, bootstrap, from_timestamp,
                               to_timestamp, from_offset, to_offset, alerts_out, db, dead_letters, quiet,
                               top, observe=None):
    """The Kafka counterpart of :func:`run_replay_with_outputs`: same sinks, progress, summary and report."""
    from sinks.deadletter import JsonlDeadLetterSink
    from sinks.jsonl import JsonlSink
    from sinks.sql import SqlSink
    from stream import report as rpt
    from stream.errors import SourceError
    from stream.kafka_io import KAFKA_ERRORS
    from stream.runtime import replay_kafka

    sinks: list[Any] = []
    top_alerts = rpt.TopAlerts(top)
    db_url = db or settings.sinks.get("database") or None
    jsonl_path = alerts_out or settings.sinks.get("jsonl") or None
    dl_path = dead_letters or settings.sinks.get("dead_letter") or None
    clock = {"features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    dl = None
    try:
        if jsonl_path:
            Path(jsonl_path).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(JsonlSink(jsonl_path))
        if db_url:
            sinks.append(SqlSink(db_url))
        if dl_path:
            Path(dl_path).parent.mkdir(parents=True, exist_ok=True)
            dl = JsonlDeadLetterSink(dl_path)
        with rpt.progress(quiet, "replay (kafka)") as advance:
            def on_batch(batch, outcome):
                top_alerts.offer(outcome.alerts)
                for k, v in outcome.timings.items():
                    clock[k] = clock.get(k, 0.0) + v
                if observe is not None:
                    observe(outcome)
                advance(batch, outcome)

            try:
                result = replay_kafka(
                    settings, topics, bootstrap=bootstrap, from_offsets=from_offset, to_offsets=to_offset,
                    from_timestamp=from_timestamp, to_timestamp=to_timestamp,
                    sinks=[_TimedSink(s, clock) for s in sinks],
                    dead_letters=_TimedSink(dl, clock) if dl is not None else None, on_batch=on_batch)
            except KAFKA_ERRORS as e:
                raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e
    finally:
        for s in sinks:
            s.close()
        if dl is not None:
            dl.close()
    if "stage_share" not in result:
        engine_s = sum(clock.values())
        parts = {"source": max(0.0, float(result["seconds"]) - engine_s), **clock}
        total = sum(parts.values()) or 1.0
        result["stage_share"] = {k: round(v / total, 4) for k, v in parts.items()}
    if "feature_memory" not in result:
        result["feature_memory"] = _merged_feature_memory(result.engines.values())
    if not quiet:
        rpt.print_summary(result, top_alerts.best(), outputs={"alerts": jsonl_path, "database": db_url,
                                                              "dead letters": dl_path})
    return result


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def run_replay_with_outputs(source, settings: Settings, *, alerts_out=None, db=None, dead_letters=None,
                            quiet=False, top=5, input_bytes=0, title="replay", observe=None):
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
                if observe is not None:
                    observe(outcome)
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
    report = out / "report-0.5pct.json"
    click.echo(f"\nNext: riskstream replay {stream_path} --budget 0.005 -q --report {report}\n"
               f"      riskstream compare {out / 'report.json'} {report}   # the two budgets side by side", err=True)


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
@click.option("--kafka", "kafka", is_flag=True,
              help="Instead: end-to-end events/s through a real broker (riskstream run and a Kafka replay) "
                   "beside the raw kafka-python consume rate of the same records, in one run (fresh topics).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="With --kafka: the broker (default: kafka.bootstrap_servers / "
                   "RISKSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --kafka: partitions of each fresh input topic.")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Instead (or as well as --kafka): alert-store rows/s of SqlSink beside plain DBAPI "
                   "inserts into this SQLAlchemy URL.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@_fail_cleanly
def bench(events, seed, input_path, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit, limit,
          config, kafka, bootstrap, partitions, db_url, out) -> None:
    """Events/s of the replay pipeline beside river's reference pipeline (MinMaxScaler | HalfSpaceTrees), same run.

    \b
    --kafka: events/s end to end through a real broker beside the raw kafka-python consume rate.
    --db URL: alert rows/s written to a database by the SQL sink beside plain inserts.
    """
    settings = _settings(config, {})
    if kafka or db_url:
        if input_path is not None:
            raise click.UsageError("--input applies to the replay benchmark, not to --kafka / --db")
        result: dict[str, Any] = {}
        if kafka:
            from stream.kafka_bench import bench_kafka, print_bench_kafka
            from stream.kafka_io import KAFKA_ERRORS

            try:
                result["kafka"] = bench_kafka(settings, bootstrap, events=events, seed=seed,
                                              partitions=partitions)
            except KAFKA_ERRORS as e:
                from stream.errors import SourceError

                raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e
            print_bench_kafka(result["kafka"])
        if db_url:
            import importlib.util

            if importlib.util.find_spec("stream.pg_bench") is None:
                raise click.UsageError("--db: the database benchmark (stream.pg_bench) is not installed")
            from stream import pg_bench

            result["db"] = pg_bench.bench_db(db_url)
            pg_bench.print_bench_db(result["db"])
    else:
        if bootstrap is not None:
            raise click.UsageError("--bootstrap applies to --kafka only")
        from stream import bench as b

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
