"""Every scored event's scores as a Parquet file, for threshold tuning in a notebook (``replay --scores-out``).

One row per scored order or login, in the order the engine scored them:

=================  ==========================  ===========================================================
column             type                        what
=================  ==========================  ===========================================================
``event_id``       string                      the event's id
``event_type``     string                      ``order`` or ``login``
``event_time``     timestamp[us, UTC]          the event time
``user_id``        string                      the entity whose state the event updates
``label``          int8 (null: unlabelled)     the event's own ground truth, when the data has one
``scenario``       string (null: none)         the simulator's scenario, when the data has one
``raw_<name>``     float64                     detector ``<name>``'s raw score (its own scale)
``p_<name>``       float64                     its calibrated tail probability (small = rare), as in an
                                               alert's ``detector_scores``
``risk``           float64                     the event's risk in ``[0, 1]``, an alert's ``score``
``alerted``        bool                        whether the event raised an alert
=================  ==========================  ===========================================================

Rows are buffered and written a row group at a time (``row_group_size`` rows), so memory stays bounded
whatever the stream's length.

>>> import pyarrow.parquet as pq, tempfile, os
>>> from stream.config import default_settings
>>> from stream.pipeline import Engine
>>> from stream.sim import SimConfig, simulate
>>> path = os.path.join(tempfile.mkdtemp(), "scores.parquet")
>>> engine = Engine(default_settings())
>>> with ScoresWriter(path) as w:
...     w.add(engine.process(list(simulate(SimConfig(events=300, seed=1)))))
>>> t = pq.read_table(path)
>>> t.num_rows == w.rows, t.column_names[:6], t.column_names[-2:]
(True, ['event_id', 'event_type', 'event_time', 'user_id', 'label', 'scenario'], ['risk', 'alerted'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stream.errors import ConfigError

__all__ = ["ScoresWriter", "scores_schema", "read_labelled"]


def scores_schema(detectors: Sequence[str]) -> pa.Schema:
    """The file's columns for detectors named ``detectors`` (see the module docstring)."""
    fields = [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("label", pa.int8()),
        pa.field("scenario", pa.string()),
    ]
    for name in detectors:
        fields.append(pa.field(f"raw_{name}", pa.float64()))
        fields.append(pa.field(f"p_{name}", pa.float64()))
    fields += [pa.field("risk", pa.float64(), nullable=False), pa.field("alerted", pa.bool_(), nullable=False)]
    return pa.schema(fields)


def read_labelled(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """A scores file's event ids (every scored event, in order), and its labelled events' labels, risks and
    alerted flags: what a paired bootstrap of two replays reads (``riskstream compare --scores``, the panel's rule).
    A file that is not a scores file is a :class:`ConfigError` naming it."""
    try:
        t = pq.read_table(path, columns=["event_id", "label", "risk", "alerted"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}: not a riskstream replay --scores-out file ({e})") from None
    label = t.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
    known = ~np.isnan(label)
    return (t.column("event_id").to_pylist(), label[known].astype(np.int8),
            t.column("risk").to_numpy(zero_copy_only=False)[known].astype(np.float64),
            t.column("alerted").to_numpy(zero_copy_only=False)[known].astype(bool))


class ScoresWriter:
    """Writes each :class:`~stream.pipeline.Outcome` it is given to a Parquet file, row group by row group.

    Parameters
    ----------
    path
        The Parquet file to write (replaced if it exists).
    detectors
        The detector names, in column order; default: those of the first outcome with events.
    row_group_size
        Rows buffered before a row group is written.
    """

    def __init__(self, path: str | Path, *, detectors: Sequence[str] | None = None,
                 row_group_size: int = 65536) -> None:
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, not {row_group_size}")
        self.path = Path(path)
        self.row_group_size = row_group_size
        self.detectors: list[str] | None = list(detectors) if detectors is not None else None
        self.rows = 0
        self._schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._closed = False
        if self.detectors is not None:
            self._open()  # a path that cannot be written fails now, not after the replay

    def add(self, outcome: Any) -> None:
        """Buffer the scored events of ``outcome``; writes a row group once ``row_group_size`` rows wait."""
        scored = outcome.scored
        n = len(scored)
        if not n:
            return
        if self._closed:
            raise ValueError("ScoresWriter is closed")
        if self.detectors is None:
            self.detectors = list(outcome.calibrated)
        if set(outcome.calibrated) != set(self.detectors) or set(outcome.raw) != set(self.detectors):
            raise ValueError(f"outcome has detectors {sorted(outcome.calibrated)}, the file {sorted(self.detectors)}")
        schema = self._schema_now()
        # the raw replay paths know what is written here without an event object (scored.columns(), from the
        # core): reading the events instead would decode each of them in Python
        known = getattr(scored, "columns", None)
        c = known() if callable(known) else None
        if c is not None and "event_id" in c:
            ts = np.asarray(c["ts"], dtype=np.float64)
            label = np.asarray(c["label"], dtype=np.int8)
            ids, types, users, scen = c["event_id"], c["type"], c["user_id"], c["scenario"]
            labels = pa.array(label, pa.int8(), mask=label < 0)
        else:
            ts = np.fromiter((e.ts for e in scored), dtype=np.float64, count=n)
            ids, types = [e.event_id for e in scored], [e.type for e in scored]
            users, scen = [getattr(e, "user_id", None) for e in scored], [e.scenario for e in scored]
            labels = pa.array([e.label for e in scored], pa.int8())
        cols: list[Any] = [
            pa.array(ids, pa.string()),
            pa.array(types, pa.string()),
            pa.array(np.round(ts * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            pa.array(users, pa.string()),
            labels,
            pa.array(scen, pa.string()),
        ]
        for name in self.detectors:
            cols.append(pa.array(np.asarray(outcome.raw[name], dtype=np.float64)))
            cols.append(pa.array(np.asarray(outcome.calibrated[name], dtype=np.float64)))
        cols.append(pa.array(np.asarray(outcome.risk, dtype=np.float64)))
        cols.append(pa.array(np.asarray(outcome.alerted, dtype=bool)))
        self._buffer.append(pa.RecordBatch.from_arrays(cols, schema=schema))
        self._buffered += n
        self.rows += n
        if self._buffered >= self.row_group_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows (as row groups of at most ``row_group_size`` rows)."""
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self._schema_now())
        self._open().write_table(table, row_group_size=self.row_group_size)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        """Write what is buffered and finish the file (an empty stream gives a file with no rows)."""
        if self._closed:
            return
        try:
            self.flush()
            self._open().close()
        finally:
            self._closed = True

    def _schema_now(self) -> pa.Schema:
        if self._schema is None:
            self._schema = scores_schema(self.detectors or [])
        return self._schema

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(self.path, self._schema_now(), compression="zstd")
            except OSError as e:
                raise ConfigError(f"--scores-out {self.path}: {e.strerror or e}") from None
        return self._writer

    def __enter__(self) -> ScoresWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScoresWriter({str(self.path)!r}, rows={self.rows})"
