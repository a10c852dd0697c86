"""FileSource on files that break part-way, and how far it has read (for the progress bar)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from stream.errors import SourceError
from stream.sources import FileSource


def test_a_truncated_csv_gz_yields_every_whole_row_before_raising_where_it_broke(tmp_path):
    rows = ["type,amount"] + [f"order,{i}" for i in range(5000)]  # every row a dead letter: no mapping given
    data = gzip.compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    whole = zlib.decompressobj(wbits=31).decompress(data[: len(data) * 2 // 3]).count(b"\n")
    seen = []
    with pytest.raises(SourceError) as err:
        for batch in FileSource([path], batch_size=7):
            seen.extend(batch.invalid)
            assert not batch.events
    assert [d.position for d in seen] == list(range(2, whole + 1))  # every whole line after the header
    assert seen[-1].raw == f"order,{whole - 2}".encode()
    assert str(err.value).startswith(f"{path}: the gzip data ends early") and f"line {whole + 1:,}" in str(err.value)


def test_a_truncated_jsonl_gz_raises_after_its_last_whole_line(tmp_path):
    lines = [b'{"type":"order","n":%d}' % i for i in range(3000)]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[:-20])  # only the gzip trailer and the last bytes missing
    seen = []
    with pytest.raises(SourceError, match=r"cut\.jsonl\.gz: the gzip data ends early .* at line [\d,]+ "
                                          r"\(compressed byte [\d,]+ of [\d,]+\)$"):
        for batch in FileSource([path], batch_size=1000):
            seen.extend(batch.invalid)
    whole = zlib.decompressobj(wbits=31).decompress(data[:-20]).count(b"\n")
    assert [d.raw for d in seen] == lines[:whole]


def test_bytes_read_grows_to_the_files_total_size_plain_and_gz(tmp_path):
    rows = ["type,amount"] + [f"order,{i}" for i in range(20000)]
    plain, packed = tmp_path / "a.csv", tmp_path / "b.csv.gz"
    plain.write_text("\n".join(rows) + "\n")
    packed.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    total = plain.stat().st_size + packed.stat().st_size
    source = FileSource([plain, packed], batch_size=1000)
    assert source.bytes_read == 0
    seen = [source.bytes_read for _ in source]
    assert len(seen) == 40 and seen == sorted(seen) and 0 < seen[0] < seen[20] < total
    assert source.bytes_read == total
