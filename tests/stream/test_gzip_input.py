"""``open_text`` on a ``.gz`` file: inflated by ISA-L on a thread of its own, every byte before a break handed out
in order, then one :class:`SourceError` naming the line; reading past the end and closing early never hang."""

from __future__ import annotations

import gzip
import threading
import zlib

import pytest

from stream.errors import SourceError
from stream.sources import _position, open_text


def _lines(n: int) -> bytes:
    return b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97)) for i in range(n))


def _inflaters() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("inflate ")]


def test_a_large_file_reads_back_whole_and_in_order(tmp_path):
    data = _lines(200_000)  # ~14 MB: several hand-overs, the thread ahead of the reader
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    with open_text(path) as fh:
        got = b"".join(iter(lambda: fh.read(1_000_003), b""))
        assert fh.read() == b"" and fh.read(10) == b"" and fh.readline() == b"", "past the end: empty, not a hang"
    assert got == data


def test_lines_iterate_as_in_the_file(tmp_path):
    data = _lines(5_000)
    path = tmp_path / "lines.jsonl.gz"
    path.write_bytes(gzip.compress(data))
    with open_text(path) as fh:
        assert list(fh) == data.splitlines(keepends=True)


def test_a_truncated_file_hands_out_its_whole_lines_but_not_the_cut_one(tmp_path):
    data = _lines(50_000)
    packed = gzip.compress(data, compresslevel=1)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    whole = zlib.decompressobj(wbits=31).decompress(packed[: len(packed) // 2])
    n = whole.count(b"\n")
    got = []
    with open_text(path) as fh, pytest.raises(SourceError, match=f"truncated.*at line {n + 1:,}"):
        for line in fh:
            got.append(line)
    assert b"".join(got) == whole[: whole.rindex(b"\n") + 1] and len(got) == n


@pytest.mark.parametrize("where", [0.3, 0.7])
def test_corrupt_data_hands_out_every_line_before_it_then_one_error_naming_the_line(tmp_path, where):
    data = _lines(100_000)
    packed = bytearray(gzip.compress(data, compresslevel=1))
    at = int(len(packed) * where)
    packed[at : at + 64] = bytes(64)  # zeros: an invalid deflate block
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(packed))
    got = b""
    with open_text(path) as fh, pytest.raises(SourceError) as err:
        while chunk := fh.read(65_536):
            got += chunk
    # the standard library's reader, stepping through the same data, hands out the same bytes before it fails
    # (ISA-L's inflating drops its last block at a break; the file's reader must not)
    with gzip.open(path, "rb") as ref:
        before = b""
        with pytest.raises((zlib.error, EOFError, OSError)):
            while step := ref.read1(65_536):
                before += step
    assert got == before and len(got) > 0
    msg = str(err.value)
    assert "bad.jsonl.gz" in msg and "corrupt gzip data" in msg
    lines = got.count(b"\n")
    assert f"at line {lines + 1:,}" in msg


def test_closing_before_the_end_stops_the_thread(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(_lines(300_000), compresslevel=1))
    before = set(_inflaters())
    fh = open_text(path)
    assert fh.readline().startswith(b'{"n": 0')
    assert len(set(_inflaters()) - before) == 1, "the thread inflates ahead"
    fh.close()
    assert not (set(_inflaters()) - before), "closing joins it, though it was blocked handing over a full queue"


def test_progress_counts_compressed_bytes_handed_out_not_read_ahead(tmp_path):
    path = tmp_path / "mid.jsonl.gz"
    path.write_bytes(gzip.compress(_lines(300_000), compresslevel=1))
    size = path.stat().st_size
    seen = []
    with open_text(path) as fh:
        while fh.read(200_000):
            seen.append(_position(fh))
    assert seen == sorted(seen) and seen[-1] == size
    assert 0 < seen[0] < size // 4, "after the first read, the position is near the start, not the thread's"


def _random_lines(n: int, seed: int = 5) -> bytes:
    """Lines that compress poorly, so a file of a few hundred thousand of them spans many of the reader's steps."""
    import random

    rnd = random.Random(seed)
    return b"".join(b"%d,%s\n" % (i, rnd.randbytes(24).hex().encode()) for i in range(n))


@pytest.mark.parametrize("where", [0.2, 0.5])
def test_in_a_large_file_the_error_names_the_first_line_not_handed_out(tmp_path, where):
    # ~20 MB: the reader's steps are larger than 64 KiB, where a separate count of the lines before the break
    # (with another read size) once disagreed with what was handed out by up to 222 lines
    data = _random_lines(300_000)
    packed = bytearray(gzip.compress(data, compresslevel=1))
    at = int(len(packed) * where)
    packed[at : at + 64] = b"\xff" * 64
    path = tmp_path / "big_bad.csv.gz"
    path.write_bytes(bytes(packed))
    got = []
    with open_text(path) as fh, pytest.raises(SourceError) as err:
        for line in fh:
            got.append(line)
    assert got and data.startswith(b"".join(got)), "whole lines of the file's start, in order"
    assert f"at line {len(got) + 1:,} " in str(err.value), (len(got), str(err.value))


def test_read_all_read1_zero_and_reads_after_a_break(tmp_path):
    data = _lines(80_000)
    path = tmp_path / "all.jsonl.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    with open_text(path) as fh:
        assert fh.read1(0) == b""
        head = fh.read(10)
        assert head + fh.read() == data and fh.read() == b""
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(data)[:50_000])
    with open_text(cut) as fh:
        first = fh.read()
        assert first and data.startswith(first), "read() hands out everything before the break"
        for _ in range(2):  # then every read raises, with the same message
            with pytest.raises(SourceError, match="truncated"):
                fh.read(1)


def test_a_missing_file_fails_to_open_cleanly(tmp_path, recwarn):
    import gc

    with pytest.raises(SourceError, match="cannot read"):
        open_text(tmp_path / "absent.csv.gz")
    gc.collect()
    assert not [w for w in recwarn if "_inflater" in str(w.message)]


def test_a_forked_child_gets_an_error_rather_than_waiting_forever(tmp_path):
    import os
    import time

    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(_random_lines(400_000), compresslevel=1))
    with open_text(path) as fh:
        assert fh.readline().startswith(b"0,")
        pid = os.fork()
        if pid == 0:  # the child: no inflating thread here
            code = 1
            try:
                while fh.read(1 << 20):
                    pass
            except SourceError as e:
                code = 3 if "thread is gone" in str(e) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child waited forever for its inflating thread")
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(status) == 3
