"""Replay: a bounded source through the very same engine, with a quality report.

Event time drives every window, and ``detected_at`` is the event time, so the same input and configuration
give byte-identical alerts, run after run.

A source that breaks part-way (a truncated ``.gz``) raises a :class:`~stream.errors.SourceError`; the replay then
finishes what was read before it (alerts and dead letters flushed, the report built, with an ``error`` key) and
raises :class:`ReplayStopped`, which carries that report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sinks.alert import Alert
from sinks.base import Sink
from sinks.deadletter import DeadLetter, DeadLetterSink
from stream.compiled import new_engine
from stream.config import Settings
from stream.errors import InvalidEvent, SourceError
from stream.eval.metrics import Collector
from stream.events import Event, Provenance, decode
from stream.pipeline import Engine, Outcome
from stream.sources import Batch, FileSource, RawBatch, Source

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
    if isinstance(source, FileSource) and getattr(engine, "detection", None) == "compiled":
        if source.raw_capable:
            return _replay_raw(source, engine, settings, sinks=sinks, dead_letters=dead_letters,
                               on_batch=on_batch, flush_every=flush_every)
        if source.csv_capable:
            return _replay_csv(source, engine, settings, sinks=sinks, dead_letters=dead_letters,
                               on_batch=on_batch, flush_every=flush_every)
    collector = Collector()
    stage = {"source": 0.0, "features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    start = time.perf_counter()
    n_batches = 0
    failed: list[SourceError] = []
    for batch in _timed(iter(source), stage, failed):
        outcome = engine.process(batch.events)
        for k, v in outcome.timings.items():
            stage[k] += v
        t_sink = time.perf_counter()
        _deliver(sinks, dead_letters, outcome.alerts, batch.invalid)
        n_batches += 1
        if n_batches % flush_every == 0:
            _flush(sinks, dead_letters)
        collector.add(outcome, invalid=len(batch.invalid), reasons=(d.reason for d in batch.invalid))
        stage["sinks"] += time.perf_counter() - t_sink
        if on_batch is not None:
            on_batch(batch, outcome)
    t_end = time.perf_counter()
    _flush(sinks, dead_letters)
    stage["sinks"] += time.perf_counter() - t_end
    return _result(engine, settings, collector, stage, start, failed[0] if failed else None)


def _result(engine: Engine, settings: Settings, collector: Collector, stage: dict[str, float], start: float,
            failure: SourceError | None) -> ReplayResult:
    elapsed = time.perf_counter() - start
    report: dict[str, Any] = collector.report(settings.budget)
    report["config_hash"] = engine.config_hash
    report["config_source"] = settings.source
    report["seconds"] = round(elapsed, 3)
    report.update(collector.rates(elapsed))
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


class _Lazy(Sequence[Event]):
    """The events of some records of a raw batch, decoded in Python only if someone reads them (an ``on_batch``
    observer such as ``--scores-out``); the replay's own report does not, nor does the evaluation window, which
    reads :meth:`columns` (``stream.eval.metrics.WindowCollector``)."""

    def __init__(self, batch: RawBatch, rows: list[int], columns: dict[str, Any] | None = None) -> None:
        self._batch, self._rows, self._events, self._columns = batch, rows, None, columns

    def columns(self) -> dict[str, Any] | None:
        """What the evaluation window reads of each event, in order, without decoding it: ``ts``, ``card`` (the
        user id, else the event id), ``label`` (-1: none), ``scenario`` (None: none) and ``fraud_id`` (the event
        id of an event labelled 1, else None), and what ``--scores-out`` writes: ``event_id``, ``type`` and
        ``user_id``; None when not known."""
        return self._columns

    def _all(self) -> list[Event]:
        if self._events is None:
            b = self._batch
            self._events = [decode(b.records[i], Provenance(b.name, 0, b.line_nos[i])) for i in self._rows]
        return self._events

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self._all()[i]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())


def _replay_raw(source: FileSource, engine: Any, settings: Settings, *, sinks: Sequence[Sink],
                dead_letters: DeadLetterSink | None, on_batch: Callable[[Any, Outcome], None] | None,
                flush_every: int) -> ReplayResult:
    """:func:`replay` of one JSONL file through ``CompiledEngine.process_raw``: whole batches of raw lines, no
    event object per record. ``stream._core.scan_meta`` reads what the report needs (type, ts, inline label,
    scenario) in the same pass; a line the core refuses or leaves to Python is decoded here, so a dead letter is
    the reference's (reason, bytes, line, ts of the last good record before it). Same alerts, dead letters,
    report and batch boundaries as the event path (``tests/stream/test_replay_raw.py``)."""
    import numpy as np

    from stream._core import scan_meta

    collector = Collector()
    stage = {"source": 0.0, "features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    start = time.perf_counter()
    n_batches = 0
    failed: list[SourceError] = []
    last_ts = -math.inf
    for batch in _timed(source.raw_batches(), stage, failed):
        recs = batch.records
        ts_a, status_a, label_a, scen_a, names, cards, fraud_ids, event_ids, users = scan_meta(recs)
        status = status_a.tolist()
        valid = recs
        rows = list(range(len(recs)))
        to_python = False  # a valid record the core left to Python: this batch takes the event path
        if any(c > 2 for c in status):  # refused, or left to Python: decided by stream.events.decode
            ts_l, labels_l, scen_l = ts_a.tolist(), label_a.tolist(), scen_a.tolist()
            rows = []
            for i, c in enumerate(status):
                if c <= 2:
                    rows.append(i)
                    continue
                prov = Provenance(batch.name, 0, batch.line_nos[i])
                try:
                    e = decode(recs[i], prov)
                except InvalidEvent as err:
                    prev = [ts_l[j] for j in rows[-1:]]
                    before = prev[0] if prev else last_ts
                    batch.invalid.append(DeadLetter(reason=str(err), raw=recs[i], source=batch.name,
                                                    position=batch.line_nos[i],
                                                    ts=before if math.isfinite(before) else 0.0))
                    continue
                rows.append(i)
                to_python = True
                if e.type != "label":
                    cards[i] = getattr(e, "user_id", None) or e.event_id
                    fraud_ids[i] = e.event_id if e.label == 1 else None
                    event_ids[i], users[i] = e.event_id, getattr(e, "user_id", None) or None
                status[i] = {"order": 0, "login": 1, "label": 2}[e.type]
                ts_l[i] = e.ts
                labels_l[i] = -1 if e.label is None or e.type == "label" else e.label
                sc = getattr(e, "scenario", None)
                if sc is not None and sc not in names:
                    names.append(sc)
                scen_l[i] = -1 if sc is None else names.index(sc)
            valid = [recs[i] for i in rows]
            ts_a, label_a, scen_a = np.asarray(ts_l), np.asarray(labels_l, dtype=np.int8), np.asarray(scen_l)
        if rows:
            last_ts = float(ts_a[rows[-1]])
        st = np.asarray(status)[rows] if rows else np.zeros(0, dtype=np.int64)
        scored = [rows[k] for k in np.flatnonzero(st <= 1).tolist()]
        if to_python:
            # process_raw would end its explain stretch at that record (alert reasons read the models there):
            # the event path keeps the reasons the reference gives for this batch
            outcome = engine.process([decode(recs[i], Provenance(batch.name, 0, batch.line_nos[i])) for i in rows])
        else:
            outcome, refused = engine.process_raw(valid, lambda j, b=batch, r=rows: Provenance(b.name, 0,
                                                                                              b.line_nos[r[j]]))
            if refused:
                raise RuntimeError(f"the core refused records it had accepted: {refused[:3]}")
            scen_of = scen_a[scored].tolist() if scored else []
            outcome.scored = _Lazy(batch, scored, {  # type: ignore[assignment]
                "ts": np.asarray(ts_a)[scored], "card": [cards[i] for i in scored],
                "label": np.asarray(label_a)[scored], "scenario": [None if c < 0 else names[c] for c in scen_of],
                "fraud_id": [fraud_ids[i] for i in scored], "event_id": [event_ids[i] for i in scored],
                "type": ["order" if status[i] == 0 else "login" for i in scored],
                "user_id": [users[i] for i in scored]})
            outcome.labels = _Lazy(batch, [rows[k] for k in np.flatnonzero(st == 2).tolist()])  # type: ignore
        for k, v in outcome.timings.items():
            stage[k] += v
        t_sink = time.perf_counter()
        _deliver(sinks, dead_letters, outcome.alerts, batch.invalid)
        n_batches += 1
        if n_batches % flush_every == 0:
            _flush(sinks, dead_letters)
        scen_idx = scen_a[scored].tolist() if scored else []
        collector.add_arrays(outcome, labels=np.asarray(label_a)[scored].astype(np.int8),
                             scenarios=[None if c < 0 else names[c] for c in scen_idx],
                             ts=(float(ts_a[scored[0]]), float(ts_a[scored[-1]])) if scored else None,
                             n_labels=len(outcome.labels), invalid=len(batch.invalid),
                             reasons=[d.reason for d in batch.invalid])
        stage["sinks"] += time.perf_counter() - t_sink
        if on_batch is not None:
            on_batch(batch, outcome)
    t_end = time.perf_counter()
    _flush(sinks, dead_letters)
    stage["sinks"] += time.perf_counter() - t_end
    return _result(engine, settings, collector, stage, start, failed[0] if failed else None)


class CsvBatch:
    """The rows of one CSV file one ``CompiledEngine.process_csv`` call took (:func:`_replay_csv`): ``len`` counts
    them (events, labels and refused rows), ``invalid`` holds the refused rows' dead letters; ``events`` decodes
    the events in Python on first use (the replay's own report does not)."""

    __slots__ = ("name", "invalid", "_outcome", "_n")

    def __init__(self, name: str, outcome: Outcome, invalid: list[DeadLetter]) -> None:
        self.name, self._outcome, self.invalid = name, outcome, invalid
        self._n = len(outcome.risk) + len(outcome.labels) + len(invalid)

    def __len__(self) -> int:
        return self._n

    @property
    def events(self) -> list[Event]:
        return sorted([*self._outcome.scored, *self._outcome.labels],
                      key=lambda e: e.provenance.offset if e.provenance is not None else 0)


def _replay_csv(source: FileSource, engine: Any, settings: Settings, *, sinks: Sequence[Sink],
                dead_letters: DeadLetterSink | None, on_batch: Callable[[Any, Outcome], None] | None,
                flush_every: int) -> ReplayResult:
    """:func:`replay` of one CSV file through ``CompiledEngine.process_csv``: the core reads, decodes and scores
    ``batch_size`` rows a call, and hands back what the report and the evaluation window read of them as columns,
    with no event object per row. The same batches, scores, alerts and dead letters as the event path
    (``tests/stream/test_replay_csv.py``): a batch the read chunk cannot fill waits for the next chunk, and one
    that a record spanning lines still cuts at the chunk's end is completed from the next chunk in a second call
    (then only the reasons of that batch's alerts before the cut may read the models at the cut, not at the
    batch's end). A file that breaks mid-read (a truncated ``.gz``) still has every row read before the break
    scored, as on the event path."""
    import numpy as np

    from stream.sources import CsvReader

    collector = Collector()
    stage = {"source": 0.0, "features": 0.0, "detectors": 0.0, "decision": 0.0, "sinks": 0.0}
    start = time.perf_counter()
    n_batches = 0
    failed: list[SourceError] = []
    path = source.paths[0]
    reader = CsvReader(path.name, source.mapping)
    size = source.batch_size
    parts: list[tuple[Outcome, list[DeadLetter]]] = []  # the calls of a batch not yet complete

    def taken() -> int:
        return sum(len(o.risk) + len(o.labels) + len(d) for o, d in parts)

    def deliver() -> None:
        nonlocal n_batches
        if not parts:
            return
        outcome, dead = _merge_csv(engine, parts)
        parts.clear()
        batch = CsvBatch(path.name, outcome, dead)
        if not len(batch):
            return
        source.records_read += len(batch)
        for k, v in outcome.timings.items():
            stage[k] += v
        t_sink = time.perf_counter()
        _deliver(sinks, dead_letters, outcome.alerts, dead)
        n_batches += 1
        if n_batches % flush_every == 0:
            _flush(sinks, dead_letters)
        cols = outcome.scored.columns()  # type: ignore[attr-defined]
        ts = cols["ts"]
        collector.add_arrays(outcome, labels=np.asarray(cols["label"], dtype=np.int8), scenarios=cols["scenario"],
                             ts=(float(ts[0]), float(ts[-1])) if len(ts) else None, n_labels=len(outcome.labels),
                             invalid=len(dead), reasons=[d.reason for d in dead])
        stage["sinks"] += time.perf_counter() - t_sink
        if on_batch is not None:
            on_batch(batch, outcome)

    def consume(data: bytes, eof: bool, hold: bool = True) -> int:
        """Run the rows of ``data`` through the core; the byte where the unread rest starts. ``hold``: rows that
        cannot fill the batch wait for the next chunk."""
        pos, lines = 0, data.count(b"\n")  # lines left from pos (counted once: a row takes at least one)
        while pos < len(data):
            want = size - taken()
            if hold and not eof and lines < want + (reader.header is None):
                break  # the chunk cannot fill the batch: the rest waits for the next chunk
            outcome, dead, stop = engine.process_csv(data, reader, pos, eof=eof, limit=want, columns=True)
            parts.append((outcome, dead))
            if taken() >= size:
                deliver()
            if stop == pos:
                break
            lines -= data.count(b"\n", pos, stop)
            pos = stop
        return pos

    with source._open(path) as fh:  # noqa: SLF001 - its progress (bytes_read) is the source's
        for data, eof in _timed(reader.chunks(fh), stage, failed):
            pos = consume(data, eof)
            reader.carry(data[pos:])
        if failed and reader._pending:  # noqa: SLF001 - whole lines read before the file broke: score them too
            rest, reader._pending = reader._pending, b""  # noqa: SLF001
            consume(rest, False, hold=False)
    deliver()
    t_end = time.perf_counter()
    _flush(sinks, dead_letters)
    stage["sinks"] += time.perf_counter() - t_end
    return _result(engine, settings, collector, stage, start, failed[0] if failed else None)


def _merge_csv(engine: Any, parts: list[tuple[Outcome, list[DeadLetter]]]) -> tuple[Outcome, list[DeadLetter]]:
    """One batch's outcome and dead letters from the ``process_csv`` calls it took (usually one)."""
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    from stream.compiled import LazyEvents

    outs = [o for o, _ in parts]
    merged = engine._concat(outs)  # noqa: SLF001 - risk, alerted, raw, calibrated and alerts
    offsets = np.cumsum([0] + [len(o.risk) for o in outs]).tolist()
    cols = [o.scored.columns() for o in outs]  # type: ignore[attr-defined]
    columns = {"ts": np.concatenate([c["ts"] for c in cols]), "label": np.concatenate([c["label"] for c in cols])}
    for k in ("card", "fraud_id", "scenario"):
        columns[k] = [v for c in cols for v in c[k]]

    def event(j: int) -> Event:
        p = int(np.searchsorted(offsets, j, side="right")) - 1
        return outs[p].scored[j - offsets[p]]

    merged.scored = LazyEvents(offsets[-1], event, columns)  # type: ignore[assignment]
    merged.labels = [lab for o in outs for lab in o.labels]
    merged.timings = {k: sum(o.timings.get(k, 0.0) for o in outs) for k in outs[0].timings}
    return merged, [x for _, ds in parts for x in ds]


def _timed(it: Iterator[Any], stage: dict[str, float], failed: list[SourceError]) -> Iterator[Any]:
    """The source's batches (both replay paths), the time spent reading them added to ``stage["source"]``; a
    :class:`SourceError` ends them and is kept in ``failed`` (the report says where the input broke)."""
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it, None)
        except SourceError as e:
            failed.append(e)
            return
        finally:
            stage["source"] += time.perf_counter() - t0
        if batch is None:
            return
        yield batch


def _deliver(sinks: Sequence[Sink], dead_letters: DeadLetterSink | None, alerts: Sequence[Alert],
             invalid: Sequence[DeadLetter]) -> None:
    """A batch's alerts to every sink, its invalid records to the dead letters (both replay paths)."""
    for sink in sinks:
        for a in alerts:
            sink.add(a)
    if dead_letters is not None:
        for d in invalid:
            dead_letters.add(d)


def _flush(sinks: Sequence[Sink], dead_letters: DeadLetterSink | None) -> None:
    for sink in sinks:
        sink.flush()
    if dead_letters is not None:
        dead_letters.flush()
