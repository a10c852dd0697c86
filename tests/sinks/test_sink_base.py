"""BatchSink: the buffering every sink shares, whatever its record type."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sinks import BatchSink, DeadLetterSink, JsonlDeadLetterSink, MemoryDeadLetterSink, MemorySink, Sink, SinkError


class FlakySink(BatchSink[int]):
    """Writes batches of ints to ``written``; the first ``fail`` writes raise."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail
        self.written: list[int] = []
        self.batches = 0

    def write_batch(self, records: Sequence[int]) -> None:
        self.batches += 1
        if self.fail:
            self.fail -= 1
            raise SinkError("down", retriable=True)
        self.written.extend(records)


def test_flush_keeps_the_buffer_when_write_batch_raises_and_the_retry_writes_each_record_once() -> None:
    sink = FlakySink(fail=2)
    sink.add(1)
    sink.add_many(iter([2, 3]))
    for _ in range(2):
        with pytest.raises(SinkError):
            sink.flush()
        assert sink.pending == 3 and sink.written == []
    sink.add(4)
    sink.flush()
    assert sink.written == [1, 2, 3, 4] and sink.pending == 0
    sink.flush()  # an empty buffer writes nothing
    assert sink.batches == 3


def test_a_sink_is_a_context_manager_that_closes_and_a_failed_close_keeps_the_buffer() -> None:
    with FlakySink(fail=0) as sink:
        sink.add(1)
    assert sink.written == [1]
    sink = FlakySink(fail=1)
    sink.add(2)
    with pytest.raises(SinkError):
        sink.close()
    assert sink.pending == 1


def test_alert_and_dead_letter_sinks_share_the_base_and_meet_their_protocols(tmp_path) -> None:
    alert_sink, dl_memory = MemorySink(), MemoryDeadLetterSink()
    dl_file = JsonlDeadLetterSink(tmp_path / "dead.jsonl")
    assert isinstance(alert_sink, BatchSink) and isinstance(alert_sink, Sink)
    for sink in (dl_memory, dl_file):
        assert isinstance(sink, BatchSink) and isinstance(sink, DeadLetterSink)
    dl_file.close()
