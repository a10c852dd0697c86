"""The runtime as a library on a real broker: sinks, aborted checkpoints, backpressure, bounded replays, and
the refusals (topics not co-partitioned, state of another detection configuration)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from sinks.alert import Alert
from sinks.deadletter import DeadLetter
from sinks.errors import SinkError
from sinks.kafka import KafkaAlertSink, KafkaDeadLetterSink
from sinks.memory import MemorySink
from stream.config import load_settings
from stream.errors import ConfigError
from stream.events import Login, Order, encode
from stream.kafka import RuntimeStats, replay_kafka, run_consumer
from stream.kafka.client import make_producer
from stream.outputs import open_outputs
from stream.state import Checkpoint, LocalStateStore

pytestmark = pytest.mark.kafka


def _settings(bootstrap, topics, **kafka):
    over = {
        "kafka.bootstrap_servers": bootstrap,
        "kafka.orders_topic": topics.orders,
        "kafka.logins_topic": topics.logins,
        "kafka.labels_topic": topics.labels,
        "kafka.alerts_topic": topics.alerts,
        "kafka.dead_letter_topic": topics.dead_letters,
        "kafka.session_timeout_ms": 6000,
        "kafka.heartbeat_interval_ms": 1000,
        "kafka.checkpoint_interval_s": 0.5,
        "kafka.poll_timeout_ms": 200,
    }
    over.update({f"kafka.{k}": v for k, v in kafka.items()})
    return load_settings(None, env={}, overrides=over)


def _produce(bootstrap, items):
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    for topic, key, value in items:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def _simulated(bootstrap, topics, events, seed):
    from stream.sim import SimConfig, simulate

    items = []
    for e in simulate(SimConfig(events=events, seed=seed)):
        if e.type != "label":
            items.append(
                (topics.orders if e.type == "order" else topics.logins, e.user_id.encode(), encode(e))
            )
    _produce(bootstrap, items)
    return len(items)


class Runner:
    """run_consumer in a thread, with a stop event."""

    def __init__(self, settings, **kwargs):
        self.stop = threading.Event()
        self.stats = RuntimeStats()
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(settings,), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, settings, **kwargs):
        try:
            run_consumer(
                settings, stop=self.stop, stats=self.stats, event_time_clock=True, log_every_s=600, **kwargs
            )
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e

    def wait(self, cond, timeout=90.0, what="condition"):
        end = time.monotonic() + timeout
        while not cond():
            assert self.error is None, f"runtime failed: {self.error!r}"
            assert time.monotonic() < end, f"timed out waiting for {what}: {self.stats.snapshot()}"
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def _comparable(alerts):
    out = {}
    for a in alerts:
        d = a.to_dict()
        d.pop("reasons")  # HST reasons depend on micro-batch boundaries (see conftest.comparable)
        out[a.alert_id] = d
    return out


def test_alert_sink_publishes_entity_key_json_and_headers_and_keeps_what_it_could_not_deliver(
    kafka_bootstrap, topics
):
    settings = _settings(kafka_bootstrap, topics)
    producer = make_producer(settings)
    a = Alert(
        alert_id="a1",
        event_id="e1",
        event_type="order",
        entities={"user": "u1", "ip": "10.0.0.1"},
        event_ts=1.0,
        detected_at=2.0,
        score=0.9,
        severity="high",
        action="review",
        reasons=(),
        detector_scores={"hst": 0.9},
        config_hash="c",
    )
    sink = KafkaAlertSink(producer, topics.alerts)
    sink.add(a)
    sink.flush()
    assert sink.pending == 0
    c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    c.subscribe([topics.alerts])
    got = []
    for _ in range(100):
        for recs in c.poll(timeout_ms=200).values():
            got.extend(recs)
        if got:
            break
    c.close()
    [record] = got
    assert record.key == b"user:u1" and Alert.from_json(record.value) == a
    assert dict(record.headers) == {"schema_version": b"1", "alert_id": b"a1"}

    bad = KafkaAlertSink(
        producer, "__consumer_offsets", flush_timeout_s=10
    )  # the broker refuses client writes
    bad.add(a)
    with pytest.raises(SinkError, match="__consumer_offsets"):
        bad.flush()
    assert bad.pending == 1  # kept for the retry; the checkpoint that asked is aborted
    producer.close()


def _read_all(bootstrap, topic, n, **config):
    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config)
    c.subscribe([topic])
    got = []
    for _ in range(150 if len(config) == 0 else 30):
        for recs in c.poll(timeout_ms=200).values():
            got.extend(recs)
        if len(got) >= n:
            break
    c.close()
    return got


def _small_records_topic(bootstrap):
    """A new one-partition topic that takes records of up to 100 kB, and the admin client to delete it with."""
    name = f"dead-small-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        {name: {"num_partitions": 1, "replication_factor": 1, "configs": {"max.message.bytes": "100000"}}},
        wait_for_metadata=True,
    )
    return name, admin


def test_dead_letter_sink_keeps_what_it_could_not_deliver_and_cuts_what_the_broker_finds_too_large(
    kafka_bootstrap, topics
):
    # A producer that is not idempotent: kafka-python 3.0 turns a broker's MessageSizeTooLargeError into a fatal
    # error of an idempotent producer (make_producer's), which then sends nothing (see the xfail test below).
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False,
                             max_request_size=1_100_000)
    small, admin = _small_records_topic(kafka_bootstrap)
    try:
        records = [DeadLetter("$: not valid JSON", b"{", f"kafka:{topics.orders}/2", 7),
                   DeadLetter("$: record is larger than 65536 bytes", b"x" * 300_000, f"kafka:{topics.orders}/1", 9)]
        bad = KafkaDeadLetterSink(producer, "__consumer_offsets", flush_timeout_s=10)  # the broker refuses it
        bad.add_many(records)
        with pytest.raises(SinkError, match="__consumer_offsets"):
            bad.flush()
        assert bad.pending == 2  # kept for the retry; the checkpoint that asked is aborted

        sink = KafkaDeadLetterSink(producer, small)
        sink.add_many(records)
        sink.flush()
        assert sink.pending == 0
        sink.flush()  # nothing left: nothing sent again
        got = sorted(_read_all(kafka_bootstrap, small, 2), key=lambda r: r.offset)
        assert [r.value for r in got] == [b"{", b"x" * 64 * 1024]  # each once; the giant one cut to 64 KiB
        headers = [dict(r.headers) for r in got]
        assert "truncated_from" not in headers[0] and headers[1]["truncated_from"] == b"300000"
        assert headers[1]["source_offset"] == b"9" and got[1].key == f"kafka:{topics.orders}/1".encode()
    finally:
        producer.close()
        admin.delete_topics([small], raise_errors=False)
        admin.close()


def test_an_oversized_poison_record_is_cut_and_the_alerts_still_flow_with_the_runtime_outputs(kafka_bootstrap, topics):
    # kafka-python 3.0.12 takes MessageSizeTooLargeError as fatal for an idempotent producer
    # (TransactionManager.classify_batch_error): with one idempotent producer shared by the alert and dead-letter
    # sinks, one giant poison record aborted the 64 KiB re-send and killed the alerts' producer too.
    small, admin = _small_records_topic(kafka_bootstrap)
    settings = _settings(kafka_bootstrap, topics, dead_letter_topic=small, exactly_once=False)
    outputs = open_outputs(settings, kafka=True)
    try:
        (dl,) = outputs.dead_letters
        (alerts,) = outputs.alerts
        dl.add(DeadLetter("too large", b"x" * 300_000, f"kafka:{topics.orders}/1", 9))
        dl.flush()
        alert = Alert(alert_id="a1", event_id="e1", event_type="order", entities={"user": "u1"}, event_ts=1.0,
                      detected_at=1.0, score=0.9, severity="high", action="review", reasons=(),
                      detector_scores={}, config_hash="h")
        alerts.add(alert)
        alerts.flush()
    finally:
        outputs.close()
    (cut,) = _read_all(kafka_bootstrap, small, 1)
    assert cut.value == b"x" * 64 * 1024 and dict(cut.headers)["truncated_from"] == b"300000"
    got = _read_all(kafka_bootstrap, topics.alerts, 1)
    assert [r.key for r in got] == [b"user:u1"]
    admin.delete_topics([small], raise_errors=False)
    admin.close()


def test_an_oversized_dead_letter_fails_its_transaction_and_is_cut_when_its_unit_is_processed_again(
    kafka_bootstrap, topics
):
    # Exactly once: a record the broker refuses aborts the whole transaction (a transactional producer cannot
    # drop one record); the transaction remembers the dead letter, and the next one sends it cut to 64 KiB.
    small, admin = _small_records_topic(kafka_bootstrap)
    settings = _settings(kafka_bootstrap, topics, dead_letter_topic=small)
    outputs = open_outputs(settings, kafka=True)
    assert outputs.transactional is not None and not outputs.alerts and not outputs.dead_letters
    big = DeadLetter("too large", b"x" * 300_000, f"kafka:{topics.orders}/1", 9)
    alert = Alert(alert_id="a1", event_id="e1", event_type="order", entities={"user": "u1"}, event_ts=1.0,
                  detected_at=1.0, score=0.9, severity="high", action="review", reasons=(),
                  detector_scores={}, config_hash="h")
    offsets = {TopicPartition(topics.orders, 1): OffsetAndMetadata(10, "", -1)}
    try:
        first = outputs.transactional.open(f"riskstream-{topics.group}-unit-1")
        first.add_dead_letter(big)
        first.add(alert)
        with pytest.raises(SinkError, match="MessageSizeTooLarge"):
            first.commit(offsets, topics.group)
        first.close()
        again = outputs.transactional.open(f"riskstream-{topics.group}-unit-1")
        again.add_dead_letter(big)
        again.add(alert)
        again.commit(offsets, topics.group)
        again.close()
    finally:
        outputs.close()
    (cut,) = _read_all(kafka_bootstrap, small, 1, isolation_level="read_committed")
    assert cut.value == b"x" * 64 * 1024 and dict(cut.headers)["truncated_from"] == b"300000"
    got = _read_all(kafka_bootstrap, topics.alerts, 2, isolation_level="read_committed")
    assert [r.key for r in got] == [b"user:u1"]  # once: the first transaction's copy was aborted
    admin.delete_topics([small], raise_errors=False)
    admin.close()


def _checkpointed_events(store, group):
    return sum(store.load(group, u).events for u in store.units(group))


def test_a_failing_sink_aborts_checkpoints_until_it_recovers(kafka_bootstrap, topics, tmp_path):
    n = _simulated(kafka_bootstrap, topics, 4000, seed=21)
    settings = _settings(kafka_bootstrap, topics)
    ref = MemorySink()
    replay_kafka(settings, sinks=[ref])
    store = LocalStateStore(tmp_path)
    sink = MemorySink()
    sink.fail_next(4)
    run = Runner(settings, group_id=topics.group, store=store, sinks=[sink], dead_letters=[])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        run.wait(lambda: run.stats.checkpoint_failures >= 2, what="two failed checkpoints")
        # Failures are still pending: no state was saved and no offset committed past the undelivered alerts.
        assert store.units(topics.group) == []
        assert not admin.list_group_offsets({topics.group: None}).get(topics.group)
        # A loaded machine can cost the member its group session while checkpoints fail; it then rejoins and
        # processes from the last checkpoint again, so stats.events may exceed n. Done = every input event is
        # reflected in saved state and nothing is pending.
        run.wait(
            lambda: run.stats.events >= n and not sink.pending and _checkpointed_events(store, topics.group) == n,
            what="all events processed and checkpointed",
        )
    finally:
        run.finish()
        admin.close()
    assert run.stats.checkpoint_failures == 4 and run.stats.pauses >= 1
    assert _comparable(sink.alerts) == _comparable(ref.alerts)
    assert _checkpointed_events(store, topics.group) == n


def test_backpressure_pauses_the_busy_partition_and_bounds_the_buffer(kafka_bootstrap, topics, tmp_path):
    # One user (one partition): every order is later than every login, so orders must wait until the logins
    # are all through; they would pile up without backpressure.
    logins = [
        (
            topics.logins,
            b"u",
            encode(
                Login(
                    event_id=f"l{i}",
                    ts=1000.0 + i,
                    user_id="u",
                    success=i % 7 > 0,
                    ip=f"10.0.{i % 50}.1",
                    device_id=f"d{i % 3}",
                )
            ),
        )
        for i in range(3000)
    ]
    orders = [
        (
            topics.orders,
            b"u",
            encode(
                Order(
                    event_id=f"o{i}",
                    ts=10_000.0 + i,
                    user_id="u",
                    order_id=f"o{i}",
                    amount=10.0 + i % 90,
                    currency="EUR",
                    merchant_id=f"m{i % 5}",
                )
            ),
        )
        for i in range(3000)
    ]
    _produce(kafka_bootstrap, orders + logins)
    settings = _settings(kafka_bootstrap, topics, max_buffered_events=300, max_poll_records=100)
    ref = MemorySink()
    replay_kafka(settings, sinks=[ref])
    sink = MemorySink()
    run = Runner(
        settings, group_id=topics.group, store=LocalStateStore(tmp_path), sinks=[sink], dead_letters=[]
    )
    try:
        run.wait(lambda: run.stats.events == 6000, what="all events processed")
    finally:
        run.finish()
    assert run.stats.pauses >= 1
    assert run.stats.buffered_peak <= 300 + 100
    assert _comparable(sink.alerts) == _comparable(ref.alerts)


def test_replay_kafka_reads_only_the_requested_range(kafka_bootstrap, topics):
    _simulated(kafka_bootstrap, topics, 2000, seed=22)
    settings = _settings(kafka_bootstrap, topics)
    whole = replay_kafka(settings)
    part = replay_kafka(
        settings, from_offsets=10, to_offsets={(topics.orders, 0): 50, (topics.logins, 0): 40}
    )
    assert whole["events"] == 2000 - whole["label_events"]
    offsets = part["kafka"]["offsets"]
    assert offsets[f"{topics.orders}/0"] == [10, 50] and offsets[f"{topics.logins}/0"] == [10, 40]
    expected = sum(max(0, b - a) for a, b in offsets.values())
    assert part["events"] == expected < whole["events"]
    assert replay_kafka(settings, from_timestamp=time.time() + 3600)["events"] == 0


def test_input_topics_with_different_partition_counts_are_refused(kafka_bootstrap, topics, tmp_path):
    odd = f"labels2-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics({odd: {"num_partitions": 2, "replication_factor": 1}}, wait_for_metadata=True)
    try:
        settings = _settings(kafka_bootstrap, topics, labels_topic=odd)
        with pytest.raises(ConfigError, match="co-partitioned"):
            run_consumer(
                settings,
                group_id=topics.group,
                store=LocalStateStore(tmp_path),
                sinks=[],
                dead_letters=[],
                stop=threading.Event(),
            )
    finally:
        admin.delete_topics([odd])
        admin.close()


def test_state_from_another_detection_configuration_is_refused(kafka_bootstrap, topics, tmp_path):
    settings = _settings(kafka_bootstrap, topics)
    store = LocalStateStore(tmp_path)
    store.save(
        topics.group, 0, Checkpoint(offsets={topics.orders: 0}, state=b"x", config_hash="0123456789abcdef")
    )
    run = Runner(settings, group_id=topics.group, store=store, sinks=[], dead_letters=[])
    run.thread.join(timeout=60)
    assert isinstance(run.error, ConfigError) and "detection configuration" in str(run.error)
