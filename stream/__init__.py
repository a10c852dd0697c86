"""The riskstream engine: events, sources, features, the pipeline, checkpoints, configuration and the CLI.

The Python API (``docs/python-api.md``) is what this package exports::

    from stream import ListSource, SimConfig, load_settings, replay, simulate

    settings = load_settings("my.toml", overrides={"engine.budget": 0.01})
    result = replay(ListSource(simulate(SimConfig(events=20_000))), settings)
    print(result["alerts"], result["roc_auc"])

Names are imported on first use, so ``import stream`` stays light (the engine pulls in numpy, river and
scikit-learn). ``stream.replay`` is the :func:`~stream.replay.replay` function, also once its module has been
imported: import the module's other names from it (``from stream.replay import ReplayResult``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.config import Settings, default_settings, load_settings
    from stream.errors import ConfigError, InvalidEvent, RiskstreamError, SourceError
    from stream.eval.metrics import average_precision, roc_auc
    from stream.eval.scores import ScoresWriter
    from stream.events import Event, Label, Login, Order
    from stream.pipeline import Engine, Outcome
    from stream.replay import ReplayResult, replay
    from stream.sim import SimConfig, simulate
    from stream.sources import Batch, ColumnMapping, FileSource, ListSource, Source

#: Public name -> the module that defines it.
_EXPORTS = {
    "replay": "stream.replay",
    "ReplayResult": "stream.replay",
    "Engine": "stream.pipeline",
    "Outcome": "stream.pipeline",
    "Settings": "stream.config",
    "load_settings": "stream.config",
    "default_settings": "stream.config",
    "FileSource": "stream.sources",
    "ListSource": "stream.sources",
    "Batch": "stream.sources",
    "Source": "stream.sources",
    "ColumnMapping": "stream.sources",
    "Order": "stream.events",
    "Login": "stream.events",
    "Label": "stream.events",
    "Event": "stream.events",
    "simulate": "stream.sim",
    "SimConfig": "stream.sim",
    "ScoresWriter": "stream.eval.scores",
    "roc_auc": "stream.eval.metrics",
    "average_precision": "stream.eval.metrics",
    "RiskstreamError": "stream.errors",
    "ConfigError": "stream.errors",
    "InvalidEvent": "stream.errors",
    "SourceError": "stream.errors",
}

__all__ = [
    "replay", "ReplayResult", "Engine", "Outcome", "Settings", "load_settings", "default_settings",
    "FileSource", "ListSource", "Batch", "Source", "ColumnMapping", "Order", "Login", "Label", "Event",
    "simulate", "SimConfig",
    "ScoresWriter", "roc_auc", "average_precision", "RiskstreamError", "ConfigError", "InvalidEvent", "SourceError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``stream.replay`` would bind the package attribute
    ``replay`` to that module; the attribute is the function of the same name instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "replay" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
