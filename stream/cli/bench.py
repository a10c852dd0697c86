"""``riskstream bench``: events/s of the pipeline beside river's reference, through Kafka, or into a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.base import column_mapping, fail_cleanly, mapping_options, settings_from


@click.command()
@click.option("--events", "-n", type=click.IntRange(min=1000), default=50_000, show_default=True,
              help="Size of the simulated stream (ignored with --input).")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Random seed of the simulated stream (ignored with --input).")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Benchmark on this recorded file instead of a simulated stream (mapping options apply).")
@mapping_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N records of --input.")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="Config TOML laid over the defaults: the detectors, features and budget benchmarked.")
@click.option("--kafka", "kafka", is_flag=True,
              help="Instead: end-to-end events/s through a real broker (riskstream run and a Kafka replay) "
                   "beside the raw kafka-python consume rate of the same records, in one run (fresh topics).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="With --kafka: the broker (default: kafka.bootstrap_servers / "
                   "RISKSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --kafka: partitions of each fresh input topic.")
@click.option("--idle-timeout", "idle_timeout", type=click.FloatRange(min=0.01), default=0.1, show_default=True,
              help="With --kafka: kafka.idle_timeout_s of the timed run members (the topics are complete before "
                   "they start: the merge waits for it only at the end of each unit's topics; their poll "
                   "timeout is then at most 100 ms).")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --kafka: also measure run's event-to-decision latency with events produced at this "
                   "rate (events/s) into a running member (the configuration's idle timeout); 0: skip.")
@click.option("--rate-events", type=click.IntRange(min=1000), default=50_000, show_default=True,
              help="With --rate: how many events to produce.")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Instead (or as well as --kafka): alert-store rows/s of SqlSink beside plain DBAPI "
                   "inserts into this SQLAlchemy URL.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@fail_cleanly
def bench(events, seed, input_path, fmt, etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit, limit,
          config, kafka, bootstrap, partitions, idle_timeout, rate, rate_events, db_url, out) -> None:
    """Events/s of the replay pipeline beside river's reference pipeline (MinMaxScaler | HalfSpaceTrees), same run.

    \b
    --kafka: events/s end to end through a real broker beside the raw kafka-python consume rate.
    --db URL: alert rows/s written to a database by the SQL sink beside plain inserts.
    """
    if db_url:
        from stream.cli.db import check_db_option

        check_db_option(db_url)
    settings = settings_from(config, {})
    if kafka or db_url:
        if input_path is not None:
            raise click.UsageError("--input applies to the replay benchmark, not to --kafka / --db")
        result: dict[str, Any] = {}
        if kafka:
            from stream.bench.kafka import bench_kafka, print_bench_kafka
            from stream.kafka.client import KAFKA_ERRORS

            try:
                result["kafka"] = bench_kafka(settings, bootstrap, events=events, seed=seed,
                                              partitions=partitions, idle_timeout_s=idle_timeout, rate=rate,
                                              rate_events=rate_events)
            except KAFKA_ERRORS as e:
                from stream.errors import SourceError

                raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e
            print_bench_kafka(result["kafka"])
        if db_url:
            from stream.bench.postgres import bench_db, print_bench_db

            result["db"] = bench_db(db_url)
            print_bench_db(result["db"])
    else:
        if bootstrap is not None:
            raise click.UsageError("--bootstrap applies to --kafka only")
        from stream.bench import pipeline as b

        mapping = column_mapping(etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit)
        result = b.run_bench(settings, events=events, seed=seed, input_path=input_path, fmt=fmt, mapping=mapping,
                             limit=limit)
        b.print_bench(result)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
