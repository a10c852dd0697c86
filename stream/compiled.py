"""The compiled engine: the same verdicts as :class:`stream.pipeline.Engine`, its per-event state in Rust.

:class:`stream._core.CoreEngine` (``core/src/engine.rs``) runs one unit's features, entity-risk and link
features and label join event by event; :func:`engine_params` takes its parameters from a Python
:class:`~stream.pipeline.Engine` built on the same settings, which has validated them (so a bad configuration
gets the reference's error message). :class:`CompiledEngine` is that Python engine with those stages handed to
the core and, when every detector compiles (:func:`detection_specs`), the detectors, calibrators and ensemble
too (``CompiledEngine.detection``); otherwise they run in Python on the core's vectors.
:func:`new_engine` builds the engine ``[engine] core`` names. The Python engine stays the reference and the
oracle (``tests/core/``). See ``docs/core.md``.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from detectors.coldstart import describe_tail
from detectors.compiled import Unsupported, _params, core_spec
from detectors.ensemble import Ensemble, alert_reasons
from detectors.hst import describe_hst
from detectors.rules import Rules
from detectors.zscore import describe_z
from sinks.alert import Alert
from sinks.deadletter import DeadLetter
from stream.config import Settings
from stream.errors import CheckpointError, ConfigError, InvalidEvent
from stream.eval.metrics import event_columns
from stream.events import Event, Label, Login, Order, Provenance, decode, from_dict
from stream.pipeline import Engine, Outcome, entity_ids
from stream.sources import CsvReader, _csv_line, _row_at

log = logging.getLogger("riskstream.compiled")
_TOLD: set[str] = set()  # fallback reasons already logged (once per process)

__all__ = ["engine_params", "core_engine", "run_raw", "detection_specs", "CompiledEngine", "new_engine", "ENGINES"]

#: The values of ``[engine] core``.
ENGINES = ("compiled", "python")


def engine_params(engine: Engine) -> dict[str, Any]:
    """The :class:`stream._core.CoreEngine` parameters of a Python engine's configuration."""
    fx = engine.features
    graph = engine._graph_params  # noqa: SLF001 - the engine's own validated graph parameters
    risk = engine.entity_risk
    if risk is not None and (risk.bucket != 86400.0 or risk.expire_every != 100_000):
        raise ValueError("the compiled core builds entity risk with the engine's bucket and expiry only")
    return {
        "features": {"windows": list(fx.windows), "idle_ttl": fx.idle_ttl, "max_distinct": fx.max_distinct,
                     "max_known": fx.max_known, "expire_every": fx.expire_every, "passthrough": fx.passthrough,
                     "max_entities": fx.max_entities},
        "graph": None if graph is None else {k: graph[k] for k in ("window", "max_users", "max_values",
                                                                     "max_group", "flagged", "max_entries")},
        "entity_risk": None if risk is None else (list(risk.kinds), list(risk.windows), risk.prior_strength),
        "store_size": engine.label_store.max_size,
        "store_ttl": engine.label_store.ttl,
        # a blocklist reads every event's entity ids (so the label store fills, as in Python)
        "reads_ids": any(getattr(d, "can_block", False) for ens in engine.ensembles.values()
                         for d in ens.detectors.values()),
        "learns_labels": engine.learns_labels,
    }


def detection_specs(engine: Engine) -> dict[str, dict[str, Any]]:
    """The ``core_spec`` of each event type's ensemble, for detection in the core; :class:`Unsupported` (with the
    reason) when some detector or setting is not compiled, or reads what the core does not hand it."""
    for ens in engine.ensembles.values():
        for name, det in ens.detectors.items():
            if isinstance(det, Rules) and det._blocked:  # noqa: SLF001
                raise Unsupported(f"detector {name!r}: blocklists match entity ids, which the core does not "
                                  "hand to its detectors")
    # names an uncompiled detector (a label learner is compiled only with its model: the core teaches it the rows
    # its label store joins)
    return {kind: core_spec(ens) for kind, ens in engine.ensembles.items()}


class _ZView:
    """A compiled z-score's explain data for one alert, with the Python detector's ``explain``/``describe``."""

    __slots__ = ("top",)

    def __init__(self, top: list[tuple[str, float, float, float, bool]]) -> None:
        self.top = top

    def explain(self, x: dict[str, float], top: int = 3) -> list[tuple[str, float]]:
        return [(f, z) for f, z, _, _, _ in self.top[:top]]

    def describe(self, x: dict[str, float], feature: str) -> str:
        for f, _, med, scale, is_log in self.top:
            if f == feature:
                return describe_z(feature, float(x.get(feature, math.nan)), med, scale, is_log)
        return f"{feature} has too few learned values to score"


class _HstView:
    """A compiled HST's explain data for one alert, with the Python detector's ``explain``/``describe``."""

    __slots__ = ("top",)

    def __init__(self, top: list[tuple[str, float, float, float]]) -> None:
        self.top = top

    def explain(self, x: dict[str, float], top: int = 3) -> list[tuple[str, float]]:
        return [(f, c) for f, c, _, _ in self.top[:top]]

    def describe(self, x: dict[str, float], feature: str) -> str:
        for f, _, lo, hi in self.top:
            if f == feature:
                return describe_hst(feature, x.get(feature), lo, hi)
        return f"{feature} is not tracked by the trees"


class _ColdView:
    """A compiled cold-start detector's explain data for one alert, with the Python detector's
    ``explain``/``describe``."""

    __slots__ = ("top",)

    def __init__(self, top: list[tuple[str, float, int, int, bool]]) -> None:
        self.top = top

    def explain(self, x: dict[str, float], top: int = 3) -> list[tuple[str, float]]:
        return [(f, e) for f, e, _, _, _ in self.top[:top]]

    def describe(self, x: dict[str, float], feature: str) -> str:
        for f, _, c, n, low in self.top:
            if f == feature:
                return describe_tail(feature, float(x.get(feature, math.nan)), c, n, low)
        return f"{feature} has too few learned values to score"


class _SupervisedView:
    """A compiled supervised model's explain data for one alert, with the Python detector's ``explain`` (it has no
    ``describe``: the reasons say what each feature weighs)."""

    __slots__ = ("top",)

    def __init__(self, top: list[tuple[str, float]]) -> None:
        self.top = top

    def explain(self, x: dict[str, float], top: int = 3) -> list[tuple[str, float]]:
        return list(self.top[:top])


_VIEWS = {"zscore": _ZView, "hst": _HstView, "coldstart": _ColdView, "supervised": _SupervisedView}


def core_engine(engine: Engine) -> Any:
    """A :class:`stream._core.CoreEngine` on the configuration of ``engine`` (a fresh state)."""
    from stream._core import CoreEngine

    return CoreEngine(engine_params(engine))


def run_raw(core: Any, records: list[bytes]) -> tuple[list[tuple[int, str]], float]:
    """Run raw JSON ``records`` through ``core`` in order; return the refused ones as ``(index, "field: reason")``
    and the seconds spent in the compiled code.

    The compiled decoder leaves the records whose Python semantics it does not reproduce (broken JSON whose
    message is orjson's, unusual timestamp forms, non-ASCII text in a refusal) to :func:`stream.events.decode`:
    such a record is decoded here, where it stands, so the stream's order and every refusal's message are the
    reference's.
    """
    refused: list[tuple[int, str]] = []
    seconds = 0.0
    start = 0
    n = len(records)
    while start < n:
        stop, _, invalid, secs = core.run_raw(records, start)
        seconds += secs
        refused.extend((i, f"{field}: {reason}") for i, field, reason in invalid)
        if stop >= n:
            break
        try:
            event = decode(records[stop])
        except InvalidEvent as e:
            refused.append((stop, str(e)))
        else:
            core.vectors([event])
        start = stop + 1
    return refused, seconds


class CompiledEngine(Engine):
    """:class:`~stream.pipeline.Engine` with features, entity risk, the link graph and the label join compiled,
    and detection too when every detector compiles (:attr:`detection`, :attr:`detection_fallback`).

    Same interface, same outcomes (scores, alerts and their ids, reasons), any batch split; its checkpoints
    hold the core's state (``stream._core.STATE_VERSION``) and are refused by the Python engine, and the other
    way round, with a message saying so.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[Event], float] | None = None) -> None:
        super().__init__(settings, clock=clock)
        from stream._core import STATE_VERSION, CoreEngine

        self.core = CoreEngine(engine_params(self))
        self._state_version = STATE_VERSION
        self._risk_on = self.entity_risk is not None
        #: "compiled": the whole per-event path (detectors, calibrators, ensemble included) runs in the core;
        #: "python": the detectors run in Python on the core's vectors, for the reason in ``detection_fallback``.
        self.detection = "python"
        self.detection_fallback: str | None = None
        try:
            specs = detection_specs(self)
        except Unsupported as e:
            self.detection_fallback = str(e)
            if self.detection_fallback not in _TOLD:
                _TOLD.add(self.detection_fallback)
                log.warning("compiled engine: detection runs in Python: %s", self.detection_fallback)
        else:
            self.core.set_detection(specs["order"], specs["login"])
            self.detection = "compiled"
            from stream._core import ACTIONS, SEVERITIES

            self._severities, self._actions = list(SEVERITIES), list(ACTIONS)
            self._names = [d["name"] for d in specs["order"]["detectors"]]
            self._blockers = {k: [(n, d) for n, d in ens.detectors.items() if getattr(d, "can_block", False)]
                              for k, ens in self.ensembles.items()}
        # the Python copies of the state the core owns are never advanced: drop them, so nothing reads them
        self.features = None  # type: ignore[assignment]
        self.entity_risk = None

    @property
    def uses_labels(self) -> bool:
        return self.learns_labels or self._risk_on or self.core.has_graph or self.adapts or self.allocates

    def set_rules(self, params: dict[str, Any], version: int | None) -> None:
        """:meth:`Engine.set_rules`, in the core too when detection runs there (its rules detector is replaced,
        its calibrator and the other detectors' state kept, as in Python). A pack the core cannot run (one with
        blocklists) is a :class:`ConfigError` and changes nothing: detection cannot move out of the core mid-way."""
        if self.detection != "compiled":
            super().set_rules(params, version)
            return
        if params.get("blocklists"):
            raise ConfigError("a rule pack with blocklists cannot be switched into the compiled core (it matches "
                              "entity ids, which the core does not hand its detectors); set [engine] core = "
                              "\"python\" to run it")
        old = {kind: ens.detectors.get("rules") for kind, ens in self.ensembles.items()}
        old_version = self.rules_version
        super().set_rules(params, version)
        specs = {kind: dict(_params("rules", ens.detectors["rules"])[1]) for kind, ens in self.ensembles.items()}
        try:
            self.core.set_rules(specs["order"], specs["login"])
        except ValueError as e:
            for kind, det in old.items():
                self.ensembles[kind].detectors["rules"] = det  # type: ignore[assignment]
            self.rules_version = old_version
            raise ConfigError(f"the compiled core refused the rule pack: {e}") from None
        self._blockers = {k: [(n, d) for n, d in ens.detectors.items() if getattr(d, "can_block", False)]
                          for k, ens in self.ensembles.items()}

    def process(self, events: Sequence[Event]) -> Outcome:
        if self.detection != "compiled":
            return super().process(events)
        t0 = time.perf_counter()
        if not isinstance(events, list):
            events = list(events)
        res = self.core.process(events)
        t1 = time.perf_counter()
        out = Outcome()
        scored: list[Order | Login] = [e for e in events if type(e) is not Label]  # type: ignore[misc]
        if len(scored) < len(events):
            out.labels = [e for e in events if type(e) is Label]  # type: ignore[misc]
        out.scored = scored
        self._fill(out, res, lambda j: scored[j])
        t2 = time.perf_counter()
        out.timings = {"features": 0.0, "detectors": t1 - t0, "decision": t2 - t1}
        return out

    def _fill(self, out: Outcome, res: tuple[Any, ...], event: Callable[[int], Order | Login]) -> None:
        """``out``'s arrays and alerts from a ``CoreEngine.process`` result; ``event(j)``: scored event ``j``."""
        risk, q, alert, sev, act, raw, p, found, _ = res
        out.risk = risk
        out.alerted = alert
        names = self._names
        out.raw = dict(zip(names, raw, strict=True))
        out.calibrated = dict(zip(names, p, strict=True))
        out.alerts = [self._compiled_alert(event(j), x, explain, float(risk[j]), float(q[j]), int(sev[j]),
                                           int(act[j]), p[:, j], weights) for j, x, explain, weights in found]
        self.events_seen += len(risk)

    def process_raw(self, records: list[bytes], provenance: Callable[[int], Provenance | None] | None = None,
                    ) -> tuple[Outcome, list[tuple[int, str]]]:
        """:meth:`process` of raw JSON records, decoded by the core: no Python object per record (a record the
        compiled decoder leaves to Python is decoded by :func:`stream.events.decode` where it stands, and ends a
        core call). Returns the outcome, whose ``scored`` and ``labels`` stay empty (``risk``, ``alerted``,
        ``raw`` and ``calibrated`` are over the orders and logins in order; alerts are built from their records,
        decoded again), and the refused records as ``(index, "field: reason")``. Needs detection in the core.
        ``provenance(i)``: where record ``i`` came from (a Kafka position, a file line), for its alert.

        Scores and alerts equal :meth:`process`'s on the decoded events; an alert's reasons read the models at
        the end of the call, as :meth:`process`'s at the end of a batch (a record left to Python ends one)."""
        if self.detection != "compiled":
            raise RuntimeError(f"process_raw needs detection in the core ({self.detection_fallback})")
        t0 = time.perf_counter()
        out = Outcome()
        refused: list[tuple[int, str]] = []
        parts: list[Outcome] = []
        start, n = 0, len(records)
        prov = provenance if provenance is not None else (lambda i: None)
        while True:
            stop, _, invalid, where, *res = self.core.process_raw(records, start)
            refused.extend((i, f"{field}: {reason}") for i, field, reason in invalid)
            part = Outcome()
            self._fill(part, tuple(res),  # type: ignore[misc]
                       lambda j, where=where: decode(records[int(where[j])], prov(int(where[j]))))
            parts.append(part)
            if stop >= n:
                break
            try:
                event = decode(records[stop], prov(stop))
            except InvalidEvent as e:
                refused.append((stop, str(e)))
            else:
                part = self.process([event])
                parts.append(part)
            start = stop + 1
        if len(parts) == 1:
            out = parts[0]
        else:
            out.risk = np.concatenate([p.risk for p in parts])
            out.alerted = np.concatenate([p.alerted for p in parts])
            out.raw = {k: np.concatenate([p.raw[k] for p in parts]) for k in self._names}
            out.calibrated = {k: np.concatenate([p.calibrated[k] for p in parts]) for k in self._names}
            out.alerts = [a for p in parts for a in p.alerts]
        out.scored, out.labels = [], []
        out.timings = {"features": 0.0, "detectors": time.perf_counter() - t0, "decision": 0.0}
        return out, sorted(refused)

    def process_csv(self, data: bytes, reader: CsvReader, start: int = 0, *, eof: bool = True,
                    limit: int | None = None, columns: bool = False) -> tuple[Outcome, list[DeadLetter], int]:
        """:meth:`process_raw` for CSV: the rows of ``data`` (whole lines of one file, as
        :meth:`stream.sources.CsvReader.chunks` gives them) from byte ``start``, at most ``limit`` of them, decoded
        by the core with ``reader``'s compiled mapping and run through the whole pipeline in the core, in one
        call: a row the core leaves to Python is read and converted there as :class:`~stream.sources.FileSource`
        does and handed back to the core where it stands. So ``process_csv`` over a batch of rows gives
        :meth:`process`'s outcome over ``FileSource``'s batch of the same rows: the same scores and alerts (with
        their reasons). Returns the outcome (``scored`` and ``labels`` empty, as :meth:`process_raw`'s), the dead
        letters (as ``FileSource`` makes them) and the byte where the next row starts (a record that may go on
        past a chunk that is not the last, ``eof`` false, is left there). Needs detection in the core.

        ``columns``: the outcome's ``scored`` is a :class:`LazyEvents` (each event decoded in Python only when
        read, and ``columns()``: what a replay's report reads of them, from the core) and ``labels`` the label
        events, as a replay's observers want them."""
        if self.detection != "compiled":
            raise RuntimeError(f"process_csv needs detection in the core ({self.detection_fallback})")
        t0 = time.perf_counter()
        dead: list[DeadLetter] = []
        name = reader.name
        pos, n = start, len(data)
        while reader.header is None and pos < n:  # the header row
            got = reader.python_row(data, pos, eof)
            if got is None:
                break
            pos = got[0]
        left = n + 1 if limit is None else limit
        if reader.core is None:  # a mapping the core leaves to Python: FileSource's rows, one batch
            events: list[Event] = []
            while pos < n and left > 0 and reader.header is not None:
                got = reader.python_row(data, pos, eof)
                if got is None:
                    break
                pos, row = got
                left -= 1
                event = self._python_row(reader, row, dead)  # type: ignore[arg-type]
                if event is not None:
                    events.append(event)
            out = self.process(events)
            if columns:
                scored = out.scored
                out.scored = LazyEvents(len(scored), scored.__getitem__, event_columns(scored))  # type: ignore
            else:
                out.scored, out.labels = [], []
            return out, dead, pos
        python_events: dict[int, Event] = {}

        def fallback(at: int, line_no: int, last_ts: float) -> tuple[int, int, Event | None] | None:
            reader.line_no, reader.last_ts = line_no, last_ts
            got = reader.python_row(data, at, eof)
            if got is None:
                return None
            end, row = got
            event = self._python_row(reader, row, dead)  # type: ignore[arg-type]
            if event is not None:
                python_events[at] = event
            return end, reader.line_no - line_no, event

        if pos < n and left > 0:
            stop, reader.line_no, reader.last_ts, _, invalid, where, lines, *res = self.core.process_csv(
                data, pos, reader.core, reader.line_no, reader.last_ts, left, fallback, columns)
            meta = res.pop() if columns else None
            for line_no, field, reason, s, e, last in invalid:
                dead.append(DeadLetter(reason=f"{field}: {reason}", raw=_csv_line(_row_at(data, s, e)),
                                       source=name, position=line_no, ts=last if math.isfinite(last) else 0.0))
            dead.sort(key=lambda d: d.position or 0)  # the core's and Python's, in file order

            def event_of(j: int) -> Order | Login:
                at = int(where[j])
                found = python_events.get(at)
                return found if found is not None else reader.event(data, at, int(lines[j]))  # type: ignore

            out = Outcome()
            self._fill(out, tuple(res), event_of)
            pos = stop
        else:
            out = self._concat([])
            meta = None
        out.scored, out.labels = [], []
        if columns:
            if meta is None:
                out.scored = LazyEvents(0, lambda j: None, event_columns([]))
            else:
                labels = meta.pop("labels")
                out.scored = LazyEvents(len(out.risk), event_of, meta)  # type: ignore[arg-type]
                out.labels = [Label(event_id=i, ts=t, ref_event_id=r, label=None if y < 0 else y)
                              for i, t, r, y in labels]
        out.timings = {"features": 0.0, "detectors": time.perf_counter() - t0, "decision": 0.0}
        return out, dead, pos

    @staticmethod
    def _python_row(reader: CsvReader, row: tuple[int, list[str], dict[str, Any]], dead: list[DeadLetter]) \
            -> Event | None:
        """The event of a row :meth:`CsvReader.python_row` read, or None with its dead letter in ``dead``."""
        line_no, cells, obj = row
        try:
            if "__invalid__" in obj:
                raise InvalidEvent("$", obj["__invalid__"])
            if "__error__" in obj:
                raise obj["__error__"]
            event = from_dict(obj["__mapped__"], Provenance(reader.name, 0, line_no))
        except InvalidEvent as e:
            last = reader.last_ts
            dead.append(DeadLetter(reason=str(e), raw=_csv_line(cells), source=reader.name, position=line_no,
                                   ts=last if math.isfinite(last) else 0.0))
            return None
        reader.last_ts = event.ts
        return event

    def _concat(self, parts: list[Outcome]) -> Outcome:
        """One outcome of the outcomes of consecutive calls (``scored`` and ``labels`` left empty)."""
        if len(parts) == 1:
            out = parts[0]
        else:
            out = Outcome()
            out.risk = np.concatenate([p.risk for p in parts]) if parts else np.empty(0)
            out.alerted = np.concatenate([p.alerted for p in parts]) if parts else np.empty(0, dtype=bool)
            out.raw = {k: np.concatenate([p.raw[k] for p in parts]) if parts else np.empty(0) for k in self._names}
            out.calibrated = {k: np.concatenate([p.calibrated[k] for p in parts]) if parts else np.empty(0)
                              for k in self._names}
            out.alerts = [a for p in parts for a in p.alerts]
        out.scored, out.labels = [], []
        return out

    def _compiled_alert(self, e: Order | Login, x: dict[str, float], explain: list[Any], risk: float, q: float,
                        sev: int, act: int, p: np.ndarray, weights: list[float]) -> Alert:
        """The alert of an event the core alerted on, as :meth:`Engine._alert` builds it: the reasons through
        :func:`detectors.ensemble.alert_reasons` with the core's explain data in place of the models, and the
        weights the core combined the event's stretch with (adaptive weights change at labels)."""
        ens: Ensemble = self.ensembles[e.type]
        names = self._names
        ens._weights = dict(zip(names, weights, strict=True))  # noqa: SLF001 - the core's, as they stood
        explainers: dict[str, Any] = {}
        for name, ex in zip(names, explain, strict=True):
            explainers[name] = ens.detectors[name] if ex is None else _VIEWS[ex[0]](ex[1])
        forced = [(n, w) for n, d in self._blockers[e.type] for w in d.block_reasons(x, None)]  # type: ignore[attr-defined]
        ps = {name: float(v) for name, v in zip(names, p.tolist(), strict=True)}
        evidence = 0.0
        for name in names:  # the ensemble's sum, in its order (numpy adds detector after detector)
            w = ens._weights[name]  # noqa: SLF001
            if w:
                evidence += w * -math.log(ps[name])  # libm, as the core and the reference (neg_log)
        severity, action = self._severities[sev], self._actions[act]
        ids = entity_ids(e)
        reasons = alert_reasons(ens, explainers, x, ids, q=q, severity=severity, action=action, forced=forced,
                                evidence=float(evidence), p=ps)
        return self._make_alert(e, ids, score=risk, severity=severity, action=action, reasons=tuple(reasons),
                                detector_scores=ps)

    def _learn_label(self, label: Label) -> None:
        self.core.vectors([label])  # entity risk and the graph, if labels matter to them
        self._teach_ensembles(label)  # detection in Python: allocator and weights learn as in the reference
        if self.learns_labels:
            store = self.label_store
            store.advance(label.ts)
            joined = store.join(label.ref_event_id, int(label.label or 0))
            if joined is not None:
                ens = self.ensembles.get(joined.kind)
                if ens is not None:
                    ens.learn_label(joined.x, joined.y)

    def _vectors(self, scored: list[Order | Login]) -> tuple[list[dict[str, float]], list[dict[str, str]] | None]:
        xs = self.core.vectors(scored)
        ids = [entity_ids(e) for e in scored] if self._ids_needed else None
        return xs, ids

    def _keep_for_labels(self, scored: list[Order | Login], xs: list[dict[str, float]],
                         ids: list[dict[str, str]] | None, alerted: np.ndarray) -> None:
        if self.learns_labels and ids is not None:  # the vectors a learner will be taught with (the core keeps
            put = self.label_store.put             # its own entries for entity risk and the graph)
            for e, x, ent in zip(scored, xs, ids, strict=True):
                put(e.event_id, e.ts, x, kind=e.type, entities=ent)
        if self.core.has_graph:
            for i in np.flatnonzero(alerted).tolist():
                self.core.flag(scored[i].user_id, scored[i].ts)

    def memory_stats(self) -> dict[str, float]:
        st = dict(self.core.stats())
        st.pop("label_store")
        return st

    def label_store_stats(self) -> dict[str, int]:
        return dict(self.core.stats()["label_store"])

    def snapshot(self) -> bytes:
        return pickle.dumps(
            {"config_hash": self.config_hash, "engine": "compiled", "core_state_version": self._state_version,
             # LZ4 (about 3x smaller): a checkpoint's cost is mostly its size, copied, hashed, written and fsynced
             "core_format": "lz4", "core": self.core.snapshot(compressed=True), "ensembles": self.ensembles,
             "events_seen": self.events_seen,
             "label_store": self.label_store if self.learns_labels and self.detection != "compiled" else None,
             "rules_version": self.rules_version},
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def restore(self, blob: bytes) -> None:
        state = self._load_state(blob)
        if state.get("engine") != "compiled":
            raise CheckpointError("checkpoint was made by the python engine and this one is compiled; set "
                                  "[engine] core = \"python\" to continue from it, or start from empty state")
        if state.get("core_state_version") != self._state_version:
            raise CheckpointError(f"checkpoint holds compiled state version {state.get('core_state_version')}, "
                                  f"this build reads version {self._state_version}; start from empty state")
        try:
            # a checkpoint written before the state was compressed has no "core_format": it loads as it was
            self.core.restore(state["core"], compressed=state.get("core_format") == "lz4")
        except ValueError as e:
            raise CheckpointError(f"checkpoint does not load: {e}") from None
        self.ensembles = state["ensembles"]
        self.events_seen = state["events_seen"]
        if state.get("label_store") is not None:
            self.label_store = state["label_store"]
        self.rules_version = state.get("rules_version")
        if self.detection == "compiled":
            self._blockers = {k: [(n, d) for n, d in ens.detectors.items() if getattr(d, "can_block", False)]
                              for k, ens in self.ensembles.items()}


class LazyEvents(Sequence[Event]):
    """Scored events of a core call, each decoded in Python only when read (``event(j)``), with :meth:`columns`:
    what a replay's report and evaluation window read of them, from the core (``ts``, ``label`` -1 for none,
    ``card``, ``fraud_id``, ``scenario``)."""

    def __init__(self, n: int, event: Callable[[int], Any], columns: dict[str, Any]) -> None:
        self._n, self._event, self._columns = n, event, columns

    def columns(self) -> dict[str, Any]:
        return self._columns

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self._event(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._event(i % self._n)

    def __iter__(self) -> Iterator[Event]:
        return (self._event(j) for j in range(self._n))


def engine_summary(settings: Settings) -> str:
    """Which engine :func:`new_engine` runs for ``settings`` and where detection runs, in one line (``riskstream
    config show`` prints it): builds the detectors, so a bad detector parameter is a ``ConfigError`` here too."""
    if settings.engine.get("core", "compiled") == "python":
        return 'python (the reference engine: [engine] core = "python")'
    if settings.ensemble.get("bandit", {}).get("enabled", False):
        return "python ([ensemble.bandit] is enabled and the compiled core does not run the review allocator)"
    try:
        detection_specs(Engine(settings))
    except Unsupported as e:
        return f"compiled; detection runs in Python: {e}"
    return "compiled (features and detection in the core)"


def new_engine(settings: Settings, *, clock: Callable[[Event], float] | None = None) -> Engine:
    """The engine ``[engine] core`` names: :class:`CompiledEngine` (the default) or the Python reference; the
    Python one also when a setting the core does not run is on (``[ensemble.bandit]``), with a logged warning."""
    if settings.engine.get("core", "compiled") == "python":
        return Engine(settings, clock=clock)
    if settings.ensemble.get("bandit", {}).get("enabled", False):
        why = ("[ensemble.bandit] is enabled and the compiled core does not run the review allocator: the Python "
               "reference engine runs instead (set [engine] core = \"python\" to say so)")
        if why not in _TOLD:
            _TOLD.add(why)
            log.warning("compiled engine: %s", why)
        return Engine(settings, clock=clock)
    return CompiledEngine(settings, clock=clock)
