"""``benign_big_purchase``, a benign surprise (label 0): a customer of more than a year buys 3-5x their usual amount on
a known device, card and address.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    u = sim.seasoned_user(t, 365.0)
    m = r.choice(u.favs + sim.pricey[:5])
    sim._session(t, u, "benign_big_purchase", n_orders=0, device=u.devices[0], ip=u.ips[0])
    ts = t + r.uniform(60.0, 900.0)
    amount = round(math.exp(u.mu) * r.uniform(3.0, 5.0), 2)
    sim.order(
        ts,
        u.uid,
        amount,
        m,
        u.devices[0][0],
        u.ips[0],
        u.cards[0],
        u.addrs[0],
        u.created,
        r.randint(1, 2),
        None,
        u.cc,
        0,
        "benign_big_purchase",
    )
    u.last_ts = max(u.last_ts, ts)
