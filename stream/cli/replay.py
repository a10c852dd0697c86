"""``riskstream replay``: recorded events (files or a Kafka offset range) through the engine, with a report."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.base import (
    column_mapping,
    fail_cleanly,
    input_size,
    mapping_options,
    parse_day,
    parse_when,
    settings_from,
)
from stream.config import Settings
from stream.errors import ConfigError, SourceError


@click.command()
@click.argument("inputs", nargs=-1, required=False, type=click.Path(dir_okay=False))
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="Config TOML laid over the defaults.")
@click.option("--budget", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Alert budget: the fraction of events that may alert (overrides engine.budget).")
@mapping_options
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
@click.option("--group", default=None, metavar="GROUP",
              help="Kafka: reproduce this consumer group's run exactly: apply the merge decisions it recorded "
                   "in the configured state store ([state]) when an input was idle (docs/runtime.md), and the "
                   "rule pack switches, with the packs stored in sinks.database (docs/console.md).")
@click.option("--alerts-out", type=click.Path(dir_okay=False), default=None, help="Write alerts to this JSONL file.")
@click.option("--db", default=None, help="Write alerts to this SQLAlchemy URL (sqlite:///alerts.db, postgresql+psycopg://...).")
@click.option("--dead-letters", type=click.Path(dir_okay=False), default=None,
              help="Write invalid records (reason + original bytes) to this JSONL file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the metrics report as JSON.")
@click.option("--scores-out", type=click.Path(dir_okay=False), default=None, metavar="F.parquet",
              help="Write every scored event's id, type, time, user, label, scenario, each detector's raw and "
                   "calibrated score, risk and alerted to this Parquet file (for threshold tuning).")
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
@fail_cleanly
def replay(ctx, inputs, config, budget, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin,
           ts_unit, from_kafka, kafka_topics, bootstrap, from_timestamp, to_timestamp, from_offset, to_offset,
           group, alerts_out, db, dead_letters, report, scores_out, batch_size, top, quiet, label_delay, label_every,
           top_k, eval_from, eval_to, known_from, plot_dir) -> None:
    """Backtest recorded events (JSONL or CSV, optionally .gz) through the engine and report detection quality.

    \b
    From files:  riskstream replay events.jsonl.gz --budget 0.01 --report report.json
    From Kafka:  riskstream replay --kafka-topic orders --kafka-topic logins \\
                     --from-timestamp 2024-05-01T00:00Z --to-timestamp 2024-05-02T00:00Z
    \b
    A Kafka replay reads a bounded offset range (the topics' ends when it starts, unless --to-* says
    otherwise) without a consumer group, one engine per partition, in the same order as `riskstream run`.

    Parquet (.parquet) and Arrow IPC / Feather (.arrow, .feather) files are read too, through the same column
    mapping as CSV.
    """
    kafka_opts = {"--bootstrap": bootstrap, "--from-timestamp": from_timestamp,
                  "--to-timestamp": to_timestamp, "--from-offset": from_offset, "--to-offset": to_offset,
                  "--group": group}
    from_kafka = from_kafka or bool(kafka_topics)
    if inputs and from_kafka:
        raise click.UsageError("give INPUT files or --kafka/--kafka-topic, not both")
    if not inputs and not from_kafka:
        raise click.UsageError("nothing to replay: give INPUT files, or --kafka-topic TOPIC (or --kafka for "
                               "the config's input topics)")
    if not from_kafka and any(v is not None for v in kafka_opts.values()):
        used = ", ".join(k for k, v in kafka_opts.items() if v is not None)
        raise click.UsageError(f"{used}: only with --kafka or --kafka-topic")
    if db:
        from stream.cli.db import check_db_option

        check_db_option(db)
    settings = settings_from(config, {"engine.budget": budget, "engine.batch_size": batch_size})
    from stream.eval.metrics import WindowCollector

    window = WindowCollector(parse_day("--eval-from", eval_from, end=False),
                             parse_day("--eval-to", eval_to, end=True), k=top_k,
                             known_from=parse_day("--known-from", known_from, end=False))
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
        observe, scores = _observers(ctx, window, scores_out, settings)
        result = _replay_kafka_with_outputs(
            settings, list(kafka_topics) or None, bootstrap=bootstrap,
            from_timestamp=parse_when("--from-timestamp", from_timestamp),
            to_timestamp=parse_when("--to-timestamp", to_timestamp), from_offset=from_offset,
            to_offset=to_offset, alerts_out=alerts_out, db=db, dead_letters=dead_letters, quiet=quiet,
            top=top, observe=observe, group=group)
        result["eval"] = window.report()
    else:
        from stream.eval.delayed_labels import DelayedLabels, parse_duration
        from stream.sources import FileSource

        mapping = column_mapping(etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit)
        source: Any = FileSource(list(inputs), batch_size=int(settings.engine["batch_size"]), format=fmt,
                                 mapping=mapping)
        if label_delay is not None:
            source = DelayedLabels(source, parse_duration(label_delay), every=parse_duration(label_every))
        observe, scores = _observers(ctx, window, scores_out, settings)
        result = run_replay_with_outputs(source, settings, alerts_out=alerts_out, db=db,
                                         dead_letters=dead_letters, quiet=quiet, top=top,
                                         input_bytes=sum(input_size(p) for p in inputs), observe=observe)
        result["eval"] = window.report()
        if label_delay is not None:
            result["label_delay_s"] = source.delay
            result["label_every_s"] = source.every
            result["label_store"] = result.engine.label_store_stats()
        if plot_dir:
            import numpy as np

            from stream.eval import plots

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
    if scores is not None:
        scores.close()
        if not quiet:
            click.echo(f"scores of {scores.rows:,} events written to {scores_out}", err=True)
    if report:
        Path(report).write_bytes(orjson.dumps(dict(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        if not quiet:
            click.echo(f"report written to {report}", err=True)
    if result.get("error"):  # an input broke part-way: exit 1 (a failure while running), after summary and report
        raise SourceError(result["error"])
    _check_something_was_read(result, inputs)


def _check_something_was_read(result: Mapping[str, Any], inputs: tuple[str, ...]) -> None:
    """After the report: exit 2 when every record was dead-lettered (an input problem, usually a missing --type or
    --map), saying why; warn when there was no record at all (exit 0: an empty input is not wrong)."""
    if result["events"] or result["label_events"]:
        return
    where = ", ".join(inputs) if inputs else "the Kafka range"
    if not result["invalid"]:
        click.echo(f"riskstream: warning: nothing to replay: {where} has no records (the report is all zeros)",
                   err=True)
        return
    top = (result.get("dead_letter_reasons") or [{"reason": "?", "count": 0}])[0]
    missing = re.fullmatch(r"([\w.]+): is missing", top["reason"])
    if inputs and missing and missing.group(1) == "type":
        hint = "give --type order|login|label, and --map FIELD=COLUMN for your columns"
    elif inputs and missing:
        hint = f"give --map {missing.group(1)}=COLUMN, or --set {missing.group(1)}=VALUE when no column has it"
    else:
        hint = "--dead-letters FILE keeps every record with its reason"
    raise ConfigError(f"nothing valid was read from {where}: all {result['invalid']:,} records were dead-lettered, "
                      f"{top['count']:,} of them for {top['reason']!r}; {hint}")


def _observers(ctx, window, scores_out, settings: Settings):
    """What sees each batch's outcome: the eval window, and the ``--scores-out`` writer when asked for."""
    if not scores_out:
        return window.add, None
    from stream.eval.scores import ScoresWriter

    scores = ScoresWriter(scores_out, detectors=list(settings.detectors))
    ctx.call_on_close(scores.close)  # a failed replay still leaves a readable file of what was scored

    def observe(outcome):
        window.add(outcome)
        scores.add(outcome)

    return observe, scores


def _replay_kafka_with_outputs(settings: Settings, topics: list[str] | None, *, bootstrap, from_timestamp,
                               to_timestamp, from_offset, to_offset, alerts_out, db, dead_letters, quiet,
                               top, observe=None, group=None):
    """The Kafka counterpart of :func:`run_replay_with_outputs`: same outputs, progress, summary and report."""
    from stream.errors import SourceError
    from stream.eval import report as rpt
    from stream.kafka import replay_kafka
    from stream.kafka.client import KAFKA_ERRORS
    from stream.outputs import open_outputs

    top_alerts = rpt.TopAlerts(top)
    with open_outputs(settings, alerts_out=alerts_out, database=db, dead_letters=dead_letters) as outputs, \
            rpt.progress(quiet, "replay (kafka)") as advance:
        def on_batch(batch, outcome):
            top_alerts.offer(outcome.alerts)
            if observe is not None:
                observe(outcome)
            advance(batch, outcome)

        try:
            result = replay_kafka(
                settings, topics, bootstrap=bootstrap, from_offsets=from_offset, to_offsets=to_offset,
                from_timestamp=from_timestamp, to_timestamp=to_timestamp, sinks=outputs.alerts,
                dead_letters=outputs.dead_letter, on_batch=on_batch, group=group)
        except KAFKA_ERRORS as e:
            raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e
    if not quiet:
        rpt.print_summary(result, top_alerts.best(), outputs=outputs.places())
    return result


def run_replay_with_outputs(source, settings: Settings, *, alerts_out=None, db=None, dead_letters=None,
                            quiet=False, top=5, input_bytes=0, title="replay", observe=None):
    """Open the outputs, replay with a progress bar, print the summary; shared by replay and demo.

    When an input breaks part-way (a truncated ``.gz``) the summary and the result cover what was read before
    it, and the result's ``error`` says where it broke: the caller fails after writing its report.
    """
    from stream.eval import report as rpt
    from stream.outputs import open_outputs
    from stream.replay import ReplayStopped
    from stream.replay import replay as run

    top_alerts = rpt.TopAlerts(top)
    with open_outputs(settings, alerts_out=alerts_out, database=db, dead_letters=dead_letters) as outputs:
        with rpt.progress(quiet, title, total_bytes=input_bytes, source=source) as advance:
            def on_batch(batch, outcome):
                top_alerts.offer(outcome.alerts)
                if observe is not None:
                    observe(outcome)
                advance(batch, outcome)

            try:
                result = run(source, settings, sinks=outputs.alerts, dead_letters=outputs.dead_letter,
                             on_batch=on_batch)
            except ReplayStopped as e:  # the summary still shows what was read before the input broke
                result = e.result
    if not quiet:
        rpt.print_summary(result, top_alerts.best(), outputs=outputs.places())
    return result
