"""``stream.kafka.fastparse`` on a real broker: a ``read_committed`` consumer whose records the core parses reads
exactly what kafka-python's own parsing reads (committed transactions, not aborted ones nor their markers; gzip
batches; keys, null values and headers), in polls that stop inside batches; so does one that reads blocks of
columns, each poll holding at most ``max_records`` records."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.config import load_settings
from stream.kafka.client import make_consumer
from stream.kafka.fastparse import install


def _read(consumer: KafkaConsumer, tp: TopicPartition, end: int, blocks: bool = False) -> list:
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out = []
    while consumer.position(tp) < end:
        for recs in consumer.poll(timeout_ms=500, max_records=13).values():
            if blocks:  # (offset, timestamp, value) rows, at most max_records of them in a poll
                rows = [row for b in recs
                        for row in zip(b.columns()[0].tolist(), b.columns()[1].tolist(), b.values(), strict=True)]
                assert 0 < len(rows) <= 13
                out.extend(rows)
            else:
                out.extend(recs)
    consumer.close()
    return out


def test_the_core_parses_what_kafka_python_reads_committed(kafka_bootstrap, topics) -> None:
    tp = TopicPartition(topics.orders, 1)
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type="gzip", linger_ms=5)
    for i in range(300):
        plain.send(tp.topic, partition=1, key=None if i % 3 == 0 and i % 50 != 7 else f"k{i}".encode(),
                   value=None if i % 50 == 7 else b'{"n": %d}' % i, headers=[("h", b"x")] if i % 5 == 0 else None)
    plain.flush()
    plain.close()
    txn = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"fp-{topics.group}")
    txn.init_transactions()
    for keep in (True, False, True, False, True):
        txn.begin_transaction()
        for i in range(40):
            txn.send(tp.topic, partition=1, value=b"%s-%d" % (b"kept" if keep else b"aborted", i))
        txn.flush()
        txn.commit_transaction() if keep else txn.abort_transaction()
    txn.close()
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    end = probe.end_offsets([tp])[tp]
    probe.close()
    stock = _read(KafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False), tp, end)
    settings = load_settings(overrides={"kafka.bootstrap_servers": kafka_bootstrap})
    fast = make_consumer(settings, group_id=None, bootstrap=kafka_bootstrap, isolation_level="read_committed")
    assert fast._fetcher.PartitionRecords.__name__ == "FastPartitionRecords"
    got = _read(fast, tp, end)
    assert got == stock
    values = [r.value for r in got]
    assert len(got) == 300 + 3 * 40 and not any(v and v.startswith(b"aborted") for v in values)
    assert sum(v is None for v in values) == 6 and sum(bool(r.headers) for r in got) == 60
    in_blocks = make_consumer(settings, group_id=None, bootstrap=kafka_bootstrap, isolation_level="read_committed")
    assert install(in_blocks, blocks=True)
    assert _read(in_blocks, tp, end, blocks=True) == [(r.offset, r.timestamp, r.value) for r in stock]
    plain_reader = make_consumer(settings, group_id=None, bootstrap=kafka_bootstrap, core_parsing=False,
                                 isolation_level="read_committed")
    assert plain_reader._fetcher.PartitionRecords.__name__ == "PartitionRecords"
    plain_reader.close()
