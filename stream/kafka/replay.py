"""Bounded replay of Kafka topics: the runtime's partition units and merge over an offset range, no group."""


from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sinks.base import Sink
from sinks.deadletter import DeadLetterSink
from stream.config import Settings
from stream.errors import SourceError
from stream.events import Event
from stream.kafka.client import (
    TopicPartition,
    decode_record,
    input_topics,
    make_consumer,
)
from stream.kafka.units import RULES_KEY, PartitionUnit

if TYPE_CHECKING:
    from stream.pipeline import Outcome
    from stream.sources import Batch

__all__ = ["replay_kafka", "KafkaReplayResult"]


class KafkaReplayResult(dict):
    """The replay report (a dict, like :class:`stream.replay.ReplayResult`) plus the engines, one per unit."""

    engines: dict[int, Any]


OffsetSpec = int | Mapping[Any, int] | None


def _offset_for(spec: OffsetSpec, tp: TopicPartition) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    for key in (tp, (tp.topic, tp.partition), f"{tp.topic}/{tp.partition}", tp.partition):
        if key in spec:
            return int(spec[key])
    return None


def replay_kafka(
    settings: Settings,
    topics: Sequence[str] | None = None,
    *,
    from_offsets: OffsetSpec = None,
    to_offsets: OffsetSpec = None,
    from_timestamp: float | None = None,
    to_timestamp: float | None = None,
    bootstrap: str | None = None,
    sinks: Sequence[Sink] = (),
    dead_letters: DeadLetterSink | None = None,
    on_batch: Callable[[Batch, Outcome], None] | None = None,
    event_time_clock: bool = True,
    flush_every: int = 50,
    group: str | None = None,
    decisions: Mapping[int, Sequence[Mapping[str, int]]] | None = None,
    rules_db: str | None = None,
) -> KafkaReplayResult:
    """Run a bounded offset range of Kafka topics through the runtime's unit/merge logic, without a group.

    The result is what ``riskstream run`` produces over the same records: one engine per partition number,
    records merged by ``(event ts, topic index in config order, offset)``.

    Parameters
    ----------
    topics
        Topics to read (default: the configured input topics). They are put in configuration order (unknown
        topics after, in the given order), because the order decides ties between equal timestamps.
    from_offsets, to_offsets
        Start (inclusive) and end (exclusive) offsets: one number for every partition, or a mapping keyed by
        :class:`TopicPartition`, ``(topic, partition)``, ``"topic/partition"`` or partition number. Clamped to
        what the log holds; default: the beginning and the end offsets when the replay starts.
    from_timestamp, to_timestamp
        Epoch seconds, alternatives to the offsets, resolved with the Kafka record timestamps
        (``offsets_for_times``): from the first record at or after ``from_timestamp`` to the first at or after
        ``to_timestamp`` (exclusive).
    sinks, dead_letters
        Where alerts and refused records go (flushed every ``flush_every`` batches and at the end).
    on_batch
        Called as ``on_batch(batch, outcome)`` with a :class:`stream.sources.Batch` and the engine's outcome.
    event_time_clock
        ``detected_at`` = event time (default, reproducible) or the wall clock.
    group
        The consumer group whose run to reproduce: its recorded merge decisions (what ``riskstream run``
        decided when an input was idle, see ``docs/runtime.md``) are read from the configured state store
        and applied, so the replay merges records exactly as that run did. Without it (and without
        ``decisions``) records are merged by the data alone, which equals a live run only if no input was
        idle while records of another waited.
    decisions
        Unit -> its cuts, oldest first, instead of (or in addition to, after) those of ``group``.
    rules_db
        Where the rule packs named by recorded rule pack switches are read (default ``sinks.database``): a unit
        starts with the configured rules, and at each switch the run recorded (a cut with
        :data:`~stream.kafka.units.RULES_KEY`) its engine switches to that stored version at the same offsets,
        so the alerts carry the run's ``rules_version`` and equal its alerts.
    """
    from stream.compiled import new_engine
    from stream.eval.metrics import Collector
    from stream.sources import Batch

    configured = input_topics(settings)
    given = list(dict.fromkeys(topics or configured))
    # configured topics in config order, then the others as given (list.sort empties the list while it sorts,
    # so the key must not look into the list being sorted)
    names = sorted(given, key=lambda t: configured.index(t) if t in configured else len(configured) + given.index(t))
    consumer = make_consumer(
        settings, group_id=None, bootstrap=bootstrap, max_poll_records=int(settings.kafka["max_poll_records"])
    )
    clock: Callable[[Event], float] | None = None if event_time_clock else (lambda e: time.time())
    batch_size = int(settings.engine["batch_size"])
    collector = Collector()
    stage = {"features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    now = time.perf_counter
    started = now()
    watch: Any = None
    try:
        tps: list[TopicPartition] = []
        for t in names:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                raise SourceError(f"Kafka topic {t!r} does not exist")
            tps.extend(TopicPartition(t, p) for p in sorted(parts))
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        start = {tp: max(begin[tp], _offset_for(from_offsets, tp) or begin[tp]) for tp in tps}
        stop = {
            tp: min(
                end[tp], _offset_for(to_offsets, tp) if _offset_for(to_offsets, tp) is not None else end[tp]
            )
            for tp in tps
        }
        if from_timestamp is not None:
            found = consumer.offsets_for_times({tp: int(from_timestamp * 1000) for tp in tps})
            start = {tp: max(start[tp], found[tp].offset if found.get(tp) else end[tp]) for tp in tps}
        if to_timestamp is not None:
            found = consumer.offsets_for_times({tp: int(to_timestamp * 1000) for tp in tps})
            stop = {tp: min(stop[tp], found[tp].offset if found.get(tp) else end[tp]) for tp in tps}
        units: dict[int, PartitionUnit] = {}
        engines: dict[int, Any] = {}
        cuts = _recorded_cuts(settings, group, sorted({tp.partition for tp in tps})) if group else {}
        for p, extra in (decisions or {}).items():
            cuts.setdefault(int(p), []).extend(dict(c) for c in extra)
        if any(RULES_KEY in c for cs in cuts.values() for c in cs):
            from stream.kafka.liverules import open_rule_watch

            watch = open_rule_watch(settings.replace({"kafka.rules_poll_interval_s": 1.0}), rules_db)
            if watch is None:
                raise SourceError("the recorded decisions switch rule packs: give the store that holds them "
                                  "(sinks.database or rules_db)")
        for p in sorted({tp.partition for tp in tps}):
            unit_topics = [t for t in names if TopicPartition(t, p) in start]
            units[p] = PartitionUnit(p, unit_topics)
            for c in cuts.get(p, ()):
                units[p].add_cut(c)
            engines[p] = new_engine(settings, clock=clock)
        consumer.assign(tps)
        for tp in tps:
            units[tp.partition].set_position(tp.topic, start[tp])
            if start[tp] < stop[tp]:
                consumer.seek(tp, start[tp])
        done = {tp for tp in tps if start[tp] >= stop[tp]}
        if done:
            consumer.pause(*done)
        n_batches = 0

        def handle(u: PartitionUnit, items: list[Any], dead: list[Any]) -> None:
            nonlocal n_batches
            t0 = now()
            if dead and dead_letters is not None:
                for d in dead:
                    dead_letters.add(d)
            stage["sinks"] += now() - t0
            events = [it[1] for it in items]
            for i in range(0, max(len(events), 1), batch_size):
                chunk = events[i : i + batch_size]
                outcome = engines[u.partition].process(chunk)
                for k, v in outcome.timings.items():
                    stage[k] = stage.get(k, 0.0) + v
                t0 = now()
                for a in outcome.alerts:
                    for s in sinks:
                        s.add(a)
                n_batches += 1
                if n_batches % flush_every == 0:
                    _flush_replay(sinks, dead_letters)
                stage["sinks"] += now() - t0
                invalid = dead if i == 0 else []
                collector.add(outcome, invalid=len(invalid), reasons=(d.reason for d in invalid))
                if on_batch is not None:
                    on_batch(Batch(events=list(chunk), invalid=list(invalid)), outcome)

        while True:
            for u in units.values():

                def at_end(topic: str, u: PartitionUnit = u) -> bool:
                    return (u.positions[topic] or 0) >= stop[TopicPartition(topic, u.partition)]

                items, dead = u.release(at_end)
                while u.reached is not None:  # a recorded rule pack switch: what came before ran on the old rules
                    if items or dead:
                        handle(u, items, dead)
                    engines[u.partition].set_rules(watch.params(u.reached), u.reached)
                    u.reached = None
                    items, dead = u.release(at_end)
                if items or dead:
                    handle(u, items, dead)
            if len(done) == len(tps) and all(u.buffered == 0 for u in units.values()):
                break
            records = consumer.poll(timeout_ms=500)
            for tp, recs in records.items():
                u = units[tp.partition]
                for r in recs:
                    if r.offset >= stop[tp]:
                        break
                    u.add(
                        tp.topic,
                        r.offset,
                        decode_record(tp.topic, tp.partition, r.offset, r.value),
                        r.timestamp if r.timestamp is not None else -1,
                    )
            for tp in tps:
                if tp in done:
                    continue
                u = units[tp.partition]
                pos = u.positions[tp.topic] or 0
                if pos < stop[tp] and not u.queues[tp.topic]:
                    fetch_pos = consumer.position(tp)
                    if fetch_pos is not None:
                        u.set_position(tp.topic, min(fetch_pos, stop[tp]))
                if (u.positions[tp.topic] or 0) >= stop[tp]:
                    done.add(tp)
                    consumer.pause(tp)
        t0 = now()
        _flush_replay(sinks, dead_letters)
        stage["sinks"] += now() - t0
    finally:
        consumer.close()
        if watch is not None:
            watch.close()
    elapsed = now() - started
    report: dict[str, Any] = collector.report(settings.budget)
    report["config_hash"] = settings.config_hash
    report["config_source"] = settings.source
    report["seconds"] = round(elapsed, 3)
    report.update(collector.rates(elapsed))
    report["kafka"] = {
        "topics": names,
        "offsets": {f"{tp.topic}/{tp.partition}": [start[tp], stop[tp]] for tp in tps},
    }
    engine_s = sum(stage.values())
    parts = {"source": max(0.0, elapsed - engine_s), **stage}
    total_s = sum(parts.values()) or 1.0
    report["stage_share"] = {k: round(v / total_s, 4) for k, v in parts.items()}
    report["feature_memory"] = merged_feature_memory(engines.values())
    result = KafkaReplayResult(report)
    result.engines = engines
    return result


def _recorded_cuts(settings: Settings, group: str, units: Sequence[int]) -> dict[int, list[dict[str, int]]]:
    """The merge decisions ``riskstream run`` recorded for ``group`` in the configured state store."""
    from stream.state import open_state_store

    store = open_state_store(settings.state, key=settings.state_key,
                             database=settings.sinks.get("database") or None)
    try:
        load = getattr(store, "load_decisions", None)
        if load is None:
            raise SourceError(f"the state store {store!r} keeps no merge decisions")
        return {p: load(group, p) for p in units}
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _flush_replay(sinks: Sequence[Sink], dead_letters: DeadLetterSink | None) -> None:
    for s in sinks:
        s.flush()
    if dead_letters is not None:
        dead_letters.flush()


def merged_feature_memory(engines: Iterable[Any]) -> dict[str, float]:
    """Per-unit ``memory_stats()`` summed over the units (sizes per entity averaged by entity count)."""
    stats = [e.memory_stats() for e in engines]
    out: dict[str, float] = {}
    for key in {k for st in stats for k in st}:
        if key.startswith("bytes_per_"):
            kind = key[len("bytes_per_"):]
            n = sum(st.get(f"entities_{kind}", 0.0) for st in stats)
            out[key] = round(sum(st.get(key, 0.0) * st.get(f"entities_{kind}", 0.0) for st in stats) / n, 1) \
                if n else 0.0
        else:
            out[key] = sum(st.get(key, 0.0) for st in stats)
    return dict(sorted(out.items()))
