"""``riskstream simulate --to-kafka`` on a real broker: the simulated stream lands in the configured input
topics, created co-partitioned, keyed so that every event of a user (and each label about it) shares a
partition."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.bench.kafka import TokenBucket, ensure_topics, produce_events
from stream.cli import cli
from stream.config import load_settings
from stream.events import Label, Order, decode, encode
from stream.sim import SimConfig, simulate
from tests.kafka.conftest import read_topic

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient

pytestmark = pytest.mark.kafka


@pytest.fixture()
def topic_names(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    """Fresh, not yet existing input topic names; deleted afterwards."""
    x = uuid.uuid4().hex[:10]
    names = {f"{kind}_topic": f"sim-{kind}-{x}" for kind in ("orders", "logins", "labels")}
    yield names
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_topics(list(names.values()), raise_errors=False)
    finally:
        admin.close()


def _config(path: Path, bootstrap: str, names: dict[str, str]) -> Path:
    body = "\n".join(f'{k} = "{v}"' for k, v in {"bootstrap_servers": bootstrap, **names}.items())
    path.write_text(f"[kafka]\n{body}\n")
    return path


def _partitions(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (desc,) = admin.describe_topics([topic])
        return len(desc["partitions"])
    finally:
        admin.close()


def test_simulated_stream_lands_keyed_by_user_in_copartitioned_topics(kafka_bootstrap, topic_names, tmp_path):
    config = _config(tmp_path / "rs.toml", kafka_bootstrap, topic_names)
    res = CliRunner().invoke(cli, ["simulate", "--to-kafka", "--config", str(config), "--events", "3000",
                                   "--seed", "5", "--partitions", "3"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "produced 3,000 events" in res.stderr

    expected = list(simulate(SimConfig(events=3000, seed=5)))
    for topic in topic_names.values():
        assert _partitions(kafka_bootstrap, topic) == 3
    records = {kind: read_topic(kafka_bootstrap, topic_names[f"{kind}s_topic"])
               for kind in ("order", "login", "label")}
    for kind, recs in records.items():
        want = [encode(e) for e in expected if e.type == kind]
        assert sorted(r.value for r in recs) == sorted(want), f"{kind} topic differs from the simulation"
    assert records["order"] and records["login"]

    partition_of: dict[str, int] = {}
    for kind in ("order", "login"):
        for r in records[kind]:
            e = decode(r.value)
            assert r.key == e.user_id.encode()
            partition_of.setdefault(e.user_id, r.partition)
            assert partition_of[e.user_id] == r.partition, "a user's events must share one partition number"
    # Per partition, each topic keeps the simulator's (event time) order.
    for recs in records.values():
        for p in range(3):
            ts = [decode(r.value).ts for r in sorted(recs, key=lambda r: r.offset) if r.partition == p]
            assert ts == sorted(ts)


def test_labels_are_keyed_by_the_user_of_their_event(kafka_bootstrap, topic_names):
    """Simulated labels come a day and more after their order (few in a short stream), so build the stream."""
    orders = [Order(event_id=f"o{i}", ts=float(i), user_id=f"user-{i}", order_id=f"o{i}", amount=10.0 + i,
                    currency="EUR", merchant_id="m1") for i in range(40)]
    labels = [Label(event_id=f"l{i}", ts=100.0 + i, ref_event_id=f"o{i}", label=i % 2) for i in range(40)]
    unknown = Label(event_id="l-x", ts=200.0, ref_event_id="o-never-produced", label=1)
    settings = load_settings(None, env={}).replace({f"kafka.{k}": v for k, v in topic_names.items()})
    ensure_topics(kafka_bootstrap, list(topic_names.values()), partitions=4)
    # A map of the last 30 events: the labels of the first 10 orders fall back to their event id as key.
    out = produce_events([*orders, *labels, unknown], settings, bootstrap=kafka_bootstrap, user_map_size=30)
    assert (out["orders"], out["logins"], out["labels"]) == (40, 0, 41)

    order_partition = {decode(r.value).event_id: r.partition
                       for r in read_topic(kafka_bootstrap, topic_names["orders_topic"])}
    keys = {decode(r.value).event_id: (r.key, r.partition)
            for r in read_topic(kafka_bootstrap, topic_names["labels_topic"])}
    for i in range(10, 40):
        assert keys[f"l{i}"] == (f"user-{i}".encode(), order_partition[f"o{i}"])
    for i in range(10):
        assert keys[f"l{i}"][0] == f"o{i}".encode()
    assert keys["l-x"][0] == b"o-never-produced"


def test_existing_topics_that_are_not_copartitioned_are_refused(kafka_bootstrap, topic_names, tmp_path):
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics({topic_names["orders_topic"]: {"num_partitions": 2, "replication_factor": 1}},
                            wait_for_metadata=True)
    finally:
        admin.close()
    config = _config(tmp_path / "rs.toml", kafka_bootstrap, topic_names)
    res = CliRunner().invoke(cli, ["simulate", "--to-kafka", "-c", str(config), "-n", "100",
                                   "--partitions", "4"])
    assert res.exit_code == 2
    assert "co-partitioned" in res.output and f"{topic_names['orders_topic']}=2" in res.output
    assert _partitions(kafka_bootstrap, topic_names["logins_topic"]) == 4  # created, but nothing was produced
    assert read_topic(kafka_bootstrap, topic_names["logins_topic"]) == []


def test_out_or_to_kafka_is_required_and_kafka_options_need_to_kafka(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "-n", "10"]).exit_code == 2
    res = runner.invoke(cli, ["simulate", "-n", "10", "-o", str(tmp_path / "x.jsonl"), "--to-kafka"])
    assert res.exit_code == 2 and "either" in res.output
    res = runner.invoke(cli, ["simulate", "-n", "10", "-o", str(tmp_path / "x.jsonl"), "--rate", "5"])
    assert res.exit_code == 2 and "--to-kafka" in res.output
    assert not (tmp_path / "x.jsonl").exists()


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.slept += s


def test_token_bucket_paces_to_the_rate_with_a_bounded_burst():
    clock = _FakeClock()
    bucket = TokenBucket(200.0, burst=10, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire()
    assert clock.slept == 0  # the burst is there at once
    for _ in range(200):
        bucket.acquire()
    assert clock.now - 1000.0 == pytest.approx(1.0)  # then 200 more take one second
    clock.now += 3600  # a long stall earns at most one burst, not an hour of events
    start = clock.now
    for _ in range(10 + 100):
        bucket.acquire()
    assert clock.now - start == pytest.approx(0.5)
    unpaced = TokenBucket(0.0, clock=clock, sleep=clock.sleep)
    before = clock.slept
    for _ in range(1000):
        unpaced.acquire()
    assert clock.slept == before


def test_token_bucket_sleeps_off_its_debt_in_coarse_quanta_at_the_same_rate():
    clock = _FakeClock()
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.sleep(s)

    bucket = TokenBucket(10_000.0, burst=500, clock=clock, sleep=sleep, min_sleep=0.005)
    for _ in range(500 + 10_000):
        bucket.acquire()
    # 10,000 events past the burst take one second, less at most the debt not yet slept off (5 ms) ...
    assert 0.995 <= clock.now - 1000.0 <= 1.0
    # ... in 5 ms sleeps, not 10,000 sleeps of 0.1 ms (each a GIL hand-off that can cost a 5 ms switch interval)
    assert len(sleeps) <= 200 and min(sleeps) >= 0.005 - 1e-9
    with pytest.raises(ValueError, match="min_sleep"):
        TokenBucket(10.0, min_sleep=-1)
