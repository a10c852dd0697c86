"""Records of fetched Kafka batches parsed by the compiled core, for one consumer.

kafka-python parses each record of a fetched batch in Python (``DefaultRecordBatch._read_msg``: a varint loop,
~6 µs a record), on the thread that also feeds the engine: at 200,000 records of `riskstream bench --kafka` that
was 2 of the member's ~3 s (`bench/README.md`, Kafka run 20). :func:`install` gives one consumer a fetcher whose
partition records parse each v2 batch's records in the core (``stream._core.kafka_records``), building the same
``ConsumerRecord`` objects. Everything else stays kafka-python's own: fetching and positions, the batch's CRC
check, decompression, control batches, aborted transactions (``read_committed``), skipping records before the
fetch offset, and the fetch position advanced record by record as they are taken (a ``poll`` that stops inside a
batch resumes at the next record).

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

__all__ = ["install", "FastPartitionRecords"]

log = logging.getLogger("riskstream.kafka")

_Base: Any = getattr(Fetcher, "PartitionRecords", None)
#: What the fast path relies on in kafka-python's fetcher and record batch (checked once, at import).
_KNOWN = _Base is not None and all(hasattr(_Base, a) for a in (
    "_unpack_records", "_consume_aborted_transactions_up_to", "_is_batch_aborted", "_contains_abort_marker"))


if _KNOWN:
    class FastPartitionRecords(_Base):  # type: ignore[misc,valid-type]
        """kafka-python's ``PartitionRecords`` with each v2 batch's records parsed by the core."""

        def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any) -> Any:
            if key_deserializer is not None or value_deserializer is not None:
                yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
                return
            from stream._core import kafka_records

            try:
                batch = records.next_batch()
                last_batch = None
                while batch is not None:
                    last_batch = batch
                    if self.check_crcs and not batch.validate_crc():
                        raise Errors.CorruptRecordError(
                            f"Record batch for partition {self.topic_partition} at offset {batch.base_offset} "
                            "failed crc check")
                    if batch.magic != 2:  # legacy formats (v0, v1): kafka-python's own loop, record by record
                        for record in batch:
                            if self.check_crcs and not record.validate_crc():
                                raise Errors.CorruptRecordError(
                                    f"Record for partition {self.topic_partition} at offset {record.offset} "
                                    "failed crc check")
                            self.records_read += 1
                            self.bytes_read += record.size_in_bytes
                            self.next_fetch_offset = record.offset + 1
                            yield _legacy(tp, self.leader_epoch, record)
                        batch = records.next_batch()
                        continue
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
                    batch = records.next_batch()
                else:
                    if last_batch and last_batch.magic == 2:
                        self.next_fetch_offset = last_batch.next_offset
                    self.drain()
            except StopIteration:
                raise RuntimeError("StopIteration raised unpacking messageset") from None
else:  # pragma: no cover - another kafka-python: its own parsing
    FastPartitionRecords = None  # type: ignore[assignment,misc]


def _legacy(tp: Any, leader_epoch: int, record: Any) -> Any:
    key_size = len(record.key) if record.key is not None else -1
    value_size = len(record.value) if record.value is not None else -1
    return ConsumerRecord(tp.topic, tp.partition, leader_epoch, record.offset, record.timestamp,
                          record.timestamp_type, record.key, record.value, record.headers, record.checksum,
                          key_size, value_size, -1)


def install(consumer: Any) -> bool:
    """Give ``consumer`` (a ``KafkaConsumer``) the core's record parsing; False (and nothing changed) when its
    fetcher is not the one this module knows, or it deserializes keys or values."""
    fetcher = getattr(consumer, "_fetcher", None)
    cfg = getattr(consumer, "config", {})
    if FastPartitionRecords is None or not isinstance(fetcher, Fetcher) or cfg.get("key_deserializer") \
            or cfg.get("value_deserializer"):
        log.info("kafka record parsing stays kafka-python's (fetcher or deserializers not the known ones)")
        return False
    fetcher.PartitionRecords = FastPartitionRecords
    return True
