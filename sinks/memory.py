"""In-memory sink: the test double of every real sink.

It behaves like an idempotent sink (a second flush of the same ``alert_id`` keeps one copy) and can be told to
fail its next flushes, so a test can check that a failed flush aborts the checkpoint and that the retry writes
the same alerts.

>>> from sinks.alert import Alert
>>> a = Alert(alert_id="a1", event_id="e1", event_type="order", entities={"user": "u1"}, event_ts=0.0,
...           detected_at=1.0, score=0.99, severity="high", action="review", reasons=(), detector_scores={},
...           config_hash="c")
>>> sink = MemorySink()
>>> sink.fail_next(1)
>>> sink.add(a)
>>> sink.flush()
Traceback (most recent call last):
...
sinks.errors.SinkError: injected failure (MemorySink.fail_next)
>>> sink.pending, sink.alerts
(1, [])
>>> sink.flush(); sink.add(a); sink.flush()
>>> [x.alert_id for x in sink.alerts], sink.flushes
(['a1'], 2)
"""

from __future__ import annotations

from collections.abc import Sequence

from sinks.alert import Alert
from sinks.base import BatchSink
from sinks.errors import SinkError

__all__ = ["MemorySink"]


class MemorySink(BatchSink[Alert]):
    """Keeps flushed alerts in :attr:`alerts`, in first-flush order, one per ``alert_id``.

    Attributes
    ----------
    alerts
        The durable alerts (flushed successfully), deduplicated by ``alert_id``.
    flushes
        How many :meth:`flush` calls succeeded, including flushes of an empty buffer.
    closed
        Whether :meth:`close` has completed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[Alert] = []
        self.flushes = 0
        self.closed = False
        self._ids: set[str] = set()
        self._failures = 0
        self._failure: SinkError | None = None

    def fail_next(self, n: int = 1, exc: SinkError | None = None) -> None:
        """Make the next ``n`` flushes raise ``exc`` (default: retriable :class:`SinkError`); keep the buffer.

        A flush of an empty buffer fails too, as a real destination that is down would.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._failures = n
        self._failure = exc

    def flush(self) -> None:
        if self._failures:
            self._failures -= 1
            raise self._failure or SinkError("injected failure (MemorySink.fail_next)", retriable=True)
        super().flush()
        self.flushes += 1

    def write_batch(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            if a.alert_id not in self._ids:
                self._ids.add(a.alert_id)
                self.alerts.append(a)

    def close(self) -> None:
        self.flush()
        self.closed = True

    def __repr__(self) -> str:
        return f"MemorySink(alerts={len(self.alerts)}, pending={self.pending}, flushes={self.flushes})"
