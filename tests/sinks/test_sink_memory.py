from __future__ import annotations

import pytest

from sinks import Alert, MemorySink, Sink, SinkError, alert_id


def make_alert(i: int) -> Alert:
    return Alert(
        alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order", entities={"user": f"u{i}"},
        event_ts=1714564800.0 + i, detected_at=1714564800.0 + i, score=0.99, severity="high", action="review",
        reasons=({"detector": "hst", "feature": "amount", "value": 900.0, "detail": "high"},),
        detector_scores={"hst": 0.99}, config_hash="cfg",
    )


def test_is_a_sink_and_keeps_one_alert_per_id_in_first_flush_order() -> None:
    sink = MemorySink()
    assert isinstance(sink, Sink)
    a, b, c = make_alert(1), make_alert(2), make_alert(3)
    for x in (b, a, b):
        sink.add(x)
    assert sink.alerts == []  # add buffers; only flush makes durable
    sink.flush()
    for x in (a, c, b):
        sink.add(x)
    sink.flush()
    assert [x.alert_id for x in sink.alerts] == [b.alert_id, a.alert_id, c.alert_id]
    assert sink.flushes == 2
    assert sink.pending == 0


def test_fail_next_raises_retriable_and_keeps_the_buffer_for_the_retry() -> None:
    sink = MemorySink()
    sink.add(make_alert(1))
    sink.add(make_alert(2))
    sink.fail_next(2)
    for _ in range(2):
        with pytest.raises(SinkError) as info:
            sink.flush()
        assert info.value.retriable
        assert sink.pending == 2 and sink.alerts == [] and sink.flushes == 0
    sink.flush()
    assert [a.event_id for a in sink.alerts] == ["e1", "e2"]
    assert sink.flushes == 1 and sink.pending == 0


def test_fail_next_raises_the_given_error_even_on_an_empty_buffer() -> None:
    sink = MemorySink()
    boom = SinkError("schema mismatch", retriable=False)
    sink.fail_next(1, boom)
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value is boom
    sink.flush()
    assert sink.flushes == 1


def test_close_flushes_and_a_failed_close_keeps_the_alerts() -> None:
    sink = MemorySink()
    sink.add(make_alert(1))
    sink.fail_next(1)
    with pytest.raises(SinkError):
        sink.close()
    assert not sink.closed and sink.pending == 1
    sink.close()
    assert sink.closed and [a.event_id for a in sink.alerts] == ["e1"]
