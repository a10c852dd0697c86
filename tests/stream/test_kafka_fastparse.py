"""``stream.kafka.fastparse``: the core parses a fetched batch's records into the very ``ConsumerRecord``s
kafka-python's own loop builds, whatever the batch holds; a damaged batch is kafka-python's
``CorruptRecordError``. (With a broker, transactions and partial polls: ``tests/kafka/test_fastparse_kafka.py``.)"""

from __future__ import annotations

import random

import pytest
from kafka import errors as Errors  # noqa: N812
from kafka.consumer.fetcher import Fetcher
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.structs import TopicPartition

from stream.kafka.fastparse import FastPartitionRecords

TP = TopicPartition("orders", 3)


def _batch(base: int, n: int, codec: int, rng: random.Random, log_append: bool = False) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for i in range(n):
        key = None if i % 4 == 0 else f"k{i}é".encode()
        value = None if i % 17 == 5 else bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        headers = [(f"h{j}", None if j == 1 else b"v" * j) for j in range(i % 3)] + ([("ключ", b"")] if i % 7 == 0
                                                                                      else [])
        b.append(i, timestamp=1_700_000_000_000 + rng.randrange(-10**6, 10**9), key=key, value=value,
                 headers=headers)
    out = bytearray(b.build())
    out[0:8] = base.to_bytes(8, "big", signed=True)  # the batch's base offset, as the broker assigns it
    if log_append:  # the timestamp type bit of the attributes (then every record carries the batch's max time)
        from kafka.record.default_records import DefaultRecordBatch

        out[22] |= 0x08
        import struct

        from kafka.record.util import calc_crc32c

        crc = calc_crc32c(memoryview(out)[DefaultRecordBatch.ATTRIBUTES_OFFSET:])
        out[DefaultRecordBatch.CRC_OFFSET:DefaultRecordBatch.CRC_OFFSET + 4] = struct.pack(">I", crc)
    return bytes(out)


def _records(cls, data: bytes, fetch_offset: int, take: int | None = None) -> tuple[list, int]:
    part = cls(fetch_offset, TP, MemoryRecords(data), check_crcs=True)
    out = []
    while True:
        got = part.take(take)
        if not got:
            return out, part.next_fetch_offset
        out.extend(got)
        if take is None:
            return out, part.next_fetch_offset


@pytest.mark.parametrize("codec", [0, 1])  # none, gzip (snappy, lz4 and zstd decompress in kafka-python alike)
def test_the_core_builds_the_records_kafka_pythons_loop_builds(codec) -> None:
    rng = random.Random(codec)
    data = _batch(100, 60, codec, rng) + _batch(160, 1, codec, rng) + _batch(161, 25, codec, rng, log_append=True)
    stock, stock_next = _records(Fetcher.PartitionRecords, data, 100)
    fast, fast_next = _records(FastPartitionRecords, data, 100)
    assert len(stock) == 86 and fast == stock and fast_next == stock_next == 186
    assert {r.timestamp_type for r in fast} == {0, 1} and any(r.headers for r in fast)
    assert any(r.key is None for r in fast) and any(r.value is None for r in fast)
    # a fetch that starts inside a batch skips the records before it; a poll that stops inside a batch leaves
    # the position at the next record, as kafka-python's does
    assert _records(FastPartitionRecords, data, 130) == _records(Fetcher.PartitionRecords, data, 130)
    part_s = Fetcher.PartitionRecords(100, TP, MemoryRecords(data), check_crcs=True)
    part_f = FastPartitionRecords(100, TP, MemoryRecords(data), check_crcs=True)
    for n in (7, 50, 1, 28):
        assert part_f.take(n) == part_s.take(n)
        assert part_f.next_fetch_offset == part_s.next_fetch_offset
    assert (part_f.records_read, part_f.bytes_read) == (part_s.records_read, part_s.bytes_read)


def test_a_damaged_batch_is_kafka_pythons_corrupt_record_error() -> None:
    from kafka.consumer.fetcher import ConsumerRecord
    from stream._core import kafka_records

    data = bytearray(_batch(0, 5, 0, random.Random(1)))
    for cut in (len(data) - 1, len(data) - 40):  # the batch's records cut short (its length field mended)
        short = data[:cut]
        with pytest.raises(ValueError, match="past the end of the batch|unconsumed|Invalid record size"):
            kafka_records(short, 61, 5, 0, 0, 0, 0, "t", 0, 0, ConsumerRecord)
    with pytest.raises(ValueError, match="unconsumed bytes"):
        kafka_records(data + b"\x00", 61, 5, 0, 0, 0, 0, "t", 0, 0, ConsumerRecord)
    bad_crc = bytearray(data)
    bad_crc[-1] ^= 0xFF
    with pytest.raises(Errors.CorruptRecordError, match="failed crc check"):
        _records(FastPartitionRecords, bytes(bad_crc), 0)


def _blocks(data: bytes, fetch_offset: int, take: int | None = None) -> tuple[list, int, int, list[int]]:
    from stream.kafka.fastparse import BlockPartitionRecords

    part = BlockPartitionRecords(fetch_offset, TP, MemoryRecords(data), check_crcs=True)
    out, counts = [], []
    while True:
        got = part.take(take)
        counts.append(part.taken)
        if not got:
            return out, part.next_fetch_offset, part.records_read, counts
        out.extend(got)


def _flat(blocks: list) -> list[tuple]:
    rows = []
    for b in blocks:
        offsets, stamps, _, _ = b.columns()
        rows.extend(zip(offsets.tolist(), stamps.tolist(), b.values(), strict=True))
    return rows


@pytest.mark.parametrize("codec", [0, 1])
def test_blocks_hold_the_records_kafka_python_reads_and_take_counts_records(codec) -> None:
    """A poll in blocks returns each batch's records as columns: the same offsets, timestamps and values as
    kafka-python's records, the position after the records taken (a take of ``n`` splits a block), and the
    count of records (not blocks) that the fetcher holds against ``max_records``."""
    rng = random.Random(codec)
    data = _batch(100, 60, codec, rng) + _batch(160, 1, codec, rng) + _batch(161, 25, codec, rng, log_append=True)
    for start in (100, 130, 185):
        stock, stock_next = _records(Fetcher.PartitionRecords, data, start)
        blocks, nxt, read, _ = _blocks(data, start)
        assert _flat(blocks) == [(r.offset, r.timestamp, r.value) for r in stock]
        assert nxt == stock_next == 186 and read == len(stock)
    part_s = Fetcher.PartitionRecords(100, TP, MemoryRecords(data), check_crcs=True)
    from stream.kafka.fastparse import BlockPartitionRecords

    part_b = BlockPartitionRecords(100, TP, MemoryRecords(data), check_crcs=True)
    for n in (7, 50, 1, 28):
        got = part_b.take(n)
        assert part_b.taken == sum(len(b) for b in got) == n
        assert _flat(got) == [(r.offset, r.timestamp, r.value) for r in part_s.take(n)]
        assert part_b.next_fetch_offset == part_s.next_fetch_offset
    assert part_b.bytes_read == part_s.bytes_read


def test_a_blocks_event_times_and_items_are_the_decoders() -> None:
    """Each value is read once by the core's decoder: its event time and status are :func:`scan_raw`'s, and the
    merge's items carry them, with the records the decoder refuses or leaves to Python marked for Python."""
    from stream._core import RecordBlock, scan_raw

    values = [b'{"type":"order","event_id":"o1","ts":"2024-01-01T00:00:05Z","user_id":"u","order_id":"x",'
              b'"merchant_id":"m","amount":3,"currency":"EUR"}',
              b'{"type":"login","event_id":"l1","ts":12500,"user_id":"u","success":true}',
              b'{"type":"order","event_id":"o2"}', b"not json", None,
              b'{"type":"label","event_id":"b1","ref_event_id":"o1","ts":20000,"label":1}']
    block = RecordBlock.from_records([5, 6, 8, 9, 10, 11], [1, 2, 3, 4, -1, 6], values)
    offsets, stamps, ts, status = block.columns()
    want_ts, want_status = scan_raw(values)
    assert status.tolist() == want_status.tolist() and status.tolist()[:3] == [0, 1, 3]
    assert ts[:2].tolist() == [1704067205.0, 12.5] and ts[5] == want_ts[5] == 20.0
    items, odd = block.since(6).items("orders")
    assert [it[0] for it in items] == [6, 8, 9, 10, 11] and odd == [1, 2, 3]
    assert items[0] == (6, values[1], 2, 12.5, "orders") and items[3] == (10, None, -1, None, "orders")
    head, tail = block.split(2)
    assert (len(head), len(tail), head.next_offset, tail.first_offset) == (2, 4, 7, 8)
    with pytest.raises(ValueError, match="increase"):
        RecordBlock.from_records([2, 1], [0, 0], [b"", b""])


def test_a_damaged_batch_in_blocks_is_kafka_pythons_corrupt_record_error() -> None:
    from stream._core import kafka_block

    data = bytearray(_batch(0, 5, 0, random.Random(1)))
    with pytest.raises(ValueError, match="past the end of the batch|unconsumed|Invalid record size"):
        kafka_block(data[: len(data) - 40], 61, 5, 0, 0, 0, 0)
    bad_crc = bytearray(data)
    bad_crc[-1] ^= 0xFF
    with pytest.raises(Errors.CorruptRecordError, match="failed crc check"):
        _blocks(bytes(bad_crc), 0)


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_message_formats_come_as_blocks_too(magic) -> None:
    """Message formats v0 and v1 (kafka-python reads their records): the same offsets and values as a block, a
    v0 record's absent time as -1."""
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    b = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 30)
    for i in range(12):
        b.append(40 + i, timestamp=None if magic == 0 else 1_700_000_000_000 + i, key=None,
                 value=None if i == 3 else b"v%d" % i)
    data = bytes(b.build())
    stock, stock_next = _records(Fetcher.PartitionRecords, data, 45)
    blocks, nxt, read, _ = _blocks(data, 45)
    assert _flat(blocks) == [(r.offset, -1 if r.timestamp is None else r.timestamp, r.value) for r in stock]
    assert len(stock) == 7 and nxt == stock_next == 52 and read == 7
    assert (magic == 0) == all(ts == -1 for _, ts, _ in _flat(blocks))
