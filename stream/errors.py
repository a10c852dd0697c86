"""riskstream's exceptions, in one tree.

::

    RiskstreamError
     ├── ConfigError            bad configuration file, environment or CLI argument (exit code 2)
     ├── InvalidEvent           a record that does not decode or validate (goes to the dead-letter path)
     ├── SourceError            a source cannot be read (file missing, broker unreachable)   [retriable?]
     ├── CheckpointError        state could not be saved or restored (tampered, truncated, store down)
     │    └── DecisionFenced    a merge decision refused: another member claimed the unit since
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
    "DecisionFenced",
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


class DecisionFenced(CheckpointError):
    """A merge decision was not recorded because the unit's decision log was claimed by another member since the
    caller claimed it (a higher epoch; see ``docs/runtime.md``). Nothing was written: the caller no longer owns
    the unit and must step down from it without processing, publishing or saving anything more of it."""

    def __init__(self, message: str, *, group: str = "", unit: int = -1, epoch: int = 0, current: int = 0) -> None:
        super().__init__(message)
        self.group = group
        self.unit = unit
        self.epoch = epoch
        self.current = current


ERRORS: tuple[type[BaseException], ...] = (RiskstreamError, SinkError)
