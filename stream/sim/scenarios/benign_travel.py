"""``benign_travel``, a benign surprise (label 0): a user logs in from another country after a gap that a flight allows
(700 km/h plus two hours), on a known device, and orders normally; the user stays away for 1-4 days.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sim.data import CITIES, DAY, HOUR, PREFIXES, km

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    for attempt in range(50):
        u = sim.seasoned_user(t, 30.0, seen=attempt < 40)
        ci = r.randrange(len(CITIES))
        if CITIES[ci][0] == u.cc:
            continue
        need = km(u.lat, u.lon, CITIES[ci][2], CITIES[ci][3]) / 700.0 * HOUR + 2 * HOUR
        if u.last_ts <= t - need:
            break
    else:
        return
    stay = r.uniform(1 * DAY, 4 * DAY)
    u.busy_until = t + max(stay, need)
    ip = sim.ip(r.choice(PREFIXES[CITIES[ci][0]]))
    device = u.devices[0]
    end = sim._session(
        t, u, "benign_travel", n_orders=r.choice((1, 1, 2)), device=device, ip=ip, city=ci
    )
    if r.random() < 0.5:
        sim._session(
            end + r.uniform(4 * HOUR, stay - 2 * HOUR) if stay > 7 * HOUR else end + HOUR,
            u,
            "benign_travel",
            n_orders=1,
            device=device,
            ip=ip,
            city=ci,
        )
