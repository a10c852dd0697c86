"""Micro-benchmark of :class:`stream.features.FeatureExtractor`: µs per event and bytes per tracked entity.

Generates a synthetic stream with numpy (fixed seed): users of log-normal activity with a few devices, IPs,
cards and addresses each, shared IPs, Zipf-popular merchants, log-normal amounts, a few promo codes, timestamps up
to 3 s out of order. The events of each batch are built just before the batch is transformed, as the pipeline
decodes them, and only ``transform_many`` is timed. Three streams:

- orders with every entity id present (the engine's hot path),
- logins with coordinates,
- a mixed stream (80 % orders, 20 % logins).

Each runs ``2 * --events`` events through a fresh extractor: the first half is "cold" (most entities are new),
the second "warm" (the state already holds the population). Printed: µs/event of each half (best of
``--repeat``), entities tracked, approximate bytes per tracked entity (``stats()``) and per entity pickled. Last,
river's reference ``MinMaxScaler | HalfSpaceTrees`` on the same orders (``stream.bench.pipeline.reference_x``), timed in
the same run, so the ratio holds on a busy machine too.

    python bench/features_bench.py            # 50 000 events per half, 10 000 users
    python bench/features_bench.py --events 200000 --users 50000
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stream.bench.pipeline import reference_x
from stream.events import Event, Login, Order
from stream.features import FeatureExtractor

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
COUNTRIES = ("FR", "DE", "US", "GB", "ES")


def make_stream(n: int, users: int, login_share: float, seed: int = 7) -> Callable[[int, int], list[Event]]:
    """A stream of ``n`` events of ``users`` users over about four days; ``build(i, j)`` makes events ``i:j``."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.exponential(4 * 86400.0 / n, n))
    ts -= rng.uniform(0.0, 3.0, n) * (rng.random(n) < 0.05)  # 5 % arrive up to 3 s late
    activity = rng.lognormal(0.0, 1.5, users)  # a few busy users (~1 % of events each), many occasional
    user = rng.choice(users, n, p=activity / activity.sum())
    k = rng.integers(0, 3, n)  # which of the user's own devices / cards / addresses
    ip = np.where(rng.random(n) < 0.1, rng.integers(0, 1000, n), 1000 + user * 2 + (k & 1))  # 10 %: shared IPs
    merchant = np.minimum(rng.zipf(1.5, n), 500)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    promo = np.where(rng.random(n) < 0.05, rng.integers(0, 20, n), -1)
    created = ts - rng.exponential(200 * 86400.0, n)
    is_login = rng.random(n) < login_share
    ok = rng.random(n) < 0.9
    lat = rng.uniform(-60.0, 70.0, users)
    lon = rng.uniform(-180.0, 180.0, users)

    def build(i: int, j: int) -> list[Event]:
        out: list[Event] = []
        for m in range(i, j):
            u = int(user[m])
            a = int(ip[m])
            common: dict[str, Any] = {
                "event_id": f"e{m}", "ts": float(ts[m]), "user_id": f"u{u}", "device_id": f"d{u}-{k[m] % 2}",
                "ip": f"10.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}", "country": COUNTRIES[u % 5],
            }  # fmt: skip
            if is_login[m]:
                out.append(Login(**common, success=bool(ok[m]), lat=float(lat[u]), lon=float(lon[u])))
            else:
                out.append(Order(
                    **common, order_id=f"o{m}", amount=float(amount[m]), currency="EUR",
                    merchant_id=f"m{merchant[m]}", payment_id=f"p{u}-{k[m]}", address_id=f"a{u}-{k[m] // 2}",
                    account_created_ts=float(created[m]), items=int(k[m]) + 1,
                    promo_code=f"PROMO{promo[m]}" if promo[m] >= 0 else None,
                ))  # fmt: skip
        return out

    return build


def run(build: Callable[[int, int], list[Event]], n: int, batch: int) -> tuple[float, float, FeatureExtractor]:
    """µs/event of the cold half and of the warm half of ``2 * n`` events through a fresh extractor."""
    fx = FeatureExtractor()
    spent = [0.0, 0.0]
    for i in range(0, 2 * n, batch):
        events = build(i, min(i + batch, 2 * n))
        start = time.perf_counter()
        fx.transform_many(events)
        spent[i >= n] += time.perf_counter() - start
    return spent[0] / n * 1e6, spent[1] / n * 1e6, fx


def river_reference(events: Sequence[Event]) -> float:
    """µs/event of river's ``MinMaxScaler | HalfSpaceTrees`` scoring then learning each event."""
    from river import anomaly, preprocessing

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    xs = [reference_x(e) for e in events if isinstance(e, Order | Login)]
    start = time.perf_counter()
    for x in xs:
        model.score_one(x)
        model.learn_one(x)
    return (time.perf_counter() - start) / len(xs) * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000, help="events per half (default 50 000)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=2000)
    a = p.parse_args(argv)
    print(f"FeatureExtractor: {a.events} cold + {a.events} warm synthetic events, {a.users} users, "
          f"batches of {a.batch}, best of {a.repeat} (load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    orders_warm = 0.0
    for label, share in (("orders (all ids)", 0.0), ("logins", 1.0), ("mixed 80/20", 0.2)):
        build = make_stream(2 * a.events, a.users, share)
        runs = [run(build, a.events, a.batch) for _ in range(a.repeat)]
        cold = min(r[0] for r in runs)
        warm = min(r[1] for r in runs)
        fx = runs[-1][2]
        st = fx.stats()
        n = max(int(st["entities"]), 1)
        size = len(pickle.dumps(fx, protocol=pickle.HIGHEST_PROTOCOL))
        print(f"  {label:16s} cold {cold:6.2f} µs/event  warm {warm:6.2f} µs/event  {n:6d} entities  "
              f"{st['approx_bytes'] / n:5.0f} B/entity in memory  {size / n:4.0f} B/entity pickled")  # fmt: skip
        kinds = [k.removeprefix("entities_") for k in st if k.startswith("entities_") and st[k]]
        print("    " + "  ".join(f"{k} {int(st['entities_' + k])} x {st['bytes_per_' + k]:.0f} B" for k in kinds))
        if share == 0.0:
            orders_warm = warm
    river = river_reference(make_stream(10_000, a.users, 0.0)(0, 10_000))
    print(f"  river MinMaxScaler|HalfSpaceTrees on the raw order fields: {river:.2f} µs/event "
          f"(warm order features = {orders_warm / river:.2f} of it)")  # fmt: skip


if __name__ == "__main__":
    main()
