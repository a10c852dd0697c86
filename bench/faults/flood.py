"""A bot flood: every event a fresh user, device and IP (and, for orders, card and address), well inside the idle
TTL, through one engine: memory and checkpoint size must level off at the configured entity caps.

    python bench/faults/flood.py --events 1000000 --max-entities 100000 --out bench/results/flood_1m_cap100k.json

Every ``--every`` events it records the feature tables' entities and estimated bytes, the link graph's entries,
the label store's entries, the process RSS, and (every tenth sample) the pickled checkpoint's size.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stream.config import load_settings
from stream.events import Login, Order
from stream.pipeline import Engine


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def flood(n: int, seed: int, t0: float = 1.7e9) -> Any:
    r = random.Random(seed)
    for i in range(n):
        ts = t0 + i * 0.01  # 100 events a second: 10M events are 28 hours, inside every TTL and window
        uid, dev, ip = f"bot{r.getrandbits(48):x}", f"d{r.getrandbits(48):x}", f"{r.randrange(1, 255)}.{i % 65536}"
        if r.random() < 0.6:
            yield Login(event_id=f"f{i}", ts=ts, user_id=uid, success=r.random() < 0.1, device_id=dev, ip=ip)
        else:
            yield Order(event_id=f"f{i}", ts=ts, user_id=uid, order_id=f"o{i}", amount=round(r.uniform(1, 50), 2),
                        currency="EUR", merchant_id=f"m{r.randrange(50)}", device_id=dev, ip=ip,
                        payment_id=f"c{r.getrandbits(48):x}", address_id=f"a{r.getrandbits(48):x}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--max-entities", type=int, default=None, help="features.max_entities and links.max_entities")
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    over: dict[str, Any] = {}
    if args.max_entities is not None:
        over = {"features.max_entities": args.max_entities, "links.max_entities": args.max_entities}
    settings = load_settings(None, env={}, overrides=over)
    engine = Engine(settings)
    samples: list[dict[str, Any]] = []
    batch: list[Any] = []
    started = time.perf_counter()
    for i, e in enumerate(flood(args.events, args.seed), start=1):
        batch.append(e)
        if len(batch) == args.batch:
            engine.process(batch)
            batch = []
        if i % args.every == 0:
            if batch:
                engine.process(batch)
                batch = []
            st = engine.features.stats(sample=64)
            s: dict[str, Any] = {"events": i, "seconds": round(time.perf_counter() - started, 1),
                                 "rss_mb": round(_rss_mb(), 1), "feature_entities": int(st["entities"]),
                                 "feature_mb": round(st["approx_bytes"] / 2**20, 1),
                                 "graph_entries": engine.graph.size() if engine.graph is not None else 0,
                                 "label_store": len(engine.label_store) if hasattr(engine.label_store, "__len__")
                                 else None}
            if (i // args.every) % 10 == 0 or i == args.events:
                s["checkpoint_mb"] = round(len(engine.snapshot()) / 2**20, 1)
            samples.append(s)
            print(orjson.dumps(s).decode(), file=sys.stderr, flush=True)
    if batch:
        engine.process(batch)
    st = engine.features.stats(sample=256)
    result = {
        "events": args.events, "max_entities": settings.features["max_entities"],
        "graph_max_entries": settings.section("links")["max_entities"],
        "bytes_per_entity": {k[len("bytes_per_"):]: v for k, v in st.items() if k.startswith("bytes_per_")},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "final": samples[-1] if samples else None, "samples": samples,
        "events_per_second": round(args.events / (time.perf_counter() - started)),
    }
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.out:
        Path(args.out).write_bytes(text + b"\n")
    print(text.decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
