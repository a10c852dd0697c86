"""kafka-python 3.0 can drop the result of a rebalance (``rescue_lost_join``): the member then holds no partition
for good. On a real broker, the state is reached through the client's own code, from the trigger it happens on
(the group leader's metadata snapshot differs from the one its last assignment used) and a ``poll()`` that returns
while the JoinGroup/SyncGroup round trip is in flight; the rescue must get the partitions assigned again."""

from __future__ import annotations

import time

import pytest
from kafka import ConsumerRebalanceListener

from stream.config import load_settings
from stream.kafka.client import make_consumer, prime_group_metadata, rescue_lost_join
from stream.kafka.consumer import check_copartitioned
from tests.kafka.conftest import PARTITIONS, delete_topics, make_topics

pytestmark = pytest.mark.kafka


class _Recorder(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.assigned: list[set] = []
        self.revoked: list[set] = []

    def on_partitions_assigned(self, assigned):
        self.assigned.append(set(assigned))

    def on_partitions_revoked(self, revoked):
        self.revoked.append(set(revoked))


def _poll_until(consumer, cond, timeout_s: float, *, rescue: bool = True) -> bool:
    """Poll (100 ms at a time) until ``cond()``; ``rescue``: as the runtime does, check for a lost join first."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if rescue:
            rescue_lost_join(consumer)
        consumer.poll(timeout_ms=100)
        if cond():
            return True
    return False


def _lose_a_join(consumer) -> None:
    """Start a metadata-triggered rebalance and let its join finish while no ``poll()`` awaits it."""
    coord = consumer._coordinator
    coord._assignment_snapshot = {}  # the leader's last assignment saw no topic metadata (a start-up race)
    assert coord.need_rejoin() and not coord.rejoin_needed
    consumer.poll(timeout_ms=0)  # sends JoinGroup, returns before its answer: the join stays in flight
    end = time.monotonic() + 20
    while not (coord._join_task is not None and coord._join_task.is_done):
        assert time.monotonic() < end, "the join never finished"
        time.sleep(0.05)


def test_new_members_of_new_topics_all_get_their_partitions(kafka_bootstrap):
    """The natural case: a consumer subscribing to just-created topics is first assigned nothing (the leader has no
    topic metadata yet), then the metadata rebalance follows, whose result kafka-python drops more often than not
    with 100 ms polls (measured: 2 of 3 members never assigned without the rescue, 0 of 3 with it)."""
    settings = load_settings(None, env={}, overrides={"kafka.bootstrap_servers": kafka_bootstrap})
    for _ in range(3):
        topics = make_topics(kafka_bootstrap)
        consumer = make_consumer(settings, group_id=topics.group, session_timeout_ms=6000,
                                 heartbeat_interval_ms=1000)
        listener = _Recorder()
        try:
            consumer.subscribe([topics.orders, topics.logins], listener=listener)
            assert _poll_until(consumer, lambda r=listener: r.assigned and r.assigned[-1], 20), listener.assigned
            assert len(listener.assigned[-1]) == 2 * PARTITIONS
        finally:
            consumer.close()
            delete_topics(kafka_bootstrap, topics)


def test_a_dropped_rebalance_result_is_rescued_and_the_partitions_come_back(kafka_bootstrap, topics):
    settings = load_settings(None, env={}, overrides={"kafka.bootstrap_servers": kafka_bootstrap})
    consumer = make_consumer(settings, group_id=topics.group, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    listener = _Recorder()
    try:
        consumer.subscribe([topics.orders, topics.logins], listener=listener)
        # (the first assignment may be empty: the leader had no topic metadata yet; the metadata rebalance follows)
        assert _poll_until(consumer, lambda: listener.assigned and listener.assigned[-1], 30), "never assigned"
        want = listener.assigned[-1]
        assert len(want) == 2 * PARTITIONS

        _lose_a_join(consumer)
        assert listener.revoked and listener.revoked[-1] == want  # the rebalance began: everything revoked
        # What kafka-python does on its own from here: nothing. The member stays without partitions.
        n = len(listener.assigned)
        assert not _poll_until(consumer, lambda: len(listener.assigned) > n, 2.0, rescue=False)
        assert consumer._coordinator.state == "<rebalancing>"

        assert rescue_lost_join(consumer)
        assert not rescue_lost_join(consumer)  # asked once: the next poll joins
        assert _poll_until(consumer, lambda: len(listener.assigned) > n, 30), "the partitions never came back"
        assert listener.assigned[-1] == want
        assert consumer._coordinator.state == "<stable>"
        assert not rescue_lost_join(consumer)  # a stable member is left alone
    finally:
        consumer.close()


def test_a_member_starts_with_one_rebalance_not_two(kafka_bootstrap, topics):
    """kafka-python's first join records the metadata snapshot built when the consumer was created (nothing
    subscribed: empty); the metadata response that follows starts a second rebalance at every start (a revoke, a
    checkpoint, the transactions opened again). ``run_consumer`` checks the topics' partitions, subscribes, then
    ``prime_group_metadata``: the first join uses the metadata the client already holds."""
    settings = load_settings(None, env={}, overrides={"kafka.bootstrap_servers": kafka_bootstrap})
    consumer = make_consumer(settings, group_id=topics.group, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    listener = _Recorder()
    try:
        assert check_copartitioned(consumer, [topics.orders, topics.logins]) == PARTITIONS
        consumer.subscribe([topics.orders, topics.logins], listener=listener)
        prime_group_metadata(consumer)
        assert _poll_until(consumer, lambda: listener.assigned and listener.assigned[-1], 30), listener.assigned
        _poll_until(consumer, lambda: False, 3.0)  # the metadata refresh came within 0.5 s when it rebalanced
        assert [len(a) for a in listener.assigned] == [2 * PARTITIONS]
        assert consumer._coordinator.state == "<stable>"
    finally:
        consumer.close()
