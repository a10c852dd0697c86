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


def _both(path, mapping: dict, monkeypatch, chunk: int = 1 << 22, batch: int = 700):
    """The CSV path and the event path on one file: (report, alerts, dead letters, batch sizes) of each."""
    out = []
    for csv_path in (True, False):
        monkeypatch.setattr(importlib.import_module("stream.sources"), "_CSV_CHUNK", chunk)
        settings = load_settings(overrides={"engine.budget": 0.02, "engine.batch_size": batch})
        src = FileSource([path], batch_size=batch, mapping=ColumnMapping.parse(**mapping))

        class Events:
            def __init__(self, src):
                self.src = src

            def __iter__(self):
                return iter(self.src)

        sink, dead, batches = MemorySink(), MemoryDeadLetterSink(), []
        try:
            result = dict(replay(src if csv_path else Events(src), settings, sinks=[sink], dead_letters=dead,
                                 on_batch=lambda b, o, seen=batches: seen.append((type(b).__name__, len(b)))))
        except Exception as e:  # noqa: BLE001 - a replay that stops on a broken file carries its result
            result = dict(getattr(e, "result", {}) or {"error": str(e)})
        skip = {"seconds", "events_per_second", "scored_per_second", "stage_share", "feature_memory"}
        out.append(({k: v for k, v in result.items() if k not in skip}, [a.to_json() for a in sink.alerts],
                    [d.to_dict() for d in dead.records], batches))
    (rep, alerts, dead, batches), (ref_rep, ref_alerts, ref_dead, ref_batches) = out
    assert {k for k, _ in batches} == {"CsvBatch"}
    assert [n for _, n in batches] == [n for _, n in ref_batches]
    assert alerts == ref_alerts and dead == ref_dead and rep == ref_rep
    return rep


def test_records_over_several_lines_scenarios_and_labels_keep_the_event_paths_batches(tmp_path, monkeypatch):
    """Quoted notes over several lines (rows the core hands to Python) near every chunk end, a type column with
    logins and label events, scenarios: the same batches, alerts and report (per-scenario figures included)."""
    import random

    rng = random.Random(5)
    rows = ["type,event_id,user_id,order_id,ts,amount,currency,merchant_id,success,ref_event_id,label,scenario,note"]
    ts = 1_700_000_000.0
    for i in range(3000):
        ts += rng.random() * 30
        scen = rng.choice(["normal", "normal", "normal", "ato", "travel"])
        y = int(scen == "ato")
        note = '"line one\nline two, with a comma"' if rng.random() < 0.05 else ""
        if rng.random() < 0.5:
            rows.append(f"order,E{i},u{rng.randrange(60)},o{i},{ts:.3f},{rng.random() * 500:.2f},EUR,m1,,,{y},"
                        f"{scen},{note}")
        else:
            rows.append(f"login,E{i},u{rng.randrange(60)},,{ts:.3f},,,,{rng.choice(['true', 'false'])},,{y},"
                        f"{scen},{note}")
        if i > 50 and rng.random() < 0.1:
            rows.append(f"label,L{i},,,{ts:.3f},,,,,E{i - 40},1,,")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n")
    mapping = {"type": None, "map_spec": "type=type,event_id=event_id,user_id=user_id,order_id=order_id,ts=ts,"
               "amount=amount,currency=currency,merchant_id=merchant_id,success=success,ref_event_id=ref_event_id,"
               "label=label,scenario=scenario"}
    rep = _both(path, mapping, monkeypatch, chunk=4096, batch=50)
    assert rep["per_scenario"]["ato"]["events"] > 100 and rep["label_events"] > 100


def test_a_mapping_the_core_cannot_compile_and_a_truncated_file(ulb_head, tmp_path, monkeypatch):
    # a listed feature column the header lacks: the core leaves the mapping to Python, the CSV path still runs it
    spec = dict(MAP, features="V1,Nope")
    _both(ulb_head, spec, monkeypatch)
    # a .gz cut short: every row read before the break is scored on both paths, the error is the same
    data = gzip.compress(ulb_head.read_bytes())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    rep = _both(cut, MAP, monkeypatch, chunk=1 << 16)
    assert 3000 < rep["events"] < 9000 and "truncated" in rep["error"]
