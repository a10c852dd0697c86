"""Replay: a bounded source through the very same engine, with a quality report.

Event time drives every window, and ``detected_at`` is the event time, so the same input and configuration
give byte-identical alerts, run after run.

A source that breaks part-way (a truncated ``.gz``) raises a :class:`~stream.errors.SourceError`; the replay then
finishes what was read before it (alerts and dead letters flushed, the report built, with an ``error`` key) and
raises :class:`ReplayStopped`, which carries that report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sinks.base import Sink
from sinks.deadletter import DeadLetterSink
from stream.compiled import new_engine
from stream.config import Settings
from stream.errors import SourceError
from stream.eval.metrics import Collector
from stream.pipeline import Engine, Outcome
from stream.sources import Batch, Source

__all__ = ["replay", "ReplayResult", "ReplayStopped"]


class ReplayResult(dict):
    """The report (a dict, written as JSON) plus the engine it ran, for callers that want more."""

    engine: Engine


class ReplayStopped(SourceError):
    """The source broke part-way; ``result`` is the report over what was read before (its ``error`` says why)."""

    def __init__(self, cause: SourceError, result: ReplayResult) -> None:
        super().__init__(str(cause), retriable=cause.retriable)
        self.result = result


def replay(
    source: Source,
    settings: Settings,
    *,
    sinks: Sequence[Sink] = (),
    dead_letters: DeadLetterSink | None = None,
    on_batch: Callable[[Batch, Outcome], None] | None = None,
    flush_every: int = 50,
) -> ReplayResult:
    """Run every batch of ``source`` through one :class:`Engine`; return the report.

    Sinks are flushed every ``flush_every`` batches and at the end; dead letters likewise.
    """
    engine = new_engine(settings)
    collector = Collector()
    stage = {"source": 0.0, "features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    start = time.perf_counter()
    t_prev = start
    n_batches = 0
    it = iter(source)
    failure: SourceError | None = None
    while True:
        try:
            batch = next(it, None)
        except SourceError as e:
            batch, failure = None, e
        t_src = time.perf_counter()
        stage["source"] += t_src - t_prev
        if batch is None:
            break
        outcome = engine.process(batch.events)
        for k, v in outcome.timings.items():
            stage[k] += v
        t_sink = time.perf_counter()
        for sink in sinks:
            for a in outcome.alerts:
                sink.add(a)
        if dead_letters is not None:
            for d in batch.invalid:
                dead_letters.add(d)
        n_batches += 1
        if n_batches % flush_every == 0:
            _flush(sinks, dead_letters)
        collector.add(outcome, invalid=len(batch.invalid), reasons=(d.reason for d in batch.invalid))
        t_prev = time.perf_counter()
        stage["sinks"] += t_prev - t_sink
        if on_batch is not None:
            on_batch(batch, outcome)
    t_end = time.perf_counter()
    _flush(sinks, dead_letters)
    stage["sinks"] += time.perf_counter() - t_end
    elapsed = time.perf_counter() - start
    report: dict[str, Any] = collector.report(settings.budget)
    report["config_hash"] = engine.config_hash
    report["config_source"] = settings.source
    report["seconds"] = round(elapsed, 3)
    report["events_per_second"] = round((collector.events + collector.invalid + collector.labels_seen) / elapsed, 1) \
        if elapsed > 0 else None
    total = sum(stage.values()) or 1.0
    report["stage_share"] = {k: round(v / total, 4) for k, v in stage.items()}
    report["feature_memory"] = engine.memory_stats()
    if failure is not None:
        report["error"] = str(failure)
    result = ReplayResult(report)
    result.engine = engine
    if failure is not None:
        raise ReplayStopped(failure, result) from failure
    return result


def _flush(sinks: Sequence[Sink], dead_letters: DeadLetterSink | None) -> None:
    for sink in sinks:
        sink.flush()
    if dead_letters is not None:
        dead_letters.flush()
