"""Errors raised by sinks.

::

    SinkError            a batch could not be written; the checkpoint that asked for the flush is aborted
     ├── Backpressure    the destination is saturated; retry after ``retry_after`` seconds (retriable)
     ├── DatabaseURLError  a database URL that cannot be used (a configuration error; never retriable)
     └── Fenced          a Kafka transaction was fenced: another producer holds its transactional id now
"""

from __future__ import annotations

__all__ = ["SinkError", "Backpressure", "DatabaseURLError", "Fenced"]


class SinkError(Exception):
    """A sink could not make its buffered alerts durable.

    ``retriable`` says whether trying the same flush again may succeed (a connection dropped, a broker
    restarting) or not (a schema mismatch, a permission error).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class Backpressure(SinkError):
    """The destination asks us to slow down; try the flush again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retriable=True)
        self.retry_after = retry_after


class DatabaseURLError(SinkError, ValueError):
    """A database URL riskstream cannot use (garbage, a bad port, another database, a driver that is not
    installed): a configuration error, never retriable. The message names the URL with its password hidden."""


class Fenced(SinkError):
    """A transactional producer was fenced: a newer producer with the same transactional id was initialised
    (the partition unit it writes for has another owner), or the broker aborted its transaction after
    ``transaction_timeout_ms``. Nothing of the transaction is visible to ``read_committed`` readers; the
    producer cannot be used again. Not retriable with this producer."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)
