"""Malformed records for fuzzing: what a broken producer, a bad deploy or an attacker puts on an input topic.

:func:`junk_records` turns valid events into raw records that are broken in one of the ways listed in
:data:`KINDS` (truncated, a field of the wrong type or missing, deep nesting, huge strings, invalid UTF-8,
``NaN``/``Infinity`` tokens, numbers out of any range, control characters, JSON that is not an object, binary
garbage...). The same seed gives the same records. Some mutations stay valid events (a wrong type the decoder
accepts, an absurd but well-formed value): :func:`split_refused` separates the records the decoder refuses from
those it accepts, so a test can check that every refused one reaches the dead-letter path with its original
bytes, and that the accepted ones are scored without a crash.

>>> from stream.sim import SimConfig, simulate
>>> records = list(junk_records(simulate(SimConfig(events=200, seed=1)), n=50, seed=3))
>>> len(records), all(isinstance(r, bytes) and b"\\n" not in r for r in records)
(50, True)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import orjson

from stream.errors import InvalidEvent
from stream.events import MAX_RECORD_BYTES, MAX_STRING, Event, decode, encode

__all__ = ["KINDS", "mutate", "junk_with_kinds", "junk_records", "split_refused"]

#: The ways a record is broken, each drawn with the same probability.
KINDS = (
    "truncated", "wrong_type", "missing_field", "deep_nesting", "huge_string", "huge_record", "invalid_utf8",
    "nan_token", "number_overflow", "extreme_number", "control_chars", "not_an_object", "binary_garbage",
    "unknown_type", "empty_object", "bad_timestamp",
)
_WRONG_VALUES: tuple[object, ...] = (None, True, [], {}, [1, 2], {"a": 1}, "", "x", -1, 0, 1.5, "1e3", "NaN")
_NUMBER_FIELDS = ("amount", "lat", "lon", "items", "account_created_ts", "label")


def _no_newlines(raw: bytes) -> bytes:
    # one record per line in a file: a newline inside it would make two records of one
    return raw.replace(b"\n", b" ").replace(b"\r", b" ")


def mutate(r: random.Random, kind: str, event: Event) -> bytes:
    """``event`` broken in way ``kind`` (one of :data:`KINDS`), drawing from ``r``."""
    raw = encode(event)
    obj = orjson.loads(raw)
    fields = [k for k in obj if k != "type"]
    if kind == "truncated":
        return raw[: r.randrange(1, len(raw))]
    if kind == "wrong_type":
        obj[r.choice(fields)] = r.choice(_WRONG_VALUES)
        return orjson.dumps(obj)
    if kind == "missing_field":
        del obj[r.choice(fields + ["type"])]
        return orjson.dumps(obj)
    if kind == "deep_nesting":
        depth = r.choice((600, 1100, 5000))
        return raw[:-1] + b',"nested":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "huge_string":
        obj[r.choice(fields)] = "x" * r.choice((MAX_STRING + 1, 10_000, MAX_RECORD_BYTES))
        return orjson.dumps(obj)
    if kind == "huge_record":
        obj["padding"] = ["y" * 1000] * (MAX_RECORD_BYTES // 1000 + r.randrange(1, 200))
        return orjson.dumps(obj)
    if kind == "invalid_utf8":
        at = r.randrange(1, len(raw) - 1)
        return raw[:at] + r.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")) + raw[at:]
    if kind == "nan_token":
        token = r.choice((b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"))
        return raw[:-1] + b',"amount":' + token + b"}"
    if kind == "number_overflow":
        field = r.choice(_NUMBER_FIELDS).encode()
        return raw[:-1] + b',"' + field + b'":1e' + str(r.randrange(309, 400)).encode() + b"}"
    if kind == "extreme_number":
        obj[r.choice(_NUMBER_FIELDS)] = r.choice((1e308, -1e308, 5e-324, -0.0, 2**63, -(2**63), 2**64 + 1))
        return _dumps_big(obj)
    if kind == "control_chars":
        key = r.choice([k for k in fields if isinstance(obj[k], str)] or fields)
        obj[key] = f"{obj[key]}\x00\x07\x1b"
        return orjson.dumps(obj)
    if kind == "not_an_object":
        return r.choice((b"[]", b'"order"', b"123", b"null", b"true", orjson.dumps([obj]), b'{"type":"order"'))
    if kind == "binary_garbage":
        # starts with a byte that is no whitespace: a blank line is skipped, not a record
        return bytes([r.randrange(0x21, 256)]) + bytes(r.randrange(256) for _ in range(r.randrange(0, 300)))
    if kind == "unknown_type":
        obj["type"] = r.choice(("refund", "ORDER", "", "order ", "login\x00"))
        return orjson.dumps(obj)
    if kind == "empty_object":
        return b"{}"
    if kind == "bad_timestamp":
        obj["ts"] = r.choice(("yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", 1e20, -1e20, "", [],
                              "0000-01-01T00:00:00Z", "2024-01-01T25:00:00Z"))
        return orjson.dumps(obj)
    raise ValueError(f"unknown kind {kind!r}")


def _dumps_big(obj: dict[str, object]) -> bytes:
    # orjson refuses integers beyond 64 bits; a producer in another language does not
    big = {k: v for k, v in obj.items() if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63}
    if not big:
        return orjson.dumps(obj)
    rest = orjson.dumps({k: v for k, v in obj.items() if k not in big})
    extra = b"".join(b',"' + k.encode() + b'":' + str(v).encode() for k, v in big.items())
    return rest[:-1] + extra + b"}"


def junk_with_kinds(events: Iterable[Event], *, n: int, seed: int = 0,
                    kinds: tuple[str, ...] = KINDS) -> Iterator[tuple[str, bytes]]:
    """``n`` ``(kind, record)`` pairs: records made from ``events`` (cycled), each broken in one of ``kinds``;
    no record holds a newline, so each is one line of a JSONL file."""
    pool = [e for e in events if e.type != "label"]
    if not pool:
        raise ValueError("junk needs at least one order or login to break")
    r = random.Random(seed)
    for i in range(n):
        kind = kinds[r.randrange(len(kinds))]
        yield kind, _no_newlines(mutate(r, kind, pool[i % len(pool)]))


def junk_records(events: Iterable[Event], *, n: int, seed: int = 0,
                 kinds: tuple[str, ...] = KINDS) -> Iterator[bytes]:
    """The records of :func:`junk_with_kinds`."""
    for _, raw in junk_with_kinds(events, n=n, seed=seed, kinds=kinds):
        yield raw


def split_refused(records: Iterable[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The records the decoder refuses, and those it accepts (in order)."""
    refused: list[bytes] = []
    accepted: list[bytes] = []
    for raw in records:
        try:
            decode(raw)
        except InvalidEvent:
            refused.append(raw)
        else:
            accepted.append(raw)
    return refused, accepted
