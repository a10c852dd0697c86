"""``riskstream run`` restarts in-process after a transient Kafka error instead of exiting (the loop itself,
without a broker: ``run_with_restarts`` around a run that fails as kafka-python does while a broker restarts)."""

from __future__ import annotations

import pytest
from kafka import errors as kerrors

from stream.cli.run import MAX_RESTARTS, run_with_restarts


def test_a_transient_kafka_error_restarts_the_member_with_backoff(caplog):
    calls, sleeps = [], []

    def run():
        calls.append(1)
        if len(calls) <= 2:
            raise kerrors.KafkaConnectionError("111 ECONNREFUSED")

    with caplog.at_level("WARNING", logger="riskstream.runtime"):
        run_with_restarts(run, sleep=sleeps.append, clock=lambda: 0.0)
    assert len(calls) == 3 and sleeps == [1.0, 2.0]
    assert "event=restart" in caplog.text and "ECONNREFUSED" in caplog.text


def test_it_gives_up_after_max_restarts_in_a_row_and_other_errors_are_not_retried():
    calls, sleeps = [], []

    def always():
        calls.append(1)
        raise kerrors.KafkaConnectionError("111 ECONNREFUSED")

    with pytest.raises(kerrors.KafkaConnectionError):
        run_with_restarts(always, sleep=sleeps.append, clock=lambda: 0.0)
    assert len(calls) == MAX_RESTARTS + 1 and sleeps[-1] == min(30.0, 2.0 ** (MAX_RESTARTS - 1))

    def fenced():
        calls.append(1)
        raise kerrors.ProducerFencedError("another member holds the id")

    calls.clear()
    with pytest.raises(kerrors.ProducerFencedError):
        run_with_restarts(fenced, sleep=sleeps.append, clock=lambda: 0.0)
    assert len(calls) == 1


def test_a_long_run_resets_the_count():
    t = [0.0]
    calls = []

    def run():
        calls.append(1)
        t[0] += 100.0  # every run lasts longer than RESTART_RESET_S
        if len(calls) <= MAX_RESTARTS + 2:
            raise kerrors.KafkaConnectionError("reset by peer")

    run_with_restarts(run, sleep=lambda s: None, clock=lambda: t[0])
    assert len(calls) == MAX_RESTARTS + 3
