"""The Kafka runtime: a consumer-group member that turns order, login and label topics into alerts, safely.

Partition units
    The input topics are co-partitioned (same partition count, keyed by user id), and the range assignor gives
    one consumer the same partition numbers of every topic. Partition number ``p`` across the input topics is
    a *unit*: it has its own :class:`~stream.pipeline.Engine` (feature windows and models) and its own
    checkpoint, and it moves between processes as a whole on a rebalance.

Merge rule (determinism)
    Within a unit, records are processed in the order ``(event ts, topic index in config order, offset)``,
    taking the smallest head of the per-topic queues; a head is released only when every other topic of the
    unit has a buffered record to compare it with. Being at the high watermark is *not* the end of a topic
    live (a record with an earlier event time may be written a moment later): when the merge has waited
    ``kafka.idle_timeout_s`` for topics that are all caught up, the runtime decides they end where they
    stand, appends the resulting cut to the state store, and only then processes what it releases. A
    successor re-applies the cuts past its checkpoint; :func:`replay_kafka` with ``group`` applies them all.
    Each topic's records therefore go through in offset order, and the processed records of a unit are a
    prefix of each of its topic-partitions, so "the offset of the first unprocessed record" is well defined.
    The
    processing order is a function of the data and the recorded cuts, not of fetch timing: a restart, another
    consumer, or
    :func:`replay_kafka` over the same offsets produces the same alerts. Records that do not decode go to the
    dead-letter sinks as soon as they reach the head of their queue; they advance the offset like any record.

Overlap (compiled core, ``kafka.overlap = true``)
    A unit's released records are scored on one engine thread (``CoreEngine.process_raw`` releases the GIL)
    while the main thread polls on (no wait) and buffers what it fetches into the merges. The scored batches are
    taken (alerts to the sinks and the unit's transaction, in release order) once the thread is done or a poll
    comes back empty, and before anything else reads or changes a unit: a checkpoint, a rule pack switch, a
    rebalance listener, a fence or a rewind. The records and their order are those of the single-threaded loop,
    and so are the alerts; the moment an alert reaches the sinks moves, by at most one poll.

Live rule packs
    At a checkpoint boundary of a unit, when the store's active rule pack version (polled at most every
    ``kafka.rules_poll_interval_s``) differs from the unit's, the switch is recorded in the decision log at the
    unit's next offsets, then the engine's rules are swapped; a successor and a replay apply it at the same
    offsets (docs/console.md).

Checkpoint (every ``kafka.checkpoint_interval_s``, on revoke, on stop), ``kafka.exactly_once = true``
    1. flush the idempotent sinks (SQL, JSONL, dead-letter file); a failure aborts the checkpoint and rewinds
       every unit with an open transaction,
    2. per unit, commit its Kafka transaction: the alerts and dead letters sent in it since the last checkpoint
       and the unit's next input offsets (``send_offsets_to_transaction``), all visible together or not at all,
    3. save the unit's engine snapshot with those offsets to the state store (after the commit: a state can lag
       behind the committed offsets, which a restore repairs by re-processing without publishing, but never
       run ahead of the alerts topic).
    Each unit has its own transactional id, so a member taking a unit over fences the previous owner.

Checkpoint, ``kafka.exactly_once = false`` (at least once)
    1. flush every sink (Kafka alerts topic, SQL, JSONL, dead letters); a failure aborts the checkpoint,
    2. save each unit's engine snapshot with its next offsets to the state store,
    3. commit those offsets to Kafka (a ``CommitFailedError`` during a rebalance is logged and ignored: the
       state store's offsets are authoritative, Kafka's only serve units without a checkpoint).

See ``docs/runtime.md`` for failure cases, rebalances, backpressure and configuration keys.
"""


from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sinks.base import Sink
from sinks.deadletter import DeadLetter, DeadLetterSink
from sinks.errors import Fenced, SinkError
from sinks.kafka import split_source
from stream.config import Settings
from stream.errors import CheckpointError, ConfigError, DecisionFenced, SourceError
from stream.events import Event, Provenance
from stream.kafka.client import (
    TopicPartition,
    decode_record,
    input_topics,
    kerrors,
    make_consumer,
    prime_group_metadata,
    release_parked_fetches,
    rescue_lost_join,
)
from stream.kafka.fastparse import install as install_fastparse
from stream.kafka.stats import RuntimeStats
from stream.kafka.stats import log_event as _log
from stream.kafka.units import RULES_KEY, PartitionUnit, is_switch
from stream.outputs import Outputs, TransactionalOutputs, open_outputs, transactional_id
from stream.state import Checkpoint, StateStore, open_state_store

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata


__all__ = ["run_consumer", "check_copartitioned"]

log = logging.getLogger("riskstream.runtime")

_MAX_BACKOFF_S = 30.0
_FIRST_BACKOFF_S = 0.5
#: An idle poll waits in slices this long, so a stop (SIGTERM, or the caller's event) ends the wait this soon and
#: not after the whole ``kafka.poll_timeout_ms``: kafka-python's poll returns early only when records arrive.
_STOP_CHECK_MS = 50
#: Metadata of the offsets a riskstream transaction commits (``kafka.exactly_once``): a unit that has them but no
#: checkpoint lost its first state save, and is rebuilt from the start of its partitions.
EOS_OFFSETS_MARK = "riskstream:eos"


@dataclass
class _Unit:
    merge: PartitionUnit
    #: None until the main loop materializes it (restoring a snapshot is too slow for the IO thread).
    engine: Any
    tps: dict[str, TopicPartition]
    snapshot: bytes | None = None
    dirty: bool = False
    backpressure: bool = False
    gap_checked: dict[str, float] = field(default_factory=dict)
    #: Topics whose start position is still to be looked up (committed offset, else ``auto_offset_reset``).
    pending: set[str] = field(default_factory=set)
    #: Since when (monotonic) the merge has waited for an empty topic without releasing anything.
    waiting_since: float | None = None
    #: Topics decided idle (ended where they stand) -> their position then; the decision holds, without
    #: another ``idle_timeout_s``, while the topic stays silent and caught up.
    idle: dict[str, int] = field(default_factory=dict)
    #: When (monotonic) the last decision was recorded.
    decided_at: float = 0.0
    #: The checkpoint's offsets the unit started from (empty without a checkpoint).
    start: dict[str, int] = field(default_factory=dict)
    #: exactly_once: the unit's Kafka transaction; None until the main loop has opened it (nothing is processed
    #: before: opening fences the previous owner and settles its transaction).
    txn: Any = None
    #: exactly_once: per topic, records below this offset are already published by a committed transaction
    #: (the checkpoint is behind Kafka's committed offsets): processed again for the state, not published again.
    published: dict[str, int] = field(default_factory=dict)
    #: exactly_once: the offsets the unit's last transaction committed.
    committed: dict[str, int] | None = None
    #: The epoch this member claimed the unit's decision log at (None: the store has no claims); a decision is
    #: recorded only while it is the unit's latest.
    epoch: int | None = None
    #: The rule pack version the unit must run at its start position (the last recorded switch at or before its
    #: checkpoint), applied when the engine is built; None: whatever the checkpoint holds.
    rules_at_open: int | None = None
    #: At a checkpoint boundary (or the unit's start): the active rule pack version is compared before the next
    #: record is processed.
    rules_due: bool = True


def _at_once(calls: Mapping[int, Callable[[], Any]], name: str) -> dict[int, Any]:
    """Run each unit's call, on a thread of its own when there are several (each a producer of its own: their
    broker round trips overlap; each call is bounded by its own timeouts): per unit what it returned, or the
    exception it raised, handed back for the caller to decide in unit order."""

    def one(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except BaseException as e:  # noqa: BLE001 - handed back
            return e

    if len(calls) <= 1:
        return {p: one(call) for p, call in calls.items()}
    out: dict[int, Any] = {}

    def run(p: int, call: Callable[[], Any]) -> None:
        out[p] = one(call)

    threads = [threading.Thread(target=run, args=(p, call), name=f"riskstream-{name}-{p}", daemon=True)
               for p, call in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which cpusets and ``taskset`` narrow; else the
    machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- the consumer-group runtime -----------------------------------------------------------------------------


class _Snapshots:
    """The engine snapshots of a checkpoint's units, in unit order. With ``threads`` (the compiled core, which
    serialises with the GIL released), up to that many are taken at once on threads, starting at construction
    (so they overlap the transactions' commits) and never more than that many held ahead of the caller, which
    saves each as it comes (a save's checksum and write overlap the next snapshots). Without, each is taken when
    the caller asks for it."""

    def __init__(self, units: Sequence[tuple[int, Any, dict[str, int]]], *, threads: int) -> None:
        self.todo = list(units)
        self.workers = max(1, min(len(self.todo), threads))
        self.pool = (ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="riskstream-snapshot")
                     if threads and self.todo else None)
        self.ahead: list[tuple[tuple[int, Any, dict[str, int]], Future[bytes]]] = []
        self._fill()

    def _fill(self) -> None:
        while self.pool is not None and self.todo and len(self.ahead) < self.workers:
            item = self.todo.pop(0)
            self.ahead.append((item, self.pool.submit(item[1].engine.snapshot)))

    def taken(self, keep: Container[int]) -> Iterator[tuple[tuple[int, Any, dict[str, int]], bytes]]:
        """``(unit, snapshot)`` of each unit in ``keep``, in order (a snapshot taken ahead for a unit not kept,
        whose commit failed, is dropped)."""
        self.todo = [item for item in self.todo if item[0] in keep]
        if self.pool is None:
            for item in self.todo:
                yield item, item[1].engine.snapshot()
            return
        while self.ahead:
            item, job = self.ahead.pop(0)
            state = job.result()
            self._fill()
            if item[0] in keep:
                yield item, state

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python 3 runs rebalance listeners on its IO thread while the caller is blocked in ``poll()`` or
    ``close()``; the async variant may ``await`` the offset commit (a blocking ``consumer.commit()`` from the
    IO thread raises)."""

    def __init__(self, runtime: _Runtime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        offsets = self.runtime.on_revoke(revoked, lost=False)
        if offsets:
            try:
                await self.runtime.consumer.commit_async(offsets)
                _log(logging.DEBUG, "commit", reason="revoke", partitions=len(offsets))
            except Exception as e:  # noqa: BLE001 - the state store holds the authoritative offsets
                self.runtime.stats.commit_failures += 1
                _log(logging.INFO, "commit_failed", reason="revoke", error=f"{type(e).__name__}: {e}")

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.runtime.on_revoke(lost, lost=True)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.runtime.on_assign(assigned)


class _Runtime:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        *,
        group: str,
        store: StateStore,
        alert_sinks: Sequence[Sink],
        dead_letter_sinks: Sequence[DeadLetterSink],
        clock: Callable[[Event], float] | None,
        stats: RuntimeStats,
        stop: threading.Event,
        log_every_s: float,
        transactional: TransactionalOutputs | None = None,
        rules: Any = None,
    ) -> None:
        from stream.compiled import new_engine

        self._engine_cls = new_engine
        # Startup work before the first poll: the imports and one fresh engine (its HST forest), which the first
        # unit without a checkpoint takes. It also says whether detection runs in the core: then whole fetched
        # batches go to the core as raw bytes (``_ingest``: ``stream._core.scan_raw`` reads each record's event
        # time and type for the merge; ``_process``: ``CompiledEngine.process_raw``), with no Event per record.
        self._spare: Any = new_engine(settings, clock=clock)
        self.raw = getattr(self._spare, "detection", None) == "compiled"
        if self.raw:
            from stream._core import scan_raw

            self._scan_raw = scan_raw
        # With the core scoring raw records, each fetched batch comes out of poll() as one block of columns
        # (stream.kafka.fastparse): no ConsumerRecord a record, and each value read once for the merge's key.
        self.blocks = self.raw and install_fastparse(consumer, blocks=True)
        self.settings = settings
        self.consumer = consumer
        self.group = group
        self.store = store
        self.alert_sinks = list(alert_sinks)
        self.dl_sinks = list(dead_letter_sinks)
        self.clock = clock
        self.stats = stats
        self.stop = stop
        self.log_every_s = log_every_s
        self.topics = input_topics(settings)
        k = settings.kafka
        self.poll_timeout_ms = int(k["poll_timeout_ms"])
        self.max_poll_records = int(k["max_poll_records"])
        self.interval = float(k["checkpoint_interval_s"])
        self.max_buffered = max(1, int(k["max_buffered_events"]))
        self.commit_timeout_ms = int(k.get("commit_timeout_ms", 10_000))
        self.idle_timeout = float(k.get("idle_timeout_s", 2.0))
        self.idle_interval = float(k.get("idle_decision_interval_s", 0.25))
        #: The store's decision log (a DecisionLog, possibly without claims or pruning), or None.
        self.decisions: Any = store if callable(getattr(store, "append_decision", None)) else None
        #: The store can claim a unit's decision log (owner epochs): decisions are fenced.
        self.claims = self.decisions is not None and callable(getattr(store, "claim_unit", None))
        self.can_prune = self.decisions is not None and callable(getattr(store, "prune_decisions", None))
        #: This member's name in the claims (for operators: host, process, a random tag).
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.prune_interval = float(k.get("decision_prune_interval_s", 60.0))
        self.batch_size = int(settings.engine["batch_size"])
        self.config_hash = settings.config_hash
        self.units: dict[int, _Unit] = {}
        self.paused: set[TopicPartition] = set()
        #: exactly_once: the per-unit transactions (None: alerts and dead letters go through the sinks).
        self.transactional = transactional
        self.session_timeout_s = int(k["session_timeout_ms"]) / 1000.0
        #: Units dropped after their producer was fenced -> (group generation then, when); see _check_fenced.
        self.fenced: dict[int, tuple[int, float]] = {}
        #: Transactions of dropped units, closed by the main loop (closing blocks; the IO thread must not).
        self.retired: list[Any] = []
        #: Partitions sought since the last poll() returned: that poll's records of them were fetched from the
        #: position before the seek and are dropped (see step).
        self.sought: set[TopicPartition] = set()
        #: Units assigned whose checkpoint or decisions could not be read (the state store is down) -> when to
        #: try again; opened by the main loop once the store answers (nothing of them is processed meanwhile).
        self.unopened: dict[int, float] = {}
        self.failing = False
        self.fatal: BaseException | None = None
        #: Set when the main loop raised: engine state may be half-way through a batch, so it is never saved.
        self.poisoned = False
        self._backoff = _FIRST_BACKOFF_S
        self._next_checkpoint = time.monotonic() + self.interval
        self._next_prune = time.monotonic() + self.prune_interval
        self._next_lag = 0.0
        self._next_log = time.monotonic() + log_every_s
        #: When (monotonic) a merge's idle decision falls due; the next poll returns by then.
        self._wake_at: float | None = None
        #: The store's active rule pack version (a :class:`~stream.kafka.liverules.RuleWatch`), or None: the
        #: configured rules only.
        self.rules = rules
        #: Versions that could not be switched in (logged once each).
        self._refused_rules: set[int] = set()
        #: ``kafka.overlap``: the engine threads scoring released records while the next poll runs (see the
        #: module's "Overlap"), one single-thread executor each (``kafka.engine_threads``, 0 = one per CPU), and
        #: the units' batches they have in hand, in submission order, each with its thread's index. A unit's
        #: batches go to the thread that holds its last one (so they run in order, never two at once on its
        #: engine), else to the least busy: several units score at once on several cores.
        lanes = int(k.get("engine_threads", 0)) or usable_cpus()
        self._engine_threads: list[ThreadPoolExecutor] = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"riskstream-engine-{i}") for i in range(lanes)
        ] if self.raw and bool(k.get("overlap", True)) else []
        self._in_flight: list[tuple[_Unit, list[Any], Future[list[Any]], int]] = []

    # -- rebalance callbacks (IO thread, main thread blocked in poll/close) ----------------------------------

    def on_assign(self, assigned: set[TopicPartition]) -> None:
        try:
            self._drain()
            self.stats.rebalances += 1
            by_unit: dict[int, set[str]] = {}
            for tp in assigned:
                if tp.topic in self.topics:
                    by_unit.setdefault(tp.partition, set()).add(tp.topic)
            # kafka-python 3 keeps the position and the paused flag of a partition that stays assigned
            # across a rebalance; every position is set again below (from a checkpoint or the committed
            # offset) and nothing stays paused.
            if assigned:
                self.consumer.resume(*assigned)
            for p, topics in sorted(by_unit.items()):
                self.fenced.pop(p, None)
                missing = [t for t in self.topics if t not in topics]
                if missing:
                    raise ConfigError(
                        f"partition {p} of {sorted(topics)} was assigned without the same partition of "
                        f"{missing}: the input topics must have equal partition counts and the range "
                        "assignor must be used"
                    )
                self._open_unit(p)
            self.stats.units = tuple(sorted(self.units))
            _log(
                logging.INFO,
                "assigned",
                units=",".join(map(str, sorted(by_unit))) or "-",
                partitions=len(assigned),
            )
        except BaseException as e:  # noqa: BLE001 - raised again by the main loop after poll() returns
            self.fatal = e

    def _open_unit(self, p: int) -> None:
        """Open unit ``p`` from its checkpoint and recorded decisions; if the state store cannot be read now (a
        retriable :class:`CheckpointError`: the database is down), the unit waits in ``unopened`` and the main
        loop tries again, instead of the process stopping."""
        self.unopened.pop(p, None)
        try:
            ck = self.store.load(self.group, p)
            # Claim the unit's decision log before reading it: the claim waits for a predecessor's append in
            # progress and fences every later one (DecisionFenced), so the cuts read next are all it will ever
            # have recorded.
            epoch = self.decisions.claim_unit(self.group, p, self.member) if self.claims else None
            cuts = self.decisions.load_decisions(self.group, p) if self.decisions is not None else []
            for c in cuts:  # the packs of recorded switches, read now: applying them must not wait on the store
                if is_switch(c):
                    self._rules_params(c[RULES_KEY])
        except CheckpointError as e:
            if not e.retriable:
                raise
            self.stats.observe_checkpoint_failure(e)
            self.unopened[p] = time.monotonic() + _FIRST_BACKOFF_S
            _log(logging.WARNING, "unit_open_failed", unit=p, error=f"{type(e).__name__}: {e}",
                 retry_in_s=_FIRST_BACKOFF_S, note="the unit is opened once the state store answers")
            return
        merge = PartitionUnit(p, self.topics)
        tps = {t: TopicPartition(t, p) for t in self.topics}
        if ck is not None and ck.config_hash and ck.config_hash != self.config_hash:
            raise ConfigError(
                f"the checkpoint of unit {p} was made with detection configuration {ck.config_hash}, not "
                f"{self.config_hash}; use a new consumer group (and state) to change the detection "
                "configuration"
            )
        pending = set(self.topics)
        if ck is not None:
            for t, off in ck.offsets.items():
                if t in tps:
                    self._seek(tps[t], off)
                    merge.set_position(t, off)
                    pending.discard(t)
            _log(logging.INFO, "restored", unit=p, offsets=_fmt_offsets(ck.offsets), events=ck.events)
        else:
            _log(logging.INFO, "fresh_unit", unit=p)
        # Decisions a predecessor recorded past this checkpoint are applied again, in order, so the records
        # it processed under them are processed the same way here (older ones are dropped as passed).
        start = dict(ck.offsets) if ck is not None else {}
        is_ahead = [not start or any(o > start.get(t, o) for t, o in c.items()) for c in cuts]
        ahead = [c for c, a in zip(cuts, is_ahead, strict=True) if a]
        for c in ahead:
            merge.add_cut(c)
        if ahead:
            _log(logging.INFO, "decisions_to_replay", unit=p, cuts=len(ahead))
        # Rule pack switches at or before the checkpoint: the last one is the version the unit runs from there
        # (the checkpoint may predate it by nothing: a switch is recorded right after a checkpoint).
        passed = [c[RULES_KEY] for c, a in zip(cuts, is_ahead, strict=True) if not a and is_switch(c)]
        if epoch is not None:
            _log(logging.INFO, "decisions_claimed", unit=p, epoch=epoch, member=self.member)
        # Positions not in a checkpoint are looked up by the main loop (a blocking call is not allowed here).
        self.units[p] = _Unit(
            merge, None, tps, snapshot=ck.state if ck is not None else None, pending=pending,
            start=dict(ck.offsets) if ck is not None else {}, epoch=epoch,
            rules_at_open=passed[-1] if passed else None,
        )

    def on_revoke(
        self, revoked: set[TopicPartition], *, lost: bool
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        gone = sorted({tp.partition for tp in revoked} & set(self.units))
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        try:
            if not self.poisoned:
                self._drain()  # the batches scored meanwhile belong to the units before they go
            if gone and self.poisoned:
                _log(
                    logging.WARNING,
                    "revoked_without_checkpoint",
                    units=",".join(map(str, gone)),
                    note="stopping after an error; the next owner resumes from the last checkpoint",
                )
            elif gone and not lost:
                try:
                    offsets, failed = self._checkpoint(gone, reason="revoke")
                    for p, e in failed:  # the unit goes anyway: the next owner redoes its uncommitted part
                        _log(logging.WARNING, "transaction_failed", unit=p, reason="revoke",
                             error=f"{type(e).__name__}: {e}", note="the next owner resumes from the last commit")
                except (SinkError, CheckpointError) as e:
                    self.stats.observe_checkpoint_failure(e)
                    _log(
                        logging.WARNING,
                        "checkpoint_failed",
                        reason="revoke",
                        error=f"{type(e).__name__}: {e}",
                        note="the next owner resumes from the last checkpoint",
                    )
            elif gone:
                _log(
                    logging.WARNING,
                    "partitions_lost",
                    units=",".join(map(str, gone)),
                    note="membership lost; the next owner resumes from the last checkpoint",
                )
        except BaseException as e:  # noqa: BLE001
            self.fatal = e
        finally:
            for p in gone:
                self._drop(self.units.pop(p))
            for tp in revoked:
                self.fenced.pop(tp.partition, None)
                self.unopened.pop(tp.partition, None)
            # Every revoked partition, not only those of units still held: a fenced unit was dropped before its
            # partitions were lost, and kafka-python raises KeyError on resume() of a partition not assigned.
            self.paused = {tp for tp in self.paused if tp.partition not in gone and tp not in revoked}
            self.stats.units = tuple(sorted(self.units))
            if gone:
                _log(logging.INFO, "revoked", units=",".join(map(str, gone)), lost=lost)
        return offsets

    # -- main loop -------------------------------------------------------------------------------------------

    def run(self) -> None:
        if self.rules is not None:
            self.rules.poll(force=True)
        try:
            while not self.stop.is_set():
                self.step()
            self._drain()
        except BaseException:
            self.poisoned = True
            self._abandon()
            raise
        self.final_checkpoint()

    def _poll(self, timeout_ms: int) -> dict[TopicPartition, Any]:
        """``consumer.poll`` waiting up to ``timeout_ms`` for records, in slices of ``_STOP_CHECK_MS``: a stop
        set meanwhile ends the wait."""
        end = time.monotonic() + timeout_ms / 1000.0
        while True:
            part = min(timeout_ms, _STOP_CHECK_MS)
            records = self.consumer.poll(timeout_ms=part, max_records=self.max_poll_records)
            timeout_ms = int((end - time.monotonic()) * 1000.0)
            if records or timeout_ms <= 0 or self.stop.is_set():
                return records

    def step(self) -> None:
        release_parked_fetches(self.consumer)
        if rescue_lost_join(self.consumer):
            self.stats.lost_joins += 1
            _log(logging.WARNING, "lost_join", note="kafka-python dropped the result of a rebalance; joining again")
        # A merge waiting for an idle decision is woken when it is due, not after a whole poll timeout (with the
        # default 500 ms poll and 0.25 s decision interval, each decision used to cost up to 0.5 s of latency).
        timeout_ms = self.poll_timeout_ms
        if self._wake_at is not None:
            timeout_ms = max(0, min(timeout_ms, int((self._wake_at - time.monotonic()) * 1000.0) + 1))
            self._wake_at = None
        if self._in_flight:
            timeout_ms = 0  # parse what is fetched while the engine thread scores; never wait for more meanwhile
        records = self._poll(timeout_ms)
        if (records and self.fatal is None and self._in_flight and not self._in_flight[-1][2].done()
                and not any(u.backpressure for u in self.units.values())):
            # The engine thread is still scoring: buffer these records and poll again (a unit's merge is not the
            # engine's; nothing else of the units is touched until the batches in hand are taken). Not while a
            # unit is over max_buffered_events: then its buffer waits for the release after the batches in hand.
            self.sought.clear()
            self.stats.last_poll_at = time.time()
            for tp, recs in records.items():
                self._ingest(tp, recs)
            self._observe_buffered()
            self._apply_pauses()  # a unit this poll took over max_buffered_events pauses now
            return
        if self.fatal is None:
            self._drain()
        # Seeks made inside poll() (the assign listener) came before its fetch was handed out: only those made
        # from here on make this poll's records stale.
        self.sought.clear()
        self.stats.last_poll_at = time.time()
        if self.fatal is not None:
            raise self.fatal
        self._close_retired()
        self._check_fenced()
        self._retry_unopened()
        if self.transactional is not None:
            self._start_transactions()
        self._resolve_pending()
        for unit in self.units.values():  # build (or restore) engines before their first records are taken in
            self._materialize(unit)
        # Records of a partition sought after this poll returned (a start position found by the main loop: after
        # init_transactions with exactly once, or the committed offset) were fetched from wherever kafka-python
        # had the position (it keeps positions across rebalances, and starts a new partition at its committed
        # offset): drop them; after the seek they are fetched again. Ingested, records ahead of the seek would
        # move the unit's position past the records in between, which would then be skipped as already seen.
        # Partitions still pending are dropped by _ingest.
        for tp, recs in records.items():
            if tp not in self.sought:
                self._ingest(tp, recs)
        if not self.failing:
            self._process()
        now = time.monotonic()
        if now >= self._next_checkpoint:
            self.try_checkpoint("interval")
        if self.can_prune and self.prune_interval > 0 and now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            self.prune_decisions()
        self._apply_pauses()
        if now >= self._next_lag:
            self._next_lag = now + 1.0
            self._update_lag()
        if now >= self._next_log:
            self._next_log = now + self.log_every_s
            snap = self.stats.snapshot()
            _log(
                logging.INFO,
                "progress",
                records_in=snap["records_in"],
                events=snap["events"],
                invalid=snap["invalid"],
                alerts=snap["alerts"],
                lag=snap["lag_total"],
                buffered=snap["buffered"],
                units=",".join(map(str, snap["units"])) or "-",
                checkpoints=snap["checkpoints"],
            )

    def _retry_unopened(self) -> None:
        if not self.unopened:
            return
        now = time.monotonic()
        assignment = self.consumer.assignment()
        for p, when in sorted(self.unopened.items()):
            if not all(TopicPartition(t, p) in assignment for t in self.topics):
                del self.unopened[p]  # no longer ours
            elif now >= when:
                self._open_unit(p)
        self.stats.units = tuple(sorted(self.units))

    def _ingest(self, tp: TopicPartition, recs: Sequence[Any]) -> None:
        unit = self.units.get(tp.partition)
        if unit is None or tp.topic not in unit.tps or tp.topic in unit.pending:
            return  # a partition revoked in this very poll (its new owner reads the records again)
        merge = unit.merge
        expected = merge.positions[tp.topic]
        if self.blocks:
            self.stats.records_in += self._ingest_blocks(merge, tp, recs, expected)
            return
        if self.raw:
            self.stats.records_in += self._ingest_raw(merge, tp, recs, expected)
            return
        n = 0
        for r in recs:
            if expected is not None and r.offset < expected:
                continue  # already buffered or processed (a stale fetch across a seek)
            merge.add(
                tp.topic,
                r.offset,
                decode_record(tp.topic, tp.partition, r.offset, r.value),
                r.timestamp if r.timestamp is not None else -1,
            )
            n += 1
        self.stats.records_in += n

    def _ingest_raw(self, merge: PartitionUnit, tp: TopicPartition, recs: Sequence[Any], expected: int | None) -> int:
        """Buffer a fetched batch as raw bytes: the core decodes the batch once for each record's event time and
        type (the merge's key); only a record it refuses or leaves to Python is decoded here (a dead letter keeps
        its reason and bytes; an event the core left to Python is buffered as bytes with its time)."""
        if expected is not None and recs and recs[0].offset < expected:
            recs = [r for r in recs if r.offset >= expected]  # already buffered or processed (a stale fetch)
        if not recs:
            return 0
        topic, part = tp.topic, tp.partition
        values = [r.value for r in recs]
        ts, status = self._scan_raw(values)
        items: list[Any] = []
        add = items.append
        for r, v, t, st in zip(recs, values, ts.tolist(), status.tolist(), strict=True):
            stamp = r.timestamp if r.timestamp is not None else -1
            if st < 3:
                add((r.offset, v, stamp, t, topic))
            else:
                item = decode_record(topic, part, r.offset, v)
                if isinstance(item, DeadLetter):
                    add((r.offset, item, stamp, None, topic))
                else:  # an event the core leaves to Python: its batch takes the event path (see _process)
                    add((r.offset, item, stamp, item.ts, topic))
        merge.add_many(topic, items)
        return len(items)

    def _ingest_blocks(self, merge: PartitionUnit, tp: TopicPartition, blocks: Sequence[Any],
                       expected: int | None) -> int:
        """:meth:`_ingest_raw` for blocks of records (``stream._core.RecordBlock``), whose values the core has
        read already: the items come out of the block; only a record the core refuses, leaves to Python or finds
        null is decoded here."""
        topic, part = tp.topic, tp.partition
        n = 0
        for block in blocks:
            if expected is not None and block.first_offset < expected:
                block = block.since(expected)  # already buffered or processed (a stale fetch)
                if not len(block):
                    continue
            items, odd = block.items(topic)
            for j in odd:
                off, v, stamp = items[j][0], items[j][1], items[j][2]
                item = decode_record(topic, part, off, v)
                items[j] = (off, item, stamp, None if isinstance(item, DeadLetter) else item.ts, topic)
            merge.add_many(topic, items)
            n += len(items)
        return n

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        """Set the fetch position of ``tp``; the records the current poll returned for it are stale (see step)."""
        self.consumer.seek(tp, offset)
        self.sought.add(tp)

    def _resolve_pending(self) -> None:
        """Seek partitions without a checkpoint to their committed offset (else per ``auto_offset_reset``)."""
        todo = [(unit, t) for unit in self.units.values() for t in sorted(unit.pending)
                if self.transactional is None or unit.txn is not None]  # exactly once: after the fence
        if not todo:
            return
        reset = str(self.settings.kafka.get("auto_offset_reset", "earliest"))
        for unit, t in todo:
            tp = unit.tps[t]
            try:
                off = self.consumer.committed(tp, timeout_ms=self.commit_timeout_ms)
                if off is None:
                    bounds = (
                        self.consumer.end_offsets([tp])
                        if reset == "latest"
                        else self.consumer.beginning_offsets([tp])
                    )
                    off = bounds[tp]
            except kerrors.KafkaError as e:
                _log(
                    logging.INFO,
                    "position_lookup_failed",
                    partition=f"{t}/{tp.partition}",
                    error=f"{type(e).__name__}: {e}",
                )
                continue
            self._seek(tp, off)
            unit.merge.set_position(t, off)
            unit.pending.discard(t)
            _log(logging.DEBUG, "start_position", partition=f"{t}/{tp.partition}", offset=off)

    def _at_end(self, unit: _Unit, topic: str) -> bool:
        pos = unit.merge.positions[topic]
        if pos is None:
            return False
        tp = unit.tps[topic]
        hw = self.consumer.highwater(tp)
        now = time.monotonic()
        if hw is None:
            # No fetch response has carried this partition's high watermark since it was (re)assigned. kafka-python
            # 3.0.12 can go on without one for good: an empty partition of a unit that was fenced (paused), lost and
            # assigned again gets a new state (high watermark unknown) while the broker's incremental fetch session
            # leaves the unchanged partition out of every response. Ask the broker (ListOffsets; with exactly once
            # the last stable offset), at most once a second per topic-partition.
            if now - unit.gap_checked.get(topic, 0.0) < 1.0:
                return False
            unit.gap_checked[topic] = now
            try:
                hw = self.consumer.end_offsets([tp]).get(tp)
            except kerrors.KafkaError:
                return False
            if hw is None:
                return False
            return pos >= hw
        if pos >= hw:
            return True
        # The fetch position can be past our last record (transaction markers, compacted gaps): check it,
        # at most once a second per topic-partition.
        if now - unit.gap_checked.get(topic, 0.0) < 1.0:
            return False
        unit.gap_checked[topic] = now
        try:
            fetch_pos = self.consumer.position(tp, timeout_ms=0)
        except kerrors.KafkaError:
            return False
        if fetch_pos is not None and fetch_pos > pos:
            unit.merge.set_position(topic, fetch_pos)
            return fetch_pos >= hw
        return False

    def _materialize(self, unit: _Unit) -> Any:
        """The unit's engine, built (and its checkpoint restored) on first use, in the main thread."""
        if unit.engine is None:
            if unit.snapshot is None and self._spare is not None:
                engine, self._spare = self._spare, None
            else:
                engine = self._engine_cls(self.settings, clock=self.clock)
            if unit.snapshot is not None:
                engine.restore(unit.snapshot)
                unit.snapshot = None
            if unit.rules_at_open is not None and engine.rules_version != unit.rules_at_open:
                self._apply_recorded_switch(unit.merge.partition, engine, unit.rules_at_open)
            unit.engine = engine
        return unit.engine

    # -- live rule packs -------------------------------------------------------------------------------------

    def _rules_params(self, version: int | None) -> dict[str, Any]:
        if version is None:
            return dict(self.settings.detectors.get("rules") or {})
        if self.rules is None:
            raise ConfigError(f"a rule pack switch to version {version} is recorded, but no rule pack store is "
                              "configured (sinks.database, kafka.rules_poll_interval_s > 0) to read it from")
        try:
            return self.rules.params(version)
        except LookupError as e:
            raise ConfigError(f"rule pack switch to version {version}: {e}") from None

    def _apply_recorded_switch(self, p: int, engine: Any, version: int) -> None:
        """Switch ``engine`` to ``version`` where a recorded switch says so (a predecessor's, or this unit's own
        before a restart): it must be applied, or the unit would not reproduce what was published."""
        try:
            engine.set_rules(self._rules_params(version), version)
        except ConfigError as e:
            raise ConfigError(f"unit {p}: cannot apply the recorded rule pack switch to version {version}: {e}") \
                from None
        _log(logging.INFO, "rules_switched", unit=p, version=version, recorded=True)

    def _maybe_switch(self, unit: _Unit) -> None:
        """At a checkpoint boundary of ``unit`` (nothing processed since its last checkpoint, no recorded decision
        pending): if the store's active rule pack differs from the unit's, record the switch at the unit's next
        offsets (before anything is processed under it), then switch the engine's rules."""
        unit.rules_due = False
        want = self.rules.version if self.rules is not None else None
        engine = unit.engine
        if want is None or engine is None or engine.rules_version == want or want in self._refused_rules:
            return
        merge = unit.merge
        at = merge.next_offsets()
        if at is None:
            unit.rules_due = True
            return
        old = engine.rules_version
        try:
            engine.set_rules(self._rules_params(want), want)
        except CheckpointError as e:  # the store is down: next boundary
            _log(logging.WARNING, "rules_poll_failed", unit=merge.partition, version=want,
                 error=f"{type(e).__name__}: {e}"[:300])
            return
        except ConfigError as e:
            self._refused_rules.add(want)
            _log(logging.ERROR, "rules_refused", unit=merge.partition, version=want, running=old,
                 error=str(e)[:300], note="the unit keeps the rules it runs")
            return
        switch = {**at, RULES_KEY: want}
        if self.decisions is None:
            _log(logging.WARNING, "switch_not_recorded", unit=merge.partition,
                 note="the state store cannot record decisions; a replay may apply the rule pack elsewhere")
        else:
            try:
                if unit.epoch is not None:
                    self.decisions.append_decision(self.group, merge.partition, switch, epoch=unit.epoch)
                else:
                    self.decisions.append_decision(self.group, merge.partition, switch)
            except DecisionFenced as e:
                self.stats.decisions_fenced += 1
                self._fence(merge.partition, e, what="decision_fenced")
                return
            except CheckpointError as e:
                engine.set_rules(self._rules_params(old), old)  # not recorded: not switched; next boundary
                self.stats.observe_checkpoint_failure(e)
                _log(logging.WARNING, "switch_failed", unit=merge.partition, version=want,
                     error=f"{type(e).__name__}: {e}")
                return
        unit.dirty = True  # the next checkpoint saves the state with its version
        self.stats.rules_switches += 1
        _log(logging.INFO, "rules_switched", unit=merge.partition, version=want, previous=old,
             offsets=_fmt_offsets(at))

    def _process(self) -> None:
        for unit in list(self.units.values()):
            if self.transactional is not None and unit.txn is None:
                continue  # its transaction is not open yet: nothing may be processed
            self._materialize(unit)
            if unit.rules_due and not unit.dirty and not unit.merge.cuts:
                # (no batch of this unit is in hand: one makes it dirty when it is handed to the engine thread)
                self._maybe_switch(unit)
                if self.units.get(unit.merge.partition) is not unit:
                    continue  # fenced: it stepped down from the unit
            while True:
                if not self._process_unit(unit):
                    break
                # release() stopped at a recorded rule pack switch: what it released ran on the old rules
                self._drain()
                self._apply_recorded_switch(unit.merge.partition, unit.engine, unit.merge.reached)  # type: ignore[arg-type]
                unit.merge.reached = None
                unit.dirty = True
        self._observe_buffered()

    def _observe_buffered(self) -> None:
        """The records the units' merges hold (gauge and peak)."""
        buffered = sum(u.merge.buffered for u in self.units.values())
        self.stats.buffered = buffered
        self.stats.buffered_peak = max(self.stats.buffered_peak, buffered)

    def _process_unit(self, unit: _Unit) -> bool:
        """Release and process what the unit's merge allows; True if it stopped at a recorded rule pack switch."""
        items, dead = unit.merge.release()
        if items or dead:
            unit.waiting_since = None
        else:
            items, dead = self._idle_decision(unit)
            if self.units.get(unit.merge.partition) is not unit:
                return False  # fenced: it stepped down from the unit
        if dead:
            for d in dead:
                for dl in self.dl_sinks:
                    dl.add(d)
                if unit.txn is not None and not _published(unit, split_source(d.source)[0], d.position):
                    unit.txn.add_dead_letter(d)
            self.stats.invalid += len(dead)
            unit.dirty = True
            for d in dead:
                _log(
                    logging.WARNING,
                    "dead_letter",
                    source=d.source,
                    offset=d.position,
                    reason=d.reason[:200],
                )
        if items:
            unit.dirty = True
            if self._engine_threads and all(type(it[1]) is bytes for it in items):
                lane = self._lane(unit)
                job = self._engine_threads[lane].submit(self._score, unit, items)
                self._in_flight.append((unit, items, job, lane))
            else:
                self._drain()  # in order: the unit's (and every) earlier batch first
                self._take(unit, items, self._score(unit, items))
        return unit.merge.reached is not None

    def _lane(self, unit: _Unit) -> int:
        """The engine thread for ``unit``'s next batch: the one scoring its batches in hand, else the one with
        the fewest batches in hand not done."""
        busy = [0] * len(self._engine_threads)
        for u, _, job, lane in reversed(self._in_flight):
            if u is unit and not job.done():
                return lane
            busy[lane] += not job.done()
        return busy.index(min(busy))

    def _score(self, unit: _Unit, items: list[Any]) -> list[Any]:
        """Run released ``items`` through the unit's engine, in ``batch_size`` chunks: their outcomes (on the
        unit's engine thread with ``kafka.overlap``; it touches nothing but the unit's engine)."""
        part = unit.merge.partition
        engine: Any = unit.engine
        outcomes: list[Any] = []
        for i in range(0, len(items), self.batch_size):
            chunk = items[i : i + self.batch_size]
            if self.raw and all(type(it[1]) is bytes for it in chunk):
                outcome, refused = engine.process_raw(
                    [it[1] for it in chunk], lambda j, c=chunk, p=part: Provenance(c[j][4], p, c[j][0]))
                if refused:  # the merge took in only records the same decoder accepted
                    raise RuntimeError(f"unit {part}: the core refused records it had accepted: {refused[:3]}")
            elif self.raw:  # a record the core left to Python: process_raw would end its explain stretch
                # there (alert reasons read the models at that point), so the batch takes the event path
                outcome = engine.process([
                    it[1] if type(it[1]) is not bytes
                    else decode_record(it[4], part, it[0], it[1]) for it in chunk])
            else:
                outcome = engine.process([it[1] for it in chunk])
            outcomes.append(outcome)
        return outcomes

    def _take(self, unit: _Unit, items: list[Any], outcomes: list[Any]) -> None:
        """Hand a scored batch's alerts to the sinks and the unit's transaction, in order, and count it."""
        n_alerts = 0
        for outcome in outcomes:
            for a in outcome.alerts:
                for s in self.alert_sinks:
                    s.add(a)
                if unit.txn is not None and not _published(unit, a.topic, a.offset):
                    unit.txn.add(a)
            n_alerts += len(outcome.alerts)
        now_ms = time.time() * 1000.0
        stamps = np.fromiter((it[2] for it in items), np.float64, len(items))
        self.stats.observe_latency_array((now_ms - stamps[stamps >= 0]) / 1000.0)
        self.stats.events += len(items)
        self.stats.alerts += n_alerts

    def _drain(self) -> None:
        """Wait for the engine threads' batches and take them, in the order they were released (a no-op without
        ``kafka.overlap`` or with nothing in hand). An engine error is raised here, after the batches before it
        were taken."""
        while self._in_flight:
            unit, items, job, _ = self._in_flight[0]
            outcomes = job.result()
            self._in_flight.pop(0)
            self._take(unit, items, outcomes)

    def _abandon(self) -> None:
        """After an error: wait for the engine threads to be idle (an engine is never read while it runs) and drop
        what they scored; the units' state is not saved any more (``poisoned``)."""
        wait([job for _, _, job, _ in self._in_flight])  # their errors are dropped: the run's own is raised already
        self._in_flight.clear()

    def shutdown(self) -> None:
        """Stop the engine threads (after :meth:`run` returned or raised)."""
        if self._engine_threads:
            self._abandon()
            for lane in self._engine_threads:
                lane.shutdown(wait=True)

    def _idle_decision(self, unit: _Unit) -> tuple[list[Any], list[Any]]:
        """When the merge has waited ``idle_timeout_s`` for empty topics that are all caught up (at their high
        watermark), decide that they ended where they stand: record the resulting cut durably (before any
        record it releases is processed, so before any alert it causes exists), then release up to it.

        The decision about a topic holds while it stays silent and caught up: the next releases that need it
        are decided (and recorded) at once, not after another timeout, so a silent labels topic costs one
        recorded cut per step instead of ``idle_timeout_s`` of latency per step."""
        merge = unit.merge
        if merge.cuts:
            # Re-applying a predecessor's cut: an empty topic may be past its last record only by a gap
            # (transaction markers, compaction) that its fetch position shows; the cut needs that position.
            for t in merge.topics:
                if not merge.queues[t]:
                    self._at_end(unit, t)
            return merge.release()
        waiting = merge.waiting()
        now = time.monotonic()
        unit.idle = {t: p for t, p in unit.idle.items() if not merge.queues[t] and merge.positions[t] == p}
        if not waiting:
            unit.waiting_since = None
            return [], []
        still_idle = all(t in unit.idle for t in waiting)
        # Over max_buffered_events the unit cannot afford to wait out the timeout (its busy partitions are
        # paused, memory must stay bounded): a caught-up topic is decided idle at once. Still recorded.
        pressed = merge.buffered > self.max_buffered
        if not pressed:
            if unit.waiting_since is None:
                unit.waiting_since = now
            # The first decision on a topic waits idle_timeout_s; while it stays silent, one decision per
            # idle_decision_interval_s gathers what arrived meanwhile (fewer, larger cuts).
            wait = self.idle_interval if still_idle else self.idle_timeout
            due = max(unit.waiting_since, unit.decided_at if still_idle else 0.0) + wait
            if now < due:
                self._wake_at = due if self._wake_at is None else min(self._wake_at, due)
                return [], []
        if not all(self._at_end(unit, t) for t in waiting):
            return [], []  # an empty topic still has records to fetch: wait for them, not a decision
        cut = merge.plan_cut(waiting)
        if cut is None:
            return [], []
        if self.decisions is None:
            _log(logging.WARNING, "decision_not_recorded", unit=merge.partition,
                 note="the state store cannot record merge decisions; a replay may order records differently")
        else:
            try:
                if unit.epoch is not None:
                    self.decisions.append_decision(self.group, merge.partition, cut, epoch=unit.epoch)
                else:
                    self.decisions.append_decision(self.group, merge.partition, cut)
            except DecisionFenced as e:
                # Another member claimed the unit's decision log since this one did: it owns the unit now. Nothing
                # was recorded; step down without processing, publishing or saving anything more of it.
                self.stats.decisions_fenced += 1
                self._fence(merge.partition, e, what="decision_fenced")
                return [], []
            except CheckpointError as e:
                self.stats.observe_checkpoint_failure(e)
                _log(logging.WARNING, "decision_failed", unit=merge.partition, error=f"{type(e).__name__}: {e}",
                     retry_in_s=self.idle_timeout)
                unit.waiting_since = now
                return [], []
        unit.waiting_since = None
        unit.decided_at = now
        unit.idle.update({t: merge.positions[t] for t in waiting})  # type: ignore[misc]
        merge.add_cut(cut)
        _log(logging.DEBUG, "decision", unit=merge.partition, ended=",".join(waiting), cut=_fmt_offsets(cut))
        return merge.release()

    # -- checkpoints -----------------------------------------------------------------------------------------

    def _checkpoint(
        self, units: Iterable[int], *, reason: str
    ) -> tuple[dict[TopicPartition, OffsetAndMetadata], list[tuple[int, SinkError]]]:
        """Flush every sink, then per unit: commit its transaction (``exactly_once``) and save its state.

        Returns the offsets still to commit (at least once: step 3; exactly once: none, they went with the
        transactions) and the units whose transaction failed, with why (the caller rewinds or drops them). A
        sink or state store failure raises."""
        t0 = time.perf_counter()
        self._drain()  # every batch released so far is scored and its alerts handed over before the flush
        for s in self.alert_sinks:
            s.flush()
        for d in self.dl_sinks:
            d.flush()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        failed: list[tuple[int, SinkError]] = []
        saved = 0
        todo: list[tuple[int, PartitionUnit, dict[str, int]]] = []
        commits: dict[int, dict[str, int]] = {}  # unit -> the offsets its transaction commits
        for p in units:
            unit = self.units.get(p)
            if unit is None:
                continue
            nxt = unit.merge.next_offsets()
            if nxt is None:
                continue  # positions not known yet, so nothing was processed past a known point
            if self.transactional is not None:
                if unit.txn is None:
                    continue  # not started: nothing processed, nothing to commit or save
                # Never behind what a committed transaction already published: a unit restored from a checkpoint
                # that lags Kafka's committed offsets (its last save was lost) re-processes up to them without
                # publishing; committing its own, lower offsets would move them back, and the next owner would
                # publish those records' alerts a second time.
                nxt_commit = {t: max(off, unit.published.get(t, off)) for t, off in nxt.items()}
                if unit.txn.open or nxt_commit != unit.committed:
                    commits[p] = nxt_commit
            todo.append((p, unit, nxt))
        # The dirty units' snapshots start now, on threads, and overlap the transactions' commits (broker round
        # trips); a unit's state is saved only once its commit succeeded (the checkpoint order).
        snapshots = _Snapshots([(p, unit, nxt) for p, unit, nxt in todo if unit.dirty and unit.engine is not None],
                               threads=usable_cpus() if self.raw else 0)
        try:
            outcome = self._commit_all({p: (self.units[p], c) for p, c in commits.items()})
            to_save: set[int] = set()
            for p, unit, nxt in todo:
                if p in commits:
                    err = outcome[p]
                    if isinstance(err, SinkError):
                        failed.append((p, err))
                        continue  # neither committed nor saved: the unit is rewound or dropped
                    if err is not None:
                        raise err
                    unit.committed = dict(commits[p])
                    self.stats.transactions += 1
                if unit.dirty and unit.engine is not None:
                    to_save.add(p)
                if self.transactional is None:
                    for t, off in nxt.items():
                        offsets[unit.tps[t]] = OffsetAndMetadata(off, "", -1)
            for (p, unit, nxt), state in snapshots.taken(to_save):
                self.store.save(self.group, p, Checkpoint(offsets=nxt, state=state, config_hash=self.config_hash,
                                                          events=unit.engine.events_seen))  # type: ignore[union-attr]
                unit.dirty = False
                saved += 1
        finally:
            snapshots.close()
        dt = time.perf_counter() - t0
        if not failed:
            self.stats.observe_checkpoint(dt)
        _log(logging.DEBUG, "checkpoint", reason=reason, saved=saved, failed=len(failed), seconds=dt)
        return offsets, failed

    # -- exactly once: transactions, rewinds, fencing --------------------------------------------------------

    def _group_metadata(self) -> Any:
        """The consumer's group metadata for ``send_offsets_to_transaction`` (KIP-447: the broker refuses the
        offsets of a member whose generation is over); the bare group id before the first join."""
        try:
            md = self.consumer.group_metadata()
        except Exception:  # noqa: BLE001 - an older client: the group id still works
            return self.group
        if getattr(md, "generation_id", -1) > 0 and getattr(md, "member_id", ""):
            return md
        return self.group

    def _generation(self) -> int:
        md = self._group_metadata()
        return int(getattr(md, "generation_id", -1))

    def _start_transactions(self) -> None:
        """Open the transaction of every unit that has none: its ``init_transactions`` fences the previous owner
        of the unit's transactional id and settles the transaction it left (aborted, or committed if it had
        begun committing). Only then are Kafka's committed offsets final: the unit starts from its checkpoint,
        and records below the committed offsets are re-processed without being published again."""
        assert self.transactional is not None
        reset = str(self.settings.kafka.get("auto_offset_reset", "earliest"))
        need = [(p, unit) for p, unit in list(self.units.items()) if unit.txn is None]
        # at once: each init_transactions finds the coordinator and fences the id, a producer of its own
        opened = _at_once({p: functools.partial(self.transactional.open, transactional_id(self.group, p))
                           for p, _ in need}, "txn-init")
        try:
            self._take_transactions(need, opened, reset)
        finally:
            # whatever left early (an error stops the run): close each one opened and not handed to its unit
            for p, unit in need:
                got = opened.pop(p, None)
                if got is not None and not isinstance(got, BaseException) and unit.txn is not got:
                    got.close(0.0)

    def _take_transactions(self, need: Sequence[tuple[int, _Unit]], opened: dict[int, Any], reset: str) -> None:
        """Hand each unit its opened transaction and settle its start positions (see :meth:`_start_transactions`)."""
        for p, unit in need:
            got = opened[p]
            if isinstance(got, (SinkError, SourceError)) and got.retriable:
                # A broker down (no producer could connect: SourceError) or not answering init_transactions in
                # time (SinkError): the unit waits without a transaction, and the next step tries again.
                _log(logging.WARNING, "transaction_init_failed", unit=p, error=f"{type(got).__name__}: {got}")
                continue
            if isinstance(got, BaseException):
                raise got
            txn = got
            try:
                committed = {t: self.consumer.committed(tp, metadata=True, timeout_ms=self.commit_timeout_ms)
                             for t, tp in unit.tps.items()}
                begin = self.consumer.beginning_offsets(list(unit.tps.values())) if unit.pending else {}
            except kerrors.KafkaError as e:
                _log(logging.INFO, "position_lookup_failed", unit=p, error=f"{type(e).__name__}: {e}")
                opened[p] = None  # closed here, retried at the next step
                txn.close(0.0)
                continue
            unit.txn = txn
            for t, om in committed.items():
                off = getattr(om, "offset", om)
                if off is None or off < 0:
                    continue
                if t not in unit.pending:
                    if off > unit.start.get(t, off):
                        unit.published[t] = off  # a transaction committed past the checkpoint: its save was lost
                    continue
                tp = unit.tps[t]
                if getattr(om, "metadata", "") == EOS_OFFSETS_MARK and reset == "earliest":
                    # Committed by a riskstream transaction, but no checkpoint: the state save after it was lost.
                    # Rebuild the state from the start; what was committed is not published again.
                    first = begin.get(tp, 0)
                    self._seek(tp, first)
                    unit.merge.set_position(t, first)
                    if off > first:
                        unit.published[t] = off
                else:
                    self._seek(tp, off)
                    unit.merge.set_position(t, off)
                unit.pending.discard(t)
            unit.committed = {t: getattr(committed[t], "offset", -1) for t in unit.tps}
            _log(logging.INFO, "transaction_ready", unit=p, transactional_id=txn.transactional_id,
                 published=_fmt_offsets(unit.published) or "-")

    def _retire(self, unit: _Unit | None) -> None:
        """Hand a dropped unit's transaction to the main loop to close (its open transaction is aborted by the
        unit's next producer, or by the broker after ``transaction_timeout_ms``)."""
        if unit is not None and unit.txn is not None:
            self.retired.append(unit.txn)
            unit.txn = None

    def _drop(self, unit: _Unit | None) -> None:
        """Give a unit up (revoked, rewound or fenced): retire its transaction, and free its compiled engine's
        state on a thread of its own (``CoreEngine.discard``, with the GIL released: 0.1-0.25 s a unit of
        ~50,000 events, which a revoke, so the group's rebalance, or the stop would otherwise wait for)."""
        self._retire(unit)
        if unit is None or unit.engine is None:
            return
        engine, unit.engine = unit.engine, None
        discard = getattr(getattr(engine, "core", None), "discard", None)
        if discard is not None:
            # Not a daemon (which it would be by default when made on kafka-python's IO thread, in a revoke): the
            # interpreter's exit waits for it. A daemon thread still freeing when the interpreter finalizes is
            # ended by pthread_exit through the core's frames: the process aborts.
            threading.Thread(target=discard, name=f"riskstream-discard-{unit.merge.partition}", daemon=False).start()

    def _close_retired(self) -> None:
        while self.retired:
            self.retired.pop().close(1.0)

    def _commit_all(self, commits: Mapping[int, tuple[PartitionUnit, Mapping[str, int]]]
                    ) -> dict[int, BaseException | None]:
        """Commit each unit's transaction with its offsets, the units at once (each has its own producer, so the
        broker round trips overlap): per unit ``None`` (committed) or the exception its commit raised."""
        group = self._group_metadata() if commits else None

        def commit(unit: PartitionUnit, off: Mapping[str, int]) -> None:
            assert unit.txn is not None
            unit.txn.commit({unit.tps[t]: OffsetAndMetadata(o, EOS_OFFSETS_MARK, -1) for t, o in off.items()}, group)

        return _at_once({p: functools.partial(commit, u, off) for p, (u, off) in commits.items()}, "commit")

    def close_transactions(self) -> None:
        """Close every transaction (at the end of a run, after the last checkpoint)."""
        for unit in self.units.values():
            self._retire(unit)
        self._close_retired()

    def _rewind(self, p: int, error: BaseException) -> None:
        """Roll unit ``p`` back to its last checkpoint after its transaction failed: everything it processed
        since was in that transaction, which is never committed now; it is processed again in a new one."""
        self._drain()
        self._drop(self.units.pop(p, None))
        self.stats.rewinds += 1
        _log(logging.WARNING, "rewind", unit=p, error=f"{type(error).__name__}: {error}",
             note="the transaction is aborted; the unit resumes from its last checkpoint")
        self._open_unit(p)
        self.stats.units = tuple(sorted(self.units))

    def _fence(self, p: int, error: BaseException, *, what: str = "fenced") -> None:
        """Drop unit ``p``, without saving: another producer holds its transactional id (a member that took the
        unit over while this one stalled), or the broker aborted its transaction, or another member claimed its
        decision log (``what = "decision_fenced"``). Its partitions stay paused until a rebalance says who owns
        them (see :meth:`_check_fenced`)."""
        self._drain()
        self._drop(self.units.pop(p, None))
        self.fenced[p] = (self._generation(), time.monotonic())
        self.stats.fenced += 1
        self.stats.units = tuple(sorted(self.units))
        _log(logging.WARNING, what, unit=p, error=f"{type(error).__name__}: {error}",
             note="another member owns the unit now; dropped without saving or publishing")

    def prune_decisions(self) -> int:
        """Delete the recorded cuts of every owned unit that lie below its topics' log-start offsets (no reader
        can need them: a replay or a successor starts at or past the log start, where they are passed); returns
        how many went. A failure is logged and left to the next round."""
        units = {p: u for p, u in self.units.items() if not u.pending}
        if not units:
            return 0
        try:
            begin = self.consumer.beginning_offsets([tp for u in units.values() for tp in u.tps.values()])
        except kerrors.KafkaError as e:
            _log(logging.INFO, "decision_prune_failed", error=f"{type(e).__name__}: {e}")
            return 0
        total = 0
        for p, unit in units.items():
            log_start = {t: begin[tp] for t, tp in unit.tps.items() if begin.get(tp) is not None}
            try:
                n = self.decisions.prune_decisions(self.group, p, log_start)
            except CheckpointError as e:
                _log(logging.INFO, "decision_prune_failed", unit=p, error=f"{type(e).__name__}: {e}")
                continue
            if n:
                total += n
                self.stats.decisions_pruned += n
                _log(logging.INFO, "decisions_pruned", unit=p, pruned=n, log_start=_fmt_offsets(log_start))
        return total

    def _check_fenced(self) -> None:
        """A fenced unit whose partitions this member still holds a session timeout later, in the same
        generation, is really still its own (the broker had aborted a transaction open past its timeout; a
        zombie would have heard of its eviction by then): open it again."""
        if not self.fenced:
            return
        now = time.monotonic()
        assignment = self.consumer.assignment()
        gen = self._generation()
        for p, (fenced_gen, since) in list(self.fenced.items()):
            if now - since < self.session_timeout_s:
                continue
            del self.fenced[p]
            if gen == fenced_gen and all(TopicPartition(t, p) in assignment for t in self.topics):
                _log(logging.INFO, "fence_cleared", unit=p, note="still assigned; resuming from its checkpoint")
                self._open_unit(p)
                self.stats.units = tuple(sorted(self.units))

    def _recover(self, failed: Sequence[tuple[int, SinkError]]) -> None:
        for p, e in failed:
            if isinstance(e, Fenced):
                self._fence(p, e)
            elif e.retriable:
                self._rewind(p, e)
            else:
                raise e

    def _commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata], reason: str) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(dict(offsets), timeout_ms=self.commit_timeout_ms)
        except kerrors.KafkaError as e:  # CommitFailedError / RebalanceInProgressError during a rebalance
            self.stats.commit_failures += 1
            _log(
                logging.INFO,
                "commit_failed",
                reason=reason,
                error=f"{type(e).__name__}: {e}",
                note="state store offsets stay authoritative",
            )

    def try_checkpoint(self, reason: str) -> bool:
        """A full checkpoint of every owned unit; on a retriable failure, pause and retry with backoff.

        With ``exactly_once``, a unit whose transaction failed is rewound to its last checkpoint (or dropped if
        it was fenced); when a sink or the state store fails, every unit with an open transaction is rewound,
        so that no transaction stays open (and holds back ``read_committed`` readers) while the retries last."""
        now = time.monotonic()
        # The scored batches first, outside the retry below: an error taking them (a sink's add, the engine) stops
        # the run, as it would have without the engine thread; retried as a checkpoint failure, the rest of a
        # batch whose records the merge has passed would be lost.
        self._drain()
        try:
            offsets, failed = self._checkpoint(sorted(self.units), reason=reason)
            if failed:
                self._recover(failed)
                raise failed[0][1]
        except (SinkError, CheckpointError) as e:
            self.stats.observe_checkpoint_failure(e)
            if isinstance(e, SinkError) and not e.retriable and not isinstance(e, Fenced):
                raise
            if self.transactional is not None:
                for p, unit in list(self.units.items()):
                    if unit.txn is not None and unit.txn.open:
                        self._rewind(p, e)
            self.failing = True
            self._next_checkpoint = now + self._backoff
            _log(
                logging.WARNING,
                "checkpoint_failed",
                reason=reason,
                error=f"{type(e).__name__}: {e}",
                retry_in_s=self._backoff,
            )
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
            return False
        if self.failing:
            _log(logging.INFO, "checkpoint_recovered", reason=reason)
        self.failing = False
        self._backoff = _FIRST_BACKOFF_S
        self._next_checkpoint = now + self.interval
        self._commit(offsets, reason)
        if self.rules is not None:
            self.rules.poll()
            for unit in self.units.values():
                unit.rules_due = True
        return True

    def final_checkpoint(self, deadline_s: float = 60.0) -> None:
        """The stop checkpoint, retried until it succeeds or ``deadline_s`` passes (then
        :class:`SinkError`)."""
        end = time.monotonic() + deadline_s
        while not self.try_checkpoint("stop"):
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise SinkError(
                    "could not checkpoint before stopping; the next start resumes from the last checkpoint",
                    retriable=True,
                )
            time.sleep(max(0.0, min(self._next_checkpoint - time.monotonic(), remaining)))

    # -- backpressure and lag --------------------------------------------------------------------------------

    def _apply_pauses(self) -> None:
        want: set[TopicPartition] = {TopicPartition(t, p) for p in self.fenced for t in self.topics}
        for unit in self.units.values():
            if self.failing:
                want.update(unit.tps.values())
                continue
            n = unit.merge.buffered
            unit.backpressure = n > self.max_buffered or (unit.backpressure and n > self.max_buffered // 2)
            if unit.backpressure:
                # Never pause an empty queue: the merge may be waiting for exactly that topic.
                want.update(tp for t, tp in unit.tps.items() if unit.merge.queues[t])
        # Only partitions still assigned: pause()/resume() of any other raises KeyError in kafka-python (a
        # fenced zombie's partitions, once its eviction is noticed).
        assigned = self.consumer.assignment()
        want &= assigned
        pause = want - self.paused
        resume = (self.paused - want) & assigned
        if pause:
            self.consumer.pause(*pause)
            self.stats.pauses += len(pause)
        if resume:
            assigned = self.consumer.assignment()
            resume = {tp for tp in resume if tp in assigned}  # kafka-python raises for one no longer assigned
            if resume:
                self.consumer.resume(*resume)
        if pause or resume:
            _log(logging.DEBUG, "pause", paused=len(want), newly_paused=len(pause), resumed=len(resume))
        self.paused = want
        self.stats.paused_partitions = len(want)

    def _update_lag(self) -> None:
        lag: dict[str, int] = {}
        for unit in self.units.values():
            nxt = unit.merge.next_offsets() or {}
            for t, tp in unit.tps.items():
                hw = self.consumer.highwater(tp)
                if hw is not None and t in nxt:
                    lag[f"{t}/{tp.partition}"] = max(0, hw - nxt[t])
        self.stats.set_lag(lag)


def _published(unit: _Unit, topic: str | None, offset: int | None) -> bool:
    """Whether a record's alerts and dead letter are already on the committed topics (see ``_Unit.published``)."""
    bound = unit.published.get(topic) if topic is not None else None
    return bound is not None and offset is not None and offset < bound


def _fmt_offsets(offsets: Mapping[str, int]) -> str:
    return ",".join(f"{t}:{o}" for t, o in offsets.items())


def check_copartitioned(consumer: KafkaConsumer, topics: Sequence[str], *, wait_s: float = 30.0) -> int:
    """The common partition count of ``topics``; a missing topic is a :class:`SourceError` (after waiting up
    to ``wait_s`` for it to appear), unequal counts a :class:`ConfigError`."""
    end = time.monotonic() + wait_s
    while True:
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}
        missing = [t for t, n in counts.items() if n == 0]
        if not missing:
            break
        if time.monotonic() >= end:
            raise SourceError(
                f"Kafka topic(s) {', '.join(missing)} do not exist; create them co-partitioned "
                "(same partition count) before starting",
                retriable=True,
            )
        time.sleep(0.5)
    if len(set(counts.values())) != 1:
        raise ConfigError(
            "input topics must be co-partitioned (equal partition counts, keyed by user id): "
            + ", ".join(f"{t}={n}" for t, n in counts.items())
        )
    return next(iter(counts.values()))


def run_consumer(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    group_id: str | None = None,
    bootstrap: str | None = None,
    event_time_clock: bool = False,
    store: StateStore | None = None,
    sinks: Sequence[Sink] | None = None,
    dead_letters: Sequence[DeadLetterSink] | None = None,
    stats: RuntimeStats | None = None,
    install_signal_handlers: bool = False,
    log_every_s: float = 30.0,
) -> RuntimeStats:
    """Run a consumer-group member until ``stop`` is set (or SIGTERM/SIGINT with ``install_signal_handlers``).

    Parameters
    ----------
    settings
        ``[kafka]`` names the topics, group and client settings; ``[state]`` the state store; ``[sinks]`` the
        SQL / JSONL outputs.
    stop
        Set it to stop gracefully: the current batch finishes, a checkpoint is taken, the group is left.
    group_id, bootstrap
        Override ``kafka.group_id`` / ``kafka.bootstrap_servers``.
    event_time_clock
        Alerts' ``detected_at`` is the event time (byte-comparable with a replay) instead of the wall clock.
    store
        The state store; default from ``[state]``.
    sinks, dead_letters
        Alert and dead-letter sinks (the caller closes them); default from the settings (alerts topic, SQL,
        JSONL; dead-letter topic, JSONL), closed on return.
    stats
        Counters to update (e.g. shared with a metrics exporter); a new one otherwise.

    Returns the final :class:`RuntimeStats`. Raises :class:`~stream.errors.SourceError` if the broker or a
    topic
    is missing, :class:`~stream.errors.ConfigError` for non-co-partitioned topics or a checkpoint made under
    another detection configuration, :class:`~sinks.errors.SinkError` if the stop checkpoint cannot complete.
    """
    stop = stop or threading.Event()
    stats = stats or RuntimeStats()
    group = group_id or str(settings.kafka["group_id"])
    topics = input_topics(settings)
    store = store if store is not None else open_state_store(settings.state, key=settings.state_key,
                                                              database=settings.sinks.get("database") or None)
    clock: Callable[[Event], float] | None = None if event_time_clock else (lambda e: time.time())
    restore_signals = _install_signals(stop) if install_signal_handlers else None
    # Exactly once: read committed offsets only once they are stable (no transaction pending on them), and input
    # records only once committed, should a producer write them in transactions.
    exactly_once = bool(settings.kafka.get("exactly_once"))
    consumer = make_consumer(settings, group_id=group, bootstrap=bootstrap,
                             **({"isolation_level": "read_committed"} if exactly_once else {}))
    outputs = Outputs()
    runtime: _Runtime | None = None
    rules = None
    try:
        n = check_copartitioned(consumer, topics)
        if sinks is None or dead_letters is None:
            outputs = open_outputs(settings, kafka=True, bootstrap=bootstrap, alerts=sinks is None,
                                   refused=dead_letters is None)
            sinks = outputs.alerts if sinks is None else sinks
            dead_letters = outputs.dead_letters if dead_letters is None else dead_letters
        from stream.kafka.liverules import open_rule_watch

        rules = open_rule_watch(settings)  # after the outputs: the SQL sink has migrated the store
        runtime = _Runtime(
            settings,
            consumer,
            group=group,
            store=store,
            alert_sinks=sinks,
            dead_letter_sinks=dead_letters,
            clock=clock,
            stats=stats,
            stop=stop,
            log_every_s=log_every_s,
            transactional=outputs.transactional,
            rules=rules,
        )
        _log(
            logging.INFO,
            "start",
            group=group,
            topics=",".join(topics),
            partitions=n,
            config_hash=settings.config_hash,
            store=repr(store),
            sinks=",".join(type(s).__name__ for s in sinks),
            exactly_once=outputs.transactional is not None,
        )
        consumer.subscribe(list(topics), listener=_Listener(runtime))
        prime_group_metadata(consumer)  # no second rebalance at every start
        runtime.run()
        consumer.close()  # the revoke listener checkpoints (nothing new) and commits; then the group is left
        if runtime.fatal is not None:
            raise runtime.fatal
        _log(
            logging.INFO,
            "stopped",
            **{
                k: v
                for k, v in stats.snapshot().items()
                if k in ("records_in", "events", "invalid", "alerts", "checkpoints")
            },
        )
        return stats
    finally:
        try:
            consumer.close()
        except Exception:  # noqa: BLE001 - already closed or the broker is gone; leaving the group is best effort
            pass
        if runtime is not None:
            runtime.shutdown()
            runtime.close_transactions()
        if rules is not None:
            rules.close()
        outputs.close()
        if restore_signals is not None:
            restore_signals()


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set ``stop``; a second one restores the default handlers (so a third kills)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            for sig, h in previous.items():
                signal.signal(sig, h)
        stop.set()
        _log(logging.INFO, "signal", signal=signal.Signals(signum).name, action="stopping after this batch")

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


# --- bounded replay of Kafka topics -------------------------------------------------------------------------
