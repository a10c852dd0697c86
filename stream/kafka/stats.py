"""Counters of one Kafka runtime (read by ``/metrics``, ``/healthz`` and the logs) and its structured log lines."""


from __future__ import annotations

import bisect
import logging
import math
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import
    warnings.simplefilter("ignore", DeprecationWarning)


__all__ = ["RuntimeStats", "LATENCY_BUCKETS", "log_event"]

log = logging.getLogger("riskstream.runtime")

#: Upper bounds (seconds) of the end-to-end latency histogram buckets (cumulative when exported).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    math.inf,
)


def kv(event: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    parts = [f"event={event}"]
    for k, v in fields.items():
        if isinstance(v, float):
            v = round(v, 4)
        text = str(v)
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{k}={text}")
    return " ".join(parts), {"event": event, "fields": fields}


def log_event(level: int, event: str, **fields: Any) -> None:
    """One structured log line: ``event=<name> key=value ...``; ``record.event``/``record.fields`` for
    JSON."""
    if log.isEnabledFor(level):
        msg, extra = kv(event, **fields)
        log.log(level, msg, extra=extra)


# --- statistics ---------------------------------------------------------------------------------------------


class RuntimeStats:
    """Counters of one runtime, read by the metrics exporter and the logs. Plain attributes; :meth:`snapshot`
    gives a consistent copy as a dict.

    Attributes
    ----------
    records_in
        Records received from Kafka (valid or not).
    events
        Events processed by the engines (orders, logins and labels).
    invalid
        Records sent to the dead-letter sinks.
    alerts
        Alerts raised.
    checkpoints, checkpoint_failures, commit_failures
        Checkpoints completed, checkpoints aborted (a sink or the state store failed), offset commits that
        failed (expected during rebalances).
    transactions, rewinds, fenced
        With ``kafka.exactly_once``: Kafka transactions committed; units rolled back to their last checkpoint
        after a transaction failed (its records aborted, processed again); units dropped because their
        transactional id was fenced (another member owns them now).
    decisions_fenced, decisions_pruned
        Merge decisions refused because another member claimed the unit's decision log since (the unit is
        dropped; also counted in ``fenced``), and recorded decisions deleted as below the input topics' log-start
        offsets (``kafka.decision_prune_interval_s``).
    rules_switches
        Live rule pack switches this member recorded (a unit switched to the store's new active version).
    last_checkpoint_seconds, checkpoint_seconds_total
        Duration of the last checkpoint and the sum of all.
    last_checkpoint_at, last_checkpoint_failed_at, last_checkpoint_error
        Wall-clock times (epoch seconds) of the last completed and the last failed checkpoint, and why it
        failed (the health check reports unhealthy while a failure is newer than the last success).
    last_poll_at
        Wall-clock time of the last ``poll()`` return (the health check's liveness signal).
    rebalances
        Partition assignments received.
    lost_joins
        Rebalances whose result kafka-python dropped, joined again (see
        :func:`~stream.kafka.client.rescue_lost_join`).
    units
        Partition units currently owned.
    paused_partitions
        Topic-partitions whose fetching is paused (backpressure or failing sinks).
    buffered, buffered_peak
        Records fetched but not yet processed (held between polls), over all units: now, and the most seen.
    pauses
        Times fetching of a topic-partition was paused (backpressure or failing sinks).
    lag
        ``"topic/partition"`` -> records between the next unprocessed offset and the high watermark.
    latency_counts, latency_sum, latency_count
        End-to-end latency histogram (Kafka record timestamp to processed), per bucket of
        :data:`LATENCY_BUCKETS` (not cumulative), with sum and count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.records_in = 0
        self.events = 0
        self.invalid = 0
        self.alerts = 0
        self.checkpoints = 0
        self.checkpoint_failures = 0
        self.commit_failures = 0
        self.transactions = 0
        self.rewinds = 0
        self.fenced = 0
        self.decisions_fenced = 0
        self.decisions_pruned = 0
        self.rules_switches = 0
        self.last_checkpoint_seconds = 0.0
        self.checkpoint_seconds_total = 0.0
        self.last_checkpoint_at: float | None = None
        self.last_checkpoint_failed_at: float | None = None
        self.last_checkpoint_error: str | None = None
        self.last_poll_at: float | None = None
        self.rebalances = 0
        self.lost_joins = 0
        self.units: tuple[int, ...] = ()
        self.paused_partitions = 0
        self.buffered = 0
        self.buffered_peak = 0
        self.pauses = 0
        self.lag: dict[str, int] = {}
        self.latency_counts = [0] * len(LATENCY_BUCKETS)
        #: Every observed latency (arrays of seconds) when set to a list; None (the default) keeps none.
        self.latency_samples: list[Any] | None = None
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe_latency(self, seconds: Iterable[float]) -> None:
        """Add end-to-end latencies (seconds) to the histogram."""
        with self._lock:
            for s in seconds:
                s = max(0.0, s)
                self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, s)] += 1
                self.latency_sum += s
                self.latency_count += 1

    def observe_latency_array(self, seconds: Any) -> None:
        """:meth:`observe_latency` of a numpy array (a released batch), without a Python float per event; kept in
        :attr:`latency_samples` too when that is a list (the Kafka benchmark's percentiles)."""
        import numpy as np

        s = np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)
        if not s.size:
            return
        idx = np.searchsorted(np.asarray(LATENCY_BUCKETS), s, side="left")
        counts = np.bincount(idx, minlength=len(LATENCY_BUCKETS)).tolist()
        total = float(s.sum())
        with self._lock:
            lc = self.latency_counts
            for i, c in enumerate(counts):
                if c:
                    lc[i] += c
            self.latency_sum += total
            self.latency_count += int(s.size)
            if self.latency_samples is not None:
                self.latency_samples.append(s)

    def set_lag(self, lag: Mapping[str, int]) -> None:
        with self._lock:
            self.lag = dict(lag)

    def observe_checkpoint(self, seconds: float) -> None:
        with self._lock:
            self.checkpoints += 1
            self.last_checkpoint_seconds = seconds
            self.checkpoint_seconds_total += seconds
            self.last_checkpoint_at = time.time()

    def observe_checkpoint_failure(self, error: BaseException) -> None:
        with self._lock:
            self.checkpoint_failures += 1
            self.last_checkpoint_failed_at = time.time()
            self.last_checkpoint_error = f"{type(error).__name__}: {error}"[:500]

    def snapshot(self) -> dict[str, Any]:
        """All counters as a plain dict (``lag`` and ``latency`` nested)."""
        with self._lock:
            return {
                "uptime_seconds": time.time() - self.started_at,
                "records_in": self.records_in,
                "events": self.events,
                "invalid": self.invalid,
                "alerts": self.alerts,
                "checkpoints": self.checkpoints,
                "checkpoint_failures": self.checkpoint_failures,
                "commit_failures": self.commit_failures,
                "transactions": self.transactions,
                "rewinds": self.rewinds,
                "fenced": self.fenced,
                "decisions_fenced": self.decisions_fenced,
                "decisions_pruned": self.decisions_pruned,
                "rules_switches": self.rules_switches,
                "last_checkpoint_seconds": self.last_checkpoint_seconds,
                "checkpoint_seconds_total": self.checkpoint_seconds_total,
                "last_checkpoint_at": self.last_checkpoint_at,
                "last_checkpoint_failed_at": self.last_checkpoint_failed_at,
                "last_checkpoint_error": self.last_checkpoint_error,
                "last_poll_at": self.last_poll_at,
                "rebalances": self.rebalances,
                "lost_joins": self.lost_joins,
                "units": list(self.units),
                "paused_partitions": self.paused_partitions,
                "buffered": self.buffered,
                "buffered_peak": self.buffered_peak,
                "pauses": self.pauses,
                "lag": dict(self.lag),
                "lag_total": sum(self.lag.values()),
                "latency": {
                    "buckets": list(LATENCY_BUCKETS),
                    "counts": list(self.latency_counts),
                    "sum": self.latency_sum,
                    "count": self.latency_count,
                },
            }


# --- one unit's buffers and merge ---------------------------------------------------------------------------

#: A buffered record: (offset, event or dead letter, Kafka record timestamp in ms or -1).
