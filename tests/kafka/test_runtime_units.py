"""The runtime's pieces that need no broker: the partition-unit merge, the local state store, the counters."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.deadletter import DeadLetter
from sinks.kafka import KafkaDeadLetterSink
from stream.errors import CheckpointError, ConfigError
from stream.events import Login, Order
from stream.kafka import LATENCY_BUCKETS, PartitionUnit, RuntimeStats
from stream.state import Checkpoint, LocalStateStore, open_state_store

TOPICS = ("orders", "logins", "labels")


def _event(topic: str, offset: int, ts: float) -> Order | Login | DeadLetter:
    if ts < 0:
        return DeadLetter("$: not valid JSON", b"{", f"kafka:{topic}/0", offset)
    if topic == "orders":
        return Order(
            event_id=f"{topic}-{offset}",
            ts=ts,
            user_id="u",
            order_id="o",
            amount=1.0,
            currency="EUR",
            merchant_id="m",
        )
    return Login(event_id=f"{topic}-{offset}", ts=ts, user_id="u", success=True)


# Per topic, a list of timestamps (a negative one is an undecodable record); ties and disorder included.
streams = st.fixed_dictionaries(
    {t: st.lists(st.integers(min_value=-1, max_value=20), max_size=25) for t in TOPICS}
)


def _merge_all(data: dict[str, list[int]]) -> tuple[list[str], list[int]]:
    u = PartitionUnit(0, TOPICS)
    for t in TOPICS:
        u.set_position(t, 0)
        for off, ts in enumerate(data[t]):
            u.add(t, off, _event(t, off, float(ts)))
    items, dead = u.release(lambda t: True)
    assert u.buffered == 0
    return [it[1].event_id for it in items], sorted((d.source, d.position) for d in dead)


@settings(max_examples=150, deadline=None)
@given(data=streams, chunking=st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(1, 6)), max_size=60))
def test_release_order_is_a_function_of_the_data_not_of_arrival(data, chunking):
    """Records arriving in any interleaving of chunks come out in the order of the one-shot merge."""
    expected, expected_dead = _merge_all(data)
    u = PartitionUnit(0, TOPICS)
    sent = dict.fromkeys(TOPICS, 0)
    out: list[str] = []
    dead: list[tuple[str, int]] = []

    def deliver(topic: str, n: int) -> None:
        if sent[topic] == 0 and u.positions[topic] is None:
            u.set_position(topic, 0)
        for off in range(sent[topic], min(sent[topic] + n, len(data[topic]))):
            u.add(topic, off, _event(topic, off, float(data[topic][off])))
        sent[topic] = min(sent[topic] + n, len(data[topic]))

    def release() -> None:
        items, d = u.release(lambda t: sent[t] == len(data[t]) and u.positions[t] is not None)
        out.extend(it[1].event_id for it in items)
        dead.extend((x.source, x.position) for x in d)
        # Released records are a prefix of each topic: all before next_offsets, none buffered before it.
        nxt = u.next_offsets()
        if nxt is not None:
            for t in TOPICS:
                done = {int(e.split("-")[1]) for e in out if e.startswith(t + "-")}
                done |= {pos for src, pos in dead if src == f"kafka:{t}/0"}
                assert done == set(range(nxt[t]))
                assert all(it[0] >= nxt[t] for it in u.queues[t])

    for topic, n in chunking:
        deliver(topic, n)
        release()
    for t in TOPICS:  # the rest, then everything is at its end
        deliver(t, len(data[t]))
    release()
    assert out == expected
    assert sorted(dead) == expected_dead
    assert u.buffered == 0


@settings(max_examples=200, deadline=None)
@given(data=streams, chunking=st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(1, 6)), max_size=60),
       ends=st.lists(st.sets(st.sampled_from(TOPICS)), min_size=61, max_size=61))
def test_the_heap_release_equals_the_cut_aware_loop_step_by_step(data, chunking, ends):
    """Without a recorded cut, release() takes the topics' heads from a heap; with one, the general loop that
    also honours cuts. An empty cut (done at once) sends a unit through the general loop with nothing bounded:
    both must release the same records and dead letters, in the same order, and ask ``at_end`` of the same
    topics in the same order, at every step of any arrival (``ends``: the topics said to have ended)."""
    fast, slow = PartitionUnit(0, TOPICS), PartitionUnit(0, TOPICS)
    sent = dict.fromkeys(TOPICS, 0)
    for step, (topic, n) in enumerate([*chunking, *((t, 99) for t in TOPICS)]):
        first = sent[topic]
        sent[topic] = min(first + n, len(data[topic]))
        for u in (fast, slow):
            if u.positions[topic] is None:
                u.set_position(topic, 0)
            for off in range(first, sent[topic]):
                u.add(topic, off, _event(topic, off, float(data[topic][off])))
        ended = ends[min(step, len(ends) - 1)]
        asked: dict[int, list[str]] = {0: [], 1: []}
        slow.add_cut({})
        got = []
        for k, u in enumerate((fast, slow)):
            items, dead = u.release(lambda t, log=asked[k], ended=ended: log.append(t) or t in ended)
            got.append(([it[1].event_id for it in items], [(d.source, d.position) for d in dead],
                        u.buffered, u.next_offsets()))
        assert got[0] == got[1]
        assert asked[0] == asked[1]
        assert not slow.cuts


def test_release_waits_for_a_topic_that_may_still_hold_an_earlier_event():
    u = PartitionUnit(3, ("orders", "logins"))
    u.add("orders", 10, _event("orders", 10, 5.0))
    assert u.release(lambda t: False) == ([], [])
    assert u.next_offsets() is None  # logins' position unknown
    u.set_position("logins", 40)
    assert u.next_offsets() == {"orders": 10, "logins": 40}
    u.add("logins", 40, _event("logins", 40, 7.0))
    items, _ = u.release(lambda t: False)
    assert [it[0] for it in items] == [10]  # orders ts 5 < logins ts 7; logins waits for the next order
    assert u.next_offsets() == {"orders": 11, "logins": 40}
    items, _ = u.release(lambda t: t == "orders")
    assert [it[0] for it in items] == [40]
    assert u.next_offsets() == {"orders": 11, "logins": 41}


def test_equal_timestamps_follow_the_configured_topic_order_then_offsets():
    u = PartitionUnit(0, ("orders", "logins"))
    for off in (7, 8):
        u.add("logins", off, _event("logins", off, 1.0))
    for off in (3, 4):
        u.add("orders", off, _event("orders", off, 1.0))
    items, _ = u.release(lambda t: True)
    assert [it[1].event_id for it in items] == ["orders-3", "orders-4", "logins-7", "logins-8"]


def test_dead_letters_leave_at_once_and_advance_the_offset():
    u = PartitionUnit(0, ("orders", "logins"))
    u.add("orders", 0, _event("orders", 0, -1))
    u.add("orders", 1, _event("orders", 1, 2.0))
    items, dead = u.release(
        lambda t: False
    )  # logins unknown: the valid order must wait, the bad one need not
    assert items == [] and [d.position for d in dead] == [0]
    u.set_position("logins", 0)
    assert u.next_offsets() == {"orders": 1, "logins": 0}


# --- state store --------------------------------------------------------------------------------------------


def _ck(n: int = 5) -> Checkpoint:
    return Checkpoint(
        offsets={"orders": n, "logins": 2 * n}, state=os.urandom(4096), config_hash="abc", events=n
    )


def test_local_store_round_trip_and_replace(tmp_path):
    store = LocalStateStore(tmp_path)
    assert store.load("g/1", 0) is None
    first, second = _ck(5), _ck(9)
    store.save("g/1", 0, first)
    store.save("g/1", 0, second)
    store.save("g/1", 3, first)
    assert store.load("g/1", 0) == second
    assert store.load("g/1", 3) == first
    assert store.units("g/1") == [0, 3]
    assert store.load("other", 0) is None
    assert [p.name for p in store.path("g/1", 0).parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_local_store_refuses_damaged_checkpoints(tmp_path, damage):
    store = LocalStateStore(tmp_path)
    store.save("g", 1, _ck())
    path = store.path("g", 1)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-100] ^= 0x01
    elif damage == "truncate":
        del blob[-10:]
    else:
        blob = bytearray(b"PK\x03\x04 not a checkpoint")
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum|not a riskstream checkpoint"):
        store.load("g", 1)


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    store = LocalStateStore(tmp_path)
    old = _ck(1)
    store.save("g", 0, old)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointError, match="No space left"):
        store.save("g", 0, _ck(2))
    monkeypatch.undo()
    assert store.load("g", 0) == old
    assert sorted(p.name for p in store.path("g", 0).parent.iterdir()) == ["unit-0.ckpt"]


def test_checkpoint_bytes_carry_format_and_header():
    ck = _ck(7)
    blob = ck.to_bytes()
    assert blob.startswith(b"RSCKPT1 ")
    assert Checkpoint.from_bytes(blob) == ck
    with pytest.raises(CheckpointError, match="format"):
        Checkpoint.from_bytes(b"RSCKPT9" + blob[len(b"RSCKPT1") :])


def test_state_store_from_settings():
    assert isinstance(open_state_store({"store": "local", "dir": "x"}), LocalStateStore)
    with pytest.raises(ConfigError, match="state.store"):
        open_state_store({"store": "s3", "dir": "x"})
    with pytest.raises(ConfigError, match="state.dir"):
        open_state_store({"store": "local", "dir": ""})


# --- counters and dead-letter headers -----------------------------------------------------------------------


def test_stats_histogram_and_snapshot():
    stats = RuntimeStats()
    stats.observe_latency([0.001, 0.3, 0.3, 1e9, -1.0])
    stats.set_lag({"orders/0": 5, "logins/0": 2})
    stats.observe_checkpoint(0.25)
    snap = stats.snapshot()
    counts = dict(zip(LATENCY_BUCKETS, snap["latency"]["counts"], strict=True))
    assert counts[0.005] == 2 and counts[0.5] == 2 and counts[float("inf")] == 1
    assert snap["latency"]["count"] == 5
    assert snap["lag_total"] == 7 and snap["checkpoints"] == 1 and snap["last_checkpoint_seconds"] == 0.25
    snap["lag"]["orders/0"] = 99
    assert stats.lag["orders/0"] == 5  # a copy


def test_dead_letter_headers_name_the_source():
    h = dict(KafkaDeadLetterSink.headers(DeadLetter("ts: is missing", b"{}", "kafka:orders-x/3", 17)))
    assert h == {
        "reason": b"ts: is missing",
        "source": b"kafka:orders-x/3",
        "source_topic": b"orders-x",
        "source_partition": b"3",
        "source_offset": b"17",
    }
    h = dict(KafkaDeadLetterSink.headers(DeadLetter("bad", b"", "events.jsonl", None)))
    assert h == {"reason": b"bad", "source": b"events.jsonl"}


def test_local_store_appends_merge_decisions_and_skips_a_torn_line(tmp_path):
    from stream.state import DecisionLog

    store = LocalStateStore(tmp_path)
    assert isinstance(store, DecisionLog)
    assert store.load_decisions("g", 0) == []
    store.append_decision("g", 0, {"orders": 3, "logins": 0})
    with open(store.decisions_path("g", 0), "ab") as fh:
        fh.write(b'\n{"cut": {"orders": 9, "log')  # a crash in the middle of an append
    store.append_decision("g", 0, {"orders": 5, "logins": 2})
    assert store.load_decisions("g", 0) == [{"orders": 3, "logins": 0}, {"orders": 5, "logins": 2}]
    assert store.load_decisions("g", 1) == []
