"""SqlSink against SQLite always, and against PostgreSQL too when RISKSTREAM_DATABASE_URL is set."""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect

from sinks import Alert, SinkError, alert_id
from sinks.jsonl import JsonlSink, read_alerts
from sinks.sql import SqlSink, alert_table, metadata
from tests.services import service_env

OpenSink = Callable[..., SqlSink]


def make_alert(i: int, **kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order" if i % 2 else "login",
        entities={"user": f"u{i % 3}", "device": f"d{i}", "ip": "10.0.0.1"}, event_ts=1714564800.0 + i * 0.25,
        detected_at=1714564800.5 + i * 0.25, score=round(0.9 + i / 1000, 6),
        severity=("medium", "high", "critical")[i % 3], action="review",
        reasons=({"detector": "hst", "feature": "amount", "value": 912.5 + i, "detail": "above p99 (120.00)"},
                 {"detector": "rules", "feature": "new_device", "value": 1.0, "detail": None,
                  "extra": {"seen": [1, 2.5, "x", True]}}),
        detector_scores={"hst": 0.991, "rules": 0.5}, config_hash="cfg", topic="orders", partition=i % 4,
        offset=1000 + i,
    )
    fields.update(kw)
    return Alert(**fields)


ALERTS = [make_alert(i) for i in range(12)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(url, table)``: a fresh SQLite file, or a fresh table on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/alerts.db", "alerts"
        return
    pg_url = service_env("RISKSTREAM_DATABASE_URL")  # the environment's server, else scripts/services up
    table = f"alerts_t{uuid.uuid4().hex[:12]}"
    yield pg_url, table
    engine = create_engine(pg_url)
    alert_table(table).drop(engine, checkfirst=True)
    engine.dispose()


@pytest.fixture
def open_sink(db: tuple[str, str]) -> Iterator[OpenSink]:
    """Open SqlSinks on the test database; each is closed at the end unless opened with ``close=False``."""
    opened: list[SqlSink] = []

    def _open(*, close: bool = True, **kw: Any) -> SqlSink:
        sink = SqlSink(db[0], table=db[1], **kw)
        if close:
            opened.append(sink)
        return sink

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def sql_sink(open_sink: OpenSink) -> SqlSink:
    """One sink for the whole test (hypothesis runs every example of a test in one fixture scope)."""
    return open_sink()


def test_round_trip_reads_back_equal_alerts_including_reasons(open_sink: OpenSink) -> None:
    sink = open_sink()
    for a in ALERTS:
        sink.add(a)
    assert sink.count() == 0  # add only buffers
    sink.flush()
    assert sink.count() == len(ALERTS)
    assert sink.query(limit=None) == ALERTS
    back = sink.query(limit=1)[0]
    assert back.reasons == ALERTS[0].reasons and back.entity_key == "user:u0"


def test_reads_back_what_the_jsonl_sink_reads_back_for_non_canonical_values(
    open_sink: OpenSink, tmp_path: Path
) -> None:
    raw = [make_alert(i, event_ts=1714564800.123456789 + i, score=1 / 3, detector_scores={"hst": 2 / 3})
           for i in range(3)]
    sink = open_sink()
    with JsonlSink(tmp_path / "a.jsonl") as jsonl:
        for a in raw:
            sink.add(a)
            jsonl.add(a)
    sink.flush()
    assert sink.query() == read_alerts(tmp_path / "a.jsonl") == [Alert.from_json(a.to_json()) for a in raw]


def test_same_alerts_twice_in_a_flush_across_flushes_and_after_reopen_are_stored_once(
    open_sink: OpenSink,
) -> None:
    sink = open_sink(batch_size=4)
    for a in ALERTS[:6] + ALERTS[:6]:
        sink.add(a)
    sink.flush()
    for a in ALERTS[3:9]:
        sink.add(a)
    sink.flush()
    assert sink.count() == 9
    again = open_sink(batch_size=5)  # a restart that replays everything
    for a in ALERTS + ALERTS:
        again.add(a)
    again.flush()
    assert again.count() == len(ALERTS)
    assert again.query(limit=None) == ALERTS


def test_query_filters_and_orders_by_event_time(open_sink: OpenSink) -> None:
    sink = open_sink()
    for a in reversed(ALERTS):
        sink.add(a)
    sink.flush()
    assert sink.query(entity_key="user:u1", limit=None) == [a for a in ALERTS if a.entities["user"] == "u1"]
    assert sink.query(severity="critical", limit=None) == [a for a in ALERTS if a.severity == "critical"]
    since = ALERTS[5].event_ts
    assert sink.query(since=since, limit=None) == ALERTS[5:]
    assert sink.query(since=datetime.fromtimestamp(since, UTC), limit=3) == ALERTS[5:8]
    assert sink.query(entity_key="user:u2", severity="critical", since=since, limit=None) == [
        a for a in ALERTS[5:] if a.entities["user"] == "u2" and a.severity == "critical"]
    assert sink.query(entity_key="user:nobody") == []


def _fired(*rules: str) -> tuple[dict[str, Any], ...]:
    return tuple({"detector": "rules", "feature": r, "value": None, "detail": f"rule {r}: x=1 >= 1",
                  "contribution": 0.5} for r in rules)


# Alerts with distinct scores, actions and fired rules; a feature of another detector named like a rule does not
# count as the rule.
VARIED = [make_alert(i, score=s, action=act, severity=sev, reasons=rs) for i, (s, act, sev, rs) in enumerate([
    (0.91, "review", "low", _fired("shared_device")),
    (0.99, "block", "critical", _fired("card_burst_ip", "shared_device")),
    (0.95, "review", "medium", ({"detector": "zscore", "feature": "shared_device", "value": 3.0, "detail": "z"},)),
    (0.97, "review", "high", _fired("card_burst_ip")),
    (0.93, "allow", "low", ()),
])]


def test_query_filters_by_time_range_severity_score_action_and_rule_and_sorts_by_score(open_sink: OpenSink) -> None:
    sink = open_sink()
    assert sink.newest_event_ts() is None
    sink.add_many(VARIED)
    sink.flush()
    assert sink.newest_event_ts() == VARIED[-1].event_ts
    q = sink.query
    assert q(since=VARIED[1].event_ts, until=VARIED[3].event_ts, limit=None) == VARIED[1:3]  # until: exclusive
    assert q(min_severity="high", limit=None) == [VARIED[1], VARIED[3]]
    assert q(min_severity="low", limit=None) == VARIED
    assert q(min_score=0.95, limit=None) == [VARIED[1], VARIED[2], VARIED[3]]
    assert q(action="block", limit=None) == [VARIED[1]] and q(action="allow", limit=None) == [VARIED[4]]
    assert q(rule="shared_device", limit=None) == [VARIED[0], VARIED[1]]
    assert q(rule="card_burst_ip", min_score=0.98, limit=None) == [VARIED[1]]
    assert q(rule="no_such_rule") == []
    assert q(sort="score", limit=None) == sorted(VARIED, key=lambda a: -a.score)
    assert q(sort="score", limit=2, min_severity="medium") == [VARIED[1], VARIED[3]]
    with pytest.raises(ValueError, match="sort"):
        q(sort="size")


def test_a_failing_row_rolls_back_the_whole_flush_and_keeps_the_buffer(open_sink: OpenSink) -> None:
    sink = open_sink(batch_size=2, close=False)  # closing would retry the poison alert
    bad = make_alert(99, score=math.nan)  # JSON has no NaN: the score becomes null and breaks NOT NULL
    for a in [*ALERTS[:5], bad]:
        sink.add(a)
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert not info.value.retriable
    assert sink.pending == 6
    assert sink.count() == 0  # the first two batches were rolled back with the third
    sink.engine.dispose()


def test_the_table_has_the_documented_columns_and_indexes(open_sink: OpenSink, db: tuple[str, str]) -> None:
    sink = open_sink()
    insp = inspect(sink.engine)
    cols = {c["name"]: c for c in insp.get_columns(db[1])}
    assert list(cols) == [
        "alert_id", "event_id", "event_type", "entity_key", "user_id", "entities", "event_ts", "detected_at",
        "score", "severity", "action", "reasons", "detector_scores", "config_hash", "topic", "partition",
        "offset", "schema_version", "rules_version"]
    assert insp.get_pk_constraint(db[1])["constrained_columns"] == ["alert_id"]
    assert sorted(tuple(ix["column_names"]) for ix in insp.get_indexes(db[1])) == [
        ("entity_key", "event_ts"), ("event_id",), ("event_ts",), ("score", "alert_id"), ("severity", "event_ts")]
    if sink.engine.dialect.name == "postgresql":
        assert type(cols["reasons"]["type"]).__name__ == "JSONB"
        assert cols["event_ts"]["type"].timezone  # type: ignore[attr-defined]


def test_custom_table_names_stay_out_of_the_shared_metadata() -> None:
    assert alert_table() is metadata.tables["alerts"]
    assert alert_table("alerts_tenant_a") is alert_table("alerts_tenant_a")
    assert "alerts_tenant_a" not in metadata.tables


def test_nul_characters_are_kept_on_sqlite_and_replaced_on_postgresql(open_sink: OpenSink) -> None:
    a = make_alert(1, entities={"user": "u\x00x"}, reasons=({"detail": "a\x00b", "k\x00": 1},))
    sink = open_sink()
    sink.add(a)
    sink.flush()
    (back,) = sink.query(limit=None)
    if sink.engine.dialect.name == "postgresql":
        assert back.entities == {"user": "u\ufffdx"}
        assert back.reasons == ({"detail": "a\ufffdb", "k\ufffd": 1},)
        assert sink.query(entity_key="user:u\ufffdx") == [back]
    else:
        assert back == a


_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
_json_value = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _text,
                        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user=_text.filter(bool), ms=st.integers(0, 4102444800000), score=st.floats(0, 1),
    reasons=st.lists(st.dictionaries(_text, _json_value, max_size=4), max_size=3),
    scores=st.dictionaries(_text, st.floats(0, 1), max_size=3),
)
def test_any_canonical_alert_round_trips(sql_sink: SqlSink, user: str, ms: int, score: float,
                                         reasons: list[dict[str, Any]], scores: dict[str, float]) -> None:
    key = uuid.uuid4().hex
    a = make_alert(0, alert_id=key, entities={"user": key, "name": user}, event_ts=ms / 1000,
                   detected_at=ms / 1000, score=round(score, 6), reasons=tuple(reasons),
                   detector_scores={k: round(v, 6) for k, v in scores.items()})
    sql_sink.add(a)
    sql_sink.flush()
    assert sql_sink.query(entity_key=f"user:{key}") == [a]


# --- failures -----------------------------------------------------------------------------------------------


def test_an_unwritable_sqlite_path_raises_sink_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    url = f"sqlite:///{tmp_path}/file/alerts.db"
    with pytest.raises(SinkError, match="alerts.db"):
        SqlSink(url)
    sink = SqlSink(url, create=False)
    sink.add(ALERTS[0])
    with pytest.raises(SinkError):
        sink.flush()
    assert sink.pending == 1


def test_a_locked_sqlite_database_is_retriable_and_the_retry_writes_the_kept_alerts(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    sink = SqlSink(engine)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    for a in ALERTS[:3]:
        sink.add(a)
    with pytest.raises(SinkError, match="locked") as info:
        sink.flush()
    assert info.value.retriable and sink.pending == 3
    blocker.execute("ROLLBACK")
    blocker.close()
    sink.flush()
    assert sink.pending == 0 and sink.query() == ALERTS[:3]
    sink.close()
    assert SqlSink(engine).count() == 3  # a sink never disposes an engine it was given
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unreachable_server_is_retriable_and_the_message_hides_the_password() -> None:
    url = "postgresql+psycopg://riskstream:s3cret-pw@127.0.0.1:1/riskstream?connect_timeout=2"
    with pytest.raises(SinkError) as info:
        SqlSink(url)
    assert info.value.retriable
    assert "s3cret-pw" not in str(info.value)
    assert "riskstream:***@127.0.0.1:1" in str(info.value)
    sink = SqlSink(url, create=False)
    sink.add(ALERTS[0])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value.retriable and "s3cret-pw" not in str(info.value) and sink.pending == 1


def test_a_closed_sink_refuses_to_write(tmp_path: Path) -> None:
    sink = SqlSink(f"sqlite:///{tmp_path}/alerts.db")
    sink.add(ALERTS[0])
    sink.close()
    sink.close()  # idempotent
    sink.add(ALERTS[1])
    with pytest.raises(SinkError, match="closed"):
        sink.flush()
    assert sink.pending == 1
    assert SqlSink(f"sqlite:///{tmp_path}/alerts.db").query() == ALERTS[:1]


def test_a_schema_migrated_by_a_newer_riskstream_is_one_clear_error(tmp_path) -> None:
    from click.testing import CliRunner
    from sqlalchemy import create_engine, text

    from sinks.migrations import VERSION_TABLE, upgrade
    from stream.cli import cli

    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    engine = create_engine(url)
    upgrade(engine)
    with engine.begin() as conn:  # as if a later riskstream had added revision 0099
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(SinkError, match="revision 0099, which this riskstream does not know"):
        SqlSink(url)
    events = tmp_path / "e.jsonl"
    events.write_text("")
    res = CliRunner().invoke(cli, ["replay", str(events), "-q", "--db", url])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskstream: error: ") and "0099" in lines[0], res.output
