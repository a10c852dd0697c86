"""``riskstream alerts query``, ``db``, ``label import|export`` and the review-feedback table on a real PostgreSQL,
and the write benchmark."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from sinks import Alert, alert_id
from sinks.feedback import Feedback, FeedbackStore, InvalidFeedback, read_feedback
from sinks.migrations import head
from sinks.sql import SqlSink
from stream.bench.postgres import bench_db
from stream.cli import cli
from stream.events import Label, decode

pytestmark = pytest.mark.postgres

NOW = time.time()


def make_alert(i: int, *, age_s: float) -> Alert:
    ts = round(NOW - age_s, 3)
    return Alert(alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order" if i % 2 else "login",
                 entities={"user": f"u{i % 3}", "device": f"d{i}"}, event_ts=ts, detected_at=ts,
                 score=round(0.9 + i / 100, 6),
                 severity=("medium", "high", "critical")[i % 3], action="review",
                 reasons=({"detector": "hst", "feature": "amount", "value": 10.0 * i, "detail": "above p99"},),
                 detector_scores={"hst": 0.5}, config_hash="cfg", topic="orders", partition=i % 2, offset=i)


# 12 alerts; the first 6 are two days old, the last 6 from the last half hour.
ALERTS = [make_alert(i, age_s=2 * 86400 - i * 60 if i < 6 else 1800 - i * 60) for i in range(12)]


@pytest.fixture
def db(pg_url: str) -> str:
    sink = SqlSink(pg_url)
    sink.add_many(ALERTS)
    sink.close()
    return pg_url


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_alerts_query_filters_and_formats(db: str) -> None:
    r = invoke("alerts", "query", "--db", db, "--format", "json", "--limit", "0")
    assert r.exit_code == 0, r.output
    assert [Alert.from_dict(d) for d in orjson.loads(r.stdout)] == ALERTS

    r = invoke("alerts", "query", "--db", db, "--entity", "user:u1", "--since", "1h", "--format", "jsonl")
    assert [Alert.from_json(line) for line in r.stdout.splitlines()] == [
        a for a in ALERTS[6:] if a.entities["user"] == "u1"]

    r = invoke("alerts", "query", "--db", db, "--severity", "critical", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["alert_id"] for row in rows] == [a.alert_id for a in ALERTS if a.severity == "critical"]
    assert orjson.loads(rows[0]["reasons"]) == [dict(ALERTS[2].reasons[0])] and rows[0]["entity_key"] == "user:u2"

    r = invoke("alerts", "query", "--db", db, "--limit", "3")  # the newest three, oldest first
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["event_time", "severity", "score"]
    assert [line.split()[6] for line in lines[1:4]] == ["e9", "e10", "e11"] and lines[-1] == "(3 alerts)"

    since = ALERTS[3].to_dict()["event_time"]
    r = invoke("alerts", "query", "--db", db, "--since", since, "--format", "jsonl", "--limit", "0")
    assert len(r.stdout.splitlines()) == 9

    r = invoke("alerts", "query", "--db", db, "--entity", "nobody")
    assert r.exit_code == 2 and "KIND:ID" in r.output


def test_alerts_query_ranges_filters_and_sorting_run_on_postgresql(pg_url: str) -> None:
    from tests.stream.test_alerts_query import ALERTS as REPLAYED  # replayed data: event times long past

    sink = SqlSink(pg_url)
    sink.add_many(REPLAYED)
    sink.close()

    def ids(*args: str) -> list[str]:
        r = invoke("alerts", "query", "--db", pg_url, "--format", "jsonl", "--limit", "0", *args)
        assert r.exit_code == 0, r.output
        return [orjson.loads(line)["event_id"] for line in r.stdout.splitlines()]

    assert ids("--since", "1d") == ["e3", "e4", "e5"]  # back from the newest alert, not from the wall clock
    assert ids("--from", "2024-03-01T01:00:00Z", "--to", "2024-03-02T01:00:00Z") == ["e1", "e2"]
    assert ids("--to", "2024-03-01") == ["e0", "e1", "e2"]
    assert ids("--severity", "high") == ["e0", "e2", "e4", "e5"]
    assert ids("--min-score", "0.97", "--action", "block") == ["e0", "e4"]
    assert ids("--rule", "shared_device") == ["e0", "e2"]
    assert ids("--rule", "card_burst_ip", "--since", "1d") == ["e4"]
    assert ids("--sort", "score", "--limit", "3") == ["e0", "e4", "e2"]


def test_alerts_query_takes_the_database_from_the_environment(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_DATABASE_URL", db)
    r = invoke("alerts", "query", "--format", "jsonl", "--limit", "0")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == len(ALERTS)
    monkeypatch.delenv("RISKSTREAM_DATABASE_URL")
    r = invoke("alerts", "query")
    assert r.exit_code == 2 and "no database" in r.output


def test_db_upgrade_and_current(pg_url: str) -> None:
    r = invoke("alerts", "query", "--db", pg_url)
    assert r.exit_code == 1 and "`riskstream db upgrade`" in r.output
    r = invoke("db", "current", "--db", pg_url)
    assert r.exit_code == 0 and "revision (empty)" in r.stdout and "run `riskstream db upgrade`" in r.stdout
    r = invoke("db", "upgrade", "--db", pg_url)
    assert r.exit_code == 0 and f"upgraded from (empty) to {head()}" in r.stdout
    assert ":***@" in r.stdout and f":{make_url(pg_url).password}@" not in r.stdout
    r = invoke("db", "upgrade", "--db", pg_url)
    assert f"already at revision {head()}" in r.stdout
    engine = create_engine(pg_url)
    assert {"alerts", "review_feedback", "riskstream_checkpoints"} <= set(inspect(engine).get_table_names())
    engine.dispose()
    r = invoke("db", "upgrade", "--db", pg_url, "--revision", "9999")
    assert r.exit_code == 2 and "9999" in r.output


def test_review_outcomes_and_chargebacks_become_label_events(db: str, tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in [
        {"alert_id": ALERTS[1].alert_id, "outcome": "fraud", "source": "review", "ts": "2024-05-02T10:00:00Z",
         "reviewer": "ann"},
        {"alert_id": ALERTS[2].alert_id, "outcome": "legit", "source": "review", "ts": 1714647600000},
    ]))
    chargebacks = tmp_path / "chargebacks.csv"
    chargebacks.write_text("event_id,label,ts,user_id\n"
                           f"{ALERTS[4].event_id},1,2024-05-20T08:00:00Z,\n"
                           "never-alerted-9,1,2024-05-21T08:00:00Z,u77\n")

    r = invoke("label", "import", str(reviews), "--db", db)
    assert r.exit_code == 0 and "stored 2 feedback records (0 already there)" in r.stdout
    r = invoke("label", "import", str(chargebacks), "--db", db, "--source", "chargeback")
    assert "stored 2 feedback records" in r.stdout
    r = invoke("label", "import", str(reviews), "--db", db)
    assert "stored 0 feedback records (2 already there)" in r.stdout

    store = FeedbackStore(db, create=False)
    joined = {row["event_id"]: row for row in store.joined()}
    assert joined["e1"]["severity"] == ALERTS[1].severity and joined["e1"]["reviewer"] == "ann"
    assert joined["e4"]["alert_id"] == ALERTS[4].alert_id  # a chargeback linked to the event's alert
    assert joined["never-alerted-9"]["alert_id"] is None and joined["never-alerted-9"]["severity"] is None
    keys = dict((e["ref_event_id"], k) for k, e in store.label_events())
    assert keys == {"e1": "u1", "e2": "u2", "e4": "u1", "never-alerted-9": "u77"}  # co-partitioned with the user
    store.close()

    out = tmp_path / "labels.jsonl"
    r = invoke("label", "export", "--db", db, "--out", str(out))
    assert r.exit_code == 0, r.output
    labels = [decode(line) for line in out.read_bytes().splitlines()]
    assert all(isinstance(lab, Label) for lab in labels)
    assert [(lab.ref_event_id, lab.label, lab.source) for lab in labels] == [
        ("e1", 1, "review"), ("e2", 0, "review"), ("e4", 1, "chargeback"), ("never-alerted-9", 1, "chargeback")]
    assert labels[0].ts == 1714644000.0 and len({lab.event_id for lab in labels}) == 4
    r = invoke("label", "export", "--db", db, "--since", "2024-05-20T00:00:00Z")
    assert [orjson.loads(x)["ref_event_id"] for x in r.stdout.splitlines()] == ["e4", "never-alerted-9"]


@pytest.mark.kafka
def test_label_export_to_kafka_keys_each_label_by_its_user(db: str, tmp_path: Path, kafka_bootstrap: str) -> None:
    import uuid
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, TopicPartition

    records = tmp_path / "chargebacks.jsonl"
    records.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in [
        {"event_id": ALERTS[5].event_id, "outcome": "fraud", "source": "chargeback", "ts": "2024-05-20T08:00:00Z"},
        {"alert_id": ALERTS[7].alert_id, "outcome": "legit", "source": "review", "ts": "2024-05-21T08:00:00Z"},
    ]))
    assert invoke("label", "import", str(records), "--db", db).exit_code == 0
    topic = f"labels-{uuid.uuid4().hex[:8]}"
    r = invoke("label", "export", "--db", db, "--kafka", kafka_bootstrap, "--topic", topic)
    assert r.exit_code == 0 and f"sent 2 label events to {topic}" in r.output

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10_000,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = []
        for msg in consumer:
            got.append((msg.key.decode(), decode(msg.value)))
            if len(got) == 2:
                break
    finally:
        consumer.close()
    assert sorted((k, lab.ref_event_id, lab.label) for k, lab in got) == [
        ("u1", "e7", 0), ("u2", "e5", 1)]


def test_a_bad_feedback_file_stores_nothing_and_names_the_line(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id":"e1","outcome":"fraud","source":"review","ts":0}\n'
                   '{"event_id":"e2","outcome":"maybe","source":"review","ts":0}\n')
    r = invoke("label", "import", str(bad), "--db", db)
    assert r.exit_code == 1 and "bad.jsonl:2: outcome: must be fraud or legit" in r.output
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"event_id":"e1","outcome":"fraud","source":"review","ts":0}\n'
                       '{"alert_id":"no-such-alert","outcome":"fraud","source":"review","ts":0}\n')
    r = invoke("label", "import", str(unknown), "--db", db)
    assert r.exit_code == 1 and "no-such-alert" in r.output
    store = FeedbackStore(db, create=False)
    assert store.joined() == []
    with pytest.raises(InvalidFeedback, match="is not the event of alert"):
        store.add([Feedback(event_id="e3", alert_id=ALERTS[1].alert_id, outcome="fraud", source="review", ts=0)])
    store.close()
    assert [f.source for f in read_feedback(unknown)] == ["review", "review"]


def test_bench_db_measures_both_writers_on_the_same_rows_and_cleans_up(pg_url: str) -> None:
    result = bench_db(pg_url, n=500, repeats=1)
    assert result["rows"] == 500 and result["sink_path"] == "copy"
    for k in ("sink_rows_per_s", "plain_rows_per_s", "plain_encode_rows_per_s", "sink_duplicate_rows_per_s"):
        assert result[k] > 0
    assert result["ratio"] == pytest.approx(result["plain_s"] / result["sink_s"], rel=1e-2)
    assert ":***@" in result["database"] and f":{make_url(pg_url).password}@" not in result["database"]
    engine = create_engine(pg_url)
    assert [t for t in inspect(engine).get_table_names() if t.startswith("bench_")] == []
    engine.dispose()
