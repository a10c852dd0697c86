"""The compiled engine: the same verdicts as :class:`stream.pipeline.Engine`, its per-event state in Rust.

:class:`stream._core.CoreEngine` (``core/src/engine.rs``) runs one unit's features, entity-risk and link
features and label join event by event; :func:`engine_params` takes its parameters from a Python
:class:`~stream.pipeline.Engine` built on the same settings, which has validated them (so a bad configuration
gets the reference's error message). :class:`CompiledEngine` is that Python engine with those stages handed to
the core; the detectors, calibrators and ensemble still run in Python (their compiled versions land next).
:func:`new_engine` builds the engine ``[engine] core`` names. The Python engine stays the reference and the
oracle (``tests/core/``). See ``docs/core.md``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from stream.config import Settings
from stream.errors import CheckpointError, InvalidEvent
from stream.events import Event, Label, Login, Order, decode
from stream.pipeline import Engine, entity_ids

__all__ = ["engine_params", "core_engine", "run_raw", "CompiledEngine", "new_engine", "ENGINES"]

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
        "entity_risk": None if risk is None else (list(risk.kinds), list(risk.windows)),
        "store_size": engine.label_store.max_size,
        "store_ttl": engine.label_store.ttl,
        # a blocklist reads every event's entity ids (so the label store fills, as in Python)
        "reads_ids": any(getattr(d, "can_block", False) for ens in engine.ensembles.values()
                         for d in ens.detectors.values()),
        "learns_labels": engine.learns_labels,
    }


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
    """:class:`~stream.pipeline.Engine` with features, entity risk, the link graph and the label join compiled.

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
        # the Python copies of the state the core owns are never advanced: drop them, so nothing reads them
        self.features = None  # type: ignore[assignment]
        self.entity_risk = None

    @property
    def uses_labels(self) -> bool:
        return self.learns_labels or self._risk_on or self.core.has_graph

    def _learn_label(self, label: Label) -> None:
        self.core.vectors([label])  # entity risk and the graph, if labels matter to them
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
             "core": self.core.snapshot(), "ensembles": self.ensembles, "events_seen": self.events_seen,
             "label_store": self.label_store if self.learns_labels else None},
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
            self.core.restore(state["core"])
        except ValueError as e:
            raise CheckpointError(f"checkpoint does not load: {e}") from None
        self.ensembles = state["ensembles"]
        self.events_seen = state["events_seen"]
        if state.get("label_store") is not None:
            self.label_store = state["label_store"]


def new_engine(settings: Settings, *, clock: Callable[[Event], float] | None = None) -> Engine:
    """The engine ``[engine] core`` names: :class:`CompiledEngine` (the default) or the Python reference."""
    if settings.engine.get("core", "compiled") == "python":
        return Engine(settings, clock=clock)
    return CompiledEngine(settings, clock=clock)
