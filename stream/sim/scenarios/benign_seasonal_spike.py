"""``benign_seasonal_spike``, a benign surprise (label 0): a sale of 2-3 hours at 2-4 merchants, where many ordinary
users order more often and 1.3-2.2x more than usual, some with the sale code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sim.data import HOUR, SALE_CODE

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    hours = r.uniform(2.0, 3.0)
    sale = [sim.merchant() for _ in range(r.randint(2, 4))]
    n = round(r.uniform(0.04, 0.06) * sim.sessions_per_s * hours * HOUR)
    starts = sorted(t + r.uniform(0.0, hours * HOUR) for _ in range(n))
    for ts in starts:
        u = sim.pick_user()
        if u.busy_until > ts:
            continue
        sim._session(
            ts,
            u,
            "benign_seasonal_spike",
            n_orders=r.choice((1, 1, 2, 3)),
            mult=r.uniform(1.3, 2.2),
            merchants=sale,
            promo=SALE_CODE,
        )
