"""Records of fetched Kafka batches parsed by the compiled core, for one consumer.

kafka-python parses each record of a fetched batch in Python (``DefaultRecordBatch._read_msg``: a varint loop,
~6 µs a record), on the thread that also feeds the engine: at 200,000 records of `riskstream bench --kafka` that
was 2 of the member's ~3 s (`bench/README.md`, Kafka run 20). :func:`install` gives one consumer a fetcher whose
partition records parse each v2 batch's records in the core (``stream._core.kafka_records``), building the same
``ConsumerRecord`` objects. Everything else stays kafka-python's own: fetching and positions, the batch's CRC
check, decompression, control batches, aborted transactions (``read_committed``), skipping records before the
fetch offset, and the fetch position advanced record by record as they are taken (a ``poll`` that stops inside a
batch resumes at the next record).

``install(consumer, blocks=True)`` (the runtime's consumer, when the core scores raw records) goes further: each
batch's records come out of ``poll`` as one ``stream._core.RecordBlock``, columns of offsets, timestamps and values
with each value already read by the core's decoder for its event time and status (what the merge keys on), so no
``ConsumerRecord`` is built and no record goes through the fetcher's per-record iterator. ``take(n)`` splits a
block at ``n`` records and the fetcher counts records against ``max_records``, so positions, partial polls and
the poll size are kafka-python's as before.

Only a consumer without key or value deserializers (riskstream's consumers read bytes), on kafka-python's fetcher
as this module knows it (``kafka.consumer.fetcher.Fetcher.PartitionRecords``), is given the fast path;
:func:`install` returns whether it was. A plain ``KafkaConsumer`` is untouched (``riskstream bench --kafka``
measures its rate as the baseline).
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import errors as Errors  # noqa: N812 - kafka-python's own alias
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer import IsolationLevel

__all__ = ["install", "FastPartitionRecords", "BlockPartitionRecords", "taken_records"]

log = logging.getLogger("riskstream.kafka")

_Base: Any = getattr(Fetcher, "PartitionRecords", None)
#: What the fast path relies on in kafka-python's fetcher and record batch (checked once, at import).
_KNOWN = _Base is not None and all(hasattr(_Base, a) for a in (
    "_unpack_records", "_consume_aborted_transactions_up_to", "_is_batch_aborted", "_contains_abort_marker",
    "_maybe_raise_next_inline_exception", "take", "drain"))


if _KNOWN:
    class FastPartitionRecords(_Base):  # type: ignore[misc,valid-type]
        """kafka-python's ``PartitionRecords`` with each v2 batch's records parsed by the core."""

        def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Any:
            if key_deserializer is not None or value_deserializer is not None:
                yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
                return
            from stream._core import kafka_records

            for batch in self._batches(records):
                if batch.magic != 2:  # legacy formats (v0, v1): kafka-python's own loop, record by record
                    for record in self._legacy_records(batch):
                        self.records_read += 1
                        self.next_fetch_offset = record.offset + 1
                        yield _legacy(tp, self.leader_epoch, record)
                    continue
                try:
                    recs, nbytes = kafka_records(
                        batch._buffer, batch._pos, batch._num_records, batch.base_offset, batch.first_timestamp,
                        batch.max_timestamp, batch.timestamp_type, tp.topic, tp.partition, self.leader_epoch,
                        ConsumerRecord)
                except ValueError as e:
                    raise Errors.CorruptRecordError(f"Found invalid record structure: {e}") from None
                self.bytes_read += nbytes
                for r in recs:  # the position follows the records taken, one by one, as kafka-python's does
                    self.records_read += 1
                    self.next_fetch_offset = r.offset + 1
                    yield r

        def _batches(self, records: Any) -> Any:
            """The fetched batches whose records are to be read, in order, as kafka-python's own loop walks them:
            each batch's CRC checked; a v2 batch decompressed, with the leader epoch, aborted transactions
            (``read_committed``) and control batches handled here (the position moves past what is skipped); at
            the end the position after the last v2 batch, and the partition records drained."""
            try:
                batch = records.next_batch()
                last_batch = None
                while batch is not None:
                    last_batch = batch
                    if self.check_crcs and not batch.validate_crc():
                        raise Errors.CorruptRecordError(
                            f"Record batch for partition {self.topic_partition} at offset {batch.base_offset} "
                            "failed crc check")
                    if batch.magic == 2:
                        self.leader_epoch = batch.leader_epoch
                        if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
                            self._consume_aborted_transactions_up_to(batch.last_offset)
                            producer_id = batch.producer_id
                            if self._contains_abort_marker(batch):
                                self.aborted_producer_ids.discard(producer_id)
                            elif self._is_batch_aborted(batch):
                                self.next_fetch_offset = batch.next_offset
                                batch = records.next_batch()
                                continue
                        if batch.is_control_batch:
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue
                        batch._maybe_uncompress()
                    yield batch
                    batch = records.next_batch()
                else:
                    if last_batch and last_batch.magic == 2:
                        self.next_fetch_offset = last_batch.next_offset
                    self.drain()
            except StopIteration:
                raise RuntimeError("StopIteration raised unpacking messageset") from None

        def _legacy_records(self, batch: Any) -> Any:
            """The records of a legacy (v0, v1) batch, each one's CRC checked and its size counted."""
            for record in batch:
                if self.check_crcs and not record.validate_crc():
                    raise Errors.CorruptRecordError(
                        f"Record for partition {self.topic_partition} at offset {record.offset} failed crc check")
                self.bytes_read += record.size_in_bytes
                yield record

    class BlockPartitionRecords(FastPartitionRecords):  # type: ignore[misc,valid-type]
        """Each fetched batch's records as one ``stream._core.RecordBlock`` (columns), not a ``ConsumerRecord``
        each: what the consumer's ``poll`` returns for the partition is a list of blocks.

        The position follows the records taken, as kafka-python's does: :meth:`take` stops after ``n`` records,
        splitting a block if it must, and a block never holds a record before the fetch offset. kafka-python's
        fetcher counts the length of what ``take`` returns against ``max_records``; :func:`install` makes it
        count records (:attr:`taken`)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pending: Any = None
            #: Records returned by the last :meth:`take`.
            self.taken = 0
            # no per-record skipping (the base class's dropwhile): _blocks trims each block to the fetch offset
            if self.record_iterator is not None:  # type: ignore[has-type]
                self.record_iterator = self._blocks(self._records)

        def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Any:
            self._records = records  # read by _blocks (the base class wraps this generator; it is replaced)
            return iter(())

        def _blocks(self, records: Any) -> Any:
            from stream._core import RecordBlock, kafka_block

            for batch in self._batches(records):
                if batch.magic != 2:  # legacy formats (v0, v1): kafka-python reads the records
                    legacy = list(self._legacy_records(batch))
                    block = RecordBlock.from_records([r.offset for r in legacy],
                                                     [-1 if r.timestamp is None else r.timestamp
                                                      for r in legacy],  # v0 records carry no time
                                                     [r.value for r in legacy])
                else:
                    try:
                        block, nbytes = kafka_block(
                            batch._buffer, batch._pos, batch._num_records, batch.base_offset,
                            batch.first_timestamp, batch.max_timestamp, batch.timestamp_type)
                    except ValueError as e:
                        raise Errors.CorruptRecordError(f"Found invalid record structure: {e}") from None
                    self.bytes_read += nbytes
                block = block.since(self.fetch_offset)  # a fetch can start inside a batch
                if len(block):
                    yield block

        def take(self, n: int | None = None) -> list[Any]:
            self._maybe_raise_next_inline_exception()
            out: list[Any] = []
            got = 0
            self.taken = 0
            try:
                while n is None or got < n:
                    block = self._pending
                    self._pending = None
                    if block is None:
                        if self.record_iterator is None:
                            break
                        block = next(self.record_iterator, None)
                        if block is None:
                            break
                    if n is not None and len(block) > n - got:
                        block, self._pending = block.split(n - got)
                    out.append(block)
                    got += len(block)
                    self.records_read += len(block)
                    self.next_fetch_offset = block.next_offset
            except Exception as e:
                if not out:
                    raise
                self._next_inline_exception = e  # raised by the next take, as kafka-python's own take does
            self.taken = got
            return out

        def drain(self) -> None:
            self._pending = None
            super().drain()
else:  # pragma: no cover - another kafka-python: its own parsing
    FastPartitionRecords = None  # type: ignore[assignment,misc]
    BlockPartitionRecords = None  # type: ignore[assignment,misc]


def _legacy(tp: Any, leader_epoch: int, record: Any) -> Any:
    key_size = len(record.key) if record.key is not None else -1
    value_size = len(record.value) if record.value is not None else -1
    return ConsumerRecord(tp.topic, tp.partition, leader_epoch, record.offset, record.timestamp,
                          record.timestamp_type, record.key, record.value, record.headers, record.checksum,
                          key_size, value_size, -1)


def install(consumer: Any, *, blocks: bool = False) -> bool:
    """Give ``consumer`` (a ``KafkaConsumer``) the core's record parsing; False (and nothing changed) when its
    fetcher is not the one this module knows, or it deserializes keys or values.

    ``blocks``: its ``poll`` returns, per partition, a list of ``stream._core.RecordBlock`` (columns of the
    records, each value already read by the core's decoder for its event time) in place of ``ConsumerRecord`` s;
    ``max_records`` still counts records."""
    fetcher = getattr(consumer, "_fetcher", None)
    cfg = getattr(consumer, "config", {})
    if FastPartitionRecords is None or not isinstance(fetcher, Fetcher) or cfg.get("key_deserializer") \
            or cfg.get("value_deserializer") or not hasattr(fetcher, "_append"):
        log.info("kafka record parsing stays kafka-python's (fetcher or deserializers not the known ones)")
        return False
    fetcher.PartitionRecords = BlockPartitionRecords if blocks else FastPartitionRecords
    if blocks and not getattr(fetcher, "_counts_records", False):
        append = fetcher._append

        def _append(drained: Any, part: Any, max_records: int, update_offsets: bool) -> int:
            n = append(drained, part, max_records, update_offsets)
            return taken_records(part, n)

        fetcher._append = _append
        fetcher._counts_records = True
    return True


def taken_records(part: Any, n: int) -> int:
    """What kafka-python's fetcher counts against ``max_records`` for ``part``'s last ``take``: records, not
    blocks (``n``, the length of what it returned, for any other partition records)."""
    if isinstance(part, BlockPartitionRecords):
        taken, part.taken = part.taken, 0
        return taken if n else 0
    return n
