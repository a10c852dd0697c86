"""What a simulated stream looks like: its size, seed, population, and the rates of campaigns in it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from stream.errors import ConfigError, InvalidEvent
from stream.events import parse_ts

__all__ = ["AttackRates", "BenignRates", "SimConfig", "ATTACK_SCENARIOS", "BENIGN_SCENARIOS", "NORMAL", "CURRENCY"]


NORMAL = "normal"
#: Scenario names of attacks (label 1), in :class:`AttackRates` field order.
ATTACK_SCENARIOS = ("account_takeover", "card_testing", "promo_abuse", "fraud_ring", "credential_stuffing")
#: Scenario names of benign surprises (label 0).
BENIGN_SCENARIOS = ("benign_new_phone", "benign_travel", "benign_seasonal_spike", "benign_big_purchase")
#: The settlement currency of every simulated amount.
CURRENCY = "EUR"


@dataclass(frozen=True)
class AttackRates:
    """Attack campaigns per 10,000 events of the stream, by kind (at least one campaign when positive).

    The defaults put attack events at 0.3-0.4% of a 200k-event stream (see the module's documentation).
    """

    account_takeover: float = 1.5
    card_testing: float = 0.3
    promo_abuse: float = 0.3
    fraud_ring: float = 0.15
    credential_stuffing: float = 0.1


@dataclass(frozen=True)
class BenignRates:
    """Benign-surprise campaigns per 10,000 events of the stream, by kind (at least one when positive).

    The defaults put benign-surprise events at 0.5-0.7% of a 200k-event stream.
    """

    new_phone: float = 5.0
    travel: float = 4.0
    seasonal_spike: float = 0.1
    big_purchase: float = 5.0


@dataclass(frozen=True)
class SimConfig:
    """The whole configuration of one simulated stream.

    Parameters
    ----------
    events
        Number of events to emit (logins, orders and labels together).
    seed
        Seed of every random draw; the same config gives the same stream.
    users
        Size of the user population; ``None`` means ``max(2000, events // 8)``.
    start
        Event time of the stream's start (ISO-8601, UTC unless an offset is given).
    rate_per_hour
        Mean number of ordinary events per hour (the diurnal curve modulates it); with the default 1200 a
        stream of 200k events spans about a week.
    merchants
        Number of merchants.
    attacks, benign
        Campaign rates per 10,000 events (see :class:`AttackRates`, :class:`BenignRates`).
    labels
        Emit delayed :class:`~stream.events.Label` events for a sample of orders.
    label_delay_s
        Median delay of a label after its order, in seconds (log-normal, sigma 0.7, at least 600 s).
    label_fraud_fraction, label_normal_fraction
        Share of fraud orders (label 1) and of other orders (label 0) that receive a label event.
    login_labels
        Label logins too, at the same shares and delays (``source="account_review"`` for attacks: a victim's
        report, a security review of a stuffing IP; ``"review"`` otherwise). Off by default: the streams of
        every seed stay what they were. Drawn from their own generator, so the events themselves do not change,
        only the label events between them (and so the event ids that follow); label events count towards
        ``events``, so the stream ends a little earlier.
    """

    events: int = 100_000
    seed: int = 0
    users: int | None = None
    start: str = "2024-03-01T00:00:00Z"
    rate_per_hour: float = 1200.0
    merchants: int = 300
    attacks: AttackRates = field(default_factory=AttackRates)
    benign: BenignRates = field(default_factory=BenignRates)
    labels: bool = True
    label_delay_s: float = 36 * 3600.0
    label_fraud_fraction: float = 0.7
    label_normal_fraction: float = 0.02
    login_labels: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.events, bool) or not isinstance(self.events, int) or self.events < 0:
            raise ConfigError(f"events: must be an integer >= 0, not {self.events!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed: must be an integer, not {self.seed!r}")
        if self.users is not None and not 1 <= self.users <= 5_000_000:
            raise ConfigError(f"users: must be within [1, 5000000], not {self.users!r}")
        if not self.rate_per_hour > 0 or not math.isfinite(self.rate_per_hour):
            raise ConfigError(f"rate_per_hour: must be > 0, not {self.rate_per_hour!r}")
        if not 1 <= self.merchants <= 1_000_000:
            raise ConfigError(f"merchants: must be within [1, 1000000], not {self.merchants!r}")
        if not isinstance(self.login_labels, bool):
            raise ConfigError(f"login_labels: must be true or false, not {self.login_labels!r}")
        if not self.label_delay_s > 0:
            raise ConfigError(f"label_delay_s: must be > 0, not {self.label_delay_s!r}")
        for name in ("label_fraud_fraction", "label_normal_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name}: must be within [0, 1], not {v!r}")
        for group in (self.attacks, self.benign):
            for name, v in vars(group).items():
                if not (v >= 0 and math.isfinite(v)):
                    raise ConfigError(f"{type(group).__name__}.{name}: must be a finite rate >= 0, not {v!r}")
        try:
            parse_ts(self.start, "start")
        except InvalidEvent as e:
            raise ConfigError(str(e)) from None

    @property
    def n_users(self) -> int:
        """The user population actually simulated."""
        return self.users if self.users is not None else max(2000, self.events // 8)
