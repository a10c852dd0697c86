"""ColumnMapping.compile (the CSV fast path) gives exactly what ColumnMapping.apply gives, row by row, errors
included."""

from __future__ import annotations

import gzip
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.errors import InvalidEvent
from stream.eval.delayed_labels import DelayedLabels
from stream.events import Order, encode
from stream.sources import ColumnMapping, FileSource, ListSource, Source

COLUMNS = ["Time", "Amount", "V1", "V2", "Class", "user_id", "note", "ip"]
_NUMBER = st.floats(allow_nan=False, allow_infinity=False).map(repr)
CELLS = st.one_of(  # mostly numbers, so whole rows often take the fast path
    _NUMBER, _NUMBER, _NUMBER, _NUMBER, st.sampled_from(["0", "1", "-2.5", " 3 ", "1_000", "7", "1e308"]),
    st.sampled_from(["", "1e309", "nan", "inf", "-inf", "abc", "true"]),
)
MAPPINGS = [
    ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                        set_spec="user_id=card,merchant_id=m"),
    ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount", set_spec="merchant_id=m", features="V1,V2",
                        drop="note"),
    ColumnMapping.parse(type="login", map_spec="ts=Time", set_spec="success=true", features="none", ts_unit="ms"),
    ColumnMapping.parse(type="order", map_spec="amount=Amount", set_spec="ts=5,merchant_id=m", features="V1,Nope",
                        ts_origin="2024-01-01T00:00:00Z"),
    ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount", set_spec="merchant_id=m,user_id=u", drop="V2"),
]


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except InvalidEvent as e:
        return ("invalid", str(e))


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(MAPPINGS) - 1), header=st.permutations(COLUMNS).map(lambda c: c[:6] + [c[0]]),
       data=st.data())
def test_compiled_mapping_equals_apply(which, header, data):
    """Header orders and a repeated column (the last one wins, as in dict(zip())), cells that are empty,
    non-numeric, non-finite or overflowing: the fast path and apply() agree on every row."""
    mapping = MAPPINGS[which]
    convert = mapping.compile(header)
    for _ in range(5):
        row = data.draw(st.lists(CELLS, min_size=len(header), max_size=len(header)))
        fast = _outcome(convert, row, "f:1")
        slow = _outcome(mapping.apply, dict(zip(header, row, strict=True)), "f:1")
        assert repr(fast) == repr(slow)  # repr: NaN equals NaN there


def test_a_csv_replay_dead_letters_bad_rows_with_the_same_reason_as_before(tmp_path):
    path = tmp_path / "cc.csv.gz"
    rows = ["Time,Amount,V1,Class", "0,10,0.5,0", "1,-3,0.1,0", "2,5,x,1", "3,7,,0", "4,8,nan,0", "5,9,1.5"]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    mapping = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                                  set_spec="user_id=card,merchant_id=m", features="V1")
    batches = list(FileSource([path], mapping=mapping))
    events = [e for b in batches for e in b.events]
    invalid = [d for b in batches for d in b.invalid]
    assert [e.event_id for e in events] == ["cc.csv.gz:2", "cc.csv.gz:5"]
    assert dict(events[0].features) == {"V1": 0.5} and dict(events[1].features) == {}
    assert [(d.position, d.reason) for d in invalid] == [
        (3, "amount: must be >= 0"),
        (4, "features.V1: must be a number, not 'x'"),
        (6, "features.V1: must be a number, not 'nan'"),
        (7, "$: has 3 columns, the header has 4"),
    ]
    assert invalid[1].raw == b"2,5,x,1"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc (Linux)")
def test_file_list_and_delayed_label_sources_are_sources_and_close_releases_the_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    a.write_bytes(b"".join(encode(_order(i, 2.0 * i)) + b"\n" for i in range(10)))
    with gzip.open(b, "wb") as fh:
        fh.write(b"".join(encode(_order(10 + i, 2.0 * i + 1)) + b"\n" for i in range(10)))
    source = FileSource([a, b], batch_size=4)
    delayed = DelayedLabels(source, delay=1.0)
    for s in (source, ListSource([]), delayed):
        assert isinstance(s, Source)
    it = iter(delayed)
    first = next(it)
    assert [e.ts for e in first.events] == [0.0, 1.0, 2.0, 3.0] and source.records_read == 4
    assert _open_fds(a) == _open_fds(b) == 1
    delayed.close()  # closes the file source, which closes both files of the iteration in progress
    assert _open_fds(a) == _open_fds(b) == 0
    assert sum(len(b) for b in it) <= 2  # the iteration stops: at most what the merge held (one per file)
    assert [len(batch) for batch in source] == [4, 4, 4, 4, 4]  # a new iteration reads the files afresh
    source.close()
    source.close()


def _open_fds(path) -> int:
    """How many of this process's file descriptors are open on ``path`` (Linux)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return n


def _order(i: int, ts: float) -> Order:
    return Order(event_id=f"e{i}", ts=ts, user_id="u", order_id=f"o{i}", amount=1.0, currency="EUR",
                 merchant_id="m")
