"""Operations endpoints of ``riskstream run``: Prometheus metrics at ``/metrics``, health at ``/healthz``.

:func:`start_metrics_server` serves, from a background thread, the counters of one
:class:`~stream.kafka.stats.RuntimeStats` (read with :meth:`~stream.kafka.stats.RuntimeStats.snapshot` at each scrape,
through a custom prometheus-client collector, so the runtime's hot loop never touches a metrics library):

- counters: ``riskstream_records_in_total`` (records received from Kafka, valid or not),
  ``riskstream_events_total`` (events processed: orders, logins, labels), ``riskstream_invalid_records_total``
  (sent to the dead-letter sinks), ``riskstream_alerts_total``, ``riskstream_checkpoints_total``,
  ``riskstream_checkpoint_failures_total``, ``riskstream_commit_failures_total`` (normal during rebalances),
  ``riskstream_rebalances_total``, ``riskstream_lost_joins_total``, ``riskstream_transactions_total``,
  ``riskstream_rewinds_total``,
  ``riskstream_fenced_units_total``, ``riskstream_decisions_fenced_total``, ``riskstream_decisions_pruned_total``
  (merge decisions deleted below the input topics' log start, ``kafka.decision_prune_interval_s``);
- ``riskstream_consumer_lag{topic,partition}``: records between the next unprocessed offset and the high
  watermark;
- ``riskstream_end_to_end_latency_seconds``: histogram from the Kafka record timestamp to processed;
- ``riskstream_checkpoint_duration_seconds``: summary (``_count``, ``_sum``) of checkpoint durations, and
  ``riskstream_last_checkpoint_duration_seconds``;
- gauges ``riskstream_last_checkpoint_timestamp_seconds``, ``riskstream_last_poll_timestamp_seconds``,
  ``riskstream_owned_units``, ``riskstream_paused_partitions``, ``riskstream_buffered_records``,
  ``riskstream_uptime_seconds`` and ``riskstream_healthy`` (1 when ``/healthz`` answers 200);

plus the ``process_*`` metrics of prometheus-client (CPU, memory, open files).

``/healthz`` answers 200 when the consumer polled within the last ``max_poll_age_s`` seconds and the last
checkpoint attempt succeeded (or none was attempted yet), else 503; the JSON body says why either way (see
:func:`check_health`). It reads ``last_poll_at``, ``last_checkpoint_at`` and ``last_checkpoint_failed_at`` /
``last_checkpoint_error`` from the snapshot, or else from the stats object's attributes of those names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["start_metrics_server", "MetricsServer", "RuntimeCollector", "Health", "check_health"]

log = logging.getLogger("riskstream.observability")

#: Default of ``max_poll_age_s``: a consumer that has not polled for this long is reported unhealthy.
DEFAULT_MAX_POLL_AGE_S = 60.0


class StatsSource(Protocol):
    """What the exporter needs of :class:`~stream.kafka.stats.RuntimeStats`."""

    def snapshot(self) -> dict[str, Any]: ...


def _field(snap: Mapping[str, Any], stats: Any, name: str) -> Any:
    return snap[name] if name in snap else getattr(stats, name, None)


# --- health -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """The answer of ``/healthz``: ``ok`` (HTTP 200) or not (503), the reasons, and the facts they rest on."""

    ok: bool
    reasons: tuple[str, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def to_json(self) -> bytes:
        body = {"status": "ok" if self.ok else "unhealthy", "reasons": list(self.reasons), **self.facts}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def check_health(stats: StatsSource, *, max_poll_age_s: float = DEFAULT_MAX_POLL_AGE_S,
                 now: float | None = None) -> Health:
    """Healthy when the consumer polled within ``max_poll_age_s`` seconds and the last checkpoint attempt
    succeeded (a failure counts until a later checkpoint completes).

    >>> from stream.kafka import RuntimeStats
    >>> stats = RuntimeStats()
    >>> check_health(stats).reasons
    ('the consumer has not polled yet',)
    >>> stats.last_poll_at = time.time()
    >>> check_health(stats).ok
    True
    """
    now = time.time() if now is None else now
    snap = stats.snapshot()
    last_poll = _field(snap, stats, "last_poll_at")
    last_ok = _field(snap, stats, "last_checkpoint_at")
    last_failed = _field(snap, stats, "last_checkpoint_failed_at")
    error = _field(snap, stats, "last_checkpoint_error")
    reasons: list[str] = []
    if last_poll is None:
        reasons.append("the consumer has not polled yet")
    elif now - last_poll > max_poll_age_s:
        reasons.append(f"the consumer last polled {now - last_poll:.1f} s ago (limit {max_poll_age_s:g} s)")
    if last_failed is not None and (last_ok is None or last_ok < last_failed):
        reasons.append("the last checkpoint failed" + (f": {error}" if error else "")
                       + "; offsets are not committed until one succeeds")
    facts = {
        "last_poll_age_seconds": None if last_poll is None else round(now - last_poll, 3),
        "last_checkpoint_age_seconds": None if last_ok is None else round(now - last_ok, 3),
        "checkpoints": snap.get("checkpoints"),
        "checkpoint_failures": snap.get("checkpoint_failures"),
        "units": snap.get("units"),
        "lag_total": snap.get("lag_total"),
        "max_poll_age_seconds": max_poll_age_s,
    }
    return Health(not reasons, tuple(reasons), facts)


# --- metrics ------------------------------------------------------------------------------------------------

_COUNTERS = (
    ("records_in", "riskstream_records_in", "Records received from Kafka (valid or not)."),
    ("events", "riskstream_events", "Events processed by the engines (orders, logins and labels)."),
    ("invalid", "riskstream_invalid_records", "Records sent to the dead-letter sinks."),
    ("alerts", "riskstream_alerts", "Alerts raised."),
    ("checkpoints", "riskstream_checkpoints", "Checkpoints completed."),
    ("checkpoint_failures", "riskstream_checkpoint_failures",
     "Checkpoints aborted because a sink or the state store failed."),
    ("commit_failures", "riskstream_commit_failures",
     "Offset commits that failed (normal during rebalances)."),
    ("rebalances", "riskstream_rebalances", "Partition assignments received."),
    ("lost_joins", "riskstream_lost_joins",
     "Rebalances whose result the Kafka client dropped; the member joined again."),
    ("transactions", "riskstream_transactions", "Kafka transactions committed (kafka.exactly_once)."),
    ("rewinds", "riskstream_rewinds",
     "Units rolled back to their last checkpoint after a failed transaction (kafka.exactly_once)."),
    ("fenced", "riskstream_fenced_units",
     "Units dropped because another member's producer fenced theirs (kafka.exactly_once) or another member "
     "claimed their decision log."),
    ("decisions_fenced", "riskstream_decisions_fenced",
     "Merge decisions refused (nothing recorded) because another member claimed the unit's decision log since."),
    ("decisions_pruned", "riskstream_decisions_pruned",
     "Recorded merge decisions deleted as below the input topics' log-start offsets."),
)
_GAUGES = (
    ("paused_partitions", "riskstream_paused_partitions",
     "Partitions whose fetching is paused (backpressure)."),
    ("buffered", "riskstream_buffered_records", "Records fetched but not yet processed."),
    ("last_checkpoint_seconds", "riskstream_last_checkpoint_duration_seconds",
     "Duration of the last checkpoint."),
    ("uptime_seconds", "riskstream_uptime_seconds", "Seconds since the runtime's statistics were created."),
)


class RuntimeCollector(Collector):
    """A prometheus-client collector that turns one ``stats.snapshot()`` into metric families per scrape."""

    def __init__(self, stats: StatsSource, *, max_poll_age_s: float = DEFAULT_MAX_POLL_AGE_S) -> None:
        self.stats = stats
        self.max_poll_age_s = max_poll_age_s

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        for key, name, doc in _COUNTERS:
            yield CounterMetricFamily(name, doc, value=float(snap.get(key) or 0))
        for key, name, doc in _GAUGES:
            yield GaugeMetricFamily(name, doc, value=float(snap.get(key) or 0))
        yield GaugeMetricFamily("riskstream_owned_units", "Partition units owned by this process.",
                                value=float(len(snap.get("units") or ())))
        yield SummaryMetricFamily("riskstream_checkpoint_duration_seconds",
                                  "Duration of checkpoints (flush sinks, save state, commit offsets).",
                                  count_value=int(snap.get("checkpoints") or 0),
                                  sum_value=float(snap.get("checkpoint_seconds_total") or 0.0))
        for attr, name, doc in (
                ("last_checkpoint_at", "riskstream_last_checkpoint_timestamp_seconds",
                 "When the last checkpoint completed (epoch seconds)."),
                ("last_poll_at", "riskstream_last_poll_timestamp_seconds",
                 "When the consumer last polled Kafka (epoch seconds).")):
            value = _field(snap, self.stats, attr)
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
        lag = GaugeMetricFamily("riskstream_consumer_lag",
                                "Records between the next unprocessed offset and the high watermark.",
                                labels=["topic", "partition"])
        for key, value in sorted((snap.get("lag") or {}).items()):
            topic, _, partition = key.rpartition("/")
            lag.add_metric([topic, partition], float(value))
        yield lag
        hist = snap.get("latency")
        if hist:
            latency = HistogramMetricFamily("riskstream_end_to_end_latency_seconds",
                                            "Kafka record timestamp to processed by the engine.",
                                            labels=[])
            cumulative = 0
            buckets = []
            for upper, count in zip(hist["buckets"], hist["counts"], strict=True):
                cumulative += count
                buckets.append((floatToGoString(upper), float(cumulative)))
            latency.add_metric([], buckets, sum_value=float(hist["sum"]))
            yield latency
        healthy = check_health(self.stats, max_poll_age_s=self.max_poll_age_s).ok
        yield GaugeMetricFamily("riskstream_healthy", "1 when /healthz answers 200, else 0.",
                                value=1.0 if healthy else 0.0)


# --- the HTTP server ----------------------------------------------------------------------------------------


class MetricsServer:
    """A running metrics and health server (see :func:`start_metrics_server`); :meth:`close` stops it."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread,
                 registry: CollectorRegistry) -> None:
        self._httpd = httpd
        self._thread = thread
        self.registry = registry
        host, self.port = httpd.server_address[:2]
        self.host = host.decode() if isinstance(host, bytes) else str(host)
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetricsServer({self.url})"


def _handler(registry: CollectorRegistry, stats: StatsSource,
             max_poll_age_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "riskstream"

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/health"):
                health = check_health(stats, max_poll_age_s=max_poll_age_s)
                self._send(health.http_status, "application/json", health.to_json())
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", b"riskstream: /metrics /healthz\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def start_metrics_server(stats: StatsSource, port: int, host: str = "127.0.0.1", *,
                         max_poll_age_s: float = DEFAULT_MAX_POLL_AGE_S,
                         process_metrics: bool = True) -> MetricsServer:
    """Serve ``/metrics`` (Prometheus text format) and ``/healthz`` for ``stats`` from a daemon thread.

    Parameters
    ----------
    stats
        The runtime's :class:`~stream.kafka.stats.RuntimeStats`; pass the same object to
        ``run_consumer(stats=...)``.
    port
        TCP port; 0 picks a free one (read it back from :attr:`MetricsServer.port`).
    host
        Address to listen on (``0.0.0.0`` to be scraped from other machines or containers).
    max_poll_age_s
        ``/healthz`` answers 503 when the consumer has not polled for longer than this.
    process_metrics
        Also export prometheus-client's ``process_*`` metrics.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(stats, max_poll_age_s=max_poll_age_s))
    if process_metrics:
        ProcessCollector(registry=registry)
    httpd = ThreadingHTTPServer((host, int(port)), _handler(registry, stats, max_poll_age_s))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"metrics-{httpd.server_address[1]}", daemon=True)
    thread.start()
    server = MetricsServer(httpd, thread, registry)
    log.info("metrics on %s/metrics, health on %s/healthz", server.url, server.url)
    return server
