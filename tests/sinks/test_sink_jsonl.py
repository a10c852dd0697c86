from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks import Alert, JsonlSink, SinkError, alert_id, read_alerts


def make_alert(i: int, **kw: object) -> Alert:
    fields: dict[str, object] = dict(
        alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order",
        entities={"user": f"u{i % 3}", "device": f"d{i}"}, event_ts=1714564800.0 + i * 0.25,
        detected_at=1714564800.5 + i * 0.25, score=0.95, severity="high", action="review",
        reasons=({"detector": "hst", "feature": "amount", "value": 912.5, "detail": "above p99"},
                 {"detector": "rules", "feature": "new_device", "value": 1.0, "detail": None}),
        detector_scores={"hst": 0.991, "rules": 0.5}, config_hash="cfg", topic="orders", partition=i % 4,
        offset=1000 + i,
    )
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


ALERTS = [make_alert(i) for i in range(10)]


def write(path: Path, alerts: list[Alert], flush_every: int = 0) -> None:
    with JsonlSink(path) as sink:
        for n, a in enumerate(alerts, 1):
            sink.add(a)
            if flush_every and n % flush_every == 0:
                sink.flush()


@pytest.mark.parametrize("name", ["alerts.jsonl", "alerts.jsonl.gz"])
def test_round_trip_one_canonical_line_per_alert(tmp_path: Path, name: str) -> None:
    path = tmp_path / "out" / name  # the directory is created
    write(path, ALERTS)
    assert read_alerts(path) == ALERTS
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    assert raw == b"".join(a.to_json() + b"\n" for a in ALERTS)


@pytest.mark.parametrize("name", ["alerts.jsonl", "alerts.jsonl.gz"])
def test_same_alerts_again_in_one_flush_across_flushes_and_after_reopen_are_written_once(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    with JsonlSink(path) as sink:
        for a in ALERTS[:6] + ALERTS[:3]:
            sink.add(a)
        sink.flush()
        for a in ALERTS[2:8]:
            sink.add(a)
        sink.flush()
        assert sink.count() == 8
    with JsonlSink(path) as sink:  # a replay after a restart: the sink reads the ids back from the file
        assert sink.count() == 8
        for a in ALERTS:
            sink.add(a)
    assert read_alerts(path) == ALERTS


def test_plain_output_is_byte_identical_whatever_the_flush_pattern(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", ALERTS, flush_every=0)
    write(tmp_path / "b.jsonl", ALERTS, flush_every=3)
    write(tmp_path / "c.jsonl", ALERTS + ALERTS[:4], flush_every=1)
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl.gz", ALERTS, flush_every=4)
    write(tmp_path / "b.jsonl.gz", ALERTS, flush_every=4)
    write(tmp_path / "c.jsonl.gz", ALERTS, flush_every=0)
    a = (tmp_path / "a.jsonl.gz").read_bytes()
    assert a == (tmp_path / "b.jsonl.gz").read_bytes()  # same flushes => same bytes (mtime=0 members)
    assert gzip.decompress(a) == gzip.decompress((tmp_path / "c.jsonl.gz").read_bytes())


def test_torn_plain_tail_is_ignored_by_readers_and_cut_off_on_open(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    write(path, ALERTS[:3])
    good = path.read_bytes()
    with open(path, "ab") as fh:  # a crash in the middle of writing alert 3
        fh.write(ALERTS[3].to_json()[:40])
    assert read_alerts(path) == ALERTS[:3]
    write(path, ALERTS[:5])  # the replay writes alerts 3 and 4 after the cut
    assert path.read_bytes() == good + ALERTS[3].to_json() + b"\n" + ALERTS[4].to_json() + b"\n"
    assert read_alerts(path) == ALERTS[:5]


def test_torn_gzip_member_is_ignored_by_readers_and_cut_off_on_open(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl.gz"
    write(path, ALERTS[:3])
    size = path.stat().st_size
    member = gzip.compress(b"".join(a.to_json() + b"\n" for a in ALERTS[3:6]), mtime=0)
    with open(path, "ab") as fh:
        fh.write(member[: len(member) - 6])  # trailer missing: the flush never returned
    assert read_alerts(path) == ALERTS[:3]
    with JsonlSink(path) as sink:
        assert sink.count() == 3
        assert path.stat().st_size == size
        for a in ALERTS[3:7]:
            sink.add(a)
    assert read_alerts(path) == ALERTS[:7]


def test_a_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    with JsonlSink(path):
        with pytest.raises(SinkError, match="another sink"):
            JsonlSink(path)
    JsonlSink(path).close()  # released on close


def test_refuses_to_append_to_a_file_that_is_not_alerts(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(ALERTS[0].to_json() + b"\nnot json\n")
    with pytest.raises(SinkError, match="line 2"):
        JsonlSink(path)
    gz = tmp_path / "alerts.gz"
    gz.write_bytes(ALERTS[0].to_json() + b"\n")
    with pytest.raises(SinkError, match="not gzip"):
        JsonlSink(gz)
    assert gz.read_bytes() == ALERTS[0].to_json() + b"\n"  # untouched


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_raises_retriable_and_keeps_the_buffer() -> None:
    sink = JsonlSink("/dev/full", gzip=False)
    sink.add(ALERTS[0])
    with pytest.raises(SinkError) as info:
        sink.flush()
    assert info.value.retriable
    assert sink.pending == 1 and sink.count() == 0


def test_an_alert_that_cannot_be_encoded_fails_the_flush_and_stays_buffered(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    bad = make_alert(1, reasons=({"detector": "hst", "value": object()},))  # not JSON-serializable
    sink.add(ALERTS[0])
    sink.add(bad)
    with pytest.raises(SinkError, match=bad.alert_id) as info:
        sink.flush()
    assert not info.value.retriable
    assert sink.pending == 2 and path.read_bytes() == b""  # all or nothing


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_json_value = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _text,
                        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
#: Alerts already in canonical form (millisecond times, 6-decimal scores), so they round-trip exactly.
canonical_alerts = st.builds(
    lambda n, user, ms, dms, score, reasons, scores: make_alert(
        n, entities={"user": user}, event_ts=ms / 1000, detected_at=(ms + dms) / 1000, score=round(score, 6),
        reasons=tuple(reasons), detector_scores={k: round(v, 6) for k, v in scores.items()}),
    st.integers(0, 10**9), _text.filter(bool), st.integers(0, 4102444800000), st.integers(0, 10**6),
    st.floats(0, 1),
    st.lists(st.dictionaries(_text, _json_value, max_size=4), max_size=3),
    st.dictionaries(_text, st.floats(0, 1), max_size=4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alerts=st.lists(canonical_alerts, max_size=5))
def test_any_canonical_alert_round_trips(tmp_path: Path, alerts: list[Alert]) -> None:
    path = tmp_path / "prop.jsonl"
    path.unlink(missing_ok=True)
    write(path, alerts)
    first: dict[str, Alert] = {}
    for a in alerts:
        first.setdefault(a.alert_id, a)
    assert read_alerts(path) == list(first.values())
