"""The database password never reaches logs, ``/metrics`` or ``/healthz``, even when the database refuses it."""

from __future__ import annotations

import logging
import urllib.request

import pytest
from sqlalchemy.engine import make_url

from sinks.errors import SinkError
from sinks.sql import SqlSink
from stream.errors import CheckpointError
from stream.kafka.observability import start_metrics_server
from stream.kafka.stats import RuntimeStats
from stream.state.postgres import PgStateStore

SECRET = "Wr0ng-s3cret-pw"


def test_a_refused_password_stays_out_of_logs_metrics_and_health(pg_url: str, caplog) -> None:
    wrong = make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG)
    stats = RuntimeStats()
    with pytest.raises(CheckpointError) as e:
        PgStateStore(wrong, key=b"k" * 32)
    stats.observe_checkpoint_failure(e.value)
    with pytest.raises(SinkError) as e2:
        SqlSink(wrong)
    for err in (e.value, e2.value):
        assert "***" in str(err) and SECRET not in str(err)
    logging.getLogger("riskstream.test").error("failed: %s / %r", e.value, e2.value)
    server = start_metrics_server(stats, 0)
    try:
        metrics = urllib.request.urlopen(f"{server.url}/metrics", timeout=5).read().decode()
        try:
            health = urllib.request.urlopen(f"{server.url}/healthz", timeout=5).read().decode()
        except urllib.error.HTTPError as h:  # 503: the last checkpoint failed
            health = h.read().decode()
    finally:
        server.close()
    assert "riskstream_checkpoint_failures_total 1.0" in metrics
    assert "password authentication failed" in health  # the reason is there, the password is not
    for text_ in (metrics, health, caplog.text):
        assert SECRET not in text_
