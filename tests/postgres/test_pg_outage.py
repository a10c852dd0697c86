"""Killing the database mid-run: flushes fail as retriable, nothing is committed past them, and once the server
is back the retried flush lands every alert exactly once. Runs on a private cluster the test may kill."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from sinks import Alert, SinkError, alert_id
from sinks.sql import SqlSink
from stream.errors import CheckpointError
from stream.state import Checkpoint
from stream.state.postgres import PgStateStore

pytestmark = pytest.mark.postgres

KEY = b"outage-test-key-0123456789abcdef"


def make_alert(i: int) -> Alert:
    return Alert(alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order",
                 entities={"user": f"u{i % 7}"}, event_ts=1714564800.0 + i, detected_at=1714564801.0 + i,
                 score=0.99, severity="high", action="review",
                 reasons=({"detector": "hst", "feature": "amount", "value": float(i), "detail": None},),
                 detector_scores={"hst": 0.99}, config_hash="cfg", topic="orders", partition=0, offset=i)


def _rows(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT alert_id, count(*) FROM alerts GROUP BY alert_id")).all())
    finally:
        engine.dispose()


class Consumer:
    """The checkpoint order of the engine, on a real sink and state store: flush, save state, commit offsets.

    Input is a list of batches of alerts (what scoring each batch of events produced); ``committed`` is the
    offset (batch index) the consumer group would resume from.
    """

    def __init__(self, sink: SqlSink, store: PgStateStore) -> None:
        self.sink, self.store = sink, store
        self.committed = 0

    def checkpoint(self, position: int) -> bool:
        try:
            self.sink.flush()
            self.store.save("g", 0, Checkpoint(offsets={"orders": position}, state=b"state", config_hash="c"))
        except (SinkError, CheckpointError) as e:
            assert e.retriable, e
            return False  # nothing committed: the input since `committed` will be read again
        self.committed = position
        return True


def test_a_killed_database_stops_commits_and_after_restart_nothing_is_lost_or_duplicated(
    killable_pg: Any, killable_url: str
) -> None:
    batches = [[make_alert(b * 50 + i) for i in range(50)] for b in range(6)]
    sink = SqlSink(killable_url, retries=2, retry_backoff=0.05)
    store = PgStateStore(killable_url, key=KEY)
    consumer = Consumer(sink, store)

    for b in (0, 1):
        sink.add_many(batches[b])
        assert consumer.checkpoint(b + 1)
    assert consumer.committed == 2

    killable_pg.kill()
    sink.add_many(batches[2])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value.retriable and "gave up after 3 attempts" in str(info.value)
    assert sink.pending == 50  # kept for the retry
    with pytest.raises(CheckpointError) as ck:
        store.load("g", 0)
    assert ck.value.retriable
    sink.add_many(batches[3])
    assert not consumer.checkpoint(4)
    assert consumer.committed == 2 and sink.pending == 100

    killable_pg.start()
    # At-least-once input: a restarted consumer may also re-read batches it had flushed before the outage.
    sink.add_many(batches[1])
    assert consumer.checkpoint(4)
    for b in (4, 5):
        sink.add_many(batches[b])
        assert consumer.checkpoint(b + 1)

    rows = _rows(killable_url)
    assert sorted(rows) == sorted(a.alert_id for batch in batches for a in batch)
    assert set(rows.values()) == {1}
    ck_ = store.load("g", 0)
    assert ck_ is not None and ck_.offsets == {"orders": 6}
    sink.close()
    store.close()


def test_a_flush_rides_out_a_short_outage_with_its_own_retries(
    killable_pg: Any, killable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riskstream.sinks.sql")
    sink = SqlSink(killable_url, retries=30, retry_backoff=0.1, max_backoff=0.3)
    sink.add_many([make_alert(i) for i in range(100)])
    sink.flush()
    killable_pg.kill()
    restarter = threading.Timer(1.0, killable_pg.start)
    restarter.start()
    try:
        sink.add_many([make_alert(i) for i in range(50, 200)])
        sink.flush()  # fails while the server is down, then succeeds within its retry budget
    finally:
        restarter.join()
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries and all("riskstream:" not in m for m in retries)  # it did meet the outage, and waited
    assert sink.pending == 0
    rows = _rows(killable_url)
    assert len(rows) == 200 and set(rows.values()) == {1}
    sink.close()
