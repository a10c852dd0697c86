"""The alert store on a real PostgreSQL: migrations, idempotent writes, the password kept out of errors and logs."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Column, Index, MetaData, Table, create_engine, inspect, text
from sqlalchemy.engine import make_url

import sinks.feedback  # noqa: F401  (its table is part of the metadata the migrations must match)
import stream.console.store  # noqa: F401  (the console's users and audit tables, likewise)
import stream.rulepacks  # noqa: F401  (the rule pack versions and the active-version pointer, likewise)
from sinks import Alert, SinkError, alert_id
from sinks.migrations import VERSION_TABLE, current, head, history, upgrade
from sinks.sql import SqlSink, alerts_table, metadata
from stream.cli import cli
from stream.errors import CheckpointError
from stream.state.postgres import PgStateStore  # also puts its checkpoints table in the metadata

pytestmark = pytest.mark.postgres


def make_alert(i: int, **kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order",
        entities={"user": f"u{i % 3}", "ip": "10.0.0.1"}, event_ts=1714564800.0 + i, detected_at=1714564800.5 + i,
        score=0.99, severity=("medium", "high", "critical")[i % 3], action="review",
        reasons=({"detector": "hst", "feature": "amount", "value": 900.0 + i, "detail": "above p99"},),
        detector_scores={"hst": 0.99}, config_hash="cfg", topic="orders", partition=i % 4, offset=1000 + i)
    fields.update(kw)
    return Alert(**fields)


ALERTS = [make_alert(i) for i in range(40)]


def _indexes(url: str, table: str) -> list[tuple[str, ...]]:
    engine = create_engine(url)
    try:
        return sorted(tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(table))
    finally:
        engine.dispose()


# --- schema and migrations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_sink_migrates_an_empty_database_to_the_head_revision_matching_the_metadata(
    dialect: str, pg_url: str, tmp_path: Any
) -> None:
    url = pg_url if dialect == "postgresql" else f"sqlite:///{tmp_path}/alerts.db"
    sink = SqlSink(url)
    try:
        assert current(sink.engine) == head() == history()[-1][0]
        assert [rev for rev, _ in history()] == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009"]
        names = set(inspect(sink.engine).get_table_names())
        assert {"alerts", "review_feedback", "riskstream_checkpoints", "riskstream_schema_version"} <= names
        assert _indexes(url, "alerts") == [("entity_key", "event_ts"), ("event_id",), ("event_ts",),
                                           ("score", "alert_id"), ("severity", "event_ts")]
        # What the migrations built is what the code's metadata describes: no drift for autogenerate to find.
        with sink.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(ctx, metadata) == []
    finally:
        sink.close()


def test_a_pre_migration_alerts_table_is_adopted_with_its_rows_and_gains_the_new_indexes(pg_url: str) -> None:
    # The alerts table as SqlSink created it before migrations existed: same columns, two indexes, no version.
    # (rules_version came with migration 0009: the legacy table lacks it, and its rows are written without it)
    old = MetaData()
    legacy_table = Table("alerts", old, *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                                          for c in alerts_table.columns if c.name != "rules_version"),
                         Index("ix_alerts_entity_key_event_ts", "entity_key", "event_ts"),
                         Index("ix_alerts_severity_event_ts", "severity", "event_ts"))
    engine = create_engine(pg_url)
    old.create_all(engine)
    legacy = SqlSink(engine, create=False)
    with engine.begin() as conn:
        conn.execute(legacy_table.insert(), [{k: v for k, v in legacy._row(a).items() if k != "rules_version"}
                                             for a in ALERTS[:5]])
    assert current(engine) is None

    sink = SqlSink(engine)  # create=True: migrate
    assert current(engine) == head()
    assert sink.query(limit=None) == ALERTS[:5]
    assert ("event_ts",) in _indexes(pg_url, "alerts")
    engine.dispose()


def test_processes_starting_together_migrate_once_without_racing(pg_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            SqlSink(pg_url).close()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM riskstream_schema_version")).scalar_one() == 1
    assert current(engine) == head()
    engine.dispose()


def test_upgrade_is_a_no_op_at_head_and_downgrades_are_real(pg_url: str) -> None:
    from alembic import command

    from sinks.migrations import _config

    engine = create_engine(pg_url)
    assert upgrade(engine) == head()
    assert upgrade(engine) == head()
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0002")
    assert current(engine) == "0002"
    assert "review_feedback" not in inspect(engine).get_table_names()
    assert upgrade(engine) == head()
    assert "review_feedback" in inspect(engine).get_table_names()
    engine.dispose()


# --- writes -------------------------------------------------------------------------------------------------


def test_the_same_alerts_written_twice_leave_one_row_each(pg_url: str) -> None:
    first = SqlSink(pg_url)
    first.add_many(ALERTS[:25] + ALERTS[:10])  # duplicates inside one flush
    first.flush()
    first.add_many(ALERTS[20:])  # overlaps the first flush
    first.flush()
    first.close()
    again = SqlSink(pg_url)  # a restarted consumer replays everything
    again.add_many(ALERTS + ALERTS)
    again.flush()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT alert_id, count(*) FROM alerts GROUP BY alert_id")).all()
    engine.dispose()
    assert len(rows) == len(ALERTS) and {n for _, n in rows} == {1}
    assert again.query(limit=None) == ALERTS
    again.close()


def test_copy_and_executemany_write_identical_rows(pg_url: str) -> None:
    odd = [make_alert(i, entities={"user": f"u\x00{i}", "n": str(i)}, score=float("nan") if i == 3 else 0.5,
                      reasons=({"detail": "a\x00b", "x": [1, 2.5, None]},), partition=None, offset=None)
           for i in range(6) if i != 3]
    copy_sink, many_sink = SqlSink(pg_url), SqlSink(pg_url, table="alerts_many", copy=False)
    for s in (copy_sink, many_sink):
        s.add_many(odd)
        s.flush()
    assert copy_sink.query(limit=None) == many_sink.query(limit=None)
    assert copy_sink.query(limit=None)[0].entities["user"] == "u\ufffd0"
    bad = make_alert(3, score=float("nan"))  # JSON has no NaN: NULL breaks NOT NULL, on both paths
    for s in (copy_sink, many_sink):
        s.add(bad)
        with pytest.raises(SinkError) as info:
            s.flush()
        assert not info.value.retriable and s.pending == 1
    copy_sink.engine.dispose()
    many_sink.engine.dispose()


# --- the password stays secret ------------------------------------------------------------------------------


def test_a_wrong_password_is_refused_without_the_password_in_errors_logs_or_cli_output(
    pg_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"Wr0ng-{alert_id('pw', 'x')[:10]}"
    url = make_url(pg_server_url).set(password=secret).render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SinkError) as info:
        SqlSink(url)
    msg = str(info.value)
    assert "password authentication failed" in msg and "***" in msg and secret not in msg
    assert not info.value.retriable  # a wrong password does not get better by retrying

    sink = SqlSink(url, create=False, retries=2, retry_backoff=0.01)
    sink.add(ALERTS[0])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert secret not in str(info.value) and sink.pending == 1

    with pytest.raises(CheckpointError) as ck:
        PgStateStore(url, key=b"k" * 32)
    assert "password authentication failed" in str(ck.value) and secret not in str(ck.value)

    result = CliRunner().invoke(cli, ["alerts", "query", "--db", url])
    assert result.exit_code == 1 and "password authentication failed" in result.output
    assert secret not in result.output
    result = CliRunner().invoke(cli, ["db", "upgrade", "--db", url])
    assert result.exit_code == 1 and secret not in result.output

    # Retries of a transient failure are logged, with the password hidden too.
    refused = make_url(url).set(port=1).render_as_string(hide_password=False)
    sink = SqlSink(refused, create=False, retries=2, retry_backoff=0.01)
    sink.add(ALERTS[0])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value.retriable and "gave up after 3 attempts" in str(info.value)
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    assert secret not in caplog.text and secret not in str(info.value)
