"""`riskstream replay` and `demo` on the input a new user brings: --top 0, a broken .gz, a CSV without a mapping,
an empty file, the progress bar, and the demo's closing hint (issue 11)."""

from __future__ import annotations

import gzip
import io
import json
import shlex
import zlib

import orjson
import pytest
from click.testing import CliRunner
from rich.console import Console

from sinks.deadletter import read_dead_letters
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.config import load_settings
from stream.eval.report import progress
from stream.replay import replay
from stream.sources import FileSource


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "s.jsonl.gz"
    res = CliRunner().invoke(cli, ["simulate", "--events", "4000", "--seed", "5", "--out", str(path)])
    assert res.exit_code == 0, res.output
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def small_history(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n")
    return cfg


def good(i):
    return orjson.dumps({"type": "order", "event_id": f"g{i}", "ts": f"2024-01-01T00:00:{i:02d}Z", "user_id": "u1",
                         "order_id": f"o{i}", "amount": 10.0, "currency": "EUR", "merchant_id": "m1"})


def error_lines(res, needle):
    """The stderr lines that carry an error: whatever the prefix (click's ``Error:`` or ``riskstream: error:``)."""
    return [ln for ln in res.stderr.splitlines() if needle in ln]


def test_top_0_prints_the_summary_without_an_alert_table(stream_file, tmp_path):
    rep = tmp_path / "r.json"
    res = invoke("replay", stream_file, "--budget", "0.02", "--top", "0", "--report", rep,
                 "--config", small_history(tmp_path))
    assert res.exit_code == 0, res.output
    assert json.loads(rep.read_text())["alerts"] > 0, "alerts must have been offered to the (empty) top list"
    assert "events scored" in res.output and "alerts" in res.output
    assert "top " not in res.output


def test_a_truncated_gz_replays_what_came_before_it_and_exits_1_naming_file_and_line(stream_file, tmp_path):
    data = stream_file.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    whole_lines = zlib.decompressobj(wbits=31).decompress(data[: len(data) // 2]).count(b"\n")
    assert 0 < whole_lines < 4000
    rep, out = tmp_path / "r.json", tmp_path / "alerts.jsonl"
    res = invoke("replay", cut, "--budget", "0.02", "--config", small_history(tmp_path), "--report", rep,
                 "--alerts-out", out)
    assert res.exit_code == 1, res.output
    assert "Aborted" not in res.output and "Traceback" not in res.output
    errors = error_lines(res, "error:")
    assert len(errors) == 1, res.stderr
    assert errors[0].startswith("riskstream: error: ")
    assert "cut.jsonl.gz" in errors[0] and f"line {whole_lines + 1:,}" in errors[0] and "truncated" in errors[0]
    assert "events scored" in res.output, "the summary of what was read is still printed"
    r = json.loads(rep.read_text())
    assert r["events"] + r["label_events"] == whole_lines and r["invalid"] == 0
    assert r["error"] == errors[0].removeprefix("riskstream: error: ")
    assert r["alerts"] > 0 and len(read_alerts(out)) == r["alerts"], "the alerts before the break are kept"


def test_a_file_named_gz_that_is_not_gzip_exits_1_with_one_line(tmp_path):
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(good(1) + b"\n")
    res = invoke("replay", fake, "--report", tmp_path / "r.json")
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    errors = error_lines(res, "error:")
    assert len(errors) == 1 and "plain.jsonl.gz" in errors[0] and "not gzip" in errors[0], res.stderr
    assert json.loads((tmp_path / "r.json").read_text())["events"] == 0


def test_a_jsonl_file_with_a_cut_off_last_line_dead_letters_it_and_exits_0(tmp_path):
    path = tmp_path / "cut.jsonl"
    last = good(3)[:25]
    path.write_bytes(good(1) + b"\n" + good(2) + b"\n" + last)
    dl, rep = tmp_path / "dl.jsonl", tmp_path / "r.json"
    res = invoke("replay", path, "--dead-letters", dl, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    r = json.loads(rep.read_text())
    assert r["events"] == 2 and r["invalid"] == 1 and "error" not in r
    (letter,) = read_dead_letters(dl)
    assert letter.raw == last and letter.position == 3 and "JSON" in letter.reason


def _card_csv(tmp_path, rows=200):
    path = tmp_path / "cards.csv"
    path.write_text("Time,V1,Amount,Class\n" + "".join(f"{i},{i % 7 / 7},{10 + i % 3},{int(i % 50 == 49)}\n"
                                                       for i in range(rows)))
    return path


def test_a_csv_without_map_or_type_exits_2_saying_why_and_what_to_give(tmp_path):
    path = _card_csv(tmp_path)
    rep, dl = tmp_path / "r.json", tmp_path / "dl.jsonl"
    res = invoke("replay", path, "--report", rep, "--dead-letters", dl)
    assert res.exit_code == 2, res.output
    errors = error_lines(res, "rror:")
    assert len(errors) == 1, res.stderr
    assert "nothing valid was read" in errors[0] and "type: is missing" in errors[0]
    assert "--type" in errors[0] and "--map FIELD=COLUMN" in errors[0]
    assert "dead-letter reasons" in res.stdout and "type: is missing" in res.stdout and "200" in res.stdout
    r = json.loads(rep.read_text())
    assert r["events"] == 0 and r["invalid"] == 200
    assert r["dead_letter_reasons"] == [{"reason": "type: is missing", "count": 200}]
    assert len(read_dead_letters(dl)) == 200, "nothing is lost: every record is in the dead letters"


def test_a_csv_with_type_but_no_user_column_hints_at_map_or_set(tmp_path):
    res = invoke("replay", _card_csv(tmp_path), "--type", "order", "--map", "ts=Time,amount=Amount", "-q")
    assert res.exit_code == 2, res.output
    (error,) = error_lines(res, "nothing valid was read")
    assert "is missing" in error and "--set" in error and "--map" in error
    assert "events scored" not in res.output, "-q: no summary, but the error still shows"


def test_the_report_counts_dead_letter_reasons_most_frequent_first(tmp_path):
    path = tmp_path / "mixed.jsonl"
    bad = [b'{"type":"refund"}'] * 3 + [b"{not json"] + [b'{"type":"order"}'] * 5
    path.write_bytes(b"\n".join([good(1), *bad, good(2)]) + b"\n")
    rep = tmp_path / "r.json"
    res = invoke("replay", path, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    reasons = json.loads(rep.read_text())["dead_letter_reasons"]
    assert [r["count"] for r in reasons] == [5, 3, 1]
    assert reasons[0]["reason"] == "event_id: is missing"
    assert reasons[1]["reason"] == "type: must be one of order, login, label, not 'refund'"
    assert reasons[2]["reason"].startswith("$: is not valid JSON")


@pytest.mark.parametrize("name, content", [
    pytest.param("empty.jsonl", b"", id="empty"),
    pytest.param("blank.jsonl.gz", gzip.compress(b"\n\n", mtime=0), id="blank-lines-gz"),
    pytest.param("header.csv", b"Time,Amount\n", id="csv-header-only"),
])
def test_an_empty_input_warns_in_one_line_writes_the_report_and_exits_0(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    rep = tmp_path / "r.json"
    res = invoke("replay", path, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("riskstream: warning:")]
    assert len(warnings) == 1 and name in warnings[0] and "no records" in warnings[0], res.stderr
    r = json.loads(rep.read_text())
    assert r["events"] == r["invalid"] == r["label_events"] == 0


def test_progress_of_a_gz_replay_is_compressed_bytes_read_of_the_compressed_size(stream_file):
    size = stream_file.stat().st_size
    source = FileSource([stream_file], batch_size=200)
    seen = []
    out = io.StringIO()
    with progress(False, "replay", total_bytes=size, source=source,
                  console=Console(file=out, force_terminal=True, width=200)) as advance:
        def on_batch(batch, outcome):
            seen.append(source.bytes_read)
            advance(batch, outcome)

        replay(source, load_settings(None), on_batch=on_batch)
    assert len(seen) == 20 and seen == sorted(seen) and 0 < seen[0] < size
    assert advance.task.total == size and advance.task.completed == size
    assert advance.task.fields["events"] == 4000
    text = out.getvalue()
    assert "100%" in text and "events/s" in text and "4,000 events" in text


def test_the_demo_hint_compares_two_reports_with_every_metric_on_both_sides(tmp_path):
    res = invoke("demo", "--events", "3000", "--dir", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    hinted = [ln.split("riskstream ", 1)[1].split("#")[0] for ln in res.stderr.splitlines()
              if ln.lstrip().startswith(("Next: riskstream ", "riskstream "))]
    assert [h.split()[0] for h in hinted] == ["replay", "compare", "console"], res.stderr
    assert "--db sqlite:///" in hinted[2] and "sign in as demo / " in res.stderr  # the console opens these alerts
    assert invoke(*shlex.split(hinted[0])).exit_code == 0
    cmp_json = tmp_path / "cmp.json"
    shown = invoke(*shlex.split(hinted[1]), "--out", cmp_json)
    assert shown.exit_code == 0, shown.output
    demo_report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert demo_report["eval"]["eval_events"] == demo_report["events"] > 0
    reports = [demo_report, json.loads((tmp_path / "demo" / "report-0.5pct.json").read_text())]
    rows = json.loads(cmp_json.read_text())["rows"]
    assert any(row["metric"].startswith("card precision@100") for row in rows)
    for row in rows:
        for report, value in zip(reports, row["values"], strict=True):
            if value is None:  # shown as "-": only a scenario this budget never caught has no delay
                scenario = row["metric"].removeprefix("median delay ").removesuffix(" (s)")
                assert row["metric"].startswith("median delay "), row
                assert report["eval"]["detection_delay"][scenario]["detected"] == 0, row
