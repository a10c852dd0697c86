"""``credential_stuffing``, an attack (label 1): 30-80 login attempts at 20-40 a minute from 1-3 hosting IPs, against
existing and non-existing user ids; ~95% fail, a few succeed (existing users only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sim.data import CITIES, HOSTING, UAS_BOT, UAS_DESKTOP

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    scen = "credential_stuffing"
    hosts = [r.choice(HOSTING) for _ in range(r.randint(1, 3))]
    ips = [(sim.ip(p), ci) for p, ci in hosts]
    rotate = r.random() < 0.5  # spoofs a fresh fingerprint per attempt
    dev, ua = sim.hex("d"), r.choice(UAS_BOT)
    per_min = r.uniform(20.0, 40.0)
    n_users = len(sim.users)
    # ids no account has: every account created in the stream emits an event, so next_uid < users + events
    lo = n_users + sim.c.events
    hi = max(lo + 10_000, 10_000_000)
    spot = [(ip, ci, r.gauss(0.0, 0.05), r.gauss(0.0, 0.05)) for ip, ci in ips]
    for _ in range(r.randint(30, 80)):
        ip, ci, dlat, dlon = r.choice(spot)
        cc, _, lat, lon, _, _ = CITIES[ci]
        lat, lon = lat + dlat, lon + dlon
        if r.random() < 0.6:
            uid, exists = sim.users[r.randrange(n_users)].uid, True
        else:
            uid, exists = f"u{r.randrange(lo, hi):07d}", False
        ok = exists and r.random() < 0.08
        if rotate:
            dev, ua = sim.hex("d"), r.choice(UAS_DESKTOP)
        sim.login(t, uid, ok, dev, ua, ip, cc, lat, lon, "password", 1, scen)
        t += r.expovariate(per_min / 60.0)
