"""Materialise the panel's streams into the cache folder (never into the repository).

    python bench/panel/fetch.py                  # every stream of bench/panel/streams.toml that needs a file
    python bench/panel/fetch.py --only http      # one stream
    python bench/panel/fetch.py --cache DIR      # default $RISKSTREAM_PANEL_CACHE, else ~/.cache/riskstream/panel

A `github:` stream's file is read, at the pinned commit, from a local git mirror of its repository when one is
found under --mirror (default $RISKSTREAM_MIRROR, else /work/.mirror; layout <owner>+<name>/repo[/.git], as the
development machine's fetch tool leaves it), otherwise downloaded from
https://raw.githubusercontent.com/<owner>/<name>/<commit>/<path> (what CI and users do). Either way its git blob id
must equal the one in streams.toml, so the panel always replays the same bytes. The converter named by the stream
then writes a gzipped CSV the replay maps with --map/--set (see streams.toml). A `local:` stream with a converter
(the handbook subset) is cut from the shared data folder. Existing cache files are kept unless --force.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
STREAMS = HERE / "streams.toml"


def default_cache() -> Path:
    return Path(os.environ.get("RISKSTREAM_PANEL_CACHE") or Path.home() / ".cache" / "riskstream" / "panel")


def default_mirror() -> Path:
    return Path(os.environ.get("RISKSTREAM_MIRROR") or "/work/.mirror")


def shared_data() -> Path:
    sys.path.insert(0, str(HERE.parents[1]))
    from stream.eval.data import shared_data_dir

    return Path(shared_data_dir())


def load_streams(path: Path = STREAMS) -> tuple[dict, list[dict]]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    return doc.get("panel", {}), doc["streams"]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_github(stream: dict, mirror: Path) -> bytes:
    repo = stream["source"].split(":", 1)[1]
    owner, name = repo.split("/")
    for git_dir in (mirror / f"{owner}+{name}" / "repo" / ".git", mirror / f"{owner}+{name}" / "repo"):
        if git_dir.is_dir():
            got = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{stream['commit']}:{stream['path']}"],
                                 capture_output=True)
            if got.returncode == 0:
                where = f"mirror {git_dir}"
                data = got.stdout
                break
    else:
        url = f"https://raw.githubusercontent.com/{repo}/{stream['commit']}/{stream['path']}"
        with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310 (a fixed https URL)
            data = r.read()
        where = url
    blob = git_blob_id(data)
    if blob != stream["blob"]:
        raise SystemExit(f"{stream['name']}: {where} gave blob {blob}, streams.toml pins {stream['blob']}")
    print(f"{stream['name']}: {len(data):,} bytes from {where} (blob {blob[:12]} ok)")
    return data


# ------------------------------------------------------------------------------------------------------ converters


def _parse_minute_time(text: str) -> datetime:
    """'2/24/2015 22:55' or '2/24/15 22:55' (the two spellings of Fraud_Data.csv copies), as UTC."""
    for fmt in ("%m/%d/%Y %H:%M", "%m/%d/%y %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"unrecognised time {text!r}")


def convert_fraud_data(data: bytes) -> tuple[list[str], list[list[str]]]:
    """Fraud_Data.csv (user_id, signup_time, purchase_time, purchase_value, device_id, source, browser, sex, age,
    [ip_address,] class) -> one order per row in purchase-time order: ts, user_id, account_created_ts (ISO UTC),
    amount, device_id, ip (the numeric address as an integer string), source, browser, sex, age, label.
    Rows without a class (a trailing blank line) are dropped."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    rows = []
    for i, r in enumerate(reader):
        label = (r.get("class") or "").strip()
        if label not in ("0", "1"):
            continue
        purchase = _parse_minute_time(r["purchase_time"])
        signup = _parse_minute_time(r["signup_time"])
        ip = r.get("ip_address")
        rows.append((purchase, i, [
            purchase.strftime("%Y-%m-%dT%H:%M:%SZ"), r["user_id"].strip(), signup.strftime("%Y-%m-%dT%H:%M:%SZ"),
            r["purchase_value"].strip(), r["device_id"].strip(), str(int(float(ip))) if ip else "",
            r["source"], r["browser"], r["sex"], r["age"], label]))
    rows.sort(key=lambda t: (t[0], t[1]))
    header = ["ts", "user_id", "account_created_ts", "amount", "device_id", "ip", "source", "browser", "sex", "age",
              "label"]
    return header, [r[2] for r in rows]


def convert_odds_mat(data: bytes) -> tuple[list[str], list[list[str]]]:
    """An ODDS KDDCup99 .mat (X: duration, src_bytes, dst_bytes after ODDS' log transform; y) -> rows in file
    order, one per second from ts 0."""
    import scipy.io

    mat = scipy.io.loadmat(io.BytesIO(data))
    x, y = mat["X"], mat["y"].ravel()
    rows = [[str(i), repr(float(a)), repr(float(b)), repr(float(c)), str(int(lab))]
            for i, ((a, b, c), lab) in enumerate(zip(x, y, strict=True))]
    return ["ts", "duration", "src_bytes", "dst_bytes", "label"], rows


def convert_handbook_subset(src: Path) -> tuple[list[str], list[list[str]]]:
    """The shared handbook file's rows from 2018-06-15 to 2018-08-14 (bench/handbook/README.md's subset)."""
    with gzip.open(src, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for r in reader if "2018-06-15" <= r[1] < "2018-08-15"]
    return header, rows


CONVERTERS: dict[str, Callable] = {"fraud_data": convert_fraud_data, "odds_mat": convert_odds_mat}


def write_csv_gz(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with gzip.open(tmp, "wt", newline="", compresslevel=6) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)


def materialise(stream: dict, cache: Path, mirror: Path, force: bool = False) -> Path | None:
    """Write the stream's cache file; None when the stream reads the shared data folder as it is."""
    if "convert" not in stream:
        return None
    out = cache / stream["file"]
    if out.exists() and not force:
        print(f"{stream['name']}: {out} already there")
        return out
    cache.mkdir(parents=True, exist_ok=True)
    if stream["convert"] == "handbook_subset":
        header, rows = convert_handbook_subset(shared_data() / "fraud_handbook" / "transactions.csv.gz")
    else:
        header, rows = CONVERTERS[stream["convert"]](read_github(stream, mirror))
    write_csv_gz(out, header, rows)
    labels = [r[header.index("label") if "label" in header else header.index("TX_FRAUD")] for r in rows]
    print(f"{stream['name']}: wrote {out} ({len(rows):,} rows, {sum(x == '1' for x in labels):,} positives)")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--mirror", type=Path, default=default_mirror())
    ap.add_argument("--streams", type=Path, default=STREAMS)
    ap.add_argument("--only", action="append", help="stream name (repeatable)")
    ap.add_argument("--force", action="store_true", help="rewrite cache files that exist")
    args = ap.parse_args(argv)
    _, streams = load_streams(args.streams)
    for s in streams:
        if args.only and s["name"] not in args.only:
            continue
        materialise(s, args.cache, args.mirror, args.force)


if __name__ == "__main__":
    main()
