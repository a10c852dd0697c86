"""Live traffic: producers write paced simulated events WHILE the consumer group runs, and the alerts still
equal a replay of the same offsets (``replay_kafka(..., group=...)``, which applies the group's recorded
merge decisions). Issue 16: without recorded decisions, whether a topic "had ended" was answered by its
moving high watermark, and the merge order (so scores, ids, severities) depended on fetch timing."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient, KafkaProducer

from sinks.alert import Alert
from sinks.memory import MemorySink
from stream.cli import cli as cli_main
from stream.events import encode
from stream.kafka import replay_kafka
from stream.sim import SimConfig, simulate
from tests.kafka.conftest import (
    RunProcess,
    Topics,
    committed_offsets,
    comparable,
    end_offsets,
    make_topics,
    read_topic,
    settings_for,
    store_alerts,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.kafka

def _produce_paced(bootstrap: str, topics: Topics, *, events: int, seed: int, rate: float,
                   login_delay_s: float) -> threading.Thread:
    """Two producers, as two services would be: orders and labels at ``rate`` events/s of the simulated stream,
    and logins on the same schedule but ``login_delay_s`` late (another service, another network path). A
    login's event time is earlier than the orders written next to it, so a consumer that takes "the logins
    partition is at its high watermark" for "no earlier login can come" processes orders before the logins
    that precede them, unlike a replay."""
    stream = list(simulate(SimConfig(events=events, seed=seed)))
    user_of = {e.event_id: e.user_id for e in stream if e.type != "label"}
    t0 = time.monotonic() + 0.5
    plan: dict[str, list[tuple[float, str, str, bytes]]] = {"main": [], "logins": []}
    for i, e in enumerate(stream):
        when = t0 + i / rate
        if e.type == "login":
            plan["logins"].append((when + login_delay_s, topics.logins, e.user_id, encode(e)))
        elif e.type == "order":
            plan["main"].append((when, topics.orders, e.user_id, encode(e)))
        else:
            plan["main"].append((when, topics.labels, user_of.get(e.ref_event_id, e.ref_event_id), encode(e)))
    errors: list[BaseException] = []

    def produce(items: list[tuple[float, str, str, bytes]]) -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        try:
            for when, topic, key, value in items:
                delay = when - time.monotonic()
                if delay > 0.002:
                    producer.flush()
                    time.sleep(delay)
                producer.send(topic, key=key.encode(), value=value)
            producer.flush()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            producer.close()

    threads = [threading.Thread(target=produce, args=(items,), daemon=True) for items in plan.values()]

    def run() -> None:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.errors = errors  # type: ignore[attr-defined]
    return runner


def _diff(stored: list[Alert], reference: list[Alert]) -> dict[str, Any]:
    ref = {a.alert_id: a for a in reference}
    got = {a.alert_id: a for a in stored}
    return {
        "reference": len(ref),
        "stored": len(stored),
        "duplicates": len(stored) - len(got),
        "missing": sorted(set(ref) - set(got)),
        "extra": sorted(set(got) - set(ref)),
        "differing": sorted(i for i in set(ref) & set(got) if comparable(got[i]) != comparable(ref[i])),
    }


def _run_live(tmp_path: Path, bootstrap: str, database: str, processes: list[RunProcess], *, events: int,
              seed: int, rate: float, login_delay_s: float = 0.4, kill_at: float | None = None,
              cli: bool = False) -> None:
    topics: Topics = make_topics(bootstrap)
    try:
        _run_live_on(topics, tmp_path, bootstrap, database, processes, events=events, seed=seed, rate=rate,
                     login_delay_s=login_delay_s, kill_at=kill_at, cli=cli)
    finally:
        for p in processes:
            if p.alive:
                p.kill()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([*topics.inputs, topics.alerts, topics.dead_letters], raise_errors=False)
        except Exception:  # noqa: BLE001 - best effort; names are unique anyway
            pass
        finally:
            admin.close()


def _run_live_on(topics: Topics, tmp_path: Path, bootstrap: str, database: str, processes: list[RunProcess], *,
                 events: int, seed: int, rate: float, login_delay_s: float, kill_at: float | None,
                 cli: bool) -> None:
    config = write_config(tmp_path / "riskstream.toml", bootstrap, topics, state_dir=tmp_path / "state",
                          database=database)
    # A larger review budget: more alerts, so a record processed in another order shows in the comparison.
    config.write_text(config.read_text() + "\n[engine]\nbudget = 0.05\n")
    settings = settings_for(config)

    def start(name: str) -> RunProcess:
        p = RunProcess(config, tmp_path / f"{name}.log", database=database, bootstrap=bootstrap)
        processes.append(p)
        return p

    p1, p2 = start("p1"), start("p2")
    wait_until(lambda: all(re.search(r"event=assigned units=\d", p.output()) for p in (p1, p2)), 60,
               "both members own units", processes)
    started = time.monotonic()
    producer = _produce_paced(bootstrap, topics, events=events, seed=seed, rate=rate, login_delay_s=login_delay_s)
    if kill_at is not None:
        time.sleep(kill_at)
        p2.kill()
        time.sleep(1.0)
        p2.start()
    producer.join(timeout=180)
    assert not producer.is_alive() and not producer.errors, producer.errors  # type: ignore[attr-defined]
    produce_s = time.monotonic() - started
    tps = [tp for t in topics.inputs for tp in _partitions(bootstrap, t)]
    end = end_offsets(bootstrap, tps)
    wait_until(lambda: {tp: committed_offsets_safe(bootstrap, topics.group).get(tp) for tp in end} == end,
               120, "every input record committed", processes)
    for p in processes:
        assert p.terminate() == 0, p.output()[-3000:]

    sink = MemorySink()
    replay_kafka(settings, sinks=[sink], group=topics.group)
    reference = sink.alerts
    diff = _diff(store_alerts(database), reference)
    topic_alerts = [Alert.from_json(r.value) for r in read_topic(bootstrap, topics.alerts)]
    topic_diff = _diff(list({a.alert_id: a for a in topic_alerts}.values()), reference)
    summary = {k: (len(v) if isinstance(v, list) else v) for k, v in diff.items()}
    print(f"live traffic: produced {events} events in {produce_s:.1f}s; store vs replay {summary}; "
          f"topic missing {len(topic_diff['missing'])} extra {len(topic_diff['extra'])} "
          f"differing {len(topic_diff['differing'])}")
    assert reference, "no alert at all; the scenario would prove nothing"
    assert not diff["missing"] and not diff["extra"] and not diff["differing"] and not diff["duplicates"], summary
    assert not topic_diff["missing"] and not topic_diff["extra"] and not topic_diff["differing"]
    if cli:  # the command line does the same: riskstream replay --kafka --group
        out = tmp_path / "replayed.jsonl"
        res = CliRunner().invoke(cli_main, ["replay", "--kafka", "-c", str(config), "--group", topics.group,
                                            "--alerts-out", str(out), "--quiet"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        replayed = [Alert.from_json(line) for line in out.read_bytes().splitlines() if line.strip()]
        cli_diff = _diff(replayed, reference)
        assert not cli_diff["missing"] and not cli_diff["extra"] and not cli_diff["differing"]


def _partitions(bootstrap: str, topic: str) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
    finally:
        c.close()


def committed_offsets_safe(bootstrap: str, group: str) -> dict[Any, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return committed_offsets(admin, group)
    except Exception:  # noqa: BLE001 - coordinator busy; not done yet
        return {}
    finally:
        admin.close()


@pytest.mark.parametrize("login_delay_s", [0.4, 3.0], ids=["logins-late-0.4s", "logins-late-3s"])
def test_live_traffic_equals_the_replay_of_the_same_offsets(
    tmp_path, kafka_bootstrap, alert_db, processes, login_delay_s
):
    """0.4 s: the merge waits for the late logins (data decides); 3 s, longer than ``idle_timeout_s``: the
    runtime decides not to wait, records it, and the replay applies the same decisions."""
    _run_live(tmp_path, kafka_bootstrap, alert_db, processes, events=10_000, seed=16, rate=1000.0,
              login_delay_s=login_delay_s, cli=login_delay_s > 2)


def test_live_traffic_with_a_kill_equals_the_replay(tmp_path, kafka_bootstrap, alert_db, processes):
    """SIGKILL of a member while the producers write: its successor re-applies the decisions it recorded."""
    _run_live(tmp_path, kafka_bootstrap, alert_db, processes, events=10_000, seed=17, rate=1000.0,
              login_delay_s=3.0, kill_at=4.0)
