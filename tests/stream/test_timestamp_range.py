"""One range of event timestamps, [1970-01-01, 2200-01-01) UTC, enforced by parse_ts for every source."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stream.errors import InvalidEvent
from stream.events import TS_MAX, TS_MIN, decode, parse_ts
from stream.kafka.client import decode_record
from stream.sources import ColumnMapping, FileSource

RANGE = re.escape("is not in 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (exclusive)")
LOGIN = {"type": "login", "event_id": "e1", "user_id": "u1", "success": True}


def test_the_bounds_are_1970_and_2200():
    assert TS_MIN == datetime(1970, 1, 1, tzinfo=UTC).timestamp()
    assert TS_MAX == datetime(2200, 1, 1, tzinfo=UTC).timestamp()
    assert parse_ts(0) == 0.0 and parse_ts("1970-01-01T00:00:00Z") == 0.0
    assert parse_ts("2199-12-31T23:59:59.999Z") == pytest.approx(TS_MAX - 0.001)


@pytest.mark.parametrize("value", [-1, -62135596800000, "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
                                   "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 7258118400000, 1e20,
                                   1.7e18])  # the last: nanoseconds read as milliseconds
def test_out_of_range_timestamps_are_refused_naming_the_range(value):
    with pytest.raises(InvalidEvent, match=RANGE):
        parse_ts(value)
    raw = orjson.dumps({**LOGIN, "ts": value})
    with pytest.raises(InvalidEvent, match=f"^ts: is out of range: .*{RANGE}"):
        decode(raw)
    with pytest.raises(InvalidEvent, match=f"^account_created_ts: is out of range: .*{RANGE}"):
        decode(orjson.dumps({"type": "order", "event_id": "o", "ts": 0, "user_id": "u", "order_id": "o",
                             "amount": 1.0, "currency": "EUR", "merchant_id": "m", "account_created_ts": value}))
    dead = decode_record("orders", 3, 17, raw)  # a Kafka record: a dead letter with the same reason
    assert dead.reason.startswith("ts: is out of range:") and re.search(RANGE, dead.reason) and dead.raw == raw


def test_a_csv_column_in_seconds_from_an_origin_is_checked_after_the_origin(tmp_path):
    path = tmp_path / "cc.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("Time,Amount\n0,1\n-5,2\n172792,3\n1e15,4\n")
    m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount", set_spec="user_id=c,merchant_id=m")
    batches = list(FileSource([path], mapping=m))
    assert [e.ts for b in batches for e in b.events] == [0.0, 172792.0]  # ULB-style: seconds from 0
    assert [(d.position, d.reason.split(" is not in")[0]) for b in batches for d in b.invalid] == [
        (3, "ts: is out of range: -5000.0 ms"), (5, "ts: is out of range: 1e+18 ms")]
    m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount", set_spec="user_id=c,merchant_id=m",
                            ts_origin="2013-09-01T00:00:00Z")
    batches = list(FileSource([path], mapping=m))
    origin = datetime(2013, 9, 1, tzinfo=UTC).timestamp()
    assert [e.ts for b in batches for e in b.events] == [origin, origin - 5, origin + 172792]
    assert [d.position for b in batches for d in b.invalid] == [5]


def test_a_parquet_timestamp_column_out_of_range_is_a_dead_letter(tmp_path):
    whens = [datetime(2024, 5, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC)]
    table = pa.table({"type": ["login"] * 3, "event_id": ["a", "b", "c"], "user_id": ["u"] * 3, "success": [True] * 3,
                      "ts": pa.array(whens, pa.timestamp("us", tz="UTC"))})
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    batches = list(FileSource([path]))
    assert [e.event_id for b in batches for e in b.events] == ["a"]
    invalid = [d for b in batches for d in b.invalid]
    assert [d.position for d in invalid] == [2, 3] and all(re.search(RANGE, d.reason) for d in invalid)
