"""Write a copy of a cached stream with its ``ts`` column moved by some seconds: the KDD streams' clock is invented
(one connection a second, ``ts`` = row number), so where the engine's window buckets fall against the attacks is
an accident of that choice. Replaying the same rows at several offsets shows how much of a figure is that accident
(``bench/panel/README.md``, "The invented clock's phase").

    python bench/panel/shift_clock.py $CACHE/kdd_http.csv.gz 1800   # writes $CACHE/kdd_http+1800s.csv.gz

The copy goes beside the original, in the cache (never the repository); the first column must be ``ts``.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path


def shifted_name(path: Path, seconds: int) -> Path:
    """``kdd_http.csv.gz`` -> ``kdd_http+1800s.csv.gz``."""
    stem = path.name.removesuffix(".csv.gz")
    return path.with_name(f"{stem}+{seconds}s.csv.gz")


def shift(path: Path, seconds: int, out: Path | None = None) -> Path:
    """Copy ``path`` (a gzipped CSV whose first column is an integer ``ts``) with ``seconds`` added to every
    ``ts``; returns the copy's path."""
    out = out or shifted_name(path, seconds)
    part = out.with_name(out.name + ".part")  # renamed when whole: an interrupted copy is never taken for one
    try:
        with gzip.open(path, "rt", newline="") as src, gzip.open(part, "wt", newline="", compresslevel=1) as dst:
            header = src.readline()
            if not header.startswith("ts,"):
                raise SystemExit(f"{path}: the first column is not ts: {header.strip()[:60]!r}")
            dst.write(header)
            for n, line in enumerate(src, 2):
                ts, sep, rest = line.partition(",")
                try:
                    dst.write(f"{int(ts) + seconds}{sep}{rest}")
                except ValueError:
                    raise SystemExit(f"{path}:{n}: ts is not an integer: {ts[:30]!r}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("seconds", type=int)
    args = ap.parse_args(argv)
    print(shift(args.path, args.seconds))


if __name__ == "__main__":
    main()
