"""Detectors are found by name: ``[detectors.hst]`` in a config builds ``REGISTRY["hst"](**params)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from detectors.base import Detector

__all__ = ["register", "build", "available", "REGISTRY"]

REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])


def register(name: str) -> Callable[[D], D]:
    def deco(cls: D) -> D:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"detector name {name!r} is registered twice")
        REGISTRY[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def available() -> list[str]:
    _load_builtins()
    return sorted(REGISTRY)


def build(name: str, params: Mapping[str, Any] | None = None) -> Detector:
    """Build detector ``name`` with ``params``; a ``ValueError`` names an unknown detector or parameter."""
    _load_builtins()
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    try:
        return cls(**dict(params or {}))
    except TypeError as e:
        raise ValueError(f"detector {name!r}: {e}") from None


def _load_builtins() -> None:
    import detectors  # noqa: F401  (importing the package registers the built-in detectors)
