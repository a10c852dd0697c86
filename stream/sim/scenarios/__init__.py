"""One module per campaign the simulator injects: each has ``inject(sim, t)``, which pushes the campaign's
events, starting at event time ``t``, onto the simulator's heap."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stream.sim.scenarios import (
    account_takeover,
    benign_big_purchase,
    benign_new_phone,
    benign_seasonal_spike,
    benign_travel,
    card_testing,
    credential_stuffing,
    fraud_ring,
    promo_abuse,
)

if TYPE_CHECKING:
    from stream.sim.world import Simulator

#: Campaign name -> the function that injects one campaign of it.
CAMPAIGNS: dict[str, Callable[[Simulator, float], None]] = {
    "account_takeover": account_takeover.inject,
    "card_testing": card_testing.inject,
    "promo_abuse": promo_abuse.inject,
    "fraud_ring": fraud_ring.inject,
    "credential_stuffing": credential_stuffing.inject,
    "benign_new_phone": benign_new_phone.inject,
    "benign_travel": benign_travel.inject,
    "benign_seasonal_spike": benign_seasonal_spike.inject,
    "benign_big_purchase": benign_big_purchase.inject,
}
