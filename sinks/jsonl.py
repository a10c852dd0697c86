"""JSON Lines sink: one canonical JSON line per alert, appended durably and idempotently.

The file is owned by one sink at a time (an exclusive ``flock`` is taken on open). On open the sink reads the
ids already in the file, so flushing the same alerts again after a crash or a replay never duplicates a line.
``flush`` appends the new lines (unbuffered) and ``os.fsync``\\ s the file before returning: once it returns,
the alerts survive a crash of the process or of the machine.

A crash in the middle of a write can leave a torn tail (a last line with no newline, or an unfinished gzip
member). That tail was never acknowledged by a flush, so the checkpoint it belonged to was not committed and
the engine will replay those alerts; the sink cuts the tail off on open, and :func:`read_alerts` ignores it.

A path ending in ``.gz`` is written as gzip, one gzip member per flush (multi-member gzip is standard;
``zcat`` and :mod:`gzip` read it whole). Members carry ``mtime=0``, so output is reproducible. The file
handling (lock, fsync, truncate on failure, torn-tail recovery) is :class:`sinks.files.AppendLog`'s.

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

import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from sinks.alert import Alert
from sinks.base import BatchSink
from sinks.errors import SinkError
from sinks.files import AppendLog, is_gzip_file, iter_lines

__all__ = ["JsonlSink", "read_alerts"]


class JsonlSink(BatchSink[Alert]):
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
        self._log = AppendLog(self.path, gzip=gzip, on_record=self._remember)

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

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, gzip={self.gzip})"


def read_alerts(path: str | os.PathLike[str]) -> list[Alert]:
    """Every alert durable in a JSONL file written by :class:`JsonlSink` (plain or gzip, by content).

    A torn tail (an unfinished last line or gzip member) is not durable and is ignored.
    """
    p = Path(path)
    gz = is_gzip_file(p)
    return [Alert.from_json(line) for line, _ in iter_lines(p, gz) if line]
