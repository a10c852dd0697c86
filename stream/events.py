"""Event types and their decoding.

Three kinds of event enter riskstream, each a JSON object that names its ``type`` (see ``docs/events.md``):

- :class:`Order` — a purchase,
- :class:`Login` — a login attempt, successful or not,
- :class:`Label` — ground truth about an earlier event, arriving late (a chargeback, a review outcome).

Decoding is strict: :func:`decode` returns a frozen event or raises :class:`~stream.errors.InvalidEvent` whose
message names the field and the problem. ``ts`` is held as float seconds since the Unix epoch, UTC.

``label`` and ``scenario`` ride along for metrics and the delayed-label path; the feature extractor never reads
them, so they cannot leak into a detector's input.

>>> e = decode(b'{"type":"login","event_id":"e1","ts":"2024-05-01T12:00:00Z","user_id":"u1","success":false}')
>>> e.type, e.user_id, e.success, e.ts
('login', 'u1', False, 1714564800.0)
>>> decode(b'{"type":"order","event_id":"e2","ts":0,"user_id":"u","order_id":"o","amount":-1,'
...        b'"currency":"EUR","merchant_id":"m"}')
Traceback (most recent call last):
...
stream.errors.InvalidEvent: amount: must be >= 0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

from stream.errors import InvalidEvent

__all__ = [
    "Provenance",
    "Order",
    "Login",
    "Label",
    "Event",
    "decode",
    "from_dict",
    "to_dict",
    "encode",
    "parse_ts",
    "format_ts",
    "TS_MIN",
    "TS_MAX",
    "MAX_STRING",
    "MAX_RECORD_BYTES",
    "EVENT_FIELDS",
]

#: Longest string accepted in any field (ids, currency, user agent...). Longer values are an error, not a truncation.
MAX_STRING = 1024
#: Largest encoded record accepted.
MAX_RECORD_BYTES = 64 * 1024
#: Most pass-through features one event may carry.
MAX_FEATURES = 512

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a record came from: a Kafka position, or a file and line (``topic`` holds the file name)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    event_id: str
    ts: float
    features: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    label: int | None = None
    scenario: str | None = None
    provenance: Provenance | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Order(_Common):
    """A purchase."""

    type: ClassVar[str] = "order"
    user_id: str
    order_id: str
    amount: float
    currency: str
    merchant_id: str
    device_id: str | None = None
    ip: str | None = None
    payment_id: str | None = None
    address_id: str | None = None
    account_created_ts: float | None = None
    items: int | None = None
    promo_code: str | None = None
    country: str | None = None

    @property
    def entity(self) -> str:
        return self.user_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Login(_Common):
    """A login attempt."""

    type: ClassVar[str] = "login"
    user_id: str
    success: bool
    device_id: str | None = None
    ip: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    user_agent: str | None = None
    method: str | None = None

    @property
    def entity(self) -> str:
        return self.user_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(_Common):
    """Ground truth about event ``ref_event_id``; ``label`` is 1 for fraud, 0 for legitimate."""

    type: ClassVar[str] = "label"
    ref_event_id: str
    source: str | None = None

    @property
    def entity(self) -> str:
        return self.ref_event_id


Event = Order | Login | Label
_TYPES: dict[str, type[Order] | type[Login] | type[Label]] = {"order": Order, "login": Login, "label": Label}


# --- field checkers: each takes (name, value) and returns the clean value or raises InvalidEvent ----------------


#: The one range of event timestamps riskstream accepts, in epoch seconds: from 1970-01-01T00:00:00Z (inclusive)
#: to 2200-01-01T00:00:00Z (exclusive). Whatever the source (JSON files, CSV/Parquet columns, Kafka), every
#: timestamp goes through :func:`parse_ts`, and one outside it is an :class:`InvalidEvent` (a dead letter). A
#: value before 1970 or after 2200 is a unit or origin mistake (seconds read as milliseconds the other way
#: round, micro- or nanoseconds, a negative offset), not an event; see ``docs/events.md``.
TS_MIN = 0.0
TS_MAX = 7258118400.0
TS_RANGE = "1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (exclusive)"


def parse_ts(value: Any, name: str = "ts") -> float:
    """Seconds since the epoch from ISO-8601 text (UTC if no offset is given) or a number of epoch milliseconds,
    within [:data:`TS_MIN`, :data:`TS_MAX`)."""
    if isinstance(value, bool):
        raise InvalidEvent(name, "must be ISO-8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidEvent(name, "must be finite")
        ts = value / 1000.0
    elif isinstance(value, str):
        if len(value) > 64:
            raise InvalidEvent(name, "is too long for a timestamp")
        if _CONTROL.search(value):
            raise InvalidEvent(name, "contains a control character")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent(name, f"is not an ISO-8601 timestamp: {value[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    else:
        raise InvalidEvent(name, f"must be ISO-8601 text or epoch milliseconds, not {type(value).__name__}")
    if not TS_MIN <= ts < TS_MAX:
        shown = f"{value!r} ms" if isinstance(value, int | float) else repr(value[:40])
        raise InvalidEvent(name, f"is out of range: {shown} is not in {TS_RANGE}")
    return ts


def format_ts(ts: float) -> str:
    """ISO-8601 UTC text with millisecond precision, the form riskstream writes."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _str(name: str, value: Any) -> str:
    if isinstance(value, str):
        if not value:
            raise InvalidEvent(name, "must not be empty")
        if len(value) > MAX_STRING:
            raise InvalidEvent(name, f"is longer than {MAX_STRING} characters ({len(value)})")
        if not value.isprintable() and _CONTROL.search(value):
            raise InvalidEvent(name, "contains a control character")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric ids are common in exports; they are ids, not numbers
    raise InvalidEvent(name, f"must be a string, not {_tname(value)}")


def _num(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(name, f"must be a number, not {_tname(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidEvent(name, "must be finite")
    return value


def _nonneg(name: str, value: Any) -> float:
    v = _num(name, value)
    if v < 0:
        raise InvalidEvent(name, "must be >= 0")
    return v


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidEvent(name, f"must be an integer, not {_tname(value)}")
    if value < 0:
        raise InvalidEvent(name, "must be >= 0")
    if value >= 2**63:
        raise InvalidEvent(name, "is too large")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    raise InvalidEvent(name, f"must be true or false, not {_tname(value)}")


def _label(name: str, value: Any) -> int:
    if value is True or value is False:
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    raise InvalidEvent(name, f"must be 0 or 1, not {value!r}"[:120])


def _lat(name: str, value: Any) -> float:
    v = _num(name, value)
    if not -90.0 <= v <= 90.0:
        raise InvalidEvent(name, "must be within [-90, 90]")
    return v


def _lon(name: str, value: Any) -> float:
    v = _num(name, value)
    if not -180.0 <= v <= 180.0:
        raise InvalidEvent(name, "must be within [-180, 180]")
    return v


_FLOAT = {float}


def _features(name: str, value: Any) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise InvalidEvent(name, f"must be an object of numbers, not {_tname(value)}")
    if len(value) > MAX_FEATURES:
        raise InvalidEvent(name, f"has more than {MAX_FEATURES} entries")
    vals = value.values()
    if value and set(map(type, vals)) == _FLOAT and math.isfinite(sum(vals)):
        lens = set(map(len, value))
        if min(lens) > 0 and max(lens) <= 128:
            return MappingProxyType(dict(value))  # the usual case, checked in bulk: finite floats, sane names
    out: dict[str, float] = {}
    for k, v in value.items():
        if not k or len(k) > 128:
            raise InvalidEvent(f"{name}.{k[:20]}", "feature name must be 1 to 128 characters")
        out[k] = _num(f"{name}.{k}", v)
    return MappingProxyType(out)


def _ts_field(name: str, value: Any) -> float:
    return parse_ts(value, name)


def _tname(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_Checker = Callable[[str, Any], Any]
_COMMON_REQ: dict[str, _Checker] = {"event_id": _str, "ts": _ts_field}
_COMMON_OPT: dict[str, _Checker] = {"features": _features, "label": _label, "scenario": _str}
_SPEC: dict[str, tuple[dict[str, _Checker], dict[str, _Checker]]] = {
    "order": (
        {**_COMMON_REQ, "user_id": _str, "order_id": _str, "amount": _nonneg, "currency": _str, "merchant_id": _str},
        {
            **_COMMON_OPT,
            "device_id": _str,
            "ip": _str,
            "payment_id": _str,
            "address_id": _str,
            "account_created_ts": _ts_field,
            "items": _int,
            "promo_code": _str,
            "country": _str,
        },
    ),
    "login": (
        {**_COMMON_REQ, "user_id": _str, "success": _bool},
        {
            **_COMMON_OPT,
            "device_id": _str,
            "ip": _str,
            "country": _str,
            "lat": _lat,
            "lon": _lon,
            "user_agent": _str,
            "method": _str,
        },
    ),
    "label": ({**_COMMON_REQ, "ref_event_id": _str, "label": _label}, {**_COMMON_OPT, "source": _str}),
}
#: Per event type (``order``, ``login``, ``label``), the names of its required and of its optional fields.
EVENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    kind: (tuple(required), tuple(optional)) for kind, (required, optional) in _SPEC.items()
}


def from_dict(obj: Any, provenance: Provenance | None = None) -> Event:
    """Validate a decoded JSON object and build its event. Unknown fields are ignored (forward compatibility)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("$", f"must be a JSON object, not {_tname(obj)}")
    kind = obj.get("type")
    spec = _SPEC.get(kind) if isinstance(kind, str) else None
    if spec is None:
        if kind is None:
            raise InvalidEvent("type", "is missing")
        raise InvalidEvent("type", f"must be one of order, login, label, not {str(kind)[:40]!r}")
    required, optional = spec
    kwargs: dict[str, Any] = {}
    for name, check in required.items():
        value = obj.get(name)
        if value is None:
            raise InvalidEvent(name, "is missing")
        kwargs[name] = check(name, value)
    for name, check in optional.items():
        value = obj.get(name)
        if value is not None:
            kwargs[name] = check(name, value)
    return _TYPES[kind](provenance=provenance, **kwargs)  # type: ignore[arg-type,index]


def decode(raw: bytes | str, provenance: Provenance | None = None) -> Event:
    """Decode one JSON record into an event, or raise :class:`InvalidEvent`."""
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidEvent("$", f"record is larger than {MAX_RECORD_BYTES} bytes ({len(raw)})")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent("$", f"is not valid JSON ({e.args[0] if e.args else e})") from None
    return from_dict(obj, provenance)


def to_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event (the inverse of :func:`from_dict`; ``ts`` as ISO-8601 UTC text)."""
    out: dict[str, Any] = {"type": event.type}
    for name in event.__dataclass_fields__:  # type: ignore[union-attr]
        if name == "provenance":
            continue
        value = getattr(event, name)
        if value is None or (name == "features" and not value):
            continue
        if name in ("ts", "account_created_ts"):
            value = format_ts(value)
        elif name == "features":
            value = dict(value)
        out[name] = value
    return out


def encode(event: Event) -> bytes:
    """orjson bytes of :func:`to_dict`."""
    return orjson.dumps(to_dict(event))
