"""Durable append-only files of newline-terminated records, the ground the file sinks stand on.

:class:`AppendLog` is the file behind :class:`~sinks.jsonl.JsonlSink` and
:class:`~sinks.deadletter.JsonlDeadLetterSink`: one writer at a time (an exclusive ``flock``), plain or gzip (one
gzip member per append, ``mtime=0``), every append written, flushed and ``os.fsync``\\ ed or undone, and a torn
tail (a last record with no newline, or an unfinished gzip member, left by a crash in the middle of a write) cut
off on open. :func:`iter_lines` reads such a file back, skipping the torn tail; :func:`is_gzip_file` tells a gzip
file by its first bytes; :func:`fsync_dir` makes a new file's directory entry durable.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl.gz"
>>> log = AppendLog(path, gzip=None)
>>> log.append(b"one\\ntwo\\n"); log.append(b"three\\n"); log.close()
>>> is_gzip_file(path), [line for line, _ in iter_lines(path, gz=True)]
(True, [b'one', b'two', b'three'])
"""

from __future__ import annotations

import errno
import gzip as _gzip
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from sinks.errors import SinkError

try:  # POSIX; on other platforms the single-writer rule is the caller's to keep
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["AppendLog", "is_gzip_file", "iter_lines", "fsync_dir"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: errno values after which the same write may succeed later (disk full, quota, interrupted, I/O hiccup).
_RETRIABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EIO})


def is_gzip_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the gzip magic bytes (an empty or one-byte file is not gzip).

    Parameters
    ----------
    path
        An existing file; it is opened and its first two bytes read.
    """
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def iter_lines(path: str | os.PathLike[str], gz: bool) -> Iterator[tuple[bytes, int]]:
    """Every complete record of an append-only file, as ``(line, end)``, in file order.

    Parameters
    ----------
    path
        The file.
    gz
        Read it as (multi-member) gzip; see :func:`is_gzip_file` to decide from the content.

    Yields
    ------
    tuple[bytes, int]
        The record without its newline (empty for a blank line), and the byte offset of the file up to which
        everything read so far is complete: just after the line in a plain file, just after the line's gzip
        member in a gzip file.

    Raises
    ------
    SinkError
        A gzip file holds bytes that are not gzip at all (corruption rather than a torn write).

    Notes
    -----
    A torn tail yields nothing: the last line of a plain file if it has no newline, the last gzip member if the
    file ends before its trailer.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        yield from (_iter_gzip(fh.read, p) if gz else _iter_plain(fh.read))


def _iter_plain(read: Callable[[int], bytes]) -> Iterator[tuple[bytes, int]]:
    """``(line, end)`` for every newline-terminated line; ``end`` is the byte offset just after it."""
    carry = b""
    offset = 0
    while chunk := read(_CHUNK):
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for line in parts:
            offset += len(line) + 1
            yield line, offset


def _iter_gzip(read: Callable[[int], bytes], path: Path) -> Iterator[tuple[bytes, int]]:
    """``(line, end)`` for every line of every *complete* gzip member; ``end`` is the offset after its member.

    A last member cut short (the stream ends before its trailer) is the torn tail and yields nothing. Bytes
    that are not gzip at all are corruption, not a torn write, and raise :class:`SinkError`.
    """
    d = zlib.decompressobj(31)
    member: list[bytes] = []  # decompressed pieces of the member being read
    consumed = 0  # compressed bytes of complete members plus the current member's bytes fed so far
    while chunk := read(_CHUNK):
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


class AppendLog:
    """An append-only file of newline-terminated records, owned by one writer, optionally gzip.

    Parameters
    ----------
    path
        The file; created with its parent directories if absent (and the new directory entry fsynced),
        appended to if present.
    gzip
        Write gzip members; ``None`` means "if ``path`` ends in ``.gz``". An existing non-empty file of the
        other kind raises :class:`SinkError`.
    on_record
        Called as ``on_record(line, lineno)`` for every complete non-empty record already in the file when it
        is opened (a sink reads the ids it already holds this way); may raise :class:`SinkError` to refuse
        the file.

    Raises
    ------
    SinkError
        The file cannot be opened (``retriable`` when the cause may pass), another writer holds it
        (retriable), or it is of the other kind.

    Notes
    -----
    Opening cuts off a torn tail: records a crash left half-written were never acknowledged by an
    :meth:`append`. :meth:`append` writes (unbuffered) and fsyncs, and on failure truncates the file back to
    where it was, so a retried append never lands after half a record, nor after a copy of itself.
    """

    def __init__(self, path: str | os.PathLike[str], *, gzip: bool | None,
                 on_record: Callable[[bytes, int], None] | None = None) -> None:
        self.path = Path(path)
        self.gzip = self.path.suffix == ".gz" if gzip is None else gzip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            self._fh = open(self.path, "ab", buffering=0)  # no Python buffer to hold a failed write
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
        if size >= 2 and is_gzip_file(self.path) != self.gzip:
            kind = "gzip" if self.gzip else "plain text"
            raise SinkError(f"{self.path} exists and is not {kind}; pass gzip= to match the file")
        valid = 0
        if on_record is None and not self.gzip:
            valid = _last_newline_end(self.path, size)
        else:
            for lineno, (line, end) in enumerate(iter_lines(self.path, self.gzip), 1):
                if line and on_record is not None:
                    on_record(line, lineno)
                valid = end
        if valid < size:  # torn tail of a write that was never acknowledged: cut it off
            os.ftruncate(self._fh.fileno(), valid)
            os.fsync(self._fh.fileno())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fh.closed

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole newline-terminated records) durably, or leave the file as it was.

        Raises
        ------
        SinkError
            The log is closed, or the write failed (``retriable`` for a full disk, a quota, an interrupted or
            failed I/O); the file is truncated back to its size before the call.
        """
        if self._fh.closed:
            raise SinkError(f"{self.path}: the sink is closed")
        payload = _gzip.compress(data, compresslevel=6, mtime=0) if self.gzip else data
        fd = self._fh.fileno()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(payload)
            while view:  # an unbuffered write may be partial
                view = view[self._fh.write(view) :]
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:  # pragma: no cover - the file is gone or the disk is failing; the open repairs it
                pass
            raise SinkError(f"cannot write {self.path}: {e}", retriable=_retriable(e)) from e

    def close(self) -> None:
        """Close the file and release the lock; a second close does nothing."""
        self._fh.close()

    def __repr__(self) -> str:
        return f"AppendLog({str(self.path)!r}, gzip={self.gzip})"


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


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """``fsync`` a directory, so that a file just created or renamed in it survives a machine crash.

    Parameters
    ----------
    directory
        The directory holding the new entry.

    Notes
    -----
    Platforms that cannot open a directory, and filesystems that refuse to fsync one, are skipped silently:
    there is nothing more the caller could do.
    """
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
