"""``riskstream simulate``: realistic labelled traffic with attacks, to a file or to Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from stream.cli.base import fail_cleanly, settings_from
from stream.errors import ConfigError


def attack_overrides(specs: Sequence[str]) -> dict[str, float]:
    from stream.sim import AttackRates

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


def sim_config(events: int, seed: int, users: int | None, attacks: Sequence[str], login_labels: bool = False):
    import dataclasses

    from stream.sim import AttackRates, SimConfig

    rates = dataclasses.replace(AttackRates(), **attack_overrides(attacks))
    kwargs: dict[str, Any] = {"events": events, "seed": seed, "attacks": rates, "login_labels": login_labels}
    if users is not None:
        kwargs["users"] = users
    return SimConfig(**kwargs)


@click.command()
@click.option("--events", "-n", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="How many events to generate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: same seed, same stream.")
@click.option("--users", type=click.IntRange(min=10), default=None,
              help="Number of users (default scales with --events).")
@click.option("--attack", "attacks", multiple=True, metavar="NAME=RATE",
              help="Override an attack's rate (see docs/simulator.md), e.g. --attack card_testing=2.")
@click.option("--login-labels", is_flag=True,
              help="Label logins too (attack logins as often as fraud orders, others as often as other orders; "
                   "see docs/simulator.md). Off: the stream of a seed is what it always was.")
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
@fail_cleanly
def simulate(events: int, seed: int, users: int | None, attacks: tuple[str, ...], login_labels: bool, out: str | None,
             to_kafka: bool, bootstrap: str | None, config: str | None, rate: float, partitions: int,
             replication_factor: int) -> None:
    """Generate realistic labelled e-commerce traffic with injected attacks, to a file or to Kafka.

    \b
    riskstream simulate -n 200000 -o events.jsonl.gz
    riskstream simulate --to-kafka --rate 200 --config riskstream.toml
    """
    import time

    from stream.sim import simulate as run_sim
    from stream.sim import write_jsonl

    if to_kafka == (out is not None):
        raise click.UsageError("give either --out FILE or --to-kafka" if to_kafka else "--out is required "
                               "unless --to-kafka is given")
    if not to_kafka and (rate or bootstrap or config):
        raise click.UsageError("--rate, --bootstrap and --config apply to --to-kafka only")
    cfg = sim_config(events, seed, users, attacks, login_labels)
    if out is not None:
        n = write_jsonl(run_sim(cfg), out)
        click.echo(f"wrote {n} events to {out}", err=True)
        return
    from stream.bench.kafka import ensure_topics, produce_events
    from stream.kafka.client import input_topics

    settings = settings_from(config, {"kafka.bootstrap_servers": bootstrap})
    servers = str(settings.kafka["bootstrap_servers"])
    topics = input_topics(settings)
    counts = ensure_topics(servers, topics, partitions=partitions, replication_factor=replication_factor,
                           bootstrap_timeout_ms=int(settings.kafka["bootstrap_timeout_ms"]))
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
