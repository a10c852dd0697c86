"""``riskstream bench --kafka`` against the real broker: every member reads every record, they all raise the same
alerts (overlap on or off, exactly once or not, and the Kafka replay), and the ratios it prints are the ratios of
the rates it measured."""

from __future__ import annotations

import pytest

from stream.bench.kafka import bench_kafka
from stream.config import load_settings

pytestmark = pytest.mark.kafka


def test_bench_kafka_members_agree_and_its_ratios_are_its_rates(kafka_bootstrap):
    settings = load_settings(None, env={}, overrides={"kafka.session_timeout_ms": 6000,
                                                       "kafka.heartbeat_interval_ms": 1000})
    r = bench_kafka(settings, kafka_bootstrap, events=10000, partitions=2, timeout_s=120)
    total = r["produce"]["events"]
    members = [r["run_consumer"], r["run_consumer_at_least_once"], r["run_consumer_no_overlap"]]
    assert r["raw_consume"]["records"] == total
    runs = r["raw_consume"]["runs_records_per_second"]
    assert len(runs) == 3 and runs == sorted(runs) and r["raw_consume"]["records_per_second"] == runs[1], \
        "the ratios divide by the median of three reads"
    assert all(m["records"] == total for m in members)
    assert r["replay_kafka"]["records"] == total
    alerts = {m["alerts"] for m in members} | {r["replay_kafka"]["alerts"]}
    assert len(alerts) == 1 and alerts.pop() > 0
    assert r["run_consumer"]["exactly_once"] and r["run_consumer_no_overlap"]["exactly_once"]
    assert not r["run_consumer_at_least_once"]["exactly_once"]
    eps = r["run_consumer"]["events_per_second"]
    assert r["ratio"] == pytest.approx(eps / r["raw_consume"]["records_per_second"], rel=1e-3)
    assert r["overlap_ratio"] == pytest.approx(eps / r["run_consumer_no_overlap"]["events_per_second"], rel=1e-3)
    assert r["exactly_once_ratio"] == pytest.approx(
        eps / r["run_consumer_at_least_once"]["events_per_second"], rel=1e-3)


def test_bench_kafka_skips_the_no_overlap_member_when_overlap_is_off(kafka_bootstrap):
    settings = load_settings(None, env={}, overrides={"kafka.overlap": False, "kafka.session_timeout_ms": 6000,
                                                       "kafka.heartbeat_interval_ms": 1000})
    r = bench_kafka(settings, kafka_bootstrap, events=1500, partitions=1, timeout_s=120)
    assert r["run_consumer_no_overlap"] is None and r["overlap_ratio"] is None
    assert r["run_consumer"]["records"] == r["produce"]["events"]
