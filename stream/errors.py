"""riskstream's exceptions, in one tree.

::

    RiskstreamError
     ├── ConfigError            bad configuration file, environment or CLI argument (exit code 2)
     ├── InvalidEvent           a record that does not decode or validate (goes to the dead-letter path)
     ├── SourceError            a source cannot be read (file missing, broker unreachable)   [retriable?]
     ├── CheckpointError        state could not be saved or restored (tampered, truncated, store down)
     └── (sinks.SinkError)      a sink could not write a batch; a failed flush aborts the checkpoint
          └── (sinks.Backpressure)  the sink is saturated; retry after ``retry_after`` seconds

``sinks`` does not import ``stream`` (dependencies point one way), so its errors derive from ``Exception``
and are re-exported here; catch :data:`ERRORS` to catch everything riskstream raises on purpose.
"""

from __future__ import annotations

from sinks.errors import Backpressure, SinkError

__all__ = [
    "RiskstreamError",
    "ConfigError",
    "InvalidEvent",
    "SourceError",
    "CheckpointError",
    "SinkError",
    "Backpressure",
    "ERRORS",
]


class RiskstreamError(Exception):
    """Base of the errors riskstream raises on purpose."""

    retriable: bool = False


class ConfigError(RiskstreamError):
    """A configuration value, file or command-line argument is wrong. The message names it."""


class InvalidEvent(RiskstreamError):
    """A record that cannot become an :class:`~stream.events.Event`.

    ``field`` names the offending field (``"$"`` for the record as a whole) and ``problem`` says what is wrong,
    so the dead-letter reason reads ``amount: must be >= 0``.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class SourceError(RiskstreamError):
    """A source cannot be read."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class CheckpointError(RiskstreamError):
    """State could not be saved or restored; nothing is committed past it."""


ERRORS: tuple[type[BaseException], ...] = (RiskstreamError, SinkError)
