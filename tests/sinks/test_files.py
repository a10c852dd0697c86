"""sinks.files: the append-only log and the readers the file sinks share."""

from __future__ import annotations

import gzip
import resource
from pathlib import Path

import pytest

from sinks import SinkError
from sinks.files import AppendLog, fsync_dir, is_gzip_file, iter_lines


def test_is_gzip_file_reads_the_magic_bytes_not_the_name(tmp_path: Path) -> None:
    plain, packed, empty = tmp_path / "a.gz", tmp_path / "b.jsonl", tmp_path / "c"
    plain.write_bytes(b"not gzip\n")
    packed.write_bytes(gzip.compress(b"x\n"))
    empty.write_bytes(b"")
    assert (is_gzip_file(plain), is_gzip_file(packed), is_gzip_file(empty)) == (False, True, False)


def test_iter_lines_gives_each_complete_line_with_the_offset_after_it(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\n\nthree\ntorn")
    assert list(iter_lines(path, gz=False)) == [(b"one", 4), (b"", 5), (b"three", 11)]


def test_iter_lines_of_gzip_gives_every_complete_member_and_skips_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "log.gz"
    first, second = gzip.compress(b"a\nb\n", mtime=0), gzip.compress(b"c\n", mtime=0)
    path.write_bytes(first + second + gzip.compress(b"d\n", mtime=0)[:-3])
    assert list(iter_lines(path, gz=True)) == [
        (b"a", len(first)), (b"b", len(first)), (b"c", len(first) + len(second)),
    ]


def test_iter_lines_of_gzip_refuses_bytes_that_are_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(b"a\n", mtime=0) + b"plain text\n")
    with pytest.raises(SinkError, match="corrupt gzip"):
        list(iter_lines(path, gz=True))


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz"])
def test_append_log_reports_existing_records_cuts_a_torn_tail_and_appends(tmp_path: Path, name: str) -> None:
    path = tmp_path / "deep" / "dir" / name
    log = AppendLog(path, gzip=None)
    assert log.gzip == name.endswith(".gz") and not log.closed
    log.append(b"one\ntwo\n")
    log.close()
    log.close()  # a second close does nothing
    assert log.closed
    torn = gzip.compress(b"three\n", mtime=0)[:-4] if log.gzip else b"thr"
    with open(path, "ab") as fh:
        fh.write(torn)
    seen: list[tuple[bytes, int]] = []
    log = AppendLog(path, gzip=None, on_record=lambda line, lineno: seen.append((line, lineno)))
    log.append(b"four\n")
    log.close()
    assert seen == [(b"one", 1), (b"two", 2)]
    assert [line for line, _ in iter_lines(path, is_gzip_file(path))] == [b"one", b"two", b"four"]


def test_append_log_without_a_reader_still_cuts_a_torn_plain_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntw")
    AppendLog(path, gzip=False).close()
    assert path.read_bytes() == b"one\n"


def test_append_log_has_one_writer_and_refuses_a_file_of_the_other_kind(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = AppendLog(path, gzip=False)
    log.append(b"x\n")
    with pytest.raises(SinkError, match="another sink") as info:
        AppendLog(path, gzip=False)
    assert info.value.retriable
    log.close()
    with pytest.raises(SinkError, match="not gzip"):
        AppendLog(path, gzip=True)
    with pytest.raises(SinkError, match="is closed"):
        log.append(b"y\n")


def test_fsync_dir_accepts_a_directory_and_ignores_one_it_cannot_open(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    fsync_dir(tmp_path / "missing")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_failed_append_raises_retriable_and_the_log_still_closes() -> None:
    log = AppendLog("/dev/full", gzip=False)
    with pytest.raises(SinkError, match="cannot write") as info:
        log.append(b"x\n")
    assert info.value.retriable
    log.close()
    assert log.closed


@pytest.mark.parametrize("size", [10, 100_000])
def test_a_retried_append_after_a_failed_write_lands_once(tmp_path: Path, file_size_limit, size: int) -> None:
    path = tmp_path / "log"
    log = AppendLog(path, gzip=False)
    log.append(b"first\n")
    batch = b"".join(b"%06d\n" % i for i in range(size // 7 + 1))
    file_size_limit(len(b"first\n") + len(batch) // 2)  # the write gets half way, then the "disk" is full
    with pytest.raises(SinkError, match="cannot write"):
        log.append(batch)
    assert path.read_bytes() == b"first\n"  # truncated back
    file_size_limit(resource.RLIM_INFINITY)
    log.append(batch)
    log.close()
    assert path.read_bytes() == b"first\n" + batch
