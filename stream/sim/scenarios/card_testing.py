"""``card_testing``, an attack (label 1): 1-3 accounts created minutes before, one device and one or two IPs, a burst
of 12-40 orders of 0.5-5 every few seconds, nearly every one with a different card, mostly at a single merchant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sim.data import CITIES, HOSTING, PREFIXES, UAS_BOT, UAS_DESKTOP

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    scen = "card_testing"
    if r.random() < 0.5:  # a rented server
        pref, ci = r.choice(HOSTING)
    else:
        ci = sim.attacker_city()
        pref = r.choice(PREFIXES[CITIES[ci][0]])
    cc, _, lat, lon, _, _ = CITIES[ci]
    lat, lon = lat + r.gauss(0.0, 0.05), lon + r.gauss(0.0, 0.05)
    ips = [sim.ip(pref) for _ in range(1 if r.random() < 0.7 else 2)]
    dev, ua = sim.hex("d"), r.choice(UAS_DESKTOP + UAS_BOT[1:2])
    merchants = (
        [sim.merchant()] if r.random() < 0.8 else [sim.merchant() for _ in range(r.randint(2, 3))]
    )
    addr = sim.hex("a") if r.random() < 0.5 else None
    n_orders = r.randint(12, 40)
    accounts = [sim.new_account_id() for _ in range(r.randint(1, 3))]
    created = {a: t - r.uniform(120.0, 7200.0) for a in accounts}
    cards: list[str] = []
    for k in range(n_orders):
        uid = accounts[k * len(accounts) // n_orders]
        ip = ips[k % len(ips)]
        if k == 0 or uid != accounts[(k - 1) * len(accounts) // n_orders]:
            sim.login(t, uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
            t += r.uniform(10.0, 40.0)
        card = r.choice(cards) if cards and r.random() < 0.1 else sim.hex("c")
        cards.append(card)
        amount = round(r.uniform(0.5, 5.0), 2)
        sim.order(
            t, uid, amount, r.choice(merchants), dev, ip, card, addr, created[uid], 1, None, cc, 1, scen
        )
        t += r.uniform(2.0, 20.0)
