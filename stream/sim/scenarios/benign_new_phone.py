"""``benign_new_phone``, a benign surprise (label 0): a long-standing user logs in from a new phone on a home IP and
orders as usual; the phone then becomes one of the user's habitual devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.sim.world import Simulator


def inject(sim: Simulator, t: float) -> None:
    r = sim.r
    u = sim.seasoned_user(t, 60.0)
    device = sim.device(phone=True)
    sim._session(
        t,
        u,
        "benign_new_phone",
        n_orders=r.choice((1, 1, 2)),
        device=device,
        ip=r.choice(u.ips),
        p_typo=0.25,
    )
    u.devices.append(device)
