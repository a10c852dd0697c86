"""Regressions the fault suite (``stream/bench/faults.py``) found in the runtime's recovery paths, reproduced
in process against a fake consumer that behaves as kafka-python 3.0.12 does where it matters (``seek``,
``pause`` and ``resume`` of a partition that is not assigned raise ``KeyError``; ``on_partitions_lost`` runs
before the assignment is cleared) and fake per-unit transactions:

- a fenced zombie, resumed after SIGCONT, crashed with ``KeyError`` when its partitions were then reported
  lost: it still held them as "paused" and resumed them after the assignment was gone;
- a rebalance while PostgreSQL (the state store) was down stopped every member: the assign listener could
  not load the units' checkpoints and made that fatal; the units now wait and are opened once it answers;
- a unit restored from a checkpoint behind Kafka's committed offsets (its last state save was lost) committed
  offsets *behind* what was already published, so its next successor published those alerts a second time.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from sinks.errors import Fenced, SinkError
from stream.config import load_settings
from stream.errors import CheckpointError
from stream.events import Order, encode
from stream.kafka import consumer as runtime_module
from stream.kafka.consumer import EOS_OFFSETS_MARK, _Runtime
from stream.kafka.stats import RuntimeStats
from stream.state import Checkpoint, LocalStateStore

GROUP = "g"
ORDERS = "orders"


class FakeConsumer:
    """The parts of KafkaConsumer the runtime uses, with kafka-python's KeyError on unassigned partitions."""

    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.paused_tps: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self.high: dict[TopicPartition, int] = {}

    def _check(self, tp: TopicPartition) -> None:
        if tp not in self.assigned:
            raise KeyError(tp)  # SubscriptionState.assignment[tp]

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check(tp)
        self.positions[tp] = offset

    def pause(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._check(tp)
            self.paused_tps.add(tp)

    def resume(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._check(tp)
            self.paused_tps.discard(tp)

    def committed(self, tp: TopicPartition, metadata: bool = False, timeout_ms: int = 0) -> Any:
        om = self.committed_offsets.get(tp)
        return om if metadata else (om.offset if om is not None else None)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.high.get(tp, 0) for tp in tps}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    def position(self, tp: TopicPartition, timeout_ms: int = 0) -> int | None:
        return self.positions.get(tp)

    def group_metadata(self) -> Any:
        return SimpleNamespace(generation_id=3, member_id="m-1", group_id=GROUP)


class FakeTxn:
    def __init__(self, outputs: FakeOutputs, tid: str) -> None:
        self.outputs, self.transactional_id = outputs, tid
        self.open = False
        self.sent: list[Any] = []

    def add(self, alert: Any) -> None:
        self.open = True
        self.sent.append(alert)

    def add_dead_letter(self, record: Any) -> None:
        self.open = True
        self.sent.append(record)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], group_metadata: Any) -> None:
        if self.outputs.fence:
            raise Fenced("kafka transaction commit: fenced (ProducerFencedError)")
        self.outputs.commits.append({tp.topic: om.offset for tp, om in offsets.items()})
        self.outputs.consumer.committed_offsets.update(offsets)
        self.open = False

    def close(self, timeout_s: float = 5.0) -> None:
        pass


class FakeOutputs:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer
        self.commits: list[dict[str, int]] = []
        self.fence = False

    def open(self, tid: str) -> FakeTxn:
        return FakeTxn(self, tid)


def _settings(tmp_path: Path, **kafka: Any) -> Any:
    cfg = tmp_path / "riskstream.toml"
    lines = ["[kafka]", 'orders_topic = "orders"', 'logins_topic = ""', 'labels_topic = ""',
             *(f"{k} = {v!r}" for k, v in kafka.items()), "", "[state]", f'dir = "{tmp_path / "state"}"']
    cfg.write_text("\n".join(lines) + "\n")
    return load_settings(cfg, env={})


def _runtime(tmp_path: Path, consumer: FakeConsumer, outputs: FakeOutputs, **kafka: Any) -> _Runtime:
    import threading

    settings = _settings(tmp_path, **kafka)
    return _Runtime(settings, consumer, group=GROUP, store=LocalStateStore(tmp_path / "state"), alert_sinks=[],
                    dead_letter_sinks=[], clock=None, stats=RuntimeStats(), stop=threading.Event(),
                    log_every_s=3600.0, transactional=outputs)  # type: ignore[arg-type]


def _order(i: int) -> Order:
    return Order(event_id=f"o{i}", ts=1_714_564_800.0 + i, user_id="u1", order_id=f"x{i}", amount=10.0 + i,
                 currency="EUR", merchant_id="m1")


def _assign(rt: _Runtime, consumer: FakeConsumer, *tps: TopicPartition) -> None:
    consumer.assigned |= set(tps)
    rt.on_assign(set(tps))
    assert rt.fatal is None, rt.fatal


def _lose(rt: _Runtime, consumer: FakeConsumer) -> None:
    """As kafka-python's _on_join_prepare: on_partitions_lost first, then the assignment is cleared."""
    lost = set(consumer.assigned)
    rt.on_revoke(lost, lost=True)
    consumer.assigned.clear()
    consumer.paused_tps.clear()
    assert rt.fatal is None, rt.fatal


def test_a_fenced_zombie_whose_partitions_are_then_lost_steps_down_without_a_keyerror(tmp_path):
    consumer = FakeConsumer()
    outputs = FakeOutputs(consumer)
    rt = _runtime(tmp_path, consumer, outputs, max_buffered_events=2)
    tp = TopicPartition(ORDERS, 0)
    consumer.high[tp] = 10
    _assign(rt, consumer, tp)
    rt._start_transactions()
    rt._resolve_pending()
    unit = rt.units[0]
    # A backlog over max_buffered_events: the busy partition is paused (backpressure).
    for i in range(6):
        unit.merge.add(ORDERS, i, _order(i))
    rt._apply_pauses()
    assert tp in consumer.paused_tps
    # SIGSTOP past the session timeout; another member opened the unit's transactional id. On SIGCONT, the
    # zombie's next checkpoint is fenced: the unit is dropped, its partitions kept paused until a rebalance.
    outputs.fence = True
    assert not rt.try_checkpoint("interval")
    assert 0 not in rt.units and 0 in rt.fenced
    rt._apply_pauses()
    # Its next poll hears of the eviction: on_partitions_lost, then kafka-python clears the assignment.
    _lose(rt, consumer)
    rt._apply_pauses()  # was: KeyError(TopicPartition(topic='orders', partition=0)) from consumer.resume
    rt._check_fenced()
    assert not rt.paused and not rt.fenced and not rt.units
    # It rejoins and gets the unit back later: it is reopened from its checkpoint, nothing is left paused.
    outputs.fence = False
    _assign(rt, consumer, tp)
    assert rt.try_checkpoint("interval")  # the retry after the fenced one: fetching resumes
    rt._apply_pauses()
    assert 0 in rt.units and tp not in consumer.paused_tps


def test_a_restore_behind_the_committed_offsets_never_commits_them_backwards(tmp_path, monkeypatch):
    consumer = FakeConsumer()
    outputs = FakeOutputs(consumer)
    rt = _runtime(tmp_path, consumer, outputs)
    tp = TopicPartition(ORDERS, 0)
    consumer.high[tp] = 12
    engine = rt._engine_cls(rt.settings, clock=None)
    # A predecessor committed the transaction up to offset 8 but its state save after it was lost: the
    # checkpoint says 2.
    rt.store.save(GROUP, 0, Checkpoint(offsets={ORDERS: 2}, state=engine.snapshot(),
                                       config_hash=rt.config_hash, events=0))
    consumer.committed_offsets[tp] = OffsetAndMetadata(8, EOS_OFFSETS_MARK, -1)
    _assign(rt, consumer, tp)
    rt._start_transactions()
    unit = rt.units[0]
    assert unit.published == {ORDERS: 8}
    # It re-processes 2..4 (already published), and a checkpoint comes before it has caught up with 8.
    for i in range(2, 5):
        unit.merge.add(ORDERS, i, _order(i))
    rt._process()
    assert unit.merge.next_offsets() == {ORDERS: 5}
    assert rt.try_checkpoint("interval")
    assert all(c[ORDERS] >= 8 for c in outputs.commits), outputs.commits  # was: a commit of offset 5
    assert consumer.committed_offsets[tp].offset == 8
    assert rt.store.load(GROUP, 0).offsets == {ORDERS: 5}  # the state itself may lag behind
    # Its successor (after a kill) restores the checkpoint at 5 and still knows 5..7 are published.
    (tmp_path / "b").mkdir()
    rt2 = _runtime(tmp_path / "b", consumer, FakeOutputs(consumer))
    rt2.store = rt.store
    rt2._engine_cls = rt._engine_cls
    _assign(rt2, consumer, tp)
    rt2._start_transactions()
    assert rt2.units[0].published == {ORDERS: 8}
    # Past the committed offsets, commits move forward as usual.
    for i in range(5, 11):
        unit.merge.add(ORDERS, i, _order(i))
    rt._process()
    assert rt.try_checkpoint("interval")
    assert outputs.commits[-1] == {ORDERS: 11}
    assert rt.store.load(GROUP, 0).offsets == {ORDERS: 11}


class DownStore(LocalStateStore):
    """A state store whose database is down until ``up`` is set."""

    up = False

    def load(self, group: str, unit: int) -> Any:
        if not self.up:
            err = CheckpointError("cannot load the checkpoint: connection refused")
            err.retriable = True
            raise err
        return super().load(group, unit)


def test_a_rebalance_while_the_state_store_is_down_waits_for_it_instead_of_stopping(tmp_path):
    consumer = FakeConsumer()
    outputs = FakeOutputs(consumer)
    rt = _runtime(tmp_path, consumer, outputs)
    store = DownStore(tmp_path / "state")
    engine = rt._engine_cls(rt.settings, clock=None)
    store.up = True
    store.save(GROUP, 0, Checkpoint(offsets={ORDERS: 3}, state=engine.snapshot(), config_hash=rt.config_hash))
    store.up = False
    rt.store = store
    tp = TopicPartition(ORDERS, 0)
    _assign(rt, consumer, tp)  # was: rt.fatal = CheckpointError, and the process exited 1
    assert 0 not in rt.units and 0 in rt.unopened
    rt._retry_unopened()
    assert 0 not in rt.units
    store.up = True
    rt.unopened[0] = 0.0  # its retry is due
    rt._retry_unopened()
    assert 0 in rt.units and not rt.unopened
    assert consumer.positions[tp] == 3 and rt.units[0].start == {ORDERS: 3}
    # A unit revoked while it waits is forgotten.
    store.up = False
    rt.on_revoke({tp}, lost=False)
    _assign(rt, consumer, tp)
    assert 0 in rt.unopened
    rt.on_revoke({tp}, lost=True)
    assert not rt.unopened


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setattr(runtime_module, "_log", lambda *a, **k: None)


def _three_units(tmp_path, txn_cls=None):
    """A runtime over the fake consumer holding units 0, 1 and 2 of ``orders`` (their transactions of
    ``txn_cls``, when given)."""
    consumer = FakeConsumer()
    outputs = FakeOutputs(consumer)
    if txn_cls is not None:
        outputs.open = lambda tid: txn_cls(outputs, tid)  # type: ignore[method-assign]
    rt = _runtime(tmp_path, consumer, outputs)
    tps = [TopicPartition(ORDERS, p) for p in range(3)]
    for tp in tps:
        consumer.high[tp] = 10
    _assign(rt, consumer, *tps)
    return rt, consumer, outputs


def _open_with_raw_records(rt: _Runtime) -> None:
    """Open the units' transactions and positions, and buffer three orders in each unit's merge as raw record
    bytes (as ``_ingest`` buffers them for the compiled core)."""
    rt._start_transactions()
    rt._resolve_pending()
    for p, unit in rt.units.items():
        unit.merge.add_many(ORDERS, [(i, encode(o), -1, o.ts, ORDERS) for i in range(3) for o in [_order(10 * p + i)]])


class BarrierTxn(FakeTxn):
    """Every unit's commit waits until all of them are in commit at once (sequential commits never get there),
    and the one of ``failing`` raises a retriable error."""

    barrier: Any = None
    failing: str = ""

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], group_metadata: Any) -> None:
        BarrierTxn.barrier.wait()
        if self.transactional_id == BarrierTxn.failing:
            raise SinkError("kafka transaction: commit_transaction not confirmed within 10 s", retriable=True)
        super().commit(offsets, group_metadata)


def test_a_checkpoint_commits_its_units_transactions_at_once_and_saves_each_only_after_its_own(tmp_path):
    """The units' commits overlap (each has its own producer: three broker round trips in the time of one), and
    a unit whose commit fails is neither saved nor reported committed, while the others are both."""
    import threading

    rt, consumer, outputs = _three_units(tmp_path, BarrierTxn)
    rt._start_transactions()
    rt._resolve_pending()
    for p, unit in rt.units.items():
        for i in range(3):
            unit.merge.add(ORDERS, i, _order(10 * p + i))
    rt._process()
    BarrierTxn.barrier = threading.Barrier(3, timeout=10)  # broken (an error in every commit) if not concurrent
    BarrierTxn.failing = rt.units[1].txn.transactional_id
    offsets, failed = rt._checkpoint(sorted(rt.units), reason="interval")
    assert [p for p, _ in failed] == [1] and isinstance(failed[0][1], SinkError)
    assert sorted(c[ORDERS] for c in outputs.commits) == [3, 3]
    assert rt.units[0].committed == {ORDERS: 3} and rt.units[2].committed == {ORDERS: 3}
    assert rt.units[1].committed != {ORDERS: 3}
    assert rt.store.load(GROUP, 0).offsets == {ORDERS: 3} and rt.store.load(GROUP, 2).offsets == {ORDERS: 3}
    assert rt.store.load(GROUP, 1) is None  # not saved: its transaction did not commit
    assert rt.stats.transactions == 2


class WaitingTxn(FakeTxn):
    """A commit that waits (up to 10 s) for a snapshot of the checkpoint to be under way."""

    snapshot_started: Any = None
    overlapped: list[bool] = []

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], group_metadata: Any) -> None:
        WaitingTxn.overlapped.append(WaitingTxn.snapshot_started.wait(10))
        super().commit(offsets, group_metadata)


def test_a_checkpoint_takes_its_snapshots_while_the_transactions_commit(tmp_path):
    """The snapshots (CPU, in the core with the GIL released) start before the commits (broker round trips) and
    run beside them; each unit is still saved only after its own commit."""
    import threading

    rt, consumer, outputs = _three_units(tmp_path, WaitingTxn)
    assert rt.raw
    _open_with_raw_records(rt)
    rt._process()
    rt._drain()
    WaitingTxn.snapshot_started, WaitingTxn.overlapped = threading.Event(), []
    for unit in rt.units.values():
        engine, take = unit.engine, unit.engine.snapshot

        def snapshot(take=take) -> bytes:
            WaitingTxn.snapshot_started.set()
            return take()

        engine.snapshot = snapshot
    offsets, failed = rt._checkpoint(sorted(rt.units), reason="interval")
    assert failed == [] and WaitingTxn.overlapped == [True] * 3
    assert [rt.store.load(GROUP, p).offsets for p in range(3)] == [{ORDERS: 3}] * 3
    assert sorted(c[ORDERS] for c in outputs.commits) == [3, 3, 3]


def test_a_revoked_unit_frees_its_engine_state_on_a_thread_of_its_own(tmp_path):
    """Freeing a unit's compiled state takes 0.1-0.25 s at ~50,000 events; a revoke (which the group's rebalance
    waits for) hands it to a thread of its own, which frees it with the GIL released. That thread is no daemon,
    though the revoke runs on kafka-python's IO thread, a daemon: a daemon still freeing when the interpreter
    exits aborts the process. The units kept are untouched."""
    import threading

    rt, consumer, _ = _three_units(tmp_path)
    _open_with_raw_records(rt)
    rt._process()
    rt._drain()
    core = rt.units[1].engine.core
    full = len(core.snapshot())
    seen: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(core, name)

        def discard(self) -> None:
            seen.append((threading.current_thread().name, threading.current_thread().daemon))
            core.discard()

    rt.units[1].engine.core = Recording()
    dropped = rt.units[1]
    kept = {p: len(rt.units[p].engine.core.snapshot()) for p in (0, 2)}
    io = threading.Thread(target=rt.on_revoke, args=({TopicPartition(ORDERS, 1)},), kwargs={"lost": False},
                          daemon=True)  # as kafka-python's IO thread runs the listener
    io.start()
    io.join(10)
    for t in [t for t in threading.enumerate() if t.name.startswith("riskstream-discard")]:
        t.join(10)
    assert seen == [("riskstream-discard-1", False)]
    assert dropped.engine is None and 1 not in rt.units
    assert len(core.snapshot()) < full / 2  # its state is gone
    assert {p: len(rt.units[p].engine.core.snapshot()) for p in (0, 2)} == kept


def test_an_error_taking_a_scored_batch_stops_the_run_instead_of_failing_a_checkpoint(tmp_path, monkeypatch):
    """With kafka.overlap the engine thread's batches are taken at the checkpoint. A sink error there must not be
    retried as a failed checkpoint: the merge has passed those records, and the rest of the batch would be lost
    at the next checkpoint. It stops the run (the next start resumes from the last checkpoint), as without the
    engine thread, where the same error left _process."""
    rt, _, _ = _three_units(tmp_path)
    assert rt._engine_threads  # the compiled core, overlap on (the default)
    _open_with_raw_records(rt)

    def take(unit, items, outcomes):
        raise SinkError("alerts sink: queue full", retriable=True)

    monkeypatch.setattr(rt, "_take", take)
    rt._process()
    assert rt._in_flight  # handed to the engine thread
    with pytest.raises(SinkError, match="queue full"):
        rt.try_checkpoint("interval")
    assert not rt.failing and rt.stats.checkpoints == 0


def test_units_score_at_once_on_several_engine_threads_each_units_batches_in_order_on_one(tmp_path, monkeypatch):
    """``kafka.engine_threads = 2``: two units' batches are scored at once, on two threads; a unit's next batch
    goes to the thread that holds its batch in hand (never two at once on its engine), even when the other thread
    is less busy; the batches are taken in the order they were released."""
    import threading
    import time

    consumer = FakeConsumer()
    outputs = FakeOutputs(consumer)
    rt = _runtime(tmp_path, consumer, outputs, engine_threads=2)
    tps = [TopicPartition(ORDERS, p) for p in range(3)]
    for tp in tps:
        consumer.high[tp] = 10
    _assign(rt, consumer, *tps)
    assert len(rt._engine_threads) == 2
    rt._start_transactions()
    rt._resolve_pending()
    go = {p: threading.Event() for p in range(3)}
    started: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []

    def score(unit, items):
        started.append((unit.merge.partition, threading.current_thread().name))
        assert go[unit.merge.partition].wait(10)
        return []

    monkeypatch.setattr(rt, "_score", score)
    monkeypatch.setattr(rt, "_take", lambda unit, items, outcomes: taken.append((unit.merge.partition,
                                                                                  items[0][0])))

    def add(p: int, first: int) -> None:
        unit = rt.units[p]
        unit.merge.add_many(ORDERS, [(i, encode(o), -1, o.ts, ORDERS)
                                     for i in range(first, first + 2) for o in [_order(10 * p + i)]])

    for p in range(3):
        add(p, 0)
    rt._process()  # unit 0 -> thread 0, unit 1 -> thread 1, unit 2 -> thread 0 (behind unit 0)
    deadline = time.monotonic() + 10
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(started) == [(0, "riskstream-engine-0_0"), (1, "riskstream-engine-1_0")]  # at once
    add(2, 2)
    rt._process()  # unit 2's batch in hand is on thread 0: its next one too, though thread 1 has less to do
    assert [lane for u, _, _, lane in rt._in_flight] == [0, 1, 0, 0]
    for p in (1, 0, 2):
        go[p].set()
    rt._drain()
    assert taken == [(0, 0), (1, 0), (2, 0), (2, 2)]
    assert [p for p, _ in started] in ([0, 1, 2, 2], [1, 0, 2, 2])
    assert {name for p, name in started if p == 2} == {"riskstream-engine-0_0"}


class ClosingTxn(FakeTxn):
    closed: list[str] = []

    def close(self, timeout_s: float = 5.0) -> None:
        ClosingTxn.closed.append(self.transactional_id)


def test_transactions_opened_at_once_are_closed_when_a_unit_cannot_take_its_own(tmp_path, monkeypatch):
    """The units' transactions open at once; if settling one unit's start position fails unexpectedly (the run
    stops), the transactions not handed to their units are closed, not leaked with their fencing producers."""
    rt, consumer, _ = _three_units(tmp_path, ClosingTxn)
    ClosingTxn.closed = []
    plain = consumer.committed

    def committed(tp, metadata=False, timeout_ms=0):
        if tp.partition == 1:
            raise RuntimeError("lookup broke")
        return plain(tp, metadata=metadata, timeout_ms=timeout_ms)

    monkeypatch.setattr(consumer, "committed", committed)
    with pytest.raises(RuntimeError, match="lookup broke"):
        rt._start_transactions()
    assert rt.units[0].txn is not None and rt.units[1].txn is None and rt.units[2].txn is None
    assert len(ClosingTxn.closed) == 2  # units 1 and 2: opened, never handed over
    assert rt.units[0].txn.transactional_id not in ClosingTxn.closed


def test_a_broker_down_when_a_unit_opens_its_transaction_is_retried_not_fatal(tmp_path):
    """A unit rewound while the broker is down opens its transaction with a new producer, which cannot connect
    (a retriable SourceError, "Kafka at ... is unreachable"): the unit waits without a transaction and the next
    step opens it once the broker is back; a non-retriable error still stops the run."""
    from stream.errors import SourceError

    rt, consumer, outputs = _three_units(tmp_path)
    opened = outputs.open
    down = {"on": True}

    def open_(tid):
        if down["on"] and tid.endswith("-1"):
            raise SourceError("Kafka at 127.0.0.1:9 is unreachable: no broker answered within 10 s", retriable=True)
        return opened(tid)

    outputs.open = open_
    rt._start_transactions()
    assert rt.units[0].txn is not None and rt.units[1].txn is None and rt.units[2].txn is not None
    down["on"] = False
    rt._start_transactions()
    assert rt.units[1].txn is not None and rt.units[1].txn.transactional_id.endswith("-1")

    (tmp_path / "fatal").mkdir()
    rt, consumer, outputs = _three_units(tmp_path / "fatal")
    outputs.open = lambda tid: (_ for _ in ()).throw(SourceError("no such topic", retriable=False))
    with pytest.raises(SourceError, match="no such topic"):
        rt._start_transactions()


def test_an_idle_poll_waits_in_slices_and_a_stop_ends_the_wait(tmp_path, monkeypatch):
    """kafka-python's poll waits its whole timeout when nothing arrives; the runtime's polls in slices of
    ``_STOP_CHECK_MS``, so a stop set meanwhile (SIGTERM) is noticed within one slice, not after
    ``kafka.poll_timeout_ms``. Records end the wait at once; without a stop, an idle wait lasts its timeout."""
    consumer = FakeConsumer()
    rt = _runtime(tmp_path, consumer, FakeOutputs(consumer))
    clock = {"now": 1000.0}
    monkeypatch.setattr(runtime_module.time, "monotonic", lambda: clock["now"])
    calls: list[int] = []
    plan = {"stop_at": 0, "records_at": 0}

    def poll(timeout_ms: int, max_records: int) -> dict:
        calls.append(timeout_ms)
        clock["now"] += timeout_ms / 1000.0  # nothing arrived: the slice is waited out
        if len(calls) == plan["stop_at"]:
            rt.stop.set()
        return {"tp": ["r"]} if len(calls) == plan["records_at"] else {}

    consumer.poll = poll
    assert rt._poll(500) == {} and calls == [50] * 10  # idle, no stop: the whole 500 ms, in slices
    calls.clear()
    plan["stop_at"] = 3
    assert rt._poll(500) == {} and calls == [50] * 3  # the stop ends the wait after the slice it came in
    calls.clear()
    rt.stop.clear()
    plan.update(stop_at=0, records_at=2)
    assert rt._poll(500) == {"tp": ["r"]} and calls == [50, 50]  # records end the wait
    calls.clear()
    assert rt._poll(0) == {} and calls == [0]  # no wait: one poll


@pytest.mark.parametrize("value", [0, -5, 2.5, "20", True, 60_001])
def test_a_bad_retry_backoff_is_a_config_error_naming_the_key(tmp_path, value):
    from stream.errors import ConfigError
    from stream.kafka.client import consumer_config, producer_config

    for make in (producer_config, lambda s: consumer_config(s, group_id="g")):
        with pytest.raises(ConfigError, match=r"kafka.retry_backoff_ms'? must be"):  # the loader's, or the client's
            make(_settings(tmp_path).replace({"kafka.retry_backoff_ms": value}))


def test_clients_retry_after_the_configured_backoff(tmp_path):
    from stream.kafka.client import consumer_config, producer_config

    assert producer_config(_settings(tmp_path))["retry_backoff_ms"] == 20  # the default, not kafka-python's 100
    s = _settings(tmp_path).replace({"kafka.retry_backoff_ms": 250})
    assert producer_config(s)["retry_backoff_ms"] == consumer_config(s, group_id="g")["retry_backoff_ms"] == 250
