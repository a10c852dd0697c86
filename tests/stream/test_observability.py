"""The metrics endpoint and health check of ``riskstream run``, served from a real RuntimeStats over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.kafka import LATENCY_BUCKETS, RuntimeStats
from stream.kafka.observability import MetricsServer, check_health, start_metrics_server


@pytest.fixture()
def stats() -> RuntimeStats:
    return RuntimeStats()


@pytest.fixture()
def server(stats: RuntimeStats) -> Iterator[MetricsServer]:
    srv = start_metrics_server(stats, 0, max_poll_age_s=30.0)
    yield srv
    srv.close()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


def _samples(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, ctype = _get(server.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_port_zero_picks_a_free_port_and_close_releases_it(stats):
    srv = start_metrics_server(stats, 0)
    assert srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}"
    assert _get(srv.url + "/metrics")[0] == 200
    srv.close()
    srv.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(srv.url + "/metrics", timeout=2)


def test_metrics_follow_the_runtime_counters(stats, server):
    before = _samples(server)
    assert before[("riskstream_events_total", ())] == 0
    stats.records_in = 1200
    stats.events = 1190
    stats.invalid = 10
    stats.alerts = 7
    stats.units = (0, 2)
    stats.set_lag({"orders/0": 5, "logins/2": 0, "my/topic/3": 11})
    stats.observe_latency([0.004, 0.02, 0.02, 3.0, 1000.0])
    stats.observe_checkpoint(0.25)
    stats.observe_checkpoint(0.75)
    got = _samples(server)
    assert got[("riskstream_records_in_total", ())] == 1200
    assert got[("riskstream_events_total", ())] == 1190
    assert got[("riskstream_invalid_records_total", ())] == 10
    assert got[("riskstream_alerts_total", ())] == 7
    assert got[("riskstream_owned_units", ())] == 2
    assert got[("riskstream_consumer_lag", (("partition", "0"), ("topic", "orders")))] == 5
    assert got[("riskstream_consumer_lag", (("partition", "2"), ("topic", "logins")))] == 0
    assert got[("riskstream_consumer_lag", (("partition", "3"), ("topic", "my/topic")))] == 11
    assert got[("riskstream_checkpoints_total", ())] == 2
    assert got[("riskstream_checkpoint_duration_seconds_count", ())] == 2
    assert got[("riskstream_checkpoint_duration_seconds_sum", ())] == pytest.approx(1.0)
    assert got[("riskstream_last_checkpoint_duration_seconds", ())] == pytest.approx(0.75)
    # The histogram is cumulative, ends in +Inf, and counts every observation once.
    buckets = {float(dict(labels)["le"]): v for (name, labels), v in got.items()
               if name == "riskstream_end_to_end_latency_seconds_bucket"}
    assert sorted(buckets) == sorted(LATENCY_BUCKETS)
    assert buckets[0.005] == 1 and buckets[0.025] == 3 and buckets[5.0] == 4 and buckets[300.0] == 4
    assert buckets[float("inf")] == 5 == got[("riskstream_end_to_end_latency_seconds_count", ())]
    assert got[("riskstream_end_to_end_latency_seconds_sum", ())] == pytest.approx(1003.044)


def test_healthz_is_503_until_the_consumer_polls_then_200(stats, server):
    status, body, ctype = _get(server.url + "/healthz")
    assert status == 503 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["status"] == "unhealthy" and doc["reasons"] == ["the consumer has not polled yet"]
    assert _samples(server)[("riskstream_healthy", ())] == 0

    stats.last_poll_at = time.time()
    status, body, _ = _get(server.url + "/healthz")
    assert status == 200
    doc = json.loads(body)
    assert doc["status"] == "ok" and doc["reasons"] == [] and doc["last_poll_age_seconds"] < 30
    assert _samples(server)[("riskstream_healthy", ())] == 1


def test_healthz_is_503_when_polling_stalled(stats, server):
    stats.last_poll_at = time.time() - 31.0  # the server allows 30 s
    status, body, _ = _get(server.url + "/healthz")
    assert status == 503
    (reason,) = json.loads(body)["reasons"]
    assert reason.startswith("the consumer last polled") and "limit 30 s" in reason


def test_healthz_is_503_while_the_last_checkpoint_failed_and_recovers_after_one_succeeds(stats, server):
    stats.last_poll_at = time.time()
    stats.observe_checkpoint(0.1)
    time.sleep(0.01)
    stats.checkpoint_failures += 1
    stats.last_checkpoint_failed_at = time.time()
    stats.last_checkpoint_error = "SinkError: kafka topic risk-alerts: delivery failed"
    status, body, _ = _get(server.url + "/healthz")
    assert status == 503
    doc = json.loads(body)
    assert "the last checkpoint failed: SinkError: kafka topic risk-alerts" in doc["reasons"][0]
    assert doc["checkpoint_failures"] == 1

    time.sleep(0.01)
    stats.observe_checkpoint(0.2)
    assert _get(server.url + "/healthz")[0] == 200


def test_health_facts_come_from_the_snapshot_when_the_runtime_puts_them_there(stats):
    class Reporting(RuntimeStats):
        def snapshot(self):
            return {**super().snapshot(), "last_poll_at": 100.0}

    assert check_health(Reporting(), now=110.0, max_poll_age_s=20).ok
    assert not check_health(Reporting(), now=130.0, max_poll_age_s=20).ok


def test_unknown_paths_are_404(server):
    assert _get(server.url + "/nope")[0] == 404
