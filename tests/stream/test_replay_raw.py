"""``replay`` of a JSONL file hands raw lines to the compiled core (``stream.replay._replay_raw``): the same
alerts (byte for byte), dead letters, report and batch boundaries as the event path, junk lines included."""

from __future__ import annotations

import orjson
import pytest

from sinks.deadletter import MemoryDeadLetterSink
from sinks.memory import MemorySink
from stream.config import load_settings
from stream.events import encode
from stream.replay import replay
from stream.sim import SimConfig, simulate
from stream.sources import Batch, FileSource, RawBatch


def _write(path, seed, events=5000):
    lines = [encode(e) for e in simulate(SimConfig(events=events, seed=seed))]
    first = orjson.loads(lines[10])
    junk = [b"{", b'{"type": "order"}', b"[1, 2]", b'{"type": "login", "event_id": "x"}',
            orjson.dumps(dict(first, event_id="late-form", ts=first["ts"][:19] + ".1234567+00:00")),  # to Python
            orjson.dumps(dict(first, event_id="spaced", ts=first["ts"][:19].replace("T", " ") + "Z")),
            b"   "]  # blank: skipped by both
    for k, j in enumerate(junk):
        lines.insert(3 + k * 997, j)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _replay(path, core, on_batch=None):
    settings = load_settings(None, env={}, overrides={"engine.core": core, "engine.batch_size": 700})
    sink, dead = MemorySink(), MemoryDeadLetterSink()
    src = FileSource([path], batch_size=700)
    result = replay(src, settings, sinks=[sink], dead_letters=dead, on_batch=on_batch)
    return result, sink.alerts, dead.records


def _same_report(a, b):
    skip = {"seconds", "events_per_second", "scored_per_second", "stage_share", "feature_memory"}
    return {k: v for k, v in a.items() if k not in skip}, {k: v for k, v in b.items() if k not in skip}


@pytest.mark.parametrize("seed", [7, 11])
def test_raw_replay_equals_the_event_path_of_the_compiled_engine_and_the_python_engine(tmp_path, seed):
    path = _write(tmp_path / f"s{seed}.jsonl", seed)
    batches: list[tuple[str, int, int]] = []
    raw, alerts_r, dead_r = _replay(path, "compiled",
                                    on_batch=lambda b, o: batches.append((type(b).__name__, len(b), len(o.alerts))))
    assert {kind for kind, _, _ in batches} == {RawBatch.__name__}
    ref_batches: list[tuple[str, int, int]] = []
    # the event path of the compiled engine (a source that is not a single JSONL file goes through it)
    src = FileSource([path], batch_size=700)
    settings = load_settings(None, env={}, overrides={"engine.batch_size": 700})
    from stream.replay import replay as run

    class Events:  # the same file through the event path
        def __iter__(self):
            return iter(src)

        def close(self):
            src.close()

    sink, dead = MemorySink(), MemoryDeadLetterSink()
    ev = run(Events(), settings, sinks=[sink], dead_letters=dead,
             on_batch=lambda b, o: ref_batches.append((Batch.__name__, len(b), len(o.alerts))))
    assert [x[1:] for x in batches] == [x[1:] for x in ref_batches]
    assert [a.to_json() for a in alerts_r] == [a.to_json() for a in sink.alerts]
    assert alerts_r
    strip = lambda ds: [{k: v for k, v in d.to_dict().items()} for d in ds]  # noqa: E731
    assert strip(dead_r) == strip(dead.records) and len(dead_r) == 4
    a, b = _same_report(raw, ev)
    assert a == b
    # and the Python engine (the reference) agrees on the report
    py, alerts_p, dead_p = _replay(path, "python")
    assert [x.alert_id for x in alerts_p] == [x.alert_id for x in alerts_r]
    assert _same_report(raw, py)[0] == _same_report(raw, py)[1]


def test_an_observer_still_sees_the_events(tmp_path):
    path = _write(tmp_path / "s.jsonl", 13, events=1500)
    seen = []
    _replay(path, "compiled", on_batch=lambda b, o: seen.extend(e.event_id for e in o.scored))
    ref = []
    _replay(path, "python", on_batch=lambda b, o: ref.extend(e.event_id for e in o.scored))
    assert seen == ref and len(seen) > 1000


def test_the_evaluation_window_reads_the_raw_path_without_decoding_events(tmp_path, monkeypatch):
    """The replay CLI's evaluation window (the report's ``eval`` block: detection delays, card precision, the
    handbook protocol) takes the raw path's columns, not event objects, and gives the Python engine's figures."""
    import importlib
    import json

    from click.testing import CliRunner

    from stream.cli import cli

    rp = importlib.import_module("stream.replay")  # the module (the package exports a function of that name)

    path = _write(tmp_path / "s.jsonl", 13, events=8000)
    cfg = tmp_path / "py.toml"
    cfg.write_text('[engine]\ncore = "python"\n')
    args = ["replay", str(path), "--budget", "0.02", "--eval-from", "2024-03-01", "--known-from", "2024-03-01",
            "--k", "20", "-q"]
    res = CliRunner().invoke(cli, [*args, "--report", str(tmp_path / "py.json"), "-c", str(cfg)])
    assert res.exit_code == 0, res.output

    decode_all = rp._Lazy._all

    def no_decoding(self):  # the scored events carry columns; the label events (few) are still decoded
        if self.columns() is not None:
            raise AssertionError("the evaluation window decoded the raw batch's scored events")
        return decode_all(self)

    monkeypatch.setattr(rp._Lazy, "_all", no_decoding)
    res = CliRunner().invoke(cli, [*args, "--report", str(tmp_path / "raw.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    py, raw = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("py", "raw"))
    assert raw["eval"] == py["eval"]
    assert raw["eval"]["detection_delay"] and raw["eval"]["handbook_protocol"]
