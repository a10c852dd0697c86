"""The sink contract and the batching base class.

A sink buffers in :meth:`Sink.add` and makes the buffer durable in :meth:`Sink.flush`. ``flush`` is idempotent
across retries (writes are keyed by ``alert_id``), so the engine may call it again after a failure, and a
failed flush raises :class:`~sinks.errors.SinkError`, which aborts the checkpoint: no offset is committed past
alerts that are not durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sinks.alert import Alert

__all__ = ["Sink", "BatchSink"]


@runtime_checkable
class Sink(Protocol):
    def add(self, alert: Alert) -> None:
        """Buffer one alert. Cheap; no I/O."""

    def flush(self) -> None:
        """Make every buffered alert durable, or raise :class:`~sinks.errors.SinkError`."""

    def close(self) -> None:
        """Flush and release resources."""


class BatchSink:
    """Buffers alerts and hands them to :meth:`write_batch` on flush; a new sink only writes a batch.

    The buffer is kept if ``write_batch`` raises, so the next flush retries the same alerts; a sink whose writes
    are idempotent by ``alert_id`` therefore never loses nor duplicates an alert.
    """

    def __init__(self) -> None:
        self._buffer: list[Alert] = []

    def add(self, alert: Alert) -> None:
        self._buffer.append(alert)

    def add_many(self, alerts: Sequence[Alert]) -> None:
        self._buffer.extend(alerts)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        if not self._buffer:
            return
        self.write_batch(self._buffer)
        self._buffer = []

    def write_batch(self, alerts: Sequence[Alert]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.flush()
