"""Decoding through the compiled core (``stream._core``), giving exactly what :func:`stream.events.decode` gives.

The core's decoder (``core/src/decode.rs``) turns each raw record into one *outcome*: an event's fields, the
``(field, reason)`` of the :class:`~stream.errors.InvalidEvent` Python would raise, or "fallback" for a record
outside the shapes it reproduces exactly (invalid JSON, whose reason quotes orjson's error text; unusual
timestamp forms; reasons quoting non-ASCII text...). :func:`from_outcome` makes the event or raises the
exception; a fallback record is decoded by :func:`stream.events.decode` itself, so the result never differs.

>>> raws = [b'{"type":"login","event_id":"e1","ts":"2024-05-01T12:00:00Z","user_id":"u1","success":false}',
...         b'{"type":"login","event_id":"e2","ts":"2024-05-01T12:00:00Z","user_id":"u1","success":2}', b'{"type"']
>>> for got in decode_many(raws):
...     print(got if isinstance(got, InvalidEvent) else (got.type, got.event_id, got.ts))
('login', 'e1', 1714564800.0)
success: must be true or false, not int
$: is not valid JSON (unexpected end of data: line 1 column 8 (char 7))
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from stream import _core
from stream.errors import InvalidEvent
from stream.events import Event, Label, Login, Order, Provenance, decode

__all__ = ["Outcome", "outcomes", "from_outcome", "decode_one", "decode_many"]

#: ``(kind, fields)``, ``("invalid", field, reason)`` or ``("fallback",)``, as ``stream._core`` returns them.
Outcome = tuple[Any, ...]

_CLASSES: dict[str, type[Order] | type[Login] | type[Label]] = {"order": Order, "login": Login, "label": Label}


def outcomes(records: list[bytes]) -> list[Outcome]:
    """The core's outcome for each record (a list of ``bytes``)."""
    return _core.decode_many(records)  # type: ignore[no-any-return]


def from_outcome(outcome: Outcome, raw: bytes, provenance: Provenance | None = None) -> Event:
    """The event of ``raw`` from its outcome, or raise the :class:`InvalidEvent` that
    :func:`stream.events.decode` raises for it."""
    kind = outcome[0]
    cls = _CLASSES.get(kind)
    if cls is not None:
        fields = outcome[1]
        features = fields.get("features")
        if features is not None:
            fields["features"] = MappingProxyType(features)
        return cls(provenance=provenance, **fields)
    if kind == "invalid":
        raise InvalidEvent(outcome[1], outcome[2])
    return decode(raw, provenance)  # "fallback"


def decode_one(raw: bytes, provenance: Provenance | None = None) -> Event:
    """:func:`stream.events.decode` through the core."""
    return from_outcome(_core.decode_one(raw), raw, provenance)


def decode_many(records: Sequence[bytes]) -> list[Event | InvalidEvent]:
    """For each record, its event or the :class:`InvalidEvent` it is refused with (not raised)."""
    records = records if isinstance(records, list) else list(records)
    out: list[Event | InvalidEvent] = []
    for outcome, raw in zip(outcomes(records), records, strict=True):
        try:
            out.append(from_outcome(outcome, raw))
        except InvalidEvent as e:
            out.append(e)
    return out
