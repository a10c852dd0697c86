"""Detectors are found by name: ``[detectors.hst]`` in a config builds ``REGISTRY["hst"](**params)``.

A section may name its class with ``class``: a registered name (``class = "hst"``, a second HST under another
name), the name of an entry point in the ``riskstream.detectors`` group that an installed package declares, or
``"package.module:Class"``. A section whose name is not registered and that has no ``class`` is looked up among
the entry points. Any class found must be a :class:`~detectors.base.Detector` subclass implementing
``score_one`` and ``learn_one`` (see ``docs/plugins.md`` and :mod:`detectors.testing`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from detectors.base import Detector

__all__ = ["register", "build", "available", "resolve", "check_class", "ENTRY_POINT_GROUP", "REGISTRY"]

#: The entry-point group under which installed packages declare detector classes.
ENTRY_POINT_GROUP = "riskstream.detectors"

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
    """Build detector ``name`` with ``params`` (its class from ``params["class"]`` when given, see :func:`resolve`);
    a ``ValueError`` names an unknown detector, a class that does not load or is no detector, or a parameter."""
    _load_builtins()
    params = dict(params or {})
    cls = resolve(params.pop("class", name))
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"detector {name!r}: {e}") from None


def resolve(spec: str) -> type[Detector]:
    """The detector class ``spec`` names: a registered name, a ``riskstream.detectors`` entry point, or
    ``"package.module:Class"``; a one-line ``ValueError`` says what is wrong (unknown, not importable, not a
    detector)."""
    _load_builtins()
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"class must be a detector name or \"package.module:Class\", not {spec!r}")
    spec = spec.strip()
    if ":" in spec:
        cls = _import(spec)
    elif spec in REGISTRY:
        cls = REGISTRY[spec]
    else:
        ep = _entry_point(spec)
        if ep is None:
            known = sorted({*REGISTRY, *(e.name for e in entry_points(group=ENTRY_POINT_GROUP))})
            raise ValueError(f"unknown detector {spec!r}; known: {', '.join(known)}; or set class = "
                             f"\"package.module:Class\"")
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 - whatever importing a plug-in raises is a configuration problem
            raise ValueError(f"entry point {spec!r} = {ep.value!r} does not load: {_one_line(e)}") from None
    check_class(cls, spec)
    return cls


def check_class(cls: Any, spec: str = "") -> None:
    """Refuse, with a one-line ``ValueError``, a class that does not follow the detector protocol: a
    :class:`~detectors.base.Detector` subclass that implements ``score_one`` and ``learn_one``."""
    what = spec or getattr(cls, "__qualname__", repr(cls))
    if not inspect.isclass(cls):
        raise ValueError(f"{what} is a {type(cls).__name__}, not a class")
    if not issubclass(cls, Detector):
        raise ValueError(f"{what} is not a detector: subclass detectors.Detector (see docs/plugins.md)")
    missing = [m for m in ("score_one", "learn_one") if getattr(cls, m) is getattr(Detector, m)]
    if missing:
        raise ValueError(f"{what} does not implement {' and '.join(missing)}")


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"class {spec!r}: expected \"package.module:Class\"")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - ImportError, or whatever the module raises while importing
        raise ValueError(f"class {spec!r}: cannot import {module_name!r}: {_one_line(e)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"class {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _entry_point(name: str) -> EntryPoint | None:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    return next(iter(found), None)


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _load_builtins() -> None:
    import detectors  # noqa: F401  (importing the package registers the built-in detectors)
