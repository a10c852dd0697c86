"""Where the compiled engine's time goes on a CSV file: reading + gunzip, the core's CSV decoder alone, and the
whole ``CompiledEngine.process_csv`` (decode + engine), in one run.

    PYTHONPATH=. python bench/core_csv_bench.py $DATA/creditcard_ulb/creditcard.csv.gz \
        --type order --map ts=Time,amount=Amount,label=Class --set user_id=card,merchant_id=unknown
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

from stream import _core
from stream.compiled import CompiledEngine
from stream.config import load_settings
from stream.sources import ColumnMapping, CsvReader, open_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--type")
    ap.add_argument("--map")
    ap.add_argument("--set")
    ap.add_argument("--out")
    a = ap.parse_args()
    mapping = ColumnMapping.parse(type=a.type, map_spec=a.map, set_spec=a.set)
    name = Path(a.path).name
    settings = load_settings()
    batch = int(settings.engine["batch_size"])
    # 1. reading and gunzip alone, in the chunks process_csv gets
    gc.collect()
    t0 = time.perf_counter()
    chunks = []
    reader = CsvReader(name, mapping)
    with open_text(a.path) as fh:
        for data, eof in reader.chunks(fh):
            chunks.append((data, eof))
    read_s = time.perf_counter() - t0
    # 2. the core's decoder alone (no Python objects), over the same chunks
    reader = CsvReader(name, mapping)
    end, _ = reader.python_row(chunks[0][0], 0, chunks[0][1])
    gc.collect()
    t0 = time.perf_counter()
    rows = fallback = 0
    for i, (data, _) in enumerate(chunks):
        ok, bad, stop = _core.csv_tally(data, end if i == 0 else 0, reader.core)
        rows += ok + bad
        fallback += stop < len(data)
    decode_s = time.perf_counter() - t0
    # 3. process_csv end to end over the chunks already in memory (decode + the whole engine)
    engine = CompiledEngine(settings)
    reader = CsvReader(name, mapping)
    gc.collect()
    t0 = time.perf_counter()
    events = 0
    for data, eof in chunks:
        pos = 0
        while pos < len(data):
            out, _, stop = engine.process_csv(data, reader, pos, eof=eof, limit=batch)
            events += len(out.risk)
            if stop == pos:
                break
            pos = stop
        reader.carry(data[pos:])
    total_s = time.perf_counter() - t0
    res = {"rows": rows, "events": events, "chunks_with_fallback": fallback,
           "read_gunzip_seconds": round(read_s, 3), "core_decode_seconds": round(decode_s, 3),
           "process_csv_seconds": round(total_s, 3), "engine_seconds_by_difference": round(total_s - decode_s, 3),
           "us_per_row": {"read_gunzip": round(1e6 * read_s / rows, 2), "decode": round(1e6 * decode_s / rows, 2),
                          "engine": round(1e6 * (total_s - decode_s) / rows, 2)},
           "events_per_second": {"end_to_end": round(events / (read_s + total_s)),
                                 "process_csv": round(events / total_s),
                                 "engine_alone": round(events / (total_s - decode_s))}}
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
