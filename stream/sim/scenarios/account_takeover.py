"""``account_takeover``, an attack (label 1): a user active in the last three hours is attacked from a new device and a
new IP, in 75% of campaigns from a city more than 4000 km from the user's home (an impossible travel speed); 0-5
failed logins then a success, then within minutes 1-2 orders worth 3-10x the user's usual spend (at least 150) at
pricey merchants, shipped to a drop address the user never used, paid with the saved card or a stolen one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from stream.sim.data import CITIES, HOUR, PREFIXES, UAS_DESKTOP, UAS_PHONE

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    u = None
    recent = sim.recent
    for _ in range(40):
        if not recent:
            break
        ts, cand = recent[-1 - r.randrange(min(len(recent), 1024))]
        if t - 3 * HOUR <= ts <= t - 300.0 and cand.busy_until < t:
            u = cand
            break
    if u is None:
        u = sim.pick_user()
    scen = "account_takeover"
    if r.random() < 0.75:
        ci = sim.attacker_city(far_from=u, min_km=4000.0)
        cc, _, lat, lon, _, _ = CITIES[ci]
        ip = sim.ip(r.choice(PREFIXES[cc][:-1]))
    else:  # a residential proxy or rented server in the victim's own country
        cc, lat, lon = u.cc, CITIES[u.city][2], CITIES[u.city][3]
        ip = sim.ip(r.choice(PREFIXES[cc]))
    dev, ua = sim.hex("d"), r.choice(UAS_DESKTOP + UAS_PHONE)
    lat += r.gauss(0.0, 0.05)
    lon += r.gauss(0.0, 0.05)
    x = r.random()
    fails = 0 if x < 0.35 else (1 if x < 0.6 else r.randint(2, 5))
    for _ in range(fails):
        sim.login(t, u.uid, False, dev, ua, ip, cc, lat, lon, "password", 1, scen)
        t += r.uniform(5.0, 40.0)
    sim.login(t, u.uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
    addr = r.choice(sim.drops)
    card = u.cards[0] if r.random() < 0.5 else sim.hex("c")
    for _ in range(1 if r.random() < 0.7 else 2):
        t += r.uniform(45.0, 600.0)
        m = r.choice(sim.pricey)
        amount = round(max(150.0, math.exp(u.mu) * r.uniform(3.0, 10.0)), 2)
        sim.order(
            t, u.uid, amount, m, dev, ip, card, addr, u.created, r.randint(1, 3), None, cc, 1, scen
        )
    u.last_ts = max(u.last_ts, t)
