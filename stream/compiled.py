"""The compiled core's side of the engine: what it is built from, and the stages it runs.

:class:`stream._core.CoreEngine` (Rust, ``core/src/engine.rs``) runs one unit's features, entity-risk and link
features and label join event by event; :func:`engine_params` takes its parameters from a Python
:class:`~stream.pipeline.Engine` built on the same settings, which has validated them (so a bad configuration
gets the reference's error message) and is the oracle the compiled stages are tested against
(``tests/core/test_engine_differential.py``). See ``docs/core.md``.
"""

from __future__ import annotations

from typing import Any

from stream.pipeline import Engine

__all__ = ["engine_params", "core_engine"]


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
