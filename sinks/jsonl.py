"""JSON Lines sink: one canonical JSON line per alert, appended durably and idempotently.

The file is owned by one sink at a time (an exclusive ``flock`` is taken on open). On open the sink reads the
ids already in the file, so flushing the same alerts again after a crash or a replay never duplicates a line.
``flush`` appends the new lines, flushes Python's buffer and ``os.fsync``\\ s the file before returning: once
it returns, the alerts survive a crash of the process or of the machine.

A crash in the middle of a write can leave a torn tail (a last line with no newline, or an unfinished gzip
member). That tail was never acknowledged by a flush, so the checkpoint it belonged to was not committed and
the engine will replay those alerts; the sink cuts the tail off on open, and :func:`read_alerts` ignores it.

A path ending in ``.gz`` is written as gzip, one gzip member per flush (multi-member gzip is standard;
``zcat`` and :mod:`gzip` read it whole). Members carry ``mtime=0``, so output is reproducible.

>>> import tempfile, pathlib
>>> from sinks.alert import Alert
>>> a = Alert(alert_id="a1", event_id="e1", event_type="order", entities={"user": "u1"}, event_ts=0.0,
...           detected_at=1.0, score=0.99, severity="high", action="review", reasons=(), detector_scores={},
...           config_hash="c")
>>> path = pathlib.Path(tempfile.mkdtemp()) / "alerts.jsonl"
>>> with JsonlSink(path) as sink:
...     sink.add(a); sink.add(a); sink.flush()
>>> with JsonlSink(path) as sink:  # re-open after a "crash": the replayed alert is not written twice
...     sink.add(a); sink.flush()
>>> read_alerts(path) == [a]
True
"""

from __future__ import annotations

import errno
import gzip as _gzip
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import orjson

from sinks.alert import Alert
from sinks.base import BatchSink
from sinks.errors import SinkError

try:  # POSIX; on other platforms the single-writer rule is the caller's to keep
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["JsonlSink", "read_alerts", "fsync_dir"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: errno values after which the same write may succeed later (disk full, quota, interrupted, I/O hiccup).
_RETRIABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EIO})


def _is_gzip_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _iter_plain(fh: Callable[[int], bytes]) -> Iterator[tuple[bytes, int]]:
    """``(line, end)`` for every newline-terminated line; ``end`` is the byte offset just after it."""
    carry = b""
    offset = 0
    while chunk := fh(_CHUNK):
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for line in parts:
            offset += len(line) + 1
            yield line, offset


def _iter_gzip(fh: Callable[[int], bytes], path: Path) -> Iterator[tuple[bytes, int]]:
    """``(line, end)`` for every line of every *complete* gzip member; ``end`` is the offset after its member.

    A last member cut short (the stream ends before its trailer) is the torn tail and yields nothing. Bytes
    that are not gzip at all are corruption, not a torn write, and raise :class:`SinkError`.
    """
    d = zlib.decompressobj(31)
    member: list[bytes] = []  # decompressed pieces of the member being read
    consumed = 0  # compressed bytes of complete members plus the current member's bytes fed so far
    while chunk := fh(_CHUNK):
        data = chunk
        while data:
            try:
                member.append(d.decompress(data))
            except zlib.error as e:
                raise SinkError(f"{path}: corrupt gzip data after byte {consumed}: {e}") from e
            if not d.eof:
                consumed += len(data)
                break
            consumed += len(data) - len(d.unused_data)
            lines = b"".join(member).split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            for line in lines:
                yield line, consumed
            member = []
            data = d.unused_data
            d = zlib.decompressobj(31)


def _iter_lines(path: Path, gz: bool) -> Iterator[tuple[bytes, int]]:
    with open(path, "rb") as fh:
        yield from (_iter_gzip(fh.read, path) if gz else _iter_plain(fh.read))


class _AppendLog:
    """An append-only file of newline-terminated records, owned by one writer, optionally gzip.

    ``on_record(line, lineno)`` is called for every complete non-empty record already in the file when it is
    opened; a torn tail is cut off. :meth:`append` writes, flushes and fsyncs, and on failure truncates the
    file back to where it was, so a retried append never lands after half a record.
    """

    def __init__(self, path: str | os.PathLike[str], *, gzip: bool | None,
                 on_record: Callable[[bytes, int], None] | None = None) -> None:
        self.path = Path(path)
        self.gzip = self.path.suffix == ".gz" if gzip is None else gzip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            self._fh = open(self.path, "ab")
        except OSError as e:
            raise SinkError(f"cannot open {self.path}: {e}", retriable=_retriable(e)) from e
        try:
            self._lock()
            if not existed:
                fsync_dir(self.path.parent)
            self._recover(on_record)
        except BaseException:
            self._fh.close()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover - not POSIX
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise SinkError(f"{self.path} is open for writing by another sink", retriable=True) from e

    def _recover(self, on_record: Callable[[bytes, int], None] | None) -> None:
        size = os.fstat(self._fh.fileno()).st_size
        if size == 0:
            return
        if size >= 2 and _is_gzip_file(self.path) != self.gzip:
            kind = "gzip" if self.gzip else "plain text"
            raise SinkError(f"{self.path} exists and is not {kind}; pass gzip= to match the file")
        valid = 0
        if on_record is None and not self.gzip:
            valid = _last_newline_end(self.path, size)
        else:
            for lineno, (line, end) in enumerate(_iter_lines(self.path, self.gzip), 1):
                if line and on_record is not None:
                    on_record(line, lineno)
                valid = end
        if valid < size:  # torn tail of a write that was never acknowledged: cut it off
            os.ftruncate(self._fh.fileno(), valid)
            os.fsync(self._fh.fileno())

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole newline-terminated records) durably, or leave the file as it was."""
        if self._fh.closed:
            raise SinkError(f"{self.path}: the sink is closed")
        payload = _gzip.compress(data, compresslevel=6, mtime=0) if self.gzip else data
        fd = self._fh.fileno()
        start = os.fstat(fd).st_size
        try:
            self._fh.write(payload)
            self._fh.flush()
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:  # pragma: no cover - the file is gone or the disk is failing; the open repairs it
                pass
            raise SinkError(f"cannot write {self.path}: {e}", retriable=_retriable(e)) from e

    def close(self) -> None:
        self._fh.close()  # releases the flock


def _last_newline_end(path: Path, size: int) -> int:
    """Offset just after the last newline of a plain file (0 if none), reading backwards from the end."""
    with open(path, "rb") as fh:
        pos = size
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            i = fh.read(step).rfind(b"\n")
            if i >= 0:
                return pos + i + 1
    return 0


def fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable too."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - filesystems that refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _retriable(e: OSError) -> bool:
    return e.errno in _RETRIABLE_ERRNOS


class JsonlSink(BatchSink):
    """Append alerts to a JSON Lines file (``.gz`` => gzip), one :meth:`Alert.to_json` line each.

    Parameters
    ----------
    path
        The file. Created (with its parent directories) if absent; appended to if present.
    gzip
        Write gzip members; ``None`` (default) means "if ``path`` ends in ``.gz``".

    Idempotent by ``alert_id``: an id already in the file, or earlier in the same flush, is skipped. The same
    alerts added in the same order give a byte-identical plain file whatever the flush pattern; a gzip file is
    byte-identical for the same flushes, and its decompressed content is always the same. The sink keeps the
    set of ids in the file in memory (about 120 bytes per alert).
    """

    def __init__(self, path: str | os.PathLike[str], *, gzip: bool | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._ids: set[str] = set()
        self._log = _AppendLog(self.path, gzip=gzip, on_record=self._remember)

    def _remember(self, line: bytes, lineno: int) -> None:
        try:
            alert_id = orjson.loads(line)["alert_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise SinkError(f"{self.path}: line {lineno} is not an alert ({e}); not appending to it") from e
        self._ids.add(alert_id)

    @property
    def gzip(self) -> bool:
        return self._log.gzip

    def count(self) -> int:
        """Number of distinct alerts durable in the file."""
        return len(self._ids)

    def write_batch(self, alerts: Sequence[Alert]) -> None:
        new: dict[str, bytes] = {}
        for a in alerts:
            if a.alert_id in self._ids or a.alert_id in new:
                continue
            try:
                new[a.alert_id] = a.to_json()
            except (TypeError, orjson.JSONEncodeError) as e:
                raise SinkError(f"alert {a.alert_id} cannot be encoded as JSON: {e}") from e
        if not new:
            return
        self._log.append(b"\n".join(new.values()) + b"\n")
        self._ids.update(new)

    def close(self) -> None:
        """Flush, then release the file; a second close does nothing."""
        if self._log.closed:
            return
        self.flush()
        self._log.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, gzip={self.gzip})"


def read_alerts(path: str | os.PathLike[str]) -> list[Alert]:
    """Every alert durable in a JSONL file written by :class:`JsonlSink` (plain or gzip, by content).

    A torn tail (an unfinished last line or gzip member) is not durable and is ignored.
    """
    p = Path(path)
    gz = _is_gzip_file(p)
    return [Alert.from_json(line) for line, _ in _iter_lines(p, gz) if line]
