"""``riskstream rules list|show|test|deploy|rollback``: versioned rule packs in the alert store.

A pack is the ``detectors.rules`` table as TOML (``combine``, ``blocklists``, ``[[rules]]``; see
:mod:`stream.rulepacks`). A pack that does not validate (unknown feature, bad operator, malformed condition)
exits with status 2 and one line saying why. Consumers that are already running do not pick up a new version
yet (docs/console.md).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.base import fail_cleanly
from stream.cli.db import config_option, db_option, resolve_database
from stream.errors import ConfigError

__all__ = ["rules"]


def _store(db: str | None, config: str | None):  # -> RulePackStore on a migrated store
    from sinks.migrations import upgrade
    from sinks.sql import create_sql_engine
    from stream.config import load_settings
    from stream.rulepacks import RulePackStore

    settings = load_settings(config)
    engine = create_sql_engine(resolve_database(db, config))
    upgrade(engine)
    return RulePackStore(engine, settings)


def _read_pack(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"rule pack {path}: {e.strerror or e}") from None


@click.group("rules")
def rules() -> None:
    """Versioned rule packs: list, show, backtest, deploy, roll back.

    \b
    riskstream rules list --db URL
    riskstream rules show --db URL > pack.toml              # edit it, then:
    riskstream rules test pack.toml events.jsonl.gz --db URL
    riskstream rules deploy pack.toml --db URL --comment "why"
    riskstream rules rollback --db URL

    Without a stored pack, version 1 is the configured one (detectors.rules of --config).
    """


@rules.command("list")
@db_option
@config_option
@fail_cleanly
def rules_list(db: str | None, config: str | None) -> None:
    """Every stored version, newest first; `*` marks the active one."""
    store = _store(db, config)
    try:
        for v in store.versions():
            n = len(v.pack.get("rules") or [])
            parent = f"v{v.parent_version}" if v.parent_version is not None else "-"
            click.echo(f"{'*' if v.active else ' '} v{v.version}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.author}  "
                       f"rules={n}  parent={parent}  {v.comment}")
    finally:
        store.engine.dispose()


@rules.command("show")
@click.argument("version", type=click.IntRange(min=1), required=False)
@db_option
@config_option
@fail_cleanly
def rules_show(version: int | None, db: str | None, config: str | None) -> None:
    """Print VERSION (default: the active one) as pack TOML."""
    store = _store(db, config)
    try:
        try:
            v = store.get(version)
        except LookupError as e:
            raise ConfigError(str(e)) from None
        click.echo(v.pack_text, nl=False)
    finally:
        store.engine.dispose()


@rules.command("test")
@click.argument("pack", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=False, type=click.Path(dir_okay=False))
@db_option
@config_option
@click.option("--kafka-topic", "kafka_topics", multiple=True, metavar="TOPIC",
              help="Backtest on this Kafka topic instead of files (repeatable), a bounded range as `riskstream "
                   "replay --kafka-topic` reads it.")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]", help="Kafka bootstrap servers.")
@click.option("--from-offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="Kafka: start at offset N of every partition.")
@click.option("--to-offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="Kafka: stop at offset N of every partition (exclusive).")
@click.option("--from-timestamp", default=None, metavar="WHEN", help="Kafka: from the first record at or after WHEN.")
@click.option("--to-timestamp", default=None, metavar="WHEN", help="Kafka: before the first record at or after WHEN.")
@click.option("--against", type=click.IntRange(min=1), default=None, metavar="VERSION",
              help="Compare with this stored version (default: the active one; without --db or a configured "
                   "database, the configured pack).")
@click.option("--max-events", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Replay at most this many events of INPUTS in each run.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the comparison as JSON.")
@fail_cleanly
def rules_test(pack: str, inputs: tuple[str, ...], db: str | None, config: str | None,
               kafka_topics: tuple[str, ...], bootstrap: str | None, from_offset: int | None,
               to_offset: int | None, from_timestamp: str | None, to_timestamp: str | None, against: int | None,
               max_events: int, report: str | None) -> None:
    """Backtest PACK against the active pack over recorded INPUTS (JSONL/CSV, as `riskstream replay` reads) or a
    bounded Kafka range (--kafka-topic; --max-events does not apply, bound it with the offsets or times): the same
    engine twice, the results side by side."""
    from stream.cli.base import parse_when
    from stream.config import load_settings
    from stream.rulepacks import backtest, configured_pack, file_source_factory, kafka_runner, validate_pack

    kafka_opts = {"--bootstrap": bootstrap, "--from-offset": from_offset, "--to-offset": to_offset,
                  "--from-timestamp": from_timestamp, "--to-timestamp": to_timestamp}
    if bool(inputs) == bool(kafka_topics):
        raise click.UsageError("give INPUT files or --kafka-topic TOPIC (one of them)")
    if inputs and any(v is not None for v in kafka_opts.values()):
        used = ", ".join(k for k, v in kafka_opts.items() if v is not None)
        raise click.UsageError(f"{used}: only with --kafka-topic")
    settings = load_settings(config)
    candidate = validate_pack(settings, _read_pack(pack))
    if db or settings.sinks.get("database"):
        store = _store(db, config)
        try:
            try:
                stored = store.get(against)
            except LookupError as e:
                raise ConfigError(f"--against: {e}") from None
            current: Any = stored.pack
            label = f"v{stored.version}"
        finally:
            store.engine.dispose()
    else:
        if against is not None:
            raise click.UsageError("--against needs --db (or sinks.database)")
        current, label = configured_pack(settings), "configured"
    if kafka_topics:
        result = backtest(settings, current, candidate, runner=kafka_runner(
            kafka_topics, bootstrap=bootstrap, from_offset=from_offset, to_offset=to_offset,
            from_timestamp=parse_when("--from-timestamp", from_timestamp),
            to_timestamp=parse_when("--to-timestamp", to_timestamp)))
    else:
        result = backtest(settings, current, candidate, file_source_factory(list(inputs), settings),
                          max_events=max_events)
    result["against"] = label
    if report:
        Path(report).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    cur, cand = result["current"], result["candidate"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    click.echo(f"{'':28} {label:>12} {'candidate':>12}")
    click.echo(f"{'events':28} {cur['events']:>12} {cand['events']:>12}")
    click.echo(f"{'alerts':28} {cur['alerts']:>12} {cand['alerts']:>12}")
    click.echo(f"{'precision@budget':28} {pct(cur['precision_at_budget']):>12} "
               f"{pct(cand['precision_at_budget']):>12}")
    click.echo(f"{'recall@budget':28} {pct(cur['recall_at_budget']):>12} {pct(cand['recall_at_budget']):>12}")
    click.echo("alerts naming each rule:")
    for name in sorted(set(cur["rule_alerts"]) | set(cand["rule_alerts"])):
        click.echo(f"  {name:26} {cur['rule_alerts'].get(name, 0):>12} {cand['rule_alerts'].get(name, 0):>12}")
    click.echo(f"added alerts: {result['added']['count']}, removed alerts: {result['removed']['count']}")
    for side in ("added", "removed"):
        for a in result[side]["alerts"][:10]:
            click.echo(f"  {'+' if side == 'added' else '-'} {a['alert_id']} {a['event_id']} {a['entity']} "
                       f"{','.join(a['rules']) or '(no rule reason)'}")


def _author(author: str | None) -> str:
    if author:
        return author
    try:
        return f"{getpass.getuser()} (cli)"[:64]
    except (KeyError, OSError):
        return "(cli)"


@rules.command("deploy")
@click.argument("pack", type=click.Path(dir_okay=False))
@db_option
@config_option
@click.option("--author", default=None, help="Who deploys (default: the OS user, marked '(cli)').")
@click.option("--comment", "-m", default="", help="Why: kept with the version and in the audit trail.")
@fail_cleanly
def rules_deploy(pack: str, db: str | None, config: str | None, author: str | None, comment: str) -> None:
    """Validate PACK, store it as the next version and make it the active one."""
    store = _store(db, config)
    try:
        v = store.deploy(_read_pack(pack), author=_author(author), comment=comment)
    finally:
        store.engine.dispose()
    click.echo(f"deployed rule pack v{v.version} (was v{v.parent_version})", err=True)


@rules.command("rollback")
@db_option
@config_option
@click.option("--author", default=None, help="Who rolls back (default: the OS user, marked '(cli)').")
@click.option("--comment", "-m", default="", help="Why: kept in the audit trail.")
@fail_cleanly
def rules_rollback(db: str | None, config: str | None, author: str | None, comment: str) -> None:
    """Make the version that was active before the active one active again (an audit row records it)."""
    store = _store(db, config)
    try:
        before = store.active_version()
        try:
            v = store.rollback(author=_author(author), comment=comment)
        except LookupError as e:
            raise ConfigError(str(e)) from None
    finally:
        store.engine.dispose()
    click.echo(f"rolled back: rule pack v{v.version} is active (was v{before})", err=True)
