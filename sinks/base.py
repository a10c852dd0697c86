"""The sink contract and the batching base class every sink is built on.

A sink buffers in :meth:`Sink.add` and makes the buffer durable in :meth:`Sink.flush`. ``flush`` is idempotent
across retries (writes are keyed by ``alert_id``), so the engine may call it again after a failure, and a
failed flush raises :class:`~sinks.errors.SinkError`, which aborts the checkpoint: no offset is committed past
alerts that are not durable. Dead-letter sinks (:class:`~sinks.deadletter.DeadLetterSink`) follow the same
contract for refused records.

:class:`BatchSink` does the buffering for both: an alert sink is a ``BatchSink[Alert]``, a dead-letter sink a
``BatchSink[DeadLetter]``, and each only writes a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar, runtime_checkable

from sinks.alert import Alert

__all__ = ["Sink", "BatchSink"]

T = TypeVar("T")


@runtime_checkable
class Sink(Protocol):
    def add(self, alert: Alert) -> None:
        """Buffer one alert. Cheap; no I/O."""

    def flush(self) -> None:
        """Make every buffered alert durable, or raise :class:`~sinks.errors.SinkError`."""

    def close(self) -> None:
        """Flush and release resources."""


class BatchSink(Generic[T]):
    """Buffers records and hands them to :meth:`write_batch` on flush; a new sink only writes a batch.

    The buffer is kept if ``write_batch`` raises, so the next flush retries the same records; a sink whose
    writes are idempotent (by ``alert_id`` for alerts) therefore never loses nor duplicates a record. A sink
    is a context manager: leaving the ``with`` block closes it.

    The type parameter is the record: ``BatchSink[Alert]`` is an alert sink (a :class:`Sink`),
    ``BatchSink[DeadLetter]`` a :class:`~sinks.deadletter.DeadLetterSink`.

    Examples
    --------
    >>> class PrintSink(BatchSink[str]):
    ...     def write_batch(self, records):
    ...         print(", ".join(records))
    >>> with PrintSink() as sink:
    ...     sink.add("a"); sink.add_many(["b", "c"])
    ...     sink.pending
    3
    a, b, c
    """

    def __init__(self) -> None:
        self._buffer: list[T] = []

    def add(self, record: T) -> None:
        """Buffer one record. Cheap; no I/O."""
        self._buffer.append(record)

    def add_many(self, records: Iterable[T]) -> None:
        """Buffer several records, in order."""
        self._buffer.extend(records)

    @property
    def pending(self) -> int:
        """How many records are buffered and not yet durable."""
        return len(self._buffer)

    def flush(self) -> None:
        """Write the buffer with :meth:`write_batch` and empty it; if that raises, keep it for the next flush.

        An empty buffer writes nothing.
        """
        if not self._buffer:
            return
        self.write_batch(self._buffer)
        self._buffer = []

    def write_batch(self, records: Sequence[T]) -> None:  # pragma: no cover - abstract
        """Make ``records`` durable, all of them, or raise :class:`~sinks.errors.SinkError`.

        Called by :meth:`flush` with a non-empty batch; the same records come again if it raises.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Flush; a sink holding resources (a file, a connection) releases them after the flush."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
