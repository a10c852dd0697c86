"""``riskstream run`` hands raw record bytes to the compiled core (``_Runtime.raw``): the same alerts and dead
letters as the Python path, on one topic, with records of every kind (valid, invalid, tombstones, and records the
compiled decoder leaves to Python, valid or not)."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from kafka import KafkaProducer

from sinks.alert import Alert
from sinks.deadletter import MemoryDeadLetterSink
from sinks.memory import MemorySink
from stream.compiled import CompiledEngine
from stream.config import load_settings
from stream.events import Provenance, decode, encode
from stream.kafka import RuntimeStats, run_consumer
from stream.sim import SimConfig, simulate

pytestmark = pytest.mark.kafka


def _settings(bootstrap, topics, core, state_dir, **extra):
    return load_settings(None, env={}, overrides={
        "kafka.bootstrap_servers": bootstrap, "kafka.orders_topic": topics.orders,
        "kafka.logins_topic": topics.logins, "kafka.labels_topic": topics.labels,
        "kafka.alerts_topic": topics.alerts, "kafka.dead_letter_topic": topics.dead_letters,
        "kafka.session_timeout_ms": 6000, "kafka.heartbeat_interval_ms": 1000, "kafka.poll_timeout_ms": 200,
        "kafka.idle_timeout_s": 0.3, "kafka.idle_decision_interval_s": 0.1, "kafka.exactly_once": False,
        "kafka.group_id": f"{topics.orders}-{core}", "engine.core": core, "state.dir": state_dir, **extra})


def _odd_records(seed_event):
    """Records of every kind the decoders tell apart, made from one valid order."""
    base = orjson.loads(encode(seed_event))
    late_form = dict(base, event_id="late-form", ts=base["ts"][:19] + ".1234567+00:00")
    spaced = dict(base, event_id="spaced", ts=base["ts"].replace("T", " "))
    return [
        b"{",  # broken JSON: left to Python, refused with orjson's message
        b'{"type": "order"}',  # refused by the core, with the reference's message
        b'{"type": "parcel", "event_id": "p"}',
        orjson.dumps(late_form),  # valid, but left to Python (7 fractional digits)
        orjson.dumps(spaced),  # valid, left to Python
        None,  # a tombstone
    ]


def _run(settings, total):
    sink, dead = MemorySink(), MemoryDeadLetterSink()
    stats, stop, errors = RuntimeStats(), threading.Event(), []

    def target():
        try:
            run_consumer(settings, stop=stop, stats=stats, event_time_clock=True, log_every_s=600,
                         sinks=[sink], dead_letters=[dead])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    end = time.monotonic() + 120
    while stats.events + stats.invalid < total and not errors:
        assert time.monotonic() < end, str(stats.snapshot())
        time.sleep(0.05)
    stop.set()
    th.join(60)
    assert not errors, errors
    return sink.alerts, dead.records, stats


def _comparable(alerts: list[Alert]) -> dict[str, dict]:
    out = {}
    for a in alerts:
        d = a.to_dict()
        d.pop("reasons")  # they read the models at the end of a released batch, whose size depends on fetches
        out[a.alert_id] = d
    return out


def _produce(kafka_bootstrap, topics) -> int:
    """The simulated stream with odd records among it, keyed as ``simulate --to-kafka`` keys it: how many."""
    events = list(simulate(SimConfig(events=4000, seed=11)))
    odd = _odd_records(next(e for e in events if e.type == "order"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=10)
    where = {"order": topics.orders, "login": topics.logins, "label": topics.labels}
    user_of: dict[str, str] = {}
    for i, e in enumerate(events):
        key = e.user_id if e.type != "label" else user_of.get(e.ref_event_id, e.ref_event_id)
        if e.type != "label":
            user_of[e.event_id] = e.user_id
        producer.send(where[e.type], key=key.encode(), value=encode(e))
        if i % 700 == 0:
            for raw in odd:
                producer.send(topics.orders if i % 1400 else topics.logins, key=b"odd", value=raw)
    producer.flush()
    producer.close()
    return len(events) + len(odd) * len(range(0, len(events), 700))


def test_run_from_raw_bytes_equals_the_python_path(kafka_bootstrap, topics, tmp_path):
    total = _produce(kafka_bootstrap, topics)
    compiled = _settings(kafka_bootstrap, topics, "compiled", str(tmp_path / "c"))
    alerts_c, dead_c, stats_c = _run(compiled, total)
    alerts_p, dead_p, stats_p = _run(_settings(kafka_bootstrap, topics, "python", str(tmp_path / "p")), total)
    assert alerts_c and dead_c
    assert stats_c.invalid == stats_p.invalid == len(dead_c)
    assert _comparable(alerts_c) == _comparable(alerts_p)
    def letters(dead):  # (a dead letter's ts is the wall clock when it was made)
        return sorted(({k: v for k, v in d.to_dict().items() if k != "ts"} for d in dead),
                      key=lambda d: (d["source"], d["position"]))

    assert letters(dead_c) == letters(dead_p)
    assert len({a["reason"] for a in letters(dead_c)}) == 4  # broken JSON, missing field, bad type, tombstone
    assert all(a.topic and a.offset is not None for a in alerts_c)


def test_overlap_scores_on_the_engine_thread_and_changes_no_alert(kafka_bootstrap, topics, tmp_path, monkeypatch):
    """``kafka.overlap`` (the default) scores released batches on the engine thread while the next poll runs;
    turned off, the main thread scores them. Same records, same order: the same alerts and dead letters."""
    total = _produce(kafka_bootstrap, topics)
    threads: list[str] = []
    process_raw = CompiledEngine.process_raw

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return process_raw(self, *args, **kwargs)

    monkeypatch.setattr(CompiledEngine, "process_raw", spy)
    alerts_on, dead_on, stats_on = _run(_settings(kafka_bootstrap, topics, "compiled", str(tmp_path / "on"),
                                                  **{"kafka.group_id": f"{topics.orders}-on"}), total)
    on, threads[:] = list(threads), []
    alerts_off, dead_off, stats_off = _run(_settings(kafka_bootstrap, topics, "compiled", str(tmp_path / "off"),
                                                     **{"kafka.overlap": False,
                                                        "kafka.group_id": f"{topics.orders}-off"}), total)
    assert on and all(t.startswith("riskstream-engine") for t in on)
    assert threads and not any(t.startswith("riskstream-engine") for t in threads)
    assert alerts_on and _comparable(alerts_on) == _comparable(alerts_off)
    assert [a.alert_id for a in alerts_on] == [a.alert_id for a in alerts_off]  # handed over in the same order
    assert sorted((d.source, d.position, d.reason) for d in dead_on) == \
        sorted((d.source, d.position, d.reason) for d in dead_off)
    assert stats_on.events == stats_off.events and stats_on.alerts == stats_off.alerts == len(alerts_on)


def test_process_raw_with_provenance_gives_the_same_alerts_byte_for_byte():
    """The engine half of the runtime's raw path: ``process_raw`` on record bytes with their Kafka positions
    against ``process`` on the events decoded with them, batch for batch (reasons included)."""
    settings = load_settings(None, env={})
    events = list(simulate(SimConfig(events=6000, seed=13)))
    records = [encode(e) for e in events]
    records[100:100] = [orjson.dumps(dict(orjson.loads(records[50]), event_id="late",
                                          ts=orjson.loads(records[50])["ts"][:19] + ".1234567+00:00"))]
    raw_engine, ref_engine = CompiledEngine(settings), CompiledEngine(settings)
    assert raw_engine.detection == "compiled"
    got, want = [], []
    for start in range(0, len(records), 1000):
        chunk = records[start:start + 1000]
        out, refused = raw_engine.process_raw(chunk, lambda j, s=start: Provenance("orders", 3, s + j))
        assert not refused
        got.extend(a.to_json() for a in out.alerts)
        ref = ref_engine.process([decode(r, Provenance("orders", 3, start + j)) for j, r in enumerate(chunk)])
        want.extend(a.to_json() for a in ref.alerts)
    assert got and got == want
    assert all(orjson.loads(a)["provenance"]["topic"] == "orders" for a in got)
