"""`replay --scores-out`: every scored event's scores in a Parquet file that agrees with the alerts written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.config import default_settings
from stream.eval.scores import ScoresWriter
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate

BASE = ["event_id", "event_type", "event_time", "user_id", "label", "scenario"]


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "s.jsonl.gz"
    res = CliRunner().invoke(cli, ["simulate", "--events", "4000", "--seed", "8", "--out", str(path)])
    assert res.exit_code == 0, res.output
    return path


def test_scores_out_has_a_row_per_scored_event_and_its_alerted_rows_are_the_alerts(stream_file, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n")
    scores, alerts, rep = tmp_path / "s.parquet", tmp_path / "a.jsonl", tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["replay", str(stream_file), "--config", str(cfg), "--budget", "0.02",
                                   "--alerts-out", str(alerts), "--scores-out", str(scores), "--report", str(rep)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"written to {scores}" in res.output
    report = json.loads(rep.read_text())
    t = pq.read_table(scores)
    names = list(default_settings().detectors)
    assert t.column_names == [*BASE, *(f"{k}_{n}" for n in names for k in ("raw", "p")), "risk", "alerted"]
    assert t.num_rows == report["events"] > 0
    assert str(t.schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    rows = t.to_pylist()
    assert {r["event_type"] for r in rows} == {"order", "login"}
    assert sum(r["label"] == 1 for r in rows) == report["positives"]
    assert {r["scenario"] for r in rows} >= {"normal", "account_takeover"}
    written = read_alerts(alerts)
    alerted = [r for r in rows if r["alerted"]]
    assert written and [r["event_id"] for r in alerted] == [a.event_id for a in written]
    for r, a in zip(alerted, written, strict=True):
        assert round(r["risk"], 6) == a.score and r["user_id"] == a.entities["user"]
        assert {n: round(r[f"p_{n}"], 6) for n in names} == a.detector_scores
        assert abs(r["event_time"].timestamp() - a.event_ts) < 1e-3
    assert all(np.isfinite(r[f"raw_{n}"]) and 0 < r[f"p_{n}"] <= 1 for r in rows for n in names)


def test_the_writer_writes_row_groups_as_batches_come(tmp_path):
    events = list(simulate(SimConfig(events=3000, seed=2)))
    engine = Engine(default_settings())
    path = tmp_path / "s.parquet"
    w = ScoresWriter(path, row_group_size=700)
    scored = 0
    for i in range(0, len(events), 250):
        out = engine.process(events[i : i + 250])
        w.add(out)
        scored += len(out.scored)
        assert w._buffered < 700 + 250, "never more than a row group and a batch in memory"
    w.close()
    f = pq.ParquetFile(path)
    assert f.metadata.num_rows == scored == w.rows
    assert f.metadata.num_row_groups >= scored // (700 + 250)


def test_an_empty_stream_gives_an_empty_file_with_the_columns(tmp_path):
    path = tmp_path / "empty.parquet"
    with ScoresWriter(path, detectors=["hst"]):
        pass
    t = pq.read_table(path)
    assert t.num_rows == 0 and t.column_names == [*BASE, "raw_hst", "p_hst", "risk", "alerted"]


def test_an_unwritable_scores_path_is_a_usage_error(stream_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, ["replay", str(stream_file), "-q", "--scores-out", str(blocker / "s.parquet")])
    assert res.exit_code == 2 and "--scores-out" in res.output


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_raw_replay_paths_write_the_reference_engines_file_without_decoding_an_event(
        stream_file, tmp_path, monkeypatch, fmt):
    """``--scores-out`` on the compiled engine's raw paths (JSON lines, and a mapped CSV file decoded by the core)
    reads what it writes from the core's columns: the same file as the Python engine's, which writes it from the
    event objects, and no event decoded in Python for it (each costs ~100 µs: a 7x slower replay before)."""
    import csv
    import gzip
    import importlib

    from stream import compiled

    replay = importlib.import_module("stream.replay")  # the module: the package exports its function by that name

    if fmt == "csv":
        path = tmp_path / "s.csv"
        with gzip.open(stream_file, "rt") as f, path.open("w", newline="") as out:
            w = csv.writer(out)
            w.writerow(["ts", "event_id", "user_id", "amount", "merchant_id", "label", "scenario"])
            for i, line in enumerate(f):
                r = json.loads(line)
                if r["type"] == "order":  # every 10th record without its label: a null in the file
                    w.writerow([r["ts"], r["event_id"], r["user_id"], r["amount"], r["merchant_id"],
                                "" if r.get("label") is None or i % 10 == 0 else r["label"], r.get("scenario") or ""])
        args = [str(path), "--type", "order", "--map",
                "ts=ts,event_id=event_id,user_id=user_id,amount=amount,merchant_id=merchant_id,label=label,"
                "scenario=scenario", "--features", "none"]
    else:
        args = [str(stream_file)]
    py_cfg = tmp_path / "py.toml"
    py_cfg.write_text('[engine]\ncore = "python"\n')
    ref = tmp_path / "ref.parquet"
    res = CliRunner().invoke(cli, ["replay", *args, "-c", str(py_cfg), "-q", "--scores-out", str(ref)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output

    def refuse(*a, **k):
        raise AssertionError("an event was decoded in Python for --scores-out")

    label_events = replay._Lazy._all  # the label events of a batch are decoded, for the evaluation window

    def scored_refused(self):
        return refuse() if self._columns is not None else label_events(self)

    monkeypatch.setattr(replay._Lazy, "_all", scored_refused)
    monkeypatch.setattr(compiled.LazyEvents, "__getitem__", refuse)
    monkeypatch.setattr(compiled.LazyEvents, "__iter__", refuse)
    got = tmp_path / "got.parquet"
    res = CliRunner().invoke(cli, ["replay", *args, "-q", "--scores-out", str(got)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    a, b = pq.read_table(ref), pq.read_table(got)
    assert a.num_rows > 1000 and a.equals(b)
    labels = b.column("label")
    assert pa.compute.sum(labels).as_py() > 0
    assert (0 < labels.null_count < a.num_rows) if fmt == "csv" else labels.null_count == 0
