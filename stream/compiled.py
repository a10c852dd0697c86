"""The compiled core's side of the engine: what it is built from, and the stages it runs.

:class:`stream._core.CoreEngine` (Rust, ``core/src/engine.rs``) runs one unit's features, entity-risk and link
features and label join event by event; :func:`engine_params` takes its parameters from a Python
:class:`~stream.pipeline.Engine` built on the same settings, which has validated them (so a bad configuration
gets the reference's error message) and is the oracle the compiled stages are tested against
(``tests/core/test_engine_differential.py``). See ``docs/core.md``.
"""

from __future__ import annotations

from typing import Any

from stream.errors import InvalidEvent
from stream.events import decode
from stream.pipeline import Engine

__all__ = ["engine_params", "core_engine", "run_raw"]


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
