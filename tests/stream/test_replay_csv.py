"""``replay`` of a CSV file hands whole chunks to the compiled core (``stream.replay._replay_csv``): the same
batches, alerts (reasons included), dead letters and report as the event path, across read chunks and with junk
rows; the evaluation window reads the core's columns instead of decoding events."""

from __future__ import annotations

import gzip
import importlib
import json

import pytest
from click.testing import CliRunner

from sinks.deadletter import MemoryDeadLetterSink
from sinks.memory import MemorySink
from stream.cli import cli
from stream.config import load_settings
from stream.eval.data import shared_data_dir
from stream.replay import replay
from stream.sources import ColumnMapping, FileSource

ULB = shared_data_dir("creditcard_ulb", must_exist=False) / "creditcard.csv.gz"
MAP = {"type": "order", "map_spec": "ts=Time,amount=Amount,label=Class", "set_spec": "user_id=card,merchant_id=unknown"}
ARGS = ["--type", "order", "--map", "ts=Time,amount=Amount,label=Class", "--set", "user_id=card,merchant_id=unknown"]


@pytest.fixture(scope="module")
def ulb_head(tmp_path_factory):
    if not ULB.exists():
        pytest.skip(f"{ULB} is missing")
    path = tmp_path_factory.mktemp("csv") / "ulb.csv"
    with gzip.open(ULB, "rt") as f:
        lines = [next(f) for _ in range(9001)]
    # junk among the rows: a short row, a non-numeric amount, a time going nowhere; and a quoted field
    lines[100] = "1.0,2.0\n"
    cells = lines[2000].rstrip("\n").split(",")
    cells[-2] = "lots"
    lines[2000] = ",".join(cells) + "\n"
    cells = lines[5000].rstrip("\n").split(",")
    cells[0] = ""
    lines[5000] = ",".join(cells) + "\n"
    cells = lines[7000].rstrip("\n").split(",")
    cells[-1] = '"0"'
    lines[7000] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    return path


def _run(path, csv_path: bool, chunk: int, monkeypatch):
    monkeypatch.setattr(importlib.import_module("stream.sources"), "_CSV_CHUNK", chunk)
    settings = load_settings(overrides={"engine.budget": 0.02, "engine.batch_size": 700})
    src = FileSource([path], batch_size=700, mapping=ColumnMapping.parse(**MAP))
    sink, dead, batches = MemorySink(), MemoryDeadLetterSink(), []

    class Events:  # the same file through the event path
        def __iter__(self):
            return iter(src)

    result = replay(src if csv_path else Events(), settings, sinks=[sink], dead_letters=dead,
                    on_batch=lambda b, o: batches.append((type(b).__name__, len(b), len(o.alerts))))
    return dict(result), [a.to_json() for a in sink.alerts], [d.to_dict() for d in dead.records], batches


@pytest.mark.parametrize("chunk", [1 << 22, 1 << 16], ids=["one-chunk", "64KB-chunks"])
def test_csv_replay_equals_the_event_path(ulb_head, chunk, monkeypatch):
    rep, alerts, dead, batches = _run(ulb_head, True, chunk, monkeypatch)
    ref_rep, ref_alerts, ref_dead, ref_batches = _run(ulb_head, False, chunk, monkeypatch)
    assert {kind for kind, _, _ in batches} == {"CsvBatch"} and {kind for kind, _, _ in ref_batches} == {"Batch"}
    assert [b[1:] for b in batches] == [b[1:] for b in ref_batches]  # the same batches, and alerts in each
    assert alerts == ref_alerts and len(alerts) > 20  # reasons included
    assert dead == ref_dead and len(dead) == 3
    skip = {"seconds", "events_per_second", "scored_per_second", "stage_share", "feature_memory"}
    assert {k: v for k, v in rep.items() if k not in skip} == {k: v for k, v in ref_rep.items() if k not in skip}
    assert rep["events"] == 8997 and rep["invalid"] == 3


def test_the_cli_report_and_its_evaluation_window_match_the_python_engine(ulb_head, tmp_path):
    cfg = tmp_path / "py.toml"
    cfg.write_text('[engine]\ncore = "python"\n')
    args = ["replay", str(ulb_head), *ARGS, "--budget", "0.02", "--eval-from", "1970-01-01", "-q"]
    for name, extra in (("py", ["-c", str(cfg)]), ("csv", [])):
        res = CliRunner().invoke(cli, [*args, *extra, "--report", str(tmp_path / f"{name}.json"),
                                       "--alerts-out", str(tmp_path / f"{name}.jsonl")], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    py, csv = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("py", "csv"))
    assert csv["eval"] == py["eval"] and csv["roc_auc"] == py["roc_auc"] and csv["alerts"] == py["alerts"] > 0
    assert (tmp_path / "csv.jsonl").read_bytes() == (tmp_path / "py.jsonl").read_bytes()
