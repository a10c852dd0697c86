"""``promo_abuse``, an attack (label 1): 5-20 accounts created minutes before their first login, all on one device and
IP (sometimes two IPs), each redeeming the same sign-up promo code on a small order a few minutes apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sim.data import PREFIXES, PROMOS_ABUSED

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    scen = "promo_abuse"
    home = sim.pick_user()  # the abuser lives somewhere ordinary
    cc, lat, lon = home.cc, home.lat, home.lon
    ips = [r.choice(home.ips)] + ([sim.ip(PREFIXES[cc][-1])] if r.random() < 0.3 else [])
    dev, ua = home.devices[0] if r.random() < 0.3 else sim.device(phone=r.random() < 0.5)
    code = r.choice(PROMOS_ABUSED)
    cards = [sim.hex("c") for _ in range(r.randint(1, 3))]
    addrs = [sim.hex("a") for _ in range(r.randint(1, 2))]
    m = sim.merchant()
    for k in range(r.randint(5, 20)):
        uid = sim.new_account_id()
        created = t - r.uniform(30.0, 600.0)
        ip = ips[k % len(ips)]
        sim.login(t, uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
        t_o = t + r.uniform(30.0, 180.0)
        amount = round(r.uniform(8.0, 30.0), 2)
        merchant = m if r.random() < 0.7 else sim.merchant()
        sim.order(
            t_o,
            uid,
            amount,
            merchant,
            dev,
            ip,
            cards[k % len(cards)],
            r.choice(addrs),
            created,
            1,
            code,
            cc,
            1,
            scen,
        )
        t = t_o + r.uniform(60.0, 300.0)
