from __future__ import annotations

import base64
import dataclasses
import gzip
import random
import resource
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks import (
    DeadLetter,
    DeadLetterSink,
    JsonlDeadLetterSink,
    MemoryDeadLetterSink,
    SinkError,
    read_dead_letters,
)

rng = random.Random(20240501)
INVALID_UTF8 = b'{"type":"order","user_id":"\xff\xfe\xc3(","amount":\x00\x80}'
BIG = rng.randbytes(1024 * 1024)  # 1 MB of random bytes, invalid UTF-8 almost everywhere
RECORDS = [
    DeadLetter("$: not valid JSON", INVALID_UTF8, "orders.jsonl", 17, ts=1714564800.25),
    DeadLetter("$: record is larger than 65536 bytes", BIG, "kafka:orders/3", 123456789, ts=1714564801.0),
    DeadLetter("amount: must be >= 0", b'{"amount":-1}', "simulator", None, ts=1714564802.0),
    DeadLetter("$: empty record", b"", "orders.csv", 3, ts=1714564803.0),
]


@pytest.mark.parametrize("name", ["dead.jsonl", "dead.jsonl.gz"])
def test_records_come_back_with_their_exact_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / "out" / name
    with JsonlDeadLetterSink(path) as sink:
        assert isinstance(sink, DeadLetterSink)
        for r in RECORDS[:2]:
            sink.add(r)
        sink.flush()
        for r in RECORDS[2:]:
            sink.add(r)
    back = read_dead_letters(path)
    assert back == RECORDS
    assert back[1].raw == BIG and back[0].raw == INVALID_UTF8


def test_one_line_per_record_with_base64_bytes_and_a_lossy_preview(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    with JsonlDeadLetterSink(path) as sink:
        for r in RECORDS:
            sink.add(r)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(RECORDS)
    first = orjson.loads(lines[0])
    assert first == {
        "reason": "$: not valid JSON", "source": "orders.jsonl", "position": 17, "ts": 1714564800.25,
        "raw_len": len(INVALID_UTF8), "raw_b64": base64.b64encode(INVALID_UTF8).decode(),
        "raw_text": INVALID_UTF8.decode("utf-8", "replace"),
    }
    big = orjson.loads(lines[1])
    assert len(big["raw_text"]) == 200 and big["raw_text"] == BIG.decode("utf-8", "replace")[:200]
    assert big["raw_len"] == 1024 * 1024


def test_reopening_appends_and_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl.gz"
    with JsonlDeadLetterSink(path) as sink:
        sink.add(RECORDS[0])
    with open(path, "ab") as fh:  # a flush that crashed half-way
        fh.write(gzip.compress(RECORDS[1].to_json() + b"\n", mtime=0)[:1000])
    assert read_dead_letters(path) == RECORDS[:1]
    with JsonlDeadLetterSink(path) as sink:
        sink.add(RECORDS[2])
    assert read_dead_letters(path) == [RECORDS[0], RECORDS[2]]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_raises_retriable_and_keeps_the_buffer() -> None:
    sink = JsonlDeadLetterSink("/dev/full", gzip=False)
    sink.add(RECORDS[0])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value.retriable and sink.pending == 1


def test_a_corrupted_line_is_reported_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    line = orjson.loads(RECORDS[0].to_json())
    line["raw_len"] += 1
    path.write_bytes(RECORDS[2].to_json() + b"\n" + orjson.dumps(line) + b"\n")
    with pytest.raises(SinkError, match="line 2"):
        read_dead_letters(path)


def test_dead_letter_is_frozen_takes_any_bytes_like_and_stamps_the_wall_clock() -> None:
    r = DeadLetter("bad", bytearray(b"\xff"), "src")  # type: ignore[arg-type]
    assert r.raw == b"\xff" and type(r.raw) is bytes and r.position is None and r.ts > 1.7e9
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.reason = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DeadLetter("bad", "text is not bytes", "src")  # type: ignore[arg-type]


def test_undecodable_file_names_in_source_do_not_break_the_sink(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    r = DeadLetter("bad", b"x", "orders-\udcff.jsonl", 1, ts=0.0)  # os.fsdecode of a non-UTF-8 name
    with JsonlDeadLetterSink(path) as sink:
        sink.add(r)
    (back,) = read_dead_letters(path)
    assert back.raw == b"x" and back.source == "orders-\\udcff.jsonl"


def test_memory_dead_letter_sink_keeps_flushed_records_in_order() -> None:
    sink = MemoryDeadLetterSink()
    assert isinstance(sink, DeadLetterSink)
    sink.add(RECORDS[2])
    sink.add(RECORDS[0])
    assert sink.records == [] and sink.pending == 2
    sink.close()
    assert sink.records == [RECORDS[2], RECORDS[0]] and sink.flushes == 1 and sink.closed


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raws=st.lists(st.binary(max_size=3000), min_size=1, max_size=5), gz=st.booleans())
def test_any_bytes_round_trip(tmp_path: Path, raws: list[bytes], gz: bool) -> None:
    path = tmp_path / ("prop.jsonl.gz" if gz else "prop.jsonl")
    path.unlink(missing_ok=True)
    records = [DeadLetter("reason", raw, "src", i, ts=float(i)) for i, raw in enumerate(raws)]
    with JsonlDeadLetterSink(path) as sink:
        for r in records:
            sink.add(r)
    assert read_dead_letters(path) == records


def test_a_failed_write_keeps_the_buffer_and_the_retry_writes_each_record_once(tmp_path: Path,
                                                                              file_size_limit) -> None:
    path = tmp_path / "dead.jsonl"
    sink = JsonlDeadLetterSink(path)
    sink.add(RECORDS[0])
    sink.flush()
    sink.add_many([RECORDS[2], RECORDS[3]])
    file_size_limit(path.stat().st_size + 10)  # the write gets 10 bytes in, then the "disk" is full
    with pytest.raises(SinkError, match="cannot write"):
        sink.flush()
    assert sink.pending == 2 and read_dead_letters(path) == RECORDS[:1]
    file_size_limit(resource.RLIM_INFINITY)
    sink.close()
    assert sink.pending == 0 and read_dead_letters(path) == [RECORDS[0], RECORDS[2], RECORDS[3]]


def test_memory_dead_letter_sink_counts_empty_flushes_and_says_what_it_holds() -> None:
    sink = MemoryDeadLetterSink()
    sink.flush()
    sink.add(RECORDS[2])
    assert repr(sink) == "MemoryDeadLetterSink(records=0, pending=1)"
    sink.flush()
    assert repr(sink) == "MemoryDeadLetterSink(records=1, pending=0)" and sink.flushes == 2
