"""Parquet and Arrow/Feather input: read in record batches, through the same column mapping as CSV."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sources import COLUMNS as SOURCE_COLUMNS
from test_sources import MAPPINGS as SOURCE_MAPPINGS
from test_sources import _outcome

from sinks.deadletter import read_dead_letters
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.sources import ColumnMapping, FileSource, detect_format

MAP = ["--type", "order", "--map", "event_id=id,ts=Time,amount=Amount,label=Class,user_id=card",
       "--set", "merchant_id=m", "--drop", "Secret", "--ts-origin", "2024-01-01T00:00:00Z"]


def _rows(n: int = 1200) -> list[dict]:
    rng = random.Random(4)
    rows = []
    for i in range(n):
        fraud = int(i % 97 == 96)
        rows.append({
            "id": f"tx{i}", "Time": i * 30, "card": f"c{rng.randrange(40)}",
            "V1": 8.0 + rng.random() if fraud else rng.gauss(0, 1), "V2": rng.gauss(0, 1),
            "Amount": round(rng.uniform(1, 200), 2), "Class": fraud, "Secret": fraud,
        })
    rows[50]["Amount"] = -3.0     # amount: must be >= 0
    rows[51]["Amount"] = None     # amount: is missing
    rows[52]["card"] = None       # user_id: is missing
    return rows


def _write_csv(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(rows[0])
        for r in rows:
            w.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in r.values()])


def _table(rows: list[dict]) -> pa.Table:
    rows = [{**r, "Amount": None if r["Amount"] is None else Decimal(str(r["Amount"]))} for r in rows]
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("Time", pa.int64()), ("card", pa.dictionary(pa.int32(), pa.string())),
        ("V1", pa.float64()), ("V2", pa.float32()), ("Amount", pa.decimal128(10, 2)), ("Class", pa.int8()),
        ("Secret", pa.int64())]))


def _replay(path, tmp_path, tag):
    alerts, dead, rep = tmp_path / f"{tag}.alerts", tmp_path / f"{tag}.dead", tmp_path / f"{tag}.json"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n")
    res = CliRunner().invoke(cli, ["replay", str(path), *MAP, "--budget", "0.02", "--config", str(cfg), "-q",
                                   "--alerts-out", str(alerts), "--dead-letters", str(dead), "--report", str(rep),
                                   "--batch-size", "256"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return read_alerts(alerts), read_dead_letters(dead), json.loads(rep.read_text())


def _without_provenance(alerts):
    return [{k: v for k, v in a.to_dict().items() if k != "provenance"} for a in alerts]


def test_the_same_data_as_csv_parquet_and_feather_gives_identical_alerts(tmp_path):
    rows = _rows()
    # V2 as float32 would differ from the CSV's float64 text: write the CSV from the values Parquet holds
    table = _table(rows)
    rows = table.to_pylist()
    for r in rows:
        r["V2"] = float(r["V2"])
        r["Amount"] = None if r["Amount"] is None else float(r["Amount"])
    _write_csv(rows, tmp_path / "d.csv")
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=300)
    feather.write_feather(table, tmp_path / "d.feather", chunksize=300)
    a_csv, d_csv, r_csv = _replay(tmp_path / "d.csv", tmp_path, "csv")
    a_pq, d_pq, r_pq = _replay(tmp_path / "d.parquet", tmp_path, "pq")
    a_ft, d_ft, r_ft = _replay(tmp_path / "d.feather", tmp_path, "ft")
    assert a_csv, "the data should alert"
    assert _without_provenance(a_csv) == _without_provenance(a_pq) == _without_provenance(a_ft)
    assert r_csv["events"] == r_pq["events"] == r_ft["events"] == len(rows) - 3
    assert r_csv["roc_auc"] == r_pq["roc_auc"]
    # provenance names the file and the row (CSV: its line, the header being line 1)
    assert {a.topic for a in a_pq} == {"d.parquet"} and [a.offset for a in a_pq] == [a.offset - 1 for a in a_csv]
    expected = [(51, "amount: must be >= 0"), (52, "amount: is missing"), (53, "user_id: is missing")]
    assert [(d.position, d.reason) for d in d_pq] == [(d.position, d.reason) for d in d_ft] == expected
    assert [d.reason for d in d_csv] == [r for _, r in expected]
    original = orjson.loads(d_pq[0].raw)
    assert original["id"] == "tx50" and original["Amount"] == -3.0 and original["card"] == rows[50]["card"]


def test_timestamp_columns_are_event_times_and_identity_rows_decode_as_typed_values(tmp_path):
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    table = pa.table({
        "type": ["login", "login", "order"],
        "event_id": ["a", "b", "c"],
        "ts": pa.array([t0, t0, t0], pa.timestamp("ms", tz="Europe/Paris")),
        "user_id": ["u1", "u2", "u3"],
        "success": [True, False, None],
        "lat": [48.8, None, None],
        "features": [{"x": 1.0}, {"x": 2.0}, None],
    })
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    batches = list(FileSource([path]))
    events = [e for b in batches for e in b.events]
    invalid = [d for b in batches for d in b.invalid]
    assert [(e.event_id, e.ts, e.success) for e in events] == [("a", t0.timestamp(), True),
                                                               ("b", t0.timestamp(), False)]
    assert dict(events[0].features) == {"x": 1.0} and events[0].lat == 48.8
    assert [(d.position, d.reason, d.source) for d in invalid] == [(3, "order_id: is missing", "e.parquet")]
    assert orjson.loads(invalid[0].raw)["ts"].startswith("2024-05-01 12:00:00")


def test_naive_timestamps_are_utc_and_numeric_ts_follows_the_mapping(tmp_path):
    table = pa.table({"when": pa.array([datetime(2024, 1, 1, 0, 0, 5)], pa.timestamp("ns")), "n": [7],
                      "amt": [1.5]})
    path = tmp_path / "x.arrow"
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table)
    m = ColumnMapping.parse(type="order", map_spec="ts=when,amount=amt", set_spec="user_id=u,merchant_id=m")
    (e,) = [e for b in FileSource([path], mapping=m) for e in b.events]
    assert e.ts == datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC).timestamp() and dict(e.features) == {"n": 7.0}
    m = ColumnMapping.parse(type="order", map_spec="ts=n,amount=amt", set_spec="user_id=u,merchant_id=m",
                            ts_unit="ms", features="none")
    (e,) = [e for b in FileSource([path], mapping=m) for e in b.events]
    assert e.ts == 0.007 and e.event_id == "x.arrow:1"


def test_formats_by_extension_and_errors_name_the_problem(tmp_path):
    assert [detect_format(n) for n in ("a.parquet", "b.pq", "c.arrow", "d.feather", "e.csv.gz")] == \
        ["parquet", "parquet", "arrow", "arrow", "csv"]
    pq.write_table(pa.table({"Time": [1], "Amount": [2.0]}), tmp_path / "d.parquet")
    res = CliRunner().invoke(cli, ["replay", str(tmp_path / "d.parquet"), "--type", "order", "--map",
                                   "amount=NoSuchColumn", "-q"])
    assert res.exit_code == 2 and "NoSuchColumn" in res.output
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    res = CliRunner().invoke(cli, ["replay", str(tmp_path / "bad.parquet"), "--type", "order", "-q"])
    assert res.exit_code == 1 and "cannot read" in res.output and "bad.parquet" in res.output
    with pytest.raises(Exception, match="unknown input format"):
        FileSource([tmp_path / "d.parquet"], format="xls")


def test_bench_reads_parquet_input(tmp_path):
    rows = _rows(2000)
    pq.write_table(_table(rows), tmp_path / "d.parquet")
    out = tmp_path / "b.json"
    res = CliRunner().invoke(cli, ["bench", "--input", str(tmp_path / "d.parquet"), *MAP, "--limit", "1500",
                                   "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "d.parquet (1500 events)" in json.loads(out.read_text())["input"]


_TYPED = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.floats(allow_nan=False, width=32),
                   st.sampled_from(["", "abc", "1.5", "nan", "7", "2024-01-01T00:00:00Z"]))


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(SOURCE_MAPPINGS) - 1), header=st.permutations(SOURCE_COLUMNS).map(lambda c: c[:6]),
       data=st.data())
def test_the_compiled_mapping_on_typed_cells_equals_apply_on_the_typed_row(which, header, data):
    """What the Parquet reader relies on: the CSV fast path given typed cells (null as "") gives what apply()
    gives for the typed row, errors included."""
    mapping = SOURCE_MAPPINGS[which]
    convert = mapping.compile(header)
    for _ in range(5):
        row = data.draw(st.lists(_TYPED, min_size=len(header), max_size=len(header)))
        fast = _outcome(convert, ["" if v is None else v for v in row], "f:1")
        slow = _outcome(mapping.apply, dict(zip(header, row, strict=True)), "f:1")
        assert repr(fast) == repr(slow)
