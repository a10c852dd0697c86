"""The core's CSV decoder (``core/src/csv.rs``) against Python's (``FileSource._csv``, ``ColumnMapping.compile`` and
``from_dict``), row by row, and ``CompiledEngine.process_csv`` against the engine fed Python's events.

Same events (class, field values and types, floats bit for bit, features in order, provenance), same dead letters
(reason, the row's bytes, line number, time), and through the engines the same scores and alerts, on the ULB file's
first rows, the handbook stream's first rows and a file of adversarial rows, with every chunk boundary the
reader can meet (tiny chunks).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream import sources
from stream.compiled import CompiledEngine
from stream.config import load_settings
from stream.eval.data import shared_data_dir
from stream.events import Event
from stream.replay import replay
from stream.sources import ColumnMapping, CsvReader, FileSource, open_text

pytest.importorskip("stream._core")

ULB = shared_data_dir("creditcard_ulb", must_exist=False) / "creditcard.csv.gz"
HANDBOOK = shared_data_dir("fraud_handbook", must_exist=False) / "transactions.csv.gz"

ULB_MAP = {"type": "order", "map_spec": "ts=Time,amount=Amount,label=Class",
           "set_spec": "user_id=card,merchant_id=unknown"}
HANDBOOK_MAP = {"type": "order", "map_spec": "ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,"
                "amount=TX_AMOUNT,label=TX_FRAUD,event_id=TRANSACTION_ID"}


def _typed(value: Any) -> Any:
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if hasattr(value, "items"):
        return ("features", tuple((k, _typed(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def event_key(event: Event) -> tuple[Any, ...]:
    return (type(event).__name__, tuple((n, _typed(getattr(event, n))) for n in event.__dataclass_fields__))


def read(path: Path, mapping: ColumnMapping, *, core: bool) -> tuple[list[Any], list[Any]]:
    src = FileSource([path], mapping=mapping, batch_size=97)
    src.core_csv = core
    events: list[Any] = []
    dead: list[Any] = []
    for b in src:
        events.extend(event_key(e) for e in b.events)
        dead.extend((d.reason, d.raw, d.source, d.position, d.ts) for d in b.invalid)
    return events, dead


def head(src: Path, dst: Path, lines: int) -> Path:
    with gzip.open(src, "rb") as fh, open(dst, "wb") as out:
        for i, line in enumerate(fh):
            if i > lines:
                break
            out.write(line)
    return dst


ADVERSARIAL = b"".join([
    b'ts,amount,label,user,V1,V2,currency,note\n',
    b'1,10.5,0,u1,0.1,0.2,EUR,x\n',
    b'2,abc,0,u1,0.1,0.2,,x\n',                      # not a number
    b'3,,0,u1,0.1,0.2,,x\n',                         # empty required field
    b'4,1,0,u1,,0.2,,x\n',                           # empty feature cell
    b'5,1,0,u1,nan,0.2,,x\n',                        # NaN feature
    b'6,inf,0,u1,0.1,0.2,,x\n',                      # infinite amount
    b'7,1e400,1,u1,0.1,0.2,,x\n',                    # overflows to inf
    b'8,1e308,0,u1,1e308,1e308,,x\n',                # features whose sum overflows
    b'"9","1,5",0,u1,"0.1","0""2",,x\n',            # quotes, a doubled quote, a comma inside
    b'10,2,"0"x,u1,0.1,0.2,,x\n',                    # text after a closing quote
    b'11,2,0,u1,0.1,0.2,,"line1\nline2"\n',          # a record over two lines
    b'12,1,0\n',                                     # too few columns
    b'13,1,0,u1,0.1,0.2,,x,extra\n',                 # too many
    b'\n',                                           # blank line
    b'   \n',                                        # spaces
    b'14,1,0,u\xff1,0.1,0.2,,x\n',                   # invalid UTF-8
    b'15,1,2,u1,0.1,0.2,,x\n',                       # label 2
    b'16,1,0.5,u1,0.1,0.2,,x\n',                     # label 0.5
    b'17,1,yes,u1,0.1,0.2,,x\n',                     # label text
    b'2024-01-01T00:00:00Z,1,0,u1,0.1,0.2,,x\n',     # ISO timestamp
    b'2024-01-01 00:00:00,1,0,u1,0.1,0.2,,x\n',      # ISO with a space
    b'notatime,1,0,u1,0.1,0.2,,x\n',
    b'-5,1,0,u1,0.1,0.2,,x\n',                       # before 1970
    b'99999999999,1,0,u1,0.1,0.2,,x\n',              # after 2200
    b'18,1_000,0,u1, 5 ,+5,,x\n',                    # underscores, spaces, signs
    b'19,.5,0,u1,5.,-.5e-3,,x\n',
    b'20,1,0,u\x011,0.1,0.2,,x\n',                   # control character
    b'21,1,0,\xc3\xbc,0.1,0.2,,x\n',                 # non-ASCII id
    b'22,\xd9\xa1\xd9\xa2,0,u1,0.1,0.2,,x\n',        # Arabic-Indic digits
    b'23,-1,0,u1,0.1,0.2,,x\n',                      # negative amount
    b'24,1,0,u1,0.1,0.2,,x\r\n',                     # CRLF
    b'25,1,0,u1,0.1,0.2,,x\r',                       # CR alone
    b'26,1,0,' + b'u' * 1100 + b',0.1,0.2,,x\n',     # too long an id
    b'27,1,0,u\x001,0.1,0.2,,x\n',                   # NUL
    b'28,1,0,u1,0.1,0.2,,"a\r\nb"\n',                # CRLF inside quotes
    b'29,1,1.0,u1,1_0,0x1,,x\n',
    b'30,1,-0,u1,-0.0,Infinity,,x\n',
    b'31,1,0,u1,0.1,0.2,,x',                         # no final line break
    b'\n32,1,0,u1,0.1,0.2,,"unterminated\n33,1,0,u1\n',
])

MAPPINGS = [
    {"type": "order", "map_spec": "ts=ts,amount=amount,label=label,user_id=user", "set_spec": "merchant_id=m"},
    {"type": "order", "map_spec": "ts=ts,amount=amount,label=label,user_id=user", "set_spec": "merchant_id=m",
     "features": "V1,V2"},
    {"type": "order", "map_spec": "ts=ts,amount=amount,label=label,user_id=user", "set_spec": "merchant_id=m",
     "features": "none"},
    {"type": "order", "map_spec": "ts=ts,amount=amount,user_id=user", "set_spec": "merchant_id=m,currency=USD",
     "drop": "V2", "ts_unit": "ms"},
    {"type": "order", "map_spec": "ts=ts,amount=amount,label=label,user_id=user,merchant_id=note",
     "ts_origin": "2020-01-01T00:00:00Z"},
    {"type": "login", "map_spec": "ts=ts,user_id=user,success=label,lat=V1,lon=V2"},
    {"map_spec": "ts=ts,amount=amount,user_id=user"},  # no type: every row refused
]


CHUNKS = [1 << 22, 61, 7]


@pytest.fixture(params=CHUNKS, ids=["chunk-4M", "chunk-61", "chunk-7"])
def chunk(request, monkeypatch) -> int:
    monkeypatch.setattr(sources, "_CSV_CHUNK", request.param)
    return request.param


@pytest.mark.parametrize("spec", MAPPINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())[:60])
def test_adversarial_rows(tmp_path, spec, chunk):
    path = tmp_path / "adversarial.csv"
    path.write_bytes(ADVERSARIAL)
    mapping = ColumnMapping.parse(**spec)
    python = read(path, mapping, core=False)
    core = read(path, mapping, core=True)
    assert core[1] == python[1]
    assert core[0] == python[0]
    assert python[1]  # the file has refused rows under every mapping


def test_adversarial_gzip(tmp_path, chunk):
    path = tmp_path / "adversarial.csv.gz"
    path.write_bytes(gzip.compress(ADVERSARIAL))
    mapping = ColumnMapping.parse(**MAPPINGS[0])
    assert read(path, mapping, core=True) == read(path, mapping, core=False)


def test_core_decides_the_usual_rows(tmp_path):
    """The fast path is taken: only the rows the module documentation names go to Python."""
    from stream import _core

    path = tmp_path / "a.csv"
    path.write_bytes(ADVERSARIAL)
    data = ADVERSARIAL
    reader = CsvReader("a.csv", ColumnMapping.parse(**MAPPINGS[0]))
    end, _ = reader.python_row(data, 0, True)
    stop, line_no, items = _core.csv_decode(data, end, reader.core, reader.line_no)
    assert line_no == 6 and data[stop:].startswith(b"6,inf")  # the first infinite number goes to Python


@pytest.mark.parametrize("which", ["ulb", "handbook"])
def test_real_file_head(tmp_path, which):
    src, spec = (ULB, ULB_MAP) if which == "ulb" else (HANDBOOK, HANDBOOK_MAP)
    if not src.exists():
        pytest.skip(f"{src} is not on this machine")
    path = head(src, tmp_path / f"{which}.csv", 5000)
    mapping = ColumnMapping.parse(**spec)
    python, core = read(path, mapping, core=False), read(path, mapping, core=True)
    assert len(python[0]) == 5000 and core == python


def run_process_csv(path: Path, mapping: ColumnMapping, settings: Any, batch: int) -> tuple[Any, ...]:
    engine = CompiledEngine(settings)
    risks, alerts, dead = [], [], []
    reader = CsvReader(path.name, mapping)
    with open_text(path) as fh:
        for data, eof in reader.chunks(fh):
            pos = 0
            while pos < len(data):
                out, bad, stop = engine.process_csv(data, reader, pos, eof=eof, limit=batch)
                risks.append(out.risk)
                alerts.extend((a.event_id, a.score, a.severity, a.action, a.reasons) for a in out.alerts)
                dead.extend((d.reason, d.raw, d.source, d.position, d.ts) for d in bad)
                if stop == pos:
                    break
                pos = stop
            reader.carry(data[pos:])
    return np.concatenate(risks), alerts, dead


def run_python_decoded(path: Path, mapping: ColumnMapping, settings: Any, batch: int) -> tuple[Any, ...]:
    engine = CompiledEngine(settings)
    src = FileSource([path], mapping=mapping, batch_size=batch)
    src.core_csv = False
    risks, alerts, dead = [], [], []
    for b in src:
        out = engine.process(b.events)
        risks.append(out.risk)
        alerts.extend((a.event_id, a.score, a.severity, a.action, a.reasons) for a in out.alerts)
        dead.extend((d.reason, d.raw, d.source, d.position, d.ts) for d in b.invalid)
    return np.concatenate(risks), alerts, dead


# Tiny chunks on the real files add nothing the adversarial file at every chunk size does not cover.
@pytest.mark.parametrize(("which", "chunk"), [("adversarial", c) for c in CHUNKS] + [("ulb", 1 << 22),
                                                                                     ("handbook", 1 << 22)],
                         indirect=["chunk"])
def test_process_csv_scores_alerts_dead_letters(tmp_path, which, chunk):
    if which == "adversarial":
        path = tmp_path / "a.csv"
        path.write_bytes(ADVERSARIAL * 3)
        mapping, n = ColumnMapping.parse(**MAPPINGS[0]), None
    else:
        src, spec = (ULB, ULB_MAP) if which == "ulb" else (HANDBOOK, HANDBOOK_MAP)
        if not src.exists():
            pytest.skip(f"{src} is not on this machine")
        path, mapping, n = head(src, tmp_path / f"{which}.csv", 4000), ColumnMapping.parse(**spec), 4000
    settings = load_settings(overrides={"engine.budget": 0.02})  # alerts enough to compare their reasons
    batch = 500
    got = run_process_csv(path, mapping, settings, batch)
    want = run_python_decoded(path, mapping, settings, batch)
    if n is not None:
        assert len(want[0]) == n
    assert np.array_equal(got[0], want[0])
    assert got[2] == want[2]
    assert got[1] == want[1] and (n is None or want[1])


class _Collect:
    """A sink (alerts) or dead-letter sink that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)

    def flush(self) -> None:
        pass


def test_replay_same_report_alerts_dead_letters(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(ADVERSARIAL * 5)
    settings = load_settings(overrides={"engine.budget": 0.05})
    out: dict[bool, Any] = {}
    for core in (False, True):
        sink, letters = _Collect(), _Collect()
        alerts, dead = sink.items, letters.items
        src = FileSource([path], mapping=ColumnMapping.parse(**MAPPINGS[0]), batch_size=50)
        src.core_csv = core
        report = dict(replay(src, settings, sinks=[sink], dead_letters=letters))  # type: ignore[list-item, arg-type]
        for k in ("seconds", "events_per_second", "scored_per_second", "stage_share"):
            report.pop(k)
        out[core] = (report, [(a.alert_id, a.event_id, a.score, a.reasons) for a in alerts],
                     [(d.reason, d.raw, d.position, d.ts) for d in dead])
    assert out[True] == out[False]
    assert out[True][2] and out[True][0]["events"]
