"""A rule pack deployed while ``riskstream run`` runs on the real broker: the consumer switches to it at a recorded
point of each partition without a restart, the next alerts carry the new ``rules_version`` and the new rule's
reasons, the earlier ones the old version, and a replay of the group reproduces both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient, KafkaProducer

from sinks.alert import Alert
from sinks.jsonl import read_alerts
from sinks.memory import MemorySink
from sinks.migrations import upgrade
from sinks.sql import create_sql_engine
from stream.bench.harness import (
    PARTITIONS,
    RunProcess,
    committed_offsets,
    comparable,
    delete_topics,
    end_offsets,
    make_topics,
    read_topic,
    settings_for,
    store_alerts,
    wait_until,
    write_config,
)
from stream.cli import cli
from stream.events import encode
from stream.kafka import replay_kafka
from stream.rulepacks import RulePackStore, configured_pack
from stream.sim import SimConfig, simulate

pytestmark = pytest.mark.kafka

#: A rule the default pack lacks: it blocks large orders, so every event it fires on is an alert naming it.
EXTRA = {"name": "huge_order", "when": "order_amount > 250", "score": 5.0, "action": "block"}


def _produce(bootstrap: str, topics, events, user_of) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    try:
        for e in events:
            if e.type == "label":
                key, topic = user_of.get(e.ref_event_id, e.ref_event_id), topics.labels
            else:
                key, topic = e.user_id, topics.orders if e.type == "order" else topics.logins
            producer.send(topic, key=key.encode(), value=encode(e))
        producer.flush()
    finally:
        producer.close()


def _rules(a: Alert) -> list[str]:
    return [r["feature"] for r in a.reasons if r.get("detector") == "rules"]


def test_a_deploy_switches_a_running_consumer_and_a_replay_reproduces_it(
    kafka_bootstrap: str, alert_db: str, tmp_path: Path, processes: list[RunProcess]
) -> None:
    topics = make_topics(kafka_bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        stream = list(simulate(SimConfig(events=8000, seed=23)))
        user_of = {e.event_id: e.user_id for e in stream if e.type != "label"}
        first, second = stream[:4000], stream[4000:]
        config = write_config(tmp_path / "riskstream.toml", kafka_bootstrap, topics, state_dir=tmp_path / "state",
                              database=alert_db, rules_poll_interval_s=0.2)
        # four units of 2000 events each: alerts from the first hundred events of a type on, not the 500th
        config.write_text(config.read_text() + "\n[ensemble]\nmin_history = 50\n")
        settings = settings_for(config)
        db = create_sql_engine(alert_db)
        upgrade(db)
        store = RulePackStore(db, settings)
        store.ensure_seeded()  # version 1: the configured pack

        _produce(kafka_bootstrap, topics, first, user_of)
        end1 = end_offsets(kafka_bootstrap, topics.input_partitions())
        run = RunProcess(config, tmp_path / "run.log", database=alert_db, bootstrap=kafka_bootstrap)
        processes.append(run)

        def at(end) -> bool:
            try:
                c = committed_offsets(admin, topics.group)
            except Exception:  # noqa: BLE001 - the group is still forming
                return False
            return all(c.get(tp, -1) >= off for tp, off in end.items())

        wait_until(lambda: at(end1), 60, "the first half committed", [run])
        pack = configured_pack(settings)
        pack["rules"].append(dict(EXTRA))
        assert store.deploy(pack, author="alice", comment="huge orders").version == 2

        def switched() -> int:
            return len(re.findall(r"event=rules_switched unit=\d+ version=2\b", run.output()))

        wait_until(lambda: switched() == PARTITIONS, 30, "every unit switched to version 2", [run], every=0.05)
        # kill -9 at once, most likely before the checkpoint after the switch: the next process restores state
        # saved under version 1 and must apply the switch recorded at its offsets before anything else
        run.kill()
        run = RunProcess(config, tmp_path / "run2.log", database=alert_db, bootstrap=kafka_bootstrap)
        processes.append(run)
        _produce(kafka_bootstrap, topics, second, user_of)
        end2 = end_offsets(kafka_bootstrap, topics.input_partitions())

        def moved() -> bool:
            try:
                c = committed_offsets(admin, topics.group)
            except Exception:  # noqa: BLE001
                return False
            return any(c.get(tp, -1) > off for tp, off in end1.items())

        # kill -9 once part of the second half is committed under version 2; the next process resumes each unit
        # from its checkpoint with the version recorded for it, and publishes nothing twice
        wait_until(moved, 60, "part of the second half committed", [run])
        run.kill()
        run = RunProcess(config, tmp_path / "run3.log", database=alert_db, bootstrap=kafka_bootstrap)
        processes.append(run)
        wait_until(lambda: at(end2), 60, "the second half committed", [run])
        assert run.terminate() == 0, run.output()[-3000:]
        # it runs version 2 from the checkpoints (or the recorded switch) on: no new switch is recorded
        assert not re.search(r"event=rules_switched .*previous=", run.output()), run.output()[-3000:]

        alerts = store_alerts(alert_db)
        early = {e.event_id for e in first}
        before = [a for a in alerts if a.event_id in early]
        after = [a for a in alerts if a.event_id not in early]
        assert before and after
        assert {a.rules_version for a in before} == {1}, "alerts before the deploy carry the old version"
        assert {a.rules_version for a in after} == {2}, "alerts after the switch carry the new version"
        assert not any("huge_order" in _rules(a) for a in before)
        assert any("huge_order" in _rules(a) for a in after)
        # the alerts topic carries the version too
        on_topic = [Alert.from_json(r.value) for r in read_topic(kafka_bootstrap, topics.alerts, committed=True)]
        assert len({a.alert_id for a in on_topic}) == len(on_topic), "an alert was published twice"
        assert sorted((a.alert_id, a.rules_version) for a in on_topic) == \
            sorted((a.alert_id, a.rules_version) for a in alerts)

        # a replay of the group applies its recorded switches with the stored packs: the same alerts
        sink = MemorySink()
        replay_kafka(settings, group=topics.group, sinks=[sink])
        assert sorted((comparable(a) for a in sink.alerts), key=lambda d: d["alert_id"]) == \
            sorted((comparable(a) for a in alerts), key=lambda d: d["alert_id"])
        assert {a.event_id for a in sink.alerts if "huge_order" in _rules(a)} == \
            {a.event_id for a in alerts if "huge_order" in _rules(a)}
        # the same from the command line, into a JSONL file
        out = tmp_path / "replay.jsonl"
        res = CliRunner().invoke(cli, ["replay", "--kafka", "--group", topics.group, "-c", str(config), "-q",
                                       "--alerts-out", str(out)], catch_exceptions=False,
                                 env={"RISKSTREAM_DATABASE_URL": alert_db})
        assert res.exit_code == 0, res.output
        assert sorted((comparable(a) for a in read_alerts(out)), key=lambda d: d["alert_id"]) == \
            sorted((comparable(a) for a in alerts), key=lambda d: d["alert_id"])
        # without the group's record, a replay runs the configured rules throughout: no version, no new rule
        plain = MemorySink()
        replay_kafka(settings, sinks=[plain])
        assert {a.rules_version for a in plain.alerts} == {None}
        assert not any("huge_order" in _rules(a) for a in plain.alerts)
        db.dispose()
    finally:
        admin.close()
        delete_topics(kafka_bootstrap, topics)
