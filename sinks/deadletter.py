"""Dead letters: records that could not become events, kept whole with the reason they were refused.

A :class:`DeadLetter` holds the original bytes exactly (they may be invalid UTF-8, or a megabyte long), where
they came from (``source`` and ``position``: a file and line number, a Kafka ``topic/partition`` and offset)
and why they were refused (``reason``, e.g. ``amount: must be >= 0``).

:class:`JsonlDeadLetterSink` appends one JSON line per record, durably (write, ``os.fsync``), with the
bytes base64-encoded in ``raw_b64`` and a lossy ``raw_text`` preview for people reading the file::

    {"position":17,"raw_b64":"eyJ0eXBlIjoib3JkZXIi","raw_len":15,"raw_text":"{\\"type\\":\\"order\\"",
     "reason":"$: not valid JSON","source":"orders.jsonl","ts":1714564800.0}

Dead letters are written at least once: after a crash the replayed input may dead-letter the same record
again; ``(source, position)`` identifies the copies.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "dead.jsonl"
>>> bad = DeadLetter("$: not valid JSON", b'{"type":\\xff', "orders.jsonl", 17, ts=0.0)
>>> with JsonlDeadLetterSink(path) as sink:
...     sink.add(bad)
>>> read_dead_letters(path) == [bad]
True
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from sinks.base import BatchSink
from sinks.errors import SinkError
from sinks.files import AppendLog, is_gzip_file, iter_lines

__all__ = ["DeadLetter", "DeadLetterSink", "JsonlDeadLetterSink", "MemoryDeadLetterSink", "read_dead_letters"]

#: Characters of the ``raw_text`` preview.
PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record.

    Parameters
    ----------
    reason
        Why it was refused (an :class:`~stream.errors.InvalidEvent` message, ``"field: problem"``).
    raw
        The original bytes, whole.
    source
        Where it came from: a file path, ``"kafka:orders/3"``, ``"simulator"``.
    position
        Its position in ``source`` (line number, offset), if it has one.
    ts
        When it was refused, epoch seconds; the wall clock by default.
    """

    reason: str
    raw: bytes
    source: str
    position: int | None = None
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if isinstance(self.raw, bytearray | memoryview):
            object.__setattr__(self, "raw", bytes(self.raw))
        elif not isinstance(self.raw, bytes):
            raise TypeError(f"raw must be bytes, not {type(self.raw).__name__}")

    @property
    def raw_text(self) -> str:
        """The first :data:`PREVIEW_CHARS` characters of ``raw`` decoded as UTF-8, invalid bytes replaced."""
        # A character takes at most 4 bytes and an invalid byte becomes one U+FFFD, so 4x bytes are enough.
        return self.raw[: 4 * PREVIEW_CHARS].decode("utf-8", "replace")[:PREVIEW_CHARS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "source": self.source,
            "position": self.position,
            "ts": self.ts,
            "raw_len": len(self.raw),
            "raw_b64": base64.b64encode(self.raw).decode("ascii"),
            "raw_text": self.raw_text,
        }

    def to_json(self) -> bytes:
        """One JSON object, keys sorted. Text that is not valid Unicode (a file name with undecodable bytes,
        kept by Python as lone surrogates) is written with backslash escapes rather than refused."""
        d = self.to_dict()
        try:
            return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            for key in ("reason", "source"):
                d[key] = d[key].encode("utf-8", "backslashreplace").decode("utf-8")
            return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        raw = base64.b64decode(d["raw_b64"], validate=True)
        if "raw_len" in d and len(raw) != d["raw_len"]:
            raise ValueError(f"raw_b64 decodes to {len(raw)} bytes, raw_len says {d['raw_len']}")
        return cls(reason=d["reason"], raw=raw, source=d["source"], position=d.get("position"),
                   ts=float(d["ts"]))


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where refused records go: buffer in :meth:`add`, make durable in :meth:`flush` before a checkpoint."""

    def add(self, record: DeadLetter) -> None:
        """Buffer one record. Cheap; no I/O."""

    def flush(self) -> None:
        """Make every buffered record durable, or raise :class:`~sinks.errors.SinkError` keeping them."""

    def close(self) -> None:
        """Flush and release resources."""


class JsonlDeadLetterSink(BatchSink[DeadLetter]):
    """Append dead letters to a JSON Lines file (``.gz`` => gzip), one durable line per record.

    Parameters
    ----------
    path
        The file; created with its parent directories if absent, appended to if present. One writer at a time.
    gzip
        Write gzip members; ``None`` (default) means "if ``path`` ends in ``.gz``".
    """

    def __init__(self, path: str | os.PathLike[str], *, gzip: bool | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._log = AppendLog(self.path, gzip=gzip)

    def write_batch(self, records: Sequence[DeadLetter]) -> None:
        self._log.append(b"".join(r.to_json() + b"\n" for r in records))

    def close(self) -> None:
        """Flush, then release the file; a second close does nothing."""
        if self._log.closed:
            return
        self.flush()
        self._log.close()

    def __repr__(self) -> str:
        return f"JsonlDeadLetterSink({str(self.path)!r})"


class MemoryDeadLetterSink(BatchSink[DeadLetter]):
    """Test double: flushed records in :attr:`records`, in order; :attr:`flushes` counts the flushes (empty ones
    included)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[DeadLetter] = []
        self.flushes = 0
        self.closed = False

    def flush(self) -> None:
        super().flush()
        self.flushes += 1

    def write_batch(self, records: Sequence[DeadLetter]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        super().close()
        self.closed = True

    def __repr__(self) -> str:
        return f"MemoryDeadLetterSink(records={len(self.records)}, pending={self.pending})"


def read_dead_letters(path: str | os.PathLike[str]) -> list[DeadLetter]:
    """Every durable record of a dead-letter file (plain or gzip, by content), with its original bytes."""
    p = Path(path)
    out = []
    for lineno, (line, _) in enumerate(iter_lines(p, is_gzip_file(p)), 1):
        if not line:
            continue
        try:
            out.append(DeadLetter.from_dict(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SinkError(f"{p}: line {lineno} is not a dead letter ({e})") from e
    return out
