"""Bounded sources: recorded files (JSONL or CSV, optionally gzipped) and in-memory event lists.

A :class:`Source` yields :class:`Batch` objects: the events that decoded, in file order, and the records that
did not, as :class:`~sinks.deadletter.DeadLetter` records carrying the reason and the original bytes. Nothing is
lost: every input record ends up in exactly one of the two lists. :class:`FileSource` and :class:`ListSource`
are the sources; :class:`~stream.eval.delayed_labels.DelayedLabels` wraps one.

CSV files and JSONL files with foreign field names are brought onto the event schema with a
:class:`ColumnMapping`:

>>> m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
...                         set_spec="user_id=u,merchant_id=m")
>>> m.fields["amount"], m.constants["user_id"]
('Amount', 'u')
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import heapq
import io
import math
import queue
import re
import threading
import weakref
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

import orjson

try:  # ISA-L's inflate (wheels for x86-64 and ARM64); the standard library's reader elsewhere
    from isal import igzip, isal_zlib
    from isal.isal_zlib import _GzipReader as _IsalReader

    _ISAL_ERRORS: tuple[type[BaseException], ...] = (isal_zlib.error,)  # type: ignore[assignment]
except ImportError:  # pragma: no cover - platforms without isal wheels
    igzip = None  # type: ignore[assignment]
    _ISAL_ERRORS = ()

from sinks.deadletter import DeadLetter
from stream.errors import ConfigError, InvalidEvent, SourceError
from stream.events import EVENT_FIELDS, MAX_RECORD_BYTES, Event, Provenance, decode, from_dict, parse_ts

__all__ = ["Batch", "RawBatch", "Source", "ColumnMapping", "FileSource", "ListSource", "open_text", "detect_format"]


@dataclass(slots=True)
class Batch:
    """Events that decoded and records that did not, from one stretch of input."""

    events: list[Event] = field(default_factory=list)
    invalid: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.invalid)


class RawBatch:
    """A stretch of a JSONL file as raw lines, for an engine that decodes them itself
    (:meth:`FileSource.raw_batches`): ``records`` (bytes, blank lines left out) and their line numbers.
    ``invalid`` is filled by the replay with the dead letters of the refused lines; ``events`` decodes the
    valid ones in Python on first use (for callers that want event objects: not the replay's own path)."""

    __slots__ = ("records", "line_nos", "name", "invalid", "_events")

    def __init__(self, records: list[bytes], line_nos: list[int], name: str) -> None:
        self.records, self.line_nos, self.name = records, line_nos, name
        self.invalid: list[DeadLetter] = []
        self._events: list[Event] | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def events(self) -> list[Event]:
        if self._events is None:
            out: list[Event] = []
            for raw, line_no in zip(self.records, self.line_nos, strict=True):
                try:
                    out.append(decode(raw, Provenance(self.name, 0, line_no)))
                except InvalidEvent:
                    pass
            self._events = out
        return self._events


@runtime_checkable
class Source(Protocol):
    """A bounded input: iterating it yields :class:`Batch`\\ es in event-time order; :meth:`close` releases it.

    :func:`stream.replay.replay` takes any source and runs it through the engine; the caller closes it. A
    progress bar counts ``len(batch)`` as batches go by (the replay's ``on_batch``); a source may also say how
    far into its input it is with attributes of its own (:attr:`FileSource.records_read`), which a wrapper
    such as :class:`~stream.eval.delayed_labels.DelayedLabels` passes through. A bounded Kafka replay
    (:func:`stream.kafka.replay_kafka`) is not a source, because it runs one engine per partition unit, but
    it hands its ``on_batch`` the same :class:`Batch`.

    >>> from stream.events import Order
    >>> src = ListSource([Order(event_id="e1", ts=0.0, user_id="u", order_id="o1", amount=1.0, currency="EUR",
    ...                         merchant_id="m")])
    >>> isinstance(src, Source), [len(b) for b in src]
    (True, [1])
    >>> src.close()
    """

    def __iter__(self) -> Iterator[Batch]:
        """The batches, from the start of the input."""
        ...

    def close(self) -> None:
        """Release what the source holds open (files); iterations in progress stop. A second close does
        nothing."""
        ...


_ALL_FIELDS = sorted({name for req, opt in EVENT_FIELDS.values() for name in (*req, *opt)} | {"type"})
_NUMERIC_FIELDS = {"amount", "lat", "lon", "items", "label", "account_created_ts"}


@dataclass(frozen=True)
class ColumnMapping:
    """How a foreign record becomes an event.

    ``fields`` maps schema fields to the record's column names; ``constants`` fills schema fields the data lacks;
    ``type`` is the event type when the data has no ``type`` column; ``features`` picks columns passed through as
    numeric features (``"auto"``: every numeric column not mapped and not dropped; ``"none"``; or names);
    ``drop`` names columns never passed through (ids, leaked labels); a numeric ``ts`` is seconds from
    ``ts_origin`` (or, with ``ts_unit="ms"``, epoch milliseconds).
    """

    fields: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    type: str | None = None
    features: str | tuple[str, ...] = "auto"
    drop: tuple[str, ...] = ()
    ts_origin: float = 0.0
    ts_unit: str = "s"

    @classmethod
    def parse(
        cls,
        *,
        type: str | None = None,
        map_spec: str | Sequence[str] | None = None,
        set_spec: str | Sequence[str] | None = None,
        features: str = "auto",
        drop: str | None = None,
        ts_origin: str | None = None,
        ts_unit: str = "s",
    ) -> ColumnMapping:
        """Build a mapping from CLI text (``FIELD=COLUMN,...``); a bad spec raises :class:`ConfigError`."""
        fields = _pairs(map_spec, "--map")
        constants = _pairs(set_spec, "--set")
        for name in (*fields, *constants):
            if name not in _ALL_FIELDS:
                raise ConfigError(f"--map/--set: {name!r} is not an event field (fields: {', '.join(_ALL_FIELDS)})")
        if type is not None and type not in EVENT_FIELDS:
            raise ConfigError(f"--type must be one of {', '.join(EVENT_FIELDS)}, not {type!r}")
        if ts_unit not in ("s", "ms"):
            raise ConfigError(f"--ts-unit must be s or ms, not {ts_unit!r}")
        origin = 0.0
        if ts_origin:
            try:
                origin = parse_ts(ts_origin, "--ts-origin") if not _is_number(ts_origin) else float(ts_origin)
            except InvalidEvent as e:
                raise ConfigError(f"--ts-origin: {e.problem}") from None
        feats: str | tuple[str, ...] = features
        if features not in ("auto", "none"):
            feats = tuple(c.strip() for c in features.split(",") if c.strip())
        dropped = tuple(c.strip() for c in (drop or "").split(",") if c.strip())
        return cls(fields, constants, type, feats, dropped, origin, ts_unit)

    @property
    def is_identity(self) -> bool:
        return not self.fields and not self.constants and self.type is None and self.features in ("auto", "none")

    def apply(self, row: dict[str, Any], default_id: str) -> dict[str, Any]:
        """Turn one foreign record (column -> value) into a schema object for :func:`~stream.events.from_dict`."""
        obj: dict[str, Any] = {}
        used = set(self.fields.values())
        for name, column in self.fields.items():
            value = row.get(column)
            if value is None or value == "":
                continue
            obj[name] = _coerce(name, value)
        for name, value in self.constants.items():
            obj.setdefault(name, _coerce(name, value))
        for name, value in row.items():  # schema-named columns that were not remapped
            if name in _ALL_FIELDS and name not in obj and name not in used and value not in (None, ""):
                obj[name] = _coerce(name, value)
        self._complete(obj, default_id)
        if self.features != "none" and "features" not in obj:
            feats: dict[str, float] = {}
            names = row.keys() if self.features == "auto" else self.features
            for column in names:
                if column in used or column in self.drop or column in _ALL_FIELDS:
                    continue
                value = row.get(column)
                num = _number(value)
                if num is not None:
                    feats[column] = num
                elif self.features != "auto" and value not in (None, ""):
                    raise InvalidEvent(f"features.{column}", f"must be a number, not {str(value)[:40]!r}")
            if feats:
                obj["features"] = feats
        return obj


    def _complete(self, obj: dict[str, Any], default_id: str) -> None:
        """The fields every mapped record gets: its type, ``ts`` in epoch ms, an event id, and for an order an order
        id and a currency when the data has none."""
        if self.type is not None:
            obj.setdefault("type", self.type)
        ts = obj.get("ts")
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            obj["ts"] = ts if self.ts_unit == "ms" else (self.ts_origin + ts) * 1000.0
        obj.setdefault("event_id", default_id)
        if obj.get("type") == "order":
            obj.setdefault("order_id", obj["event_id"])
            obj.setdefault("currency", "XXX")  # ISO 4217 "no currency": the data did not say

    def compile(self, header: Sequence[str]) -> Callable[[list[str], str], dict[str, Any]]:
        """``apply`` specialised to one CSV header: ``f(row, default_id) == apply(dict(zip(header, row)),
        default_id)``, with the column lookups, constants and feature columns worked out once.

        A row whose feature cells all parse as finite numbers (the usual case) takes the fast path; any other
        row goes through :meth:`apply` itself, so both give the same object for every row.
        """
        pos = {name: i for i, name in enumerate(header)}  # a repeated column name: the last one, as dict(zip())
        used = set(self.fields.values())
        mapped = [(name, pos[column]) for name, column in self.fields.items() if column in pos]
        constants = {name: _coerce(name, value) for name, value in self.constants.items()}
        schema = [(name, i) for name, i in pos.items() if name in _ALL_FIELDS and name not in used]
        if self.features == "none":
            fcols: list[str] = []
        else:
            names = pos if self.features == "auto" else self.features
            fcols = [c for c in names if c not in used and c not in self.drop and c not in _ALL_FIELDS]
        if self.features != "auto" and any(c not in pos for c in fcols):
            fcols = []  # a listed column the header lacks: let apply() handle every row
            slow_only = True
        else:
            slow_only = False
        fidx = [pos[c] for c in fcols]
        fnames = tuple(fcols)
        get = itemgetter(*fidx) if len(fidx) > 1 else None
        isfinite = math.isfinite
        apply, complete = self.apply, self._complete

        def convert(row: list[str], default_id: str) -> dict[str, Any]:
            if slow_only:
                return apply(dict(zip(header, row, strict=True)), default_id)
            if fidx:
                try:
                    nums = list(map(float, get(row) if get is not None else (row[fidx[0]],)))
                except ValueError:
                    return apply(dict(zip(header, row, strict=True)), default_id)
                if not isfinite(sum(nums)):
                    return apply(dict(zip(header, row, strict=True)), default_id)
            obj: dict[str, Any] = {}
            for name, i in mapped:
                value = row[i]
                if value != "":
                    obj[name] = _coerce(name, value)
            for name, value in constants.items():
                obj.setdefault(name, value)
            for name, i in schema:
                if name not in obj and row[i] != "":
                    obj[name] = _coerce(name, row[i])
            complete(obj, default_id)
            if fidx and "features" not in obj:
                obj["features"] = dict(zip(fnames, nums, strict=True))
            return obj

        return convert


def _pairs(spec: str | Sequence[str] | None, flag: str) -> dict[str, str]:
    if not spec:
        return {}
    items = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise ConfigError(f"{flag}: expected FIELD=VALUE, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and value:
        try:
            num = float(value)
        except ValueError:
            return None
        return num if math.isfinite(num) else None
    return None


def _coerce(name: str, value: Any) -> Any:
    """CSV gives text; make numeric fields numbers, booleans booleans, and leave validation to from_dict."""
    if not isinstance(value, str):
        return value
    if name in _NUMERIC_FIELDS or name == "ts":
        try:
            num = float(value)
        except ValueError:
            return value  # from_dict reports it (or parse_ts takes it as ISO text)
        if name in ("items", "label") and num.is_integer():
            return int(num)
        return num
    if name == "success":
        low = value.strip().lower()
        if low in ("1", "true", "t", "yes", "y"):
            return True
        if low in ("0", "false", "f", "no", "n"):
            return False
    return value


def open_text(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently gunzipping ``.gz``.

    A ``.gz`` file that breaks while it is read (truncated, not gzip at all, corrupt) raises one
    :class:`SourceError` naming the file and the line where it broke, after every line before it was read.
    """
    p = Path(path)
    try:
        if p.suffix == ".gz":
            return _GzipInput(p)  # type: ignore[return-value]
        return open(p, "rb")
    except OSError as e:
        raise SourceError(f"cannot read {p}: {e.strerror or e}") from None


# gzip.BadGzipFile is an OSError; isal_zlib.error is ISA-L's corrupt-data error (zlib.error for the stdlib reader)
_GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, *_ISAL_ERRORS)


class _Inflater:
    """The decompressed blocks of a ``.gz`` file, inflated ahead on a thread of their own.

    * ISA-L (``isal``) inflates: 0.21 s for the ULB file's 151 MB against 0.70 s for the standard library's reader.
    * On its own thread, with the GIL released while it inflates, so the inflating neither waits for the engine
      nor runs on the engine's core and cache: the compiled engine's end-to-end replay of the ULB file went from
      3.4-3.6 s (inflating in between its batches) to 2.7-2.9 s, and it took less CPU time in all.
    * ISA-L inflates in large blocks and drops the last one when the data breaks. At its first error the rest is
      read again with the standard library's reader from the byte ISA-L stopped at, so every byte before the
      break is still handed out. The error comes out of :meth:`next_block` only after them, in order.
    """

    _BLOCK = 1 << 22  # decompressed bytes per hand-over, at most
    _AHEAD = 2  # blocks queued ahead of the reader: with the one being inflated and the one being read, ~16 MiB

    def __init__(self, path: Path) -> None:
        self.path = path
        self._src: gzip.GzipFile = igzip.IGzipFile(path, "rb") if igzip is not None else gzip.GzipFile(path, "rb")
        # How much compressed data ISA-L takes in at a time (its default is 512 KiB) and how much the thread hands
        # over at a time: up to 1 MiB and 4 MiB, so that the thread inflates a lot each time it holds the GIL (the
        # compiled engine holds it for a whole batch), down to 64 KiB on small files, so that a progress bar on
        # compressed bytes still moves
        size = _file_size(path)
        if igzip is not None:
            step = min(1 << 20, max(64 << 10, size >> 6))
            self._src._buffer = io.BufferedReader(_IsalReader(self._src.fileobj, step))  # type: ignore[arg-type]
        self._step = min(self._BLOCK, max(64 << 10, size >> 4))
        self._blocks: queue.Queue[tuple[bytes, int] | BaseException] = queue.Queue(self._AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._at = 0  # the compressed position where the block handed out last ends
        self._broke_at: int | None = None  # the compressed position where the inflating failed
        self._failed: BaseException | None = None
        self._ended = False
        # what the thread handed over: bytes and lines (an error names the first line not handed over whole)
        self.handed = 0
        self.lines = 0

    def next_block(self) -> bytes:
        """The next block of decompressed bytes; ``b""`` at the end; the error where the data broke (again on every
        later call)."""
        if self._failed is not None:
            raise self._failed
        if self._ended:
            return b""
        if self._thread is None:
            self._thread = threading.Thread(target=self._inflate, name=f"inflate {self.path.name}", daemon=True)
            self._thread.start()
        while True:
            try:
                got = self._blocks.get(timeout=1.0)
                break
            except queue.Empty:
                # every way out of the thread hands something over, so a dead thread with nothing queued is one a
                # fork left behind in the parent
                if not self._thread.is_alive() and self._blocks.empty():
                    raise SourceError(f"{self.path}: its inflating thread is gone (was the process forked while "
                                      "the file was open?)") from None
        if isinstance(got, BaseException):
            self._failed = got
            raise got
        block, self._at = got
        self._ended = not block
        return block

    def compressed_position(self) -> int:
        """How far into the compressed file the blocks handed out so far were read (not how far the thread has
        read ahead); after a failure, where the data broke."""
        return self._broke_at if self._failed is not None and self._broke_at is not None else self._at

    def _inflate(self) -> None:
        try:
            while not self._stop.is_set():
                try:  # read1: what one step inflates, so a break loses none of what came before it
                    block = self._src.read1(self._step)
                except _GZIP_ERRORS:
                    if igzip is not None and isinstance(self._src, igzip.IGzipFile):
                        self._src.close()
                        self._src = self._reopen(self.handed)
                        continue
                    raise
                raw: Any = self._src.fileobj
                self.handed += len(block)
                self.lines += block.count(b"\n")
                self._put((block, int(raw.tell())))
                if not block:
                    return
        except BaseException as e:  # handed to the reader, which raises it after every byte before it
            try:
                raw = self._src.fileobj
                self._broke_at = int(raw.tell()) if raw is not None else self._at
            except (OSError, ValueError):
                pass
            self._put(e)

    def _reopen(self, skip: int) -> gzip.GzipFile:
        """The standard library's reader, past the first ``skip`` decompressed bytes."""
        rescue = gzip.GzipFile(self.path, "rb")
        try:
            while skip and not self._stop.is_set():
                skipped = rescue.read1(min(skip, self._step))
                if not skipped:
                    raise EOFError("the gzip data ends early (the file is truncated)")
                skip -= len(skipped)
        except BaseException:
            rescue.close()
            raise
        return rescue

    def _put(self, item: tuple[bytes, int] | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._src.close()


class _GzipInput(io.BufferedIOBase):
    """A ``.gz`` input, inflated by :class:`_Inflater`, whose read errors become a :class:`SourceError` that says
    where the data broke.

    The reads are served from the inflater's blocks here rather than by :class:`io.BufferedReader`, which drops
    what one ``read`` gathered when its next raw read fails: a read that meets the break returns the bytes before
    it, and the next read raises.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._inflater: _Inflater | None = None  # set last: a failed open leaves nothing for close() to stop
        self._inflater = _Inflater(path)
        self._buf = b""
        self._off = 0

    def readable(self) -> bool:
        return True

    def _next(self, have: bool) -> bytes:
        """The inflater's next block; ``b""`` at the end, or at the break when ``have`` (unread bytes are handed out
        first, and the next call raises)."""
        assert self._inflater is not None
        try:
            return self._inflater.next_block()  # b"" again and again once it has ended
        except _GZIP_ERRORS as e:
            if have:
                return b""
            raise self._broken(e) from None

    def _more(self, have: bool) -> bool:
        """Append the next block to the buffer's unread part (which then starts at ``_off = 0``); False if none."""
        block = self._next(have)
        if not block:
            return False
        self._buf = self._buf[self._off :] + block if self._off < len(self._buf) else block
        self._off = 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        want = -1 if size is None or size < 0 else size
        parts = [self._buf[self._off :]] if self._off < len(self._buf) else []
        have = len(parts[0]) if parts else 0
        self._buf, self._off = b"", 0
        while want < 0 or have < want:  # blocks gathered in a list and joined once: no copy per block
            block = self._next(have > 0)
            if not block:
                break
            parts.append(block)
            have += len(block)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if 0 <= want < len(data):
            self._buf, self._off = data, want
            return data[:want]
        return data

    def read1(self, size: int = -1) -> bytes:
        self._checkClosed()
        if size == 0:
            return b""
        if self._off >= len(self._buf):
            self._more(False)
        end = len(self._buf) if size < 0 else min(len(self._buf), self._off + size)
        out = self._buf[self._off : end]
        self._off = end
        return out

    def readline(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        limit = -1 if size is None or size < 0 else size
        scanned = 0  # how much of the unread part was searched for a newline
        while True:
            nl = self._buf.find(b"\n", self._off + scanned)
            if nl >= 0:
                end = nl + 1
                break
            scanned = len(self._buf) - self._off
            # a line the break cuts is not handed out: the error names it as the first line not read whole
            if 0 <= limit <= scanned or not self._more(False):  # _more keeps the unread part, from _off = 0
                end = len(self._buf)
                break
        if limit >= 0:
            end = min(end, self._off + limit)
        out = self._buf[self._off : end]
        self._off = end
        return out

    def compressed_position(self) -> int:
        return self._inflater.compressed_position() if self._inflater is not None else 0

    def close(self) -> None:
        if not self.closed and self._inflater is not None:
            self._inflater.close()
        super().close()

    def _broken(self, e: BaseException) -> SourceError:
        """``<file>: <problem> at line N (compressed byte B of SIZE)``; N is the first line not read whole."""
        size = _file_size(self.path)
        assert self._inflater is not None
        # what the inflater handed over before the break; readline never hands out the line it cuts
        lines, readable = self._inflater.lines, self._inflater.handed
        if isinstance(e, EOFError):
            problem = "the gzip data ends early (the file is truncated)"
        elif isinstance(e, gzip.BadGzipFile) and str(e).startswith("Not a gzipped file"):
            if readable == 0:
                head = _head(self.path)
                return SourceError(f"{self.path}: not gzip data at byte 0 (it starts with {head!r}); if it is "
                                   "plain text, drop the .gz from its name")
            problem = "not gzip data after the end of the gzip stream"
        elif isinstance(e, (gzip.BadGzipFile, zlib.error, *_ISAL_ERRORS)):
            problem = f"corrupt gzip data ({e})"
        else:
            problem = f"cannot read ({getattr(e, 'strerror', None) or e})"
        pos = self.compressed_position()  # how far the compressed data was taken in: where it broke
        return SourceError(f"{self.path}: {problem} at line {lines + 1:,} (compressed byte {pos:,} of {size:,})")


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(8)
    except OSError:
        return b""


def _position(fh: IO[bytes]) -> int:
    """How far into its file ``fh`` has read: the compressed position of a ``.gz``."""
    if isinstance(fh, _GzipInput):
        return fh.compressed_position()
    raw: Any = fh
    try:
        return int(raw.tell())
    except (OSError, ValueError, AttributeError):
        return 0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def detect_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".arrow", ".feather", ".ipc", ".arrows")):
        return "arrow"
    raise ConfigError(f"{path}: cannot tell the format from the name; use --format jsonl, csv, parquet or arrow")


class FileSource:
    """Recorded events from one or more files, merged into event-time order, in batches (a :class:`Source`).

    Each file should be in event-time order (exports usually are); several files are merged by ``ts``. A record
    is located by ``Provenance(topic=<file name>, partition=0, offset=<line number>)``.

    Parquet and Arrow IPC / Feather files (``format="parquet"`` / ``"arrow"``) are read a record batch at a time
    and their rows take the CSV path with their typed values (timestamp and date columns as ISO-8601 text,
    decimals as floats, nulls as empty cells), so the same data gives the same events; their position is the
    row number (from 1), and a bad row's dead letter holds its values as a JSON object.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        batch_size: int = 2000,
        format: str | None = None,
        mapping: ColumnMapping | None = None,
    ) -> None:
        if not paths:
            raise ConfigError("no input files given")
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.exists():
                raise ConfigError(f"input file {p} does not exist")
        self.batch_size = batch_size
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()  # for close()
        self.formats = [format or detect_format(p) for p in self.paths]
        for fmt in self.formats:
            if fmt not in _READERS:
                raise ConfigError(f"unknown input format {fmt!r}; formats: {', '.join(_READERS)}")
        self.mapping = mapping or ColumnMapping()
        self.records_read = 0
        self._reading: dict[int, IO[bytes]] = {}  # the files open now, by id
        self._bytes_done = 0  # the sizes of the files read to their end

    @property
    def bytes_read(self) -> int:
        """Bytes of the input files taken in so far, for a progress bar against the files' total size: a ``.gz``
        counts its compressed bytes (read ahead by up to one buffer), a file read to its end its whole size."""
        return self._bytes_done + sum(_position(fh) for fh in self._reading.values())

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[IO[bytes]]:
        with open_text(path) as fh:
            self._reading[id(fh)] = fh
            try:
                yield fh
            finally:
                del self._reading[id(fh)]
                self._bytes_done += _file_size(path)

    def __iter__(self) -> Iterator[Batch]:
        streams = self._open_streams()
        merged: Iterable[tuple[float, int, Event | DeadLetter]]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: (r[0], r[1]))
        batch = Batch()
        failed: list[SourceError] = []
        for _, _, item in _until_failure(merged, failed):
            self.records_read += 1
            if isinstance(item, DeadLetter):
                batch.invalid.append(item)
            else:
                batch.events.append(item)
            if len(batch) >= self.batch_size:
                yield batch
                batch = Batch()
        if len(batch):
            yield batch
        if failed:  # a file broke part-way: everything read before it went out above
            raise failed[0]

    # Each record stream yields (ts, seq, item); invalid records take the ts of the last good one so a merge
    # keeps them near where they were found.
    def _records(self, path: Path, fmt: str) -> Generator[tuple[float, int, Event | DeadLetter], None, None]:
        name = path.name
        last_ts = -math.inf
        it: Iterator[tuple[int, Any, dict[str, Any] | None]]
        it = getattr(self, _READERS[fmt])(path)
        for seq, (line_no, raw, obj) in enumerate(it):
            prov = Provenance(name, 0, line_no)
            try:
                if obj is not None and "__invalid__" in obj:
                    raise InvalidEvent("$", obj["__invalid__"])
                if obj is not None and "__error__" in obj:
                    raise obj["__error__"]
                if obj is None:
                    event = decode(raw, prov)
                elif "__event__" in obj:  # a CSV row the compiled core decoded (FileSource._csv_core)
                    event = obj["__event__"]
                elif "__mapped__" in obj:  # a CSV row the compiled mapping already converted
                    event = from_dict(obj["__mapped__"], prov)
                else:
                    event = from_dict(obj if self.mapping.is_identity else self.mapping.apply(obj, f"{name}:{line_no}"),
                                      prov)
            except InvalidEvent as e:
                data = raw if isinstance(raw, bytes) else _row_json(raw) if isinstance(raw, dict) else _csv_line(raw)
                yield last_ts, seq, DeadLetter(reason=str(e), raw=data, source=name, position=line_no,
                                               ts=last_ts if math.isfinite(last_ts) else 0.0)
                continue
            last_ts = event.ts
            yield event.ts, seq, event

    @property
    def csv_capable(self) -> bool:
        """Whether one CSV file with a column mapping, which the compiled core can read (``process_csv``), is all
        this source reads."""
        return (len(self.paths) == 1 and self.formats[0] == "csv" and not self.mapping.is_identity
                and self.core_csv and _core_module() is not None)

    @property
    def raw_capable(self) -> bool:
        """Whether :meth:`raw_batches` applies: one JSONL file, records taken as they are (no column mapping)."""
        return len(self.paths) == 1 and self.formats[0] == "jsonl" and self.mapping.is_identity

    def raw_batches(self) -> Iterator[RawBatch]:
        """The lines of the one JSONL file, ``batch_size`` records a batch, undecoded (see :attr:`raw_capable`):
        what :func:`stream.replay.replay` hands to the compiled engine's ``process_raw``. A file in event-time order
        gives the same stream as iterating the source (one file needs no merge)."""
        if not self.raw_capable:
            raise ConfigError("raw batches need one JSONL file without a column mapping")
        path = self.paths[0]
        lines = self._jsonl(path)
        self._streams.add(lines)  # type: ignore[arg-type]
        records: list[bytes] = []
        line_nos: list[int] = []
        failed: list[SourceError] = []
        for line_no, raw, _ in _until_failure(lines, failed):
            records.append(raw)
            line_nos.append(line_no)
            if len(records) >= self.batch_size:
                self.records_read += len(records)
                yield RawBatch(records, line_nos, path.name)
                records, line_nos = [], []
        if records:
            self.records_read += len(records)
            yield RawBatch(records, line_nos, path.name)
        if failed:
            raise failed[0]

    def close(self) -> None:
        """Close the files of every iteration not run to its end; such an iteration stops reading (it may still
        hand out the part of a batch it had read). A new iteration opens the files again."""
        for stream in list(self._streams):
            stream.close()

    def _open_streams(self) -> list[Generator[tuple[float, int, Event | DeadLetter], None, None]]:
        """One record stream per file, each holding its file open until it ends or :meth:`close` closes it."""
        streams = [self._records(p, fmt) for p, fmt in zip(self.paths, self.formats, strict=True)]
        self._streams.update(streams)
        return streams

    def _jsonl(self, path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
        with self._open(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                raw = line.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                if self.mapping.is_identity:
                    yield line_no, raw, None
                    continue
                if len(raw) > MAX_RECORD_BYTES:
                    yield line_no, raw, {"__invalid__": f"record is larger than {MAX_RECORD_BYTES} bytes"}
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    yield line_no, raw, None  # decode() reports the JSON error
                    continue
                yield line_no, raw, obj if isinstance(obj, dict) else None

    #: Decode CSV rows in the compiled core (``core/src/csv.rs``) when the mapping is not the identity and the
    #: core is built; False: the Python decoder alone (the reference, for the differential tests).
    core_csv = True

    def _csv(self, path: Path) -> Iterator[tuple[int, list[str], dict[str, Any] | None]]:
        if self.core_csv and not self.mapping.is_identity and _core_module() is not None:
            yield from self._csv_core(path)
            return
        with self._open(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
            reader = csv.reader(text)
            try:
                header = next(reader)
            except StopIteration:
                return
            header = [h.strip() for h in header]
            missing = [c for c in self.mapping.fields.values() if c not in header]
            if missing:
                raise ConfigError(f"{path.name}: --map names columns not in the header: {', '.join(missing)}")
            width = len(header)
            convert = None if self.mapping.is_identity else self.mapping.compile(header)
            for row in reader:
                line_no = reader.line_num
                if len(row) != width:
                    yield line_no, row, {"__invalid__": f"has {len(row)} columns, the header has {width}"}
                    continue
                if convert is None:
                    yield line_no, row, dict(zip(header, row, strict=True))
                    continue
                try:
                    obj = convert(row, f"{path.name}:{line_no}")
                except InvalidEvent as e:
                    yield line_no, row, {"__error__": e}
                    continue
                yield line_no, row, {"__mapped__": obj}

    def _csv_core(self, path: Path) -> Iterator[tuple[int, Any, dict[str, Any] | None]]:
        """:meth:`_csv` with the rows decoded by the compiled core into events (``{"__event__": event}``); the rows
        the core leaves to Python (:class:`CsvReader`) take :meth:`_csv`'s own steps, so every row gives the same
        event or the same refusal, at the same line number."""
        from stream.core_decode import from_outcome

        with self._open(path) as fh:
            reader = CsvReader(path.name, self.mapping)
            for data, eof in reader.chunks(fh):
                pos = 0
                while pos < len(data):
                    core = reader.core
                    if core is not None:
                        stop, reader.line_no, items = core_csv_decode(data, pos, core, reader.line_no)
                        for item in items:
                            line_no = item[0]
                            if item[1] == "invalid":
                                yield line_no, _row_at(data, item[4], item[5]), \
                                    {"__error__": InvalidEvent(item[2], item[3])}
                            else:
                                prov = Provenance(reader.name, 0, line_no)
                                yield line_no, None, {"__event__": from_outcome((item[1], item[2]), b"", prov)}
                        pos = stop
                        if pos >= len(data):
                            break
                    got = reader.python_row(data, pos, eof)
                    if got is None:  # a record that may go on in the next chunk
                        break
                    pos, out = got
                    if out is not None:
                        yield out
                reader.carry(data[pos:])

    def _arrow(self, path: Path) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        """Parquet or Arrow IPC (Feather v2) rows, read a record batch at a time; row numbers count from 1."""
        import pyarrow as pa

        batches = _arrow_batches(path, max(int(self.batch_size), 1))
        row_no = 0
        schema = None
        convert = None
        for batch in batches:
            names = batch.schema.names
            if schema is None:
                missing = [c for c in self.mapping.fields.values() if c not in names]
                if missing:
                    raise ConfigError(f"{path.name}: --map names columns not in the file: {', '.join(missing)}")
            plain = [_plain(pa, col) for col in batch.columns]
            if schema is None or not batch.schema.equals(schema):
                schema = batch.schema
                # The CSV fast path takes typed cells as well as text when no cell is a boolean or nested (float()
                # of those would not fail as apply() expects), with "" for null; it equals apply() on every row.
                convert = None if self.mapping.is_identity or not all(
                    _compilable(pa, c.type) for c in plain) else self.mapping.compile(names)
            nulls = any(c.null_count for c in plain)
            columns = [c.to_pylist() for c in plain]
            for values in zip(*columns, strict=True):
                row_no += 1
                row = dict(zip(names, values, strict=True))
                if convert is None:
                    yield row_no, row, row
                    continue
                try:
                    obj = convert(["" if v is None else v for v in values] if nulls else list(values),
                                  f"{path.name}:{row_no}")
                except InvalidEvent as e:
                    yield row_no, row, {"__error__": e}
                    continue
                yield row_no, row, {"__mapped__": obj}


#: Format name -> the FileSource method that reads it.
_READERS = {"jsonl": "_jsonl", "csv": "_csv", "parquet": "_arrow", "arrow": "_arrow"}


def _arrow_batches(path: Path, batch_size: int) -> Iterator[Any]:
    """The record batches of a Parquet file or an Arrow IPC file (Feather v2) or stream, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() in (".parquet", ".pq") or _is_parquet(path):
            pf = pq.ParquetFile(path)
            yield from pf.iter_batches(batch_size=batch_size)
            return
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            yield from pa.ipc.open_stream(source)
            return
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    except (OSError, pa.ArrowException) as e:
        raise SourceError(f"cannot read {path}: {e}") from None


def _is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _plain(pa: Any, col: Any) -> Any:
    """A column whose Python values the mapping's ``apply`` and :func:`~stream.events.from_dict` take: timestamps
    as ISO-8601 text (UTC when the column has a time zone), dates and times as text, decimals as the floats
    their text gives (as from a CSV)."""
    t = col.type
    if pa.types.is_timestamp(t):
        return col.cast(pa.timestamp("us", tz="UTC" if t.tz else None)).cast(pa.string())
    if pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        return col.cast(pa.string())
    if pa.types.is_decimal(t):  # through text: Arrow's direct cast is not correctly rounded (183.67000000000002)
        return col.cast(pa.string()).cast(pa.float64())
    if pa.types.is_dictionary(t):
        return _plain(pa, col.dictionary_decode())
    return col


def _compilable(pa: Any, t: Any) -> bool:
    return pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t) or pa.types.is_string(t) or \
        pa.types.is_large_string(t) or pa.types.is_null(t)


def _row_json(row: dict[str, Any]) -> bytes:
    """A Parquet/Arrow row as JSON bytes, the original record of its dead letter."""
    return orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS)


_T = TypeVar("_T")


def _until_failure(items: Iterable[_T], failed: list[SourceError]) -> Iterator[_T]:
    """``items`` until one raises :class:`SourceError`, which is put in ``failed`` instead."""
    try:
        yield from items
    except SourceError as e:
        failed.append(e)


_EOL = re.compile(rb"\r\n|\r|\n")
_CSV_CHUNK = 1 << 22


def _core_module() -> Any:
    """``stream._core`` when it is built with the CSV decoder, else None."""
    try:
        from stream import _core
    except ImportError:
        return None
    return _core if hasattr(_core, "CsvMapping") else None


def core_csv_decode(data: bytes, pos: int, core: Any, line_no: int) -> tuple[int, int, list[tuple[Any, ...]]]:
    """``stream._core.csv_decode``: the rows of ``data`` from byte ``pos`` the core decides."""
    return _core_module().csv_decode(data, pos, core, line_no)  # type: ignore[no-any-return, union-attr]


def core_csv_spec(mapping: ColumnMapping, header: Sequence[str], name: str) -> dict[str, Any]:
    """What ``stream._core.CsvMapping`` compiles: ``mapping`` for ``header``, in file ``name``."""
    return {"header": list(header), "fields": list(mapping.fields.items()),
            "constants": list(mapping.constants.items()), "type": mapping.type,
            "features": mapping.features if isinstance(mapping.features, str) else list(mapping.features),
            "drop": list(mapping.drop), "ts_origin": float(mapping.ts_origin), "ts_unit": mapping.ts_unit,
            "all_fields": list(_ALL_FIELDS), "name": name}


def _py_record(data: bytes, pos: int) -> tuple[list[str] | None, int, int]:
    """``csv.reader``'s next row from byte ``pos`` of ``data``, as :meth:`FileSource._csv` reads it (UTF-8 with
    replacement characters, lines split as ``newline=""`` splits them): ``(row, lines read, end byte)``."""
    end = [pos]

    def lines() -> Iterator[str]:
        p, n = pos, len(data)
        while p < n:
            m = _EOL.search(data, p)
            e = n if m is None else m.end()
            end[0] = e
            yield data[p:e].decode("utf-8", "replace")
            p = e

    reader = csv.reader(lines())
    row = next(reader, None)
    return row, reader.line_num, end[0]


def _row_at(data: bytes, start: int, stop: int) -> list[str]:
    """The cells of the one-line row ``data[start:stop]``."""
    return next(csv.reader([data[start:stop].decode("utf-8", "replace")]), [])


class CsvReader:
    """The state of one CSV file read with the compiled core: its header, line number, the core's compiled
    mapping (``core``, None when the core leaves this mapping to Python) and the Python converter for the rows
    the core leaves to Python, which take :meth:`FileSource._csv`'s own steps."""

    def __init__(self, name: str, mapping: ColumnMapping) -> None:
        self.name = name
        self.mapping = mapping
        self.header: list[str] | None = None
        self.width = 0
        self.line_no = 0
        self.last_ts = -math.inf
        self.core: Any = None
        self._convert: Callable[[list[str], str], dict[str, Any]] | None = None
        self._pending = b""

    def start(self, header: list[str]) -> None:
        header = [h.strip() for h in header]
        missing = [c for c in self.mapping.fields.values() if c not in header]
        if missing:
            raise ConfigError(f"{self.name}: --map names columns not in the header: {', '.join(missing)}")
        self.header, self.width = header, len(header)
        self._convert = self.mapping.compile(header)
        core = _core_module()
        try:
            self.core = core.CsvMapping(core_csv_spec(self.mapping, header, self.name)) if core else None
        except ValueError:
            self.core = None

    def python_row(self, data: bytes, pos: int, eof: bool) -> tuple[int, tuple[int, list[str], dict[str, Any]] | None] \
            | None:
        """The record at byte ``pos`` read and converted in Python: ``(end byte, (line_no, row, obj))`` as
        :meth:`FileSource._csv` yields it (None for the header), or None when it reaches the end of a chunk that
        is not the last (it may go on in the next)."""
        row, lines, end = _py_record(data, pos)
        if end >= len(data) and not eof:
            return None
        if row is None:
            return len(data), None
        self.line_no += lines
        if self.header is None:
            self.start(row)
            return end, None
        line_no = self.line_no
        if len(row) != self.width:
            return end, (line_no, row, {"__invalid__": f"has {len(row)} columns, the header has {self.width}"})
        try:
            obj = self._convert(row, f"{self.name}:{line_no}")  # type: ignore[misc]
        except InvalidEvent as e:
            return end, (line_no, row, {"__error__": e})
        return end, (line_no, row, {"__mapped__": obj})

    def event(self, data: bytes, pos: int, line_no: int) -> Event:
        """The event of the one-line row at byte ``pos`` (line ``line_no``), decoded by Python."""
        m = _EOL.search(data, pos)
        row = _row_at(data, pos, len(data) if m is None else m.start())
        return from_dict(self._convert(row, f"{self.name}:{line_no}"), Provenance(self.name, 0, line_no))  # type: ignore[misc]

    def chunks(self, fh: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
        """``fh`` in chunks of whole lines (cut after a ``\\n``; the last chunk holds the rest), each with whether
        it is the last; what the reader did not use of a chunk (:meth:`carry`) starts the next."""
        tail = b""
        while True:
            more = fh.read(_CSV_CHUNK)
            buf, self._pending = self._pending + tail + more, b""
            if not more:
                if buf:
                    yield buf, True
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                tail = buf
                continue
            tail = buf[cut:]
            yield buf[:cut], False

    def carry(self, rest: bytes) -> None:
        """Hand ``rest`` (the unread end of a chunk) to the next chunk of :meth:`chunks`."""
        self._pending = rest


def _csv_line(row: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue().encode()


class ListSource:
    """Events already in memory (tests, the simulator), in batches (a :class:`Source`)."""

    def __init__(self, events: Iterable[Event], *, batch_size: int = 2000) -> None:
        self.events = events
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Batch]:
        batch = Batch()
        for e in self.events:
            batch.events.append(e)
            if len(batch.events) >= self.batch_size:
                yield batch
                batch = Batch()
        if batch.events:
            yield batch

    def close(self) -> None:
        """Nothing to release: the events are the caller's."""
