"""Micro-benchmark of record decoding: Python's ``stream.events.decode`` (orjson + ``from_dict``) against the
compiled core's decoder (``core/src/decode.rs``), on the same records in the same run, so the ratio holds on a busy
machine too.

Records: ``--events`` events of the simulator (seed ``--seed``) as ``encode`` writes them. Timed, best of
``--repeat``, in µs per record:

- ``python``: ``stream.events.decode`` on each record (the reference);
- ``core (Rust only)``: ``_core.decode_tally``, the decoder alone, no Python object built (what a Rust caller pays);
- ``core -> tuples``: ``_core.decode_many``, an outcome tuple with a dict of fields per record;
- ``core -> events``: ``stream.core_decode.decode_many``, down to the same frozen events as Python's.

Then ``--junk`` records of the fuzz generator (``stream.sim.junk``): the share the core decides natively and the
share it leaves to Python (fallback), by kind of breakage. Build the core with ``scripts/build-core.sh --release``
first.

    python bench/core_decode_bench.py                        # 100 000 records, seed 7; 100 000 junk records
    python bench/core_decode_bench.py --events 20000 --junk 0
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from stream import _core
from stream.core_decode import decode_many
from stream.events import decode, encode
from stream.sim import SimConfig, simulate
from stream.sim.junk import KINDS, junk_with_kinds


def best_us(fn: Callable[[], Any], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--junk", type=int, default=100_000, help="fuzz records for the fallback rate (0: skip)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    events = list(simulate(SimConfig(events=args.events, seed=args.seed)))
    records = [encode(e) for e in events]
    n = len(records)
    size = sum(map(len, records)) / n
    tally = _core.decode_tally(records)
    assert tally == (n, 0, 0), f"the simulator's records must all decode natively: {tally}"

    def python() -> None:
        for raw in records:
            decode(raw)

    rows = [
        ("python decode (orjson + from_dict)", best_us(python, n, args.repeat)),
        ("core (Rust only, decode_tally)", best_us(lambda: _core.decode_tally(records), n, args.repeat)),
        ("core -> tuples (decode_many)", best_us(lambda: _core.decode_many(records), n, args.repeat)),
        ("core -> events (core_decode.decode_many)", best_us(lambda: decode_many(records), n, args.repeat)),
    ]
    print(f"{n} records of simulate(seed={args.seed}), {size:.0f} bytes on average; best of {args.repeat}")
    ref = rows[0][1]
    for name, us in rows:
        print(f"  {name:<42} {us:7.3f} µs/record   x{ref / us:5.1f} vs python")

    if args.junk:
        pairs = list(junk_with_kinds(events, n=args.junk, seed=5))
        outs = _core.decode_many([raw for _, raw in pairs])
        total: Counter[str] = Counter(kind for kind, _ in pairs)
        fell: Counter[str] = Counter(kind for (kind, _), o in zip(pairs, outs, strict=True) if o[0] == "fallback")
        tags = Counter("event" if o[0] in ("order", "login", "label") else o[0] for o in outs)
        print(f"{args.junk} fuzz records: {tags['event']} events, {tags['invalid']} invalid decided natively, "
              f"{tags['fallback']} fallbacks ({tags['fallback'] / args.junk:.1%})")
        for kind in KINDS:
            print(f"  {kind:<16} fallback {fell[kind] / total[kind]:6.1%} of {total[kind]}")


if __name__ == "__main__":
    main()
