"""``fraud_ring``, an attack (label 1): 5-20 accounts created days or weeks before, sharing 2-4 devices, 2-4 IPs, 2-3
addresses and 3-6 cards, ordering moderately expensive goods (median ~180) at a handful of merchants over hours to
days.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from stream.sim.data import CITIES, DAY, HOUR, PREFIXES

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    scen = "fraud_ring"
    ci = sim.attacker_city()
    cc, _, lat, lon, _, _ = CITIES[ci]
    devices = [sim.device(phone=r.random() < 0.5) for _ in range(r.randint(2, 4))]
    ips = [sim.ip(r.choice(PREFIXES[cc])) for _ in range(r.randint(2, 4))]
    addrs = [sim.hex("a") for _ in range(r.randint(2, 3))]
    cards = [sim.hex("c") for _ in range(r.randint(3, 6))]
    merchants = r.sample(sim.pricey, min(len(sim.pricey), r.randint(3, 5)))
    room = sim.t0 + 0.95 * sim.span - t  # end before the stream does
    duration = min(r.uniform(6 * HOUR, 72 * HOUR), max(room, HOUR))
    sessions: list[tuple[float, str, float]] = []
    for _ in range(r.randint(5, 20)):
        uid = sim.new_account_id()
        created = t - r.uniform(1 * DAY, 30 * DAY)
        for _ in range(r.randint(1, 2)):
            sessions.append((t + r.uniform(0.0, duration), uid, created))
    for ts, uid, created in sorted(sessions):
        dev, ua = r.choice(devices)
        ip = r.choice(ips)
        sim.login(
            ts,
            uid,
            True,
            dev,
            ua,
            ip,
            cc,
            lat + r.gauss(0, 0.03),
            lon + r.gauss(0, 0.03),
            "password",
            1,
            scen,
        )
        for _ in range(1 if r.random() < 0.7 else 2):
            ts += r.uniform(60.0, 900.0)
            amount = round(math.exp(r.gauss(math.log(180.0), 0.5)), 2)
            sim.order(
                ts,
                uid,
                amount,
                r.choice(merchants),
                dev,
                ip,
                r.choice(cards),
                r.choice(addrs),
                created,
                r.randint(1, 3),
                None,
                cc,
                1,
                scen,
            )
