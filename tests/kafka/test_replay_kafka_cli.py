"""``riskstream replay --kafka-topic`` on a real broker: a bounded range of the input topics (all, some
topics, an offset range or a time range) through the engine, with the same report as a file replay."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.events import encode
from stream.sim import SimConfig, simulate, write_jsonl
from tests.kafka.conftest import (
    PARTITIONS,
    end_offsets,
    produce_raw,
    produce_simulated,
    reference_alerts,
    settings_for,
    write_config,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka


def _replay(*args: str) -> None:
    res = CliRunner().invoke(cli, ["replay", *args, "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def _config(tmp_path: Path, bootstrap: str, topics) -> Path:
    path = write_config(tmp_path / "riskstream.toml", bootstrap, topics, state_dir=tmp_path / "state",
                        database="")
    with path.open("a") as fh:  # a generous budget: a short stream split over partitions still alerts
        fh.write("\n[engine]\nbudget = 0.03\n\n[ensemble]\nmin_history = 100\n")
    return path


def test_kafka_replay_reports_like_a_file_replay_and_writes_its_alerts(kafka_bootstrap, topics, tmp_path):
    produced = produce_simulated(kafka_bootstrap, topics, 4000, seed=21)
    config = _config(tmp_path, kafka_bootstrap, topics)
    _replay("--kafka", "-c", str(config), "--report", str(tmp_path / "k.json"), "--alerts-out",
            str(tmp_path / "k.jsonl"), "--dead-letters", str(tmp_path / "dead.jsonl"), "--scores-out",
            str(tmp_path / "k.parquet"))
    kreport = orjson.loads((tmp_path / "k.json").read_bytes())

    stream_file = tmp_path / "events.jsonl"
    write_jsonl(simulate(SimConfig(events=4000, seed=21)), stream_file)
    _replay(str(stream_file), "-c", str(config), "--report", str(tmp_path / "f.json"))
    freport = orjson.loads((tmp_path / "f.json").read_bytes())

    missing = sorted(set(freport) - set(kreport))
    assert not missing, f"missing from the Kafka report: {missing}"
    assert set(kreport) - set(freport) <= {"kafka"}
    assert kreport["events"] == freport["events"] == produced.scored
    assert kreport["label_events"] == freport["label_events"] == produced.labels
    assert kreport["invalid"] == 0
    assert sum(kreport["stage_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert kreport["feature_memory"]["entities"] > 0
    assert sorted(kreport["kafka"]["topics"]) == sorted(topics.inputs)

    written = [orjson.loads(line)["alert_id"] for line in (tmp_path / "k.jsonl").read_bytes().splitlines()]
    expected = [a.alert_id for a in reference_alerts(settings_for(config))]
    assert written and sorted(written) == sorted(expected), "the CLI must write what replay_kafka produces"
    assert kreport["alerts"] == len(expected)

    import pyarrow.parquet as pq

    scores = pq.read_table(tmp_path / "k.parquet").to_pylist()  # one engine per partition, one file
    assert len(scores) == kreport["events"]
    alerted = sorted(r["event_id"] for r in scores if r["alerted"])
    lines = (tmp_path / "k.jsonl").read_bytes().splitlines()
    assert alerted == sorted(orjson.loads(line)["event_id"] for line in lines)


def test_kafka_topic_and_offset_range_bound_the_replay(kafka_bootstrap, topics, tmp_path):
    produce_simulated(kafka_bootstrap, topics, 3000, seed=22)
    config = _config(tmp_path, kafka_bootstrap, topics)
    end = end_offsets(kafka_bootstrap, [TopicPartition(topics.orders, p) for p in range(PARTITIONS)])

    _replay("--kafka-topic", topics.orders, "-c", str(config), "--report", str(tmp_path / "orders.json"))
    report = orjson.loads((tmp_path / "orders.json").read_bytes())
    assert report["kafka"]["topics"] == [topics.orders]
    assert report["events"] == sum(end.values()) and report["label_events"] == 0

    _replay("--kafka-topic", topics.orders, "-c", str(config), "--from-offset", "10", "--to-offset", "50",
            "--report", str(tmp_path / "range.json"))
    report = orjson.loads((tmp_path / "range.json").read_bytes())
    assert report["events"] == sum(max(0, min(50, e) - 10) for e in end.values())
    expected = {f"{tp.topic}/{tp.partition}": [10, min(50, e)] for tp, e in end.items()}
    assert report["kafka"]["offsets"] == expected


def test_timestamps_select_the_records_produced_in_a_time_range(kafka_bootstrap, topics, tmp_path):
    events = [e for e in simulate(SimConfig(events=1500, seed=23)) if e.type == "order"]
    first, second = events[: len(events) // 2], events[len(events) // 2:]
    hour_ago = int(time.time() * 1000) - 3_600_000
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        # Record timestamps far apart: a replay's time range is about when records were produced.
        for e in first:
            producer.send(topics.orders, key=e.user_id.encode(), value=encode(e), timestamp_ms=hour_ago)
        for e in second:
            producer.send(topics.orders, key=e.user_id.encode(), value=encode(e),
                          timestamp_ms=hour_ago + 3_000_000)
        producer.flush()
    finally:
        producer.close()
    config = _config(tmp_path, kafka_bootstrap, topics)
    split = datetime.fromtimestamp((hour_ago + 1_500_000) / 1000, UTC).isoformat()

    _replay("--kafka-topic", topics.orders, "-c", str(config), "--from-timestamp", split,
            "--report", str(tmp_path / "late.json"))
    assert orjson.loads((tmp_path / "late.json").read_bytes())["events"] == len(second)
    _replay("--kafka-topic", topics.orders, "-c", str(config),
            "--to-timestamp", str((hour_ago + 1_500_000) / 1000), "--report", str(tmp_path / "early.json"))
    assert orjson.loads((tmp_path / "early.json").read_bytes())["events"] == len(first)


def test_replay_needs_inputs_or_kafka_and_not_both(tmp_path, kafka_bootstrap):
    runner = CliRunner()
    res = runner.invoke(cli, ["replay"])
    assert res.exit_code == 2 and "--kafka-topic" in res.output
    (tmp_path / "e.jsonl").write_text("")
    res = runner.invoke(cli, ["replay", str(tmp_path / "e.jsonl"), "--kafka-topic", "orders"])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(cli, ["replay", str(tmp_path / "e.jsonl"), "--from-offset", "3"])
    assert res.exit_code == 2 and "--from-offset" in res.output
    res = runner.invoke(cli, ["replay", "--kafka", "--map", "ts=time", "--bootstrap", kafka_bootstrap])
    assert res.exit_code == 2 and "--map" in res.output
    res = runner.invoke(cli, ["replay", "--kafka", "--from-timestamp", "yesterday",
                              "--bootstrap", kafka_bootstrap])
    assert res.exit_code == 2 and "--from-timestamp" in res.output


def test_kafka_replay_with_top_0_prints_the_summary_without_an_alert_table(kafka_bootstrap, topics, tmp_path):
    produce_simulated(kafka_bootstrap, topics, 3000, seed=24)
    config = _config(tmp_path, kafka_bootstrap, topics)
    res = CliRunner().invoke(cli, ["replay", "--kafka", "-c", str(config), "--top", "0", "--report",
                                   str(tmp_path / "k.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert orjson.loads((tmp_path / "k.json").read_bytes())["alerts"] > 0, "alerts must have been offered"
    assert "events scored" in res.output
    assert "top " not in res.output


def test_kafka_replay_of_only_invalid_records_exits_2_with_the_reason_and_an_empty_range_warns(
        kafka_bootstrap, topics, tmp_path):
    config = _config(tmp_path, kafka_bootstrap, topics)
    runner = CliRunner()
    res = runner.invoke(cli, ["replay", "--kafka-topic", topics.orders, "-c", str(config), "-q", "--report",
                              str(tmp_path / "empty.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("riskstream: warning: nothing to replay")]
    produce_raw(kafka_bootstrap, topics.orders, [b'{"type":"order"}'] * 4 + [b"{not json"])
    res = runner.invoke(cli, ["replay", "--kafka-topic", topics.orders, "-c", str(config), "-q", "--report",
                              str(tmp_path / "bad.json")], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    (error,) = [ln for ln in res.stderr.splitlines() if ln.startswith("riskstream: error: ")]
    assert "nothing valid was read" in error and "event_id: is missing" in error
    reasons = orjson.loads((tmp_path / "bad.json").read_bytes())["dead_letter_reasons"]
    assert [r["count"] for r in reasons] == [4, 1] and reasons[0]["reason"] == "event_id: is missing"


def test_a_topic_the_config_does_not_name_can_be_replayed(kafka_bootstrap, topics, tmp_path):
    # the configured input topics are the defaults (orders, logins, labels); the one replayed is none of them
    produce_raw(kafka_bootstrap, topics.orders, [encode(e) for e in simulate(SimConfig(events=300, seed=2))
                                                 if e.type == "order"])
    rep = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["replay", "--kafka-topic", topics.orders, "--kafka-topic", topics.logins,
                                   "--bootstrap", kafka_bootstrap, "-q", "--report", str(rep)])
    assert res.exit_code == 0, res.output
    report = orjson.loads(rep.read_bytes())
    assert report["events"] > 0 and report["kafka"]["topics"] == [topics.orders, topics.logins]
