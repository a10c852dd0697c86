"""A deterministic simulator of e-commerce traffic with labelled fraud campaigns and benign surprises.

:func:`simulate` yields :mod:`stream.events` objects (:class:`~stream.events.Login`,
:class:`~stream.events.Order` and delayed :class:`~stream.events.Label`) in non-decreasing event time. The
same :class:`SimConfig`, seed included, always gives the same stream: every draw comes from generators seeded
by the config, never from global random state or the wall clock.

The world
---------
A population of users (``SimConfig.users``; by default ``max(2000, events // 8)``, so 25,000 at 200k events),
each with a home city (country, time zone, lat/lon), 1-3 habitual devices with their user agents, one or two
home IPs, 1-2 cards (``payment_id``), 1-2 shipping addresses (``address_id``), an account created months or
years before, a log-normal spend profile, a few favourite merchants and an activity level (heavy users exist).
A few hundred merchants have Zipf popularity and a price level. Amounts are in one settlement currency,
:data:`CURRENCY`. Time zones are fixed UTC offsets (no daylight saving).

Ordinary traffic (``scenario="normal"``, ``label=0``) comes in sessions: a login, sometimes after a typo (a
failed password attempt seconds before the success, ~4% of sessions), then 0-3 orders within minutes. The
session rate follows a diurnal curve in each user's local time. Ordinary traffic also holds what makes
detection hard: mobile IPs never seen before (~15% of sessions), a browser with cleared cookies (a fresh
``device_id``, ~0.5%), a gift shipped to a new address (~1% of orders), genuine sign-ups ordering minutes
after creating their account (~1.5% of sessions), and promo codes (~3% of orders).

Campaigns
---------
Each kind of campaign has a rate in **campaigns per 10,000 events** of the stream. The number of campaigns of
a kind is ``max(1, round(rate * events / 10_000))`` when its rate is positive (none when it is 0); their start
times are spread over the stream (stratified at random). A campaign's events due after the stream's end are
cut.

Attacks (``label=1``, ``scenario`` = the attack's name, see :data:`ATTACK_SCENARIOS`):

- ``account_takeover``: a user active in the last three hours is attacked from a new device and a new IP, in
  75% of campaigns from a city more than 4000 km from the user's home (an impossible travel speed); 0-5 failed
  logins then a success, then within minutes 1-2 orders worth 3-10x the user's usual spend (at least 150) at
  pricey merchants, shipped to a drop address the user never used, paid with the saved card or a stolen one.
- ``card_testing``: 1-3 accounts created minutes before, one device and one or two IPs, a burst of 12-40
  orders of 0.5-5 every few seconds, nearly every one with a different card, mostly at a single merchant.
- ``promo_abuse``: 5-20 accounts created minutes before their first login, all on one device and IP
  (sometimes two IPs), each redeeming the same sign-up promo code on a small order a few minutes apart.
- ``fraud_ring``: 5-20 accounts created days or weeks before, sharing 2-4 devices, 2-4 IPs, 2-3 addresses and
  3-6 cards, ordering moderately expensive goods (median ~180) at a handful of merchants over hours to days.
- ``credential_stuffing``: 30-80 login attempts at 20-40 a minute from 1-3 hosting IPs, against existing and
  non-existing user ids; ~95% fail, a few succeed (existing users only).

Benign surprises (``label=0``, ``scenario`` in :data:`BENIGN_SCENARIOS`) look odd but are legitimate:

- ``benign_new_phone``: a long-standing user logs in from a new phone on a home IP and orders as usual; the
  phone then becomes one of the user's habitual devices.
- ``benign_travel``: a user logs in from another country after a gap that a flight allows (700 km/h plus two
  hours), on a known device, and orders normally; the user stays away for 1-4 days.
- ``benign_seasonal_spike``: a sale of 2-3 hours at 2-4 merchants, where many ordinary users order more often
  and 1.3-2.2x more than usual, some with the sale code.
- ``benign_big_purchase``: a customer of more than a year buys 3-5x their usual amount on a known device, card
  and address.

With the default rates, attack events are 0.3-0.4% of a 200k-event stream and benign surprises 0.5-0.7%; at
50k events, where the one-campaign minimum weighs more, 0.3-0.6% and 0.6-1% (measured over seeds 1-30).
An alert budget of 1% can hold every attack.

Labels
------
With ``labels=True``, a delayed :class:`~stream.events.Label` (same ``scenario`` as its order) follows a
sample of orders: a chargeback (``source="chargeback"``, ``label=1``) for ``label_fraud_fraction`` of fraud
orders, a review outcome (``source="review"``, ``label=0``) for ``label_normal_fraction`` of the others, after
a log-normal delay of median ``label_delay_s`` (at least 10 minutes). Real chargebacks take weeks; the delay
is shortened so that labels land inside a stream of days. Labels due after the stream's end are not emitted.

>>> events = list(simulate(SimConfig(events=2000, seed=1)))
>>> len(events), all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(2000, True)
>>> sorted(scenario_counts(events))[:3]
['account_takeover', 'benign_big_purchase', 'benign_new_phone']
"""

from __future__ import annotations

import gzip
import heapq
import math
import random
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import ConfigError, InvalidEvent
from stream.events import Event, Label, Login, Order, encode, parse_ts

__all__ = [
    "AttackRates",
    "BenignRates",
    "SimConfig",
    "simulate",
    "write_jsonl",
    "scenario_counts",
    "ATTACK_SCENARIOS",
    "BENIGN_SCENARIOS",
    "NORMAL",
    "CURRENCY",
]

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


def simulate(config: SimConfig) -> Iterator[Event]:
    """Yield ``config.events`` events in non-decreasing event time (ties in a fixed order).

    Every order and login carries ``label`` (0 or 1) and ``scenario``; every event has a unique ``event_id``
    (``sim<seed>-<n>``). Memory is bounded by the user population and the event rate, not by ``events``.
    """
    return _Simulator(config).run()


def write_jsonl(events: Iterable[Event], path: str | Path) -> int:
    """Write one JSON line per event (:func:`stream.events.encode`); gzip when ``path`` ends in ``.gz``.

    Returns the number of lines written.
    """
    path = Path(path)
    n = 0
    opener = (
        (lambda p: gzip.open(p, "wb", compresslevel=6)) if path.suffix == ".gz" else (lambda p: open(p, "wb"))
    )
    with opener(path) as fh:
        buf: list[bytes] = []
        for event in events:
            buf.append(encode(event))
            n += 1
            if len(buf) >= 4096:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return n


def scenario_counts(events: Iterable[Event]) -> dict[str, int]:
    """Number of order and login events per scenario; :class:`~stream.events.Label` events count as "label".

    >>> scenario_counts(simulate(SimConfig(events=500, seed=3, attacks=AttackRates(0, 0, 0, 0, 0),
    ...                                    benign=BenignRates(0, 0, 0, 0), labels=False)))
    {'normal': 500}
    """
    counts: Counter[str] = Counter()
    for e in events:
        counts["label" if e.type == "label" else (e.scenario or "")] += 1
    return dict(sorted(counts.items()))


# --- the world ----------------------------------------------------------------------------------------------

# fmt: off
# (country, city, lat, lon, UTC offset in hours, share of users)
_CITIES: tuple[tuple[str, str, float, float, float, float], ...] = (
    ("US", "New York", 40.71, -74.01, -5, 0.08), ("US", "Chicago", 41.88, -87.63, -6, 0.05),
    ("US", "Houston", 29.76, -95.37, -6, 0.04), ("US", "Los Angeles", 34.05, -118.24, -8, 0.05),
    ("CA", "Toronto", 43.65, -79.38, -5, 0.03), ("MX", "Mexico City", 19.43, -99.13, -6, 0.03),
    ("BR", "Sao Paulo", -23.55, -46.63, -3, 0.05), ("GB", "London", 51.51, -0.13, 0, 0.07),
    ("GB", "Manchester", 53.48, -2.24, 0, 0.03), ("DE", "Berlin", 52.52, 13.40, 1, 0.05),
    ("DE", "Munich", 48.14, 11.58, 1, 0.04), ("DE", "Hamburg", 53.55, 9.99, 1, 0.03),
    ("FR", "Paris", 48.86, 2.35, 1, 0.06), ("FR", "Lyon", 45.76, 4.84, 1, 0.03),
    ("ES", "Madrid", 40.42, -3.70, 1, 0.035), ("ES", "Barcelona", 41.39, 2.17, 1, 0.025),
    ("IT", "Rome", 41.90, 12.50, 1, 0.03), ("IT", "Milan", 45.46, 9.19, 1, 0.03),
    ("NL", "Amsterdam", 52.37, 4.90, 1, 0.04), ("PL", "Warsaw", 52.23, 21.01, 1, 0.04),
    ("SE", "Stockholm", 59.33, 18.07, 1, 0.02), ("RO", "Bucharest", 44.43, 26.10, 2, 0.01),
    ("NG", "Lagos", 6.52, 3.38, 1, 0.01), ("IN", "Mumbai", 19.08, 72.88, 5.5, 0.025),
    ("IN", "Delhi", 28.61, 77.21, 5.5, 0.025), ("VN", "Hanoi", 21.03, 105.85, 7, 0.005),
    ("ID", "Jakarta", -6.20, 106.85, 7, 0.005), ("JP", "Tokyo", 35.68, 139.69, 9, 0.03),
    ("AU", "Sydney", -33.87, 151.21, 10, 0.03),
)

# residential prefixes, then one mobile-carrier prefix (last) per country
_PREFIXES: dict[str, tuple[str, ...]] = {
    "US": ("73.162", "98.207", "174.63", "24.14", "172.56"), "CA": ("99.224", "70.48", "174.88"),
    "MX": ("187.190", "201.141", "189.203"), "BR": ("177.32", "189.6", "179.220"),
    "GB": ("81.106", "86.14", "90.241", "92.40"), "DE": ("84.150", "91.64", "79.227", "109.40"),
    "FR": ("90.84", "82.64", "86.253", "37.167"), "ES": ("83.45", "88.12", "31.4"),
    "IT": ("79.12", "93.34", "151.38"), "NL": ("84.104", "145.53", "31.20"), "PL": ("83.4", "89.64", "37.47"),
    "SE": ("78.70", "90.230", "31.208"), "RO": ("86.120", "79.117", "5.12"),
    "NG": ("105.112", "197.210", "102.89"), "IN": ("49.36", "122.161", "106.200"),
    "VN": ("113.161", "14.226", "27.72"), "ID": ("36.68", "114.124", "110.136"),
    "JP": ("126.15", "153.205", "49.96"), "AU": ("101.160", "120.148", "1.136"),
}
# hosting / proxy ranges attackers rent: (prefix, index in _CITIES of where they geolocate)
_HOSTING: tuple[tuple[str, int], ...] = (
    ("185.220", 18), ("45.134", 9), ("104.244", 0), ("198.98", 3), ("193.32", 21), ("103.152", 25),
)
# where attackers themselves sit, weighted: (index in _CITIES, weight)
_ATTACK_CITIES: tuple[tuple[int, float], ...] = (
    (22, 3.0), (21, 3.0), (25, 2.0), (26, 2.0), (6, 1.5), (23, 1.0), (18, 1.0), (0, 1.0), (27, 0.5),
    (19, 1.0),
)

_UAS_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.164 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 "
    "Mobile Safari/537.36",
    "ShopApp/5.12.0 (iOS 17.2; iPhone14,5)",
    "ShopApp/5.11.3 (Android 14; SM-A546B)",
)
_UAS_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
)
_UAS_BOT = (
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 "
    "Safari/537.36",
    "okhttp/4.12.0",
)
_PROMOS_NORMAL = ("SPRING10", "WELCOME10", "FREESHIP", "VIP20", "APP5")
_PROMOS_ABUSED = ("WELCOME10", "NEWUSER15", "REFER20")
_SALE_CODE = "SALE24"

# relative session rate by local hour (0..23): a night trough, lunch and evening peaks
_CURVE_RAW = (0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.25, 0.5, 0.75, 0.95, 1.05, 1.15,
              1.3, 1.25, 1.15, 1.1, 1.1, 1.2, 1.4, 1.6, 1.75, 1.65, 1.2, 0.7)
# fmt: on
_CURVE = tuple(v * 24 / sum(_CURVE_RAW) for v in _CURVE_RAW)
_CURVE_MAX = max(_CURVE)

# session shape: orders per session (0..3), failed-password typo per session, sign-ups per session
_ORDER_COUNTS = (0.40, 0.42, 0.13, 0.05)
_CUM_ORDER_COUNTS = tuple(sum(_ORDER_COUNTS[: i + 1]) for i in range(len(_ORDER_COUNTS)))
_P_TYPO = 0.04
_P_PASSWORD = 0.6
_EVENTS_PER_SESSION = 1.0 + _P_TYPO * 1.1 + sum(i * p for i, p in enumerate(_ORDER_COUNTS))
_P_SIGNUP = 0.015

_HOUR = 3600.0
_DAY = 86400.0


def _stratified(name: str, n: int, lo: float, hi: float, r: random.Random) -> Iterator[tuple[float, str]]:
    """``n`` increasing times in ``[lo, hi)``, one uniformly at random in each of ``n`` equal strata."""
    width = (hi - lo) / n
    for i in range(n):
        yield lo + (i + r.random()) * width, name


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def _pick(r: random.Random, seq: Any) -> Any:
    """``r.choice(seq)``, faster (one float draw)."""
    return seq[int(r.random() * len(seq))]


@dataclass(slots=True)
class _User:
    """A simulated customer: home, habits and the little state the simulator keeps per user."""

    uid: str
    city: int
    cc: str
    lat: float
    lon: float
    tz: float
    devices: list[tuple[str, str]]  # (device_id, user_agent)
    ips: list[str]
    cards: list[str]
    addrs: list[str]
    created: float
    mu: float  # log of the median order amount
    sigma: float
    favs: list[int]  # favourite merchants
    last_ts: float = -math.inf  # time of the user's latest generated event
    busy_until: float = -math.inf  # away (travelling) until then: no ordinary sessions


class _Simulator:
    """Merges three time-ordered sources into one stream: pending events (a heap), the next ordinary session
    (a thinned Poisson process following each user's local diurnal curve) and the next campaign start."""

    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.ss = np.random.SeedSequence([abs(config.seed), int(config.seed < 0), 0x7269736B])  # "risk"
        self.np = np.random.Generator(np.random.PCG64(self.ss))
        self.r = random.Random(int(self.ss.generate_state(1, dtype=np.uint64)[0]))
        self.t0 = parse_ts(config.start)
        self.span = config.events / config.rate_per_hour * _HOUR  # expected length of the stream, seconds
        self.sessions_per_s = config.rate_per_hour / _EVENTS_PER_SESSION / _HOUR
        self.heap: list[tuple[float, int, type, dict[str, Any]]] = []
        self.seq = 0
        self.order_n = 0
        self.recent: deque[tuple[float, _User]] = deque(maxlen=4096)
        self._build_world()

    # --- world ----------------------------------------------------------------------------------------------

    def _build_world(self) -> None:
        g, r = self.np, self.r
        n = self.c.n_users
        self.next_uid = n
        city_w = np.array([c[5] for c in _CITIES])
        cities = g.choice(len(_CITIES), size=n, p=city_w / city_w.sum()).tolist()
        jitter = g.normal(0.0, 0.08, size=(n, 2)).tolist()
        n_dev = g.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15]).tolist()
        n_ip = g.choice([1, 2], size=n, p=[0.7, 0.3]).tolist()
        n_card = g.choice([1, 2], size=n, p=[0.65, 0.35]).tolist()
        n_addr = g.choice([1, 2], size=n, p=[0.75, 0.25]).tolist()
        age_days = np.minimum(30.0 + g.exponential(420.0, size=n), 6 * 365.0).tolist()
        median = np.exp(g.normal(math.log(40.0), 0.7, size=n)).tolist()
        sigma = g.uniform(0.35, 0.75, size=n).tolist()
        activity = g.lognormal(0.0, 1.0, size=n)
        self.cum_activity = np.cumsum(activity)
        self.user_draws: list[int] = []

        m = self.c.merchants
        pop = 1.0 / np.arange(1, m + 1) ** 1.1
        self.merchant_ids = [f"m{i:05d}" for i in g.permutation(m).tolist()]
        self.cum_merchants = np.cumsum(pop)
        self.merchant_draws: list[int] = []
        self.price = np.exp(g.normal(0.0, 0.35, size=m)).tolist()
        order = np.argsort(-np.asarray(self.price))
        self.pricey = order[: max(1, m // 10)].tolist()  # resellable goods: ATO and ring targets
        favs = g.choice(m, size=(n, 3), p=pop / pop.sum()).tolist()

        self.users: list[_User] = []
        for i in range(n):
            ci = cities[i]
            cc, _, lat, lon, tz, _ = _CITIES[ci]
            pref = _PREFIXES[cc]
            devices = [self._device(phone=r.random() < 0.6) for _ in range(n_dev[i])]
            self.users.append(
                _User(
                    uid=f"u{i:07d}",
                    city=ci,
                    cc=cc,
                    lat=lat + jitter[i][0],
                    lon=lon + jitter[i][1],
                    tz=tz,
                    devices=devices,
                    ips=[self._ip(r.choice(pref[:-1])) for _ in range(n_ip[i])],
                    cards=[self._hex("c") for _ in range(n_card[i])],
                    addrs=[self._hex("a") for _ in range(n_addr[i])],
                    created=self.t0 - age_days[i] * _DAY,
                    mu=math.log(median[i]),
                    sigma=sigma[i],
                    favs=favs[i],
                )
            )
        self.drops = [
            self._hex("a")
            for _ in range(min(1000, max(4, round(self.c.attacks.account_takeover * self.c.events / 3e4))))
        ]

    def _hex(self, prefix: str) -> str:
        return f"{prefix}{self.r.getrandbits(48):012x}"

    def _ip(self, prefix: str) -> str:
        r = self.r
        return f"{prefix}.{1 + int(r.random() * 254)}.{1 + int(r.random() * 254)}"

    def _device(self, phone: bool) -> tuple[str, str]:
        return self._hex("d"), self.r.choice(_UAS_PHONE if phone else _UAS_DESKTOP)

    def _draws(self, cum: np.ndarray) -> list[int]:
        """A batch of indices drawn with weights ``cum`` (cumulative), in the order they are to be popped."""
        idx = np.searchsorted(cum, self.np.random(4096) * cum[-1], side="right")
        out: list[int] = np.minimum(idx, len(cum) - 1)[::-1].tolist()
        return out

    def _pick_user(self) -> _User:
        """A user, drawn by activity (heavy users more often)."""
        if not self.user_draws:
            self.user_draws = self._draws(self.cum_activity)
        return self.users[self.user_draws.pop()]

    def _merchant(self, u: _User | None = None) -> int:
        """A merchant: one of ``u``'s favourites 60% of the time, else by Zipf popularity."""
        if u is not None and self.r.random() < 0.6:
            return _pick(self.r, u.favs)
        if not self.merchant_draws:
            self.merchant_draws = self._draws(self.cum_merchants)
        return self.merchant_draws.pop()

    def _amount(self, u: _User, merchant: int, mult: float = 1.0) -> float:
        v = math.exp(self.r.gauss(u.mu, u.sigma)) * math.sqrt(self.price[merchant]) * mult
        return round(max(1.0, v), 2)

    # --- emitting -------------------------------------------------------------------------------------------

    def _push(self, cls: type, kw: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (kw["ts"], self.seq, cls, kw))

    def _login(
        self,
        ts: float,
        uid: str,
        ok: bool,
        dev: str | None,
        ua: str | None,
        ip: str,
        cc: str,
        lat: float,
        lon: float,
        method: str,
        label: int,
        scen: str,
    ) -> None:
        self._push(
            Login,
            {
                "ts": round(ts, 3),  # milliseconds, so that encode/decode round-trips exactly
                "user_id": uid,
                "success": ok,
                "device_id": dev,
                "ip": ip,
                "country": cc,
                "lat": round(lat, 4),
                "lon": round(lon, 4),
                "user_agent": ua,
                "method": method,
                "label": label,
                "scenario": scen,
            },
        )

    def _order(
        self,
        ts: float,
        uid: str,
        amount: float,
        merchant: int,
        dev: str | None,
        ip: str,
        card: str,
        addr: str | None,
        created: float,
        items: int,
        promo: str | None,
        cc: str,
        label: int,
        scen: str,
    ) -> None:
        self.order_n += 1
        self._push(
            Order,
            {
                "ts": round(ts, 3),  # milliseconds, so that encode/decode round-trips exactly
                "user_id": uid,
                "order_id": f"o{self.order_n:09d}",
                "amount": amount,
                "currency": CURRENCY,
                "merchant_id": self.merchant_ids[merchant],
                "device_id": dev,
                "ip": ip,
                "payment_id": card,
                "address_id": addr,
                "account_created_ts": round(created, 3),
                "items": items,
                "promo_code": promo,
                "country": cc,
                "label": label,
                "scenario": scen,
            },
        )

    def run(self) -> Iterator[Event]:
        c, r = self.c, self.r
        if c.events == 0:
            return
        campaigns = self._schedule()
        camp = next(campaigns, None)
        t_sess = self.t0
        t_sess, u_sess = self._next_session(t_sess)
        heap = self.heap
        prefix = f"sim{c.seed}-"
        emitted = 0
        inf = math.inf
        label_fraud, label_normal = (
            (c.label_fraud_fraction, c.label_normal_fraction) if c.labels else (0.0, 0.0)
        )
        delay_mu = math.log(c.label_delay_s)
        while emitted < c.events:
            t_camp = camp[0] if camp is not None else inf
            if heap and heap[0][0] <= t_sess and heap[0][0] <= t_camp:
                ts, _, cls, kw = heapq.heappop(heap)
                ev = cls(event_id=f"{prefix}{emitted:09d}", **kw)
                emitted += 1
                if cls is Order:
                    lab = kw["label"]
                    if r.random() < (label_fraud if lab else label_normal):
                        due = round(ts + max(600.0, math.exp(r.gauss(delay_mu, 0.7))), 3)
                        self._push(
                            Label,
                            {
                                "ts": due,
                                "ref_event_id": ev.event_id,
                                "label": lab,
                                "source": "chargeback" if lab else "review",
                                "scenario": kw["scenario"],
                            },
                        )
                yield ev
            elif camp is not None and t_camp <= t_sess:
                getattr(self, "_" + camp[1])(t_camp)
                camp = next(campaigns, None)
            else:
                if u_sess.busy_until <= t_sess and u_sess.last_ts <= t_sess:  # a campaign may have taken them
                    self._session(t_sess, u_sess)
                t_sess, u_sess = self._next_session(t_sess)

    def _schedule(self) -> Iterator[tuple[float, str]]:
        """Campaign start times in order, stratified over the expected span of the stream; lazy, so memory
        does not grow with ``events``. Each kind draws from its own generator."""
        lo, hi = self.t0 + 0.03 * self.span, self.t0 + 0.9 * self.span
        kinds = [
            *zip(ATTACK_SCENARIOS, vars(self.c.attacks).values(), strict=True),
            *zip(BENIGN_SCENARIOS, vars(self.c.benign).values(), strict=True),
        ]
        seeds = self.ss.spawn(len(kinds))
        streams = []
        for (name, rate), ss in zip(kinds, seeds, strict=True):
            n = max(1, round(rate * self.c.events / 1e4)) if rate > 0 else 0
            if n:
                streams.append(_stratified(name, n, lo, hi, random.Random(int(ss.generate_state(1)[0]))))
        return heapq.merge(*streams)

    # --- ordinary traffic -----------------------------------------------------------------------------------

    def _next_session(self, t: float) -> tuple[float, _User]:
        r = self.r
        rate = self.sessions_per_s * _CURVE_MAX
        while True:
            t += r.expovariate(rate)
            u = self._pick_user()
            if u.busy_until > t or u.last_ts > t:  # away, or in a session already
                continue
            h = (t / _HOUR + u.tz) % 24.0
            i = int(h)
            f = h - i
            if r.random() * _CURVE_MAX < _CURVE[i] * (1.0 - f) + _CURVE[(i + 1) % 24] * f:
                return t, u

    def _session(
        self,
        t: float,
        u: _User,
        scen: str = NORMAL,
        n_orders: int | None = None,
        mult: float = 1.0,
        merchants: list[int] | None = None,
        promo: str | None = None,
        device: tuple[str, str] | None = None,
        ip: str | None = None,
        city: int | None = None,
        p_typo: float = _P_TYPO,
    ) -> float:
        """A session of ``u`` at ``t``: a login (maybe after a typo), then orders. Returns its last time."""
        r = self.r
        if scen == NORMAL and r.random() < _P_SIGNUP:
            u = self._signup(t, u)
        if device is None:
            if scen == NORMAL and r.random() < 0.005:
                device = self._device(phone=r.random() < 0.6)  # cleared cookies / private window
            else:
                device = u.devices[0] if r.random() < 0.55 else _pick(r, u.devices)
        dev, ua = device
        if city is None:
            cc, lat, lon = u.cc, u.lat, u.lon
        else:
            cc, _, lat, lon, _, _ = _CITIES[city]
        if ip is None:
            pref = _PREFIXES[cc]
            ip = self._ip(pref[-1]) if (city is not None or r.random() < 0.15) else _pick(r, u.ips)
        lat += (r.random() - 0.5) * 0.07  # where the IP geolocates, near home
        lon += (r.random() - 0.5) * 0.07
        x = r.random()
        method = "password" if x < _P_PASSWORD else ("token" if x < 0.9 else "sso")
        if method == "password" and r.random() < p_typo / _P_PASSWORD:
            if r.random() < 0.1:
                self._login(t, u.uid, False, dev, ua, ip, cc, lat, lon, method, 0, scen)
                t += r.uniform(4.0, 20.0)
            self._login(t, u.uid, False, dev, ua, ip, cc, lat, lon, method, 0, scen)
            t += r.uniform(4.0, 25.0)
        self._login(t, u.uid, True, dev, ua, ip, cc, lat, lon, method, 0, scen)
        if n_orders is None:
            n_orders = min(bisect_right(_CUM_ORDER_COUNTS, r.random()), len(_ORDER_COUNTS) - 1)
        for _ in range(n_orders):
            t += 20.0 + r.expovariate(1 / 180.0)
            m = _pick(r, merchants) if merchants else self._merchant(u)
            card = u.cards[0] if r.random() < 0.75 else _pick(r, u.cards)
            if scen == NORMAL and r.random() < 0.01:
                addr = self._hex("a")  # a gift to someone else
            else:
                addr = u.addrs[0] if r.random() < 0.8 else _pick(r, u.addrs)
            code = promo if promo is not None and r.random() < 0.4 else None
            if code is None and r.random() < 0.03:
                code = r.choice(_PROMOS_NORMAL)
            items = 1 + min(int(r.expovariate(0.9)), 9)
            self._order(
                t,
                u.uid,
                self._amount(u, m, mult),
                m,
                dev,
                ip,
                card,
                addr,
                u.created,
                items,
                code,
                cc,
                0,
                scen,
            )
        if t > u.last_ts:
            u.last_ts = t
        if scen == NORMAL:
            self.recent.append((t, u))
        return t

    def _signup(self, t: float, like: _User) -> _User:
        """A genuine new customer in ``like``'s city who created the account minutes ago (not kept)."""
        r = self.r
        return _User(
            uid=self._new_account_id(),
            city=like.city,
            cc=like.cc,
            lat=like.lat,
            lon=like.lon,
            tz=like.tz,
            devices=[self._device(phone=r.random() < 0.6)],
            ips=[self._ip(r.choice(_PREFIXES[like.cc][:-1]))],
            cards=[self._hex("c")],
            addrs=[self._hex("a")],
            created=t - r.uniform(60.0, 1800.0),
            mu=like.mu,
            sigma=like.sigma,
            favs=like.favs,
        )

    def _new_account_id(self) -> str:
        uid = f"u{self.next_uid:07d}"
        self.next_uid += 1
        return uid

    def _attacker_city(self, far_from: _User | None = None, min_km: float = 0.0) -> int:
        r = self.r
        idx = [c for c, _ in _ATTACK_CITIES]
        w = [w for _, w in _ATTACK_CITIES]
        for _ in range(20):
            ci = r.choices(idx, w)[0]
            if far_from is None or _km(far_from.lat, far_from.lon, _CITIES[ci][2], _CITIES[ci][3]) >= min_km:
                return ci
        far = [
            i
            for i in range(len(_CITIES))
            if far_from is None or _km(far_from.lat, far_from.lon, _CITIES[i][2], _CITIES[i][3]) >= min_km
        ]
        return r.choice(far) if far else r.randrange(len(_CITIES))

    # --- attacks (label 1) ----------------------------------------------------------------------------------

    def _account_takeover(self, t: float) -> None:
        r = self.r
        u = None
        recent = self.recent
        for _ in range(40):
            if not recent:
                break
            ts, cand = recent[-1 - r.randrange(min(len(recent), 1024))]
            if t - 3 * _HOUR <= ts <= t - 300.0 and cand.busy_until < t:
                u = cand
                break
        if u is None:
            u = self._pick_user()
        scen = "account_takeover"
        if r.random() < 0.75:
            ci = self._attacker_city(far_from=u, min_km=4000.0)
            cc, _, lat, lon, _, _ = _CITIES[ci]
            ip = self._ip(r.choice(_PREFIXES[cc][:-1]))
        else:  # a residential proxy or rented server in the victim's own country
            cc, lat, lon = u.cc, _CITIES[u.city][2], _CITIES[u.city][3]
            ip = self._ip(r.choice(_PREFIXES[cc]))
        dev, ua = self._hex("d"), r.choice(_UAS_DESKTOP + _UAS_PHONE)
        lat += r.gauss(0.0, 0.05)
        lon += r.gauss(0.0, 0.05)
        x = r.random()
        fails = 0 if x < 0.35 else (1 if x < 0.6 else r.randint(2, 5))
        for _ in range(fails):
            self._login(t, u.uid, False, dev, ua, ip, cc, lat, lon, "password", 1, scen)
            t += r.uniform(5.0, 40.0)
        self._login(t, u.uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
        addr = r.choice(self.drops)
        card = u.cards[0] if r.random() < 0.5 else self._hex("c")
        for _ in range(1 if r.random() < 0.7 else 2):
            t += r.uniform(45.0, 600.0)
            m = r.choice(self.pricey)
            amount = round(max(150.0, math.exp(u.mu) * r.uniform(3.0, 10.0)), 2)
            self._order(
                t, u.uid, amount, m, dev, ip, card, addr, u.created, r.randint(1, 3), None, cc, 1, scen
            )
        u.last_ts = max(u.last_ts, t)

    def _card_testing(self, t: float) -> None:
        r = self.r
        scen = "card_testing"
        if r.random() < 0.5:  # a rented server
            pref, ci = r.choice(_HOSTING)
        else:
            ci = self._attacker_city()
            pref = r.choice(_PREFIXES[_CITIES[ci][0]])
        cc, _, lat, lon, _, _ = _CITIES[ci]
        lat, lon = lat + r.gauss(0.0, 0.05), lon + r.gauss(0.0, 0.05)
        ips = [self._ip(pref) for _ in range(1 if r.random() < 0.7 else 2)]
        dev, ua = self._hex("d"), r.choice(_UAS_DESKTOP + _UAS_BOT[1:2])
        merchants = (
            [self._merchant()] if r.random() < 0.8 else [self._merchant() for _ in range(r.randint(2, 3))]
        )
        addr = self._hex("a") if r.random() < 0.5 else None
        n_orders = r.randint(12, 40)
        accounts = [self._new_account_id() for _ in range(r.randint(1, 3))]
        created = {a: t - r.uniform(120.0, 7200.0) for a in accounts}
        cards: list[str] = []
        for k in range(n_orders):
            uid = accounts[k * len(accounts) // n_orders]
            ip = ips[k % len(ips)]
            if k == 0 or uid != accounts[(k - 1) * len(accounts) // n_orders]:
                self._login(t, uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
                t += r.uniform(10.0, 40.0)
            card = r.choice(cards) if cards and r.random() < 0.1 else self._hex("c")
            cards.append(card)
            amount = round(r.uniform(0.5, 5.0), 2)
            self._order(
                t, uid, amount, r.choice(merchants), dev, ip, card, addr, created[uid], 1, None, cc, 1, scen
            )
            t += r.uniform(2.0, 20.0)

    def _promo_abuse(self, t: float) -> None:
        r = self.r
        scen = "promo_abuse"
        home = self._pick_user()  # the abuser lives somewhere ordinary
        cc, lat, lon = home.cc, home.lat, home.lon
        ips = [r.choice(home.ips)] + ([self._ip(_PREFIXES[cc][-1])] if r.random() < 0.3 else [])
        dev, ua = home.devices[0] if r.random() < 0.3 else self._device(phone=r.random() < 0.5)
        code = r.choice(_PROMOS_ABUSED)
        cards = [self._hex("c") for _ in range(r.randint(1, 3))]
        addrs = [self._hex("a") for _ in range(r.randint(1, 2))]
        m = self._merchant()
        for k in range(r.randint(5, 20)):
            uid = self._new_account_id()
            created = t - r.uniform(30.0, 600.0)
            ip = ips[k % len(ips)]
            self._login(t, uid, True, dev, ua, ip, cc, lat, lon, "password", 1, scen)
            t_o = t + r.uniform(30.0, 180.0)
            amount = round(r.uniform(8.0, 30.0), 2)
            merchant = m if r.random() < 0.7 else self._merchant()
            self._order(
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

    def _fraud_ring(self, t: float) -> None:
        r = self.r
        scen = "fraud_ring"
        ci = self._attacker_city()
        cc, _, lat, lon, _, _ = _CITIES[ci]
        devices = [self._device(phone=r.random() < 0.5) for _ in range(r.randint(2, 4))]
        ips = [self._ip(r.choice(_PREFIXES[cc])) for _ in range(r.randint(2, 4))]
        addrs = [self._hex("a") for _ in range(r.randint(2, 3))]
        cards = [self._hex("c") for _ in range(r.randint(3, 6))]
        merchants = r.sample(self.pricey, min(len(self.pricey), r.randint(3, 5)))
        room = self.t0 + 0.95 * self.span - t  # end before the stream does
        duration = min(r.uniform(6 * _HOUR, 72 * _HOUR), max(room, _HOUR))
        sessions: list[tuple[float, str, float]] = []
        for _ in range(r.randint(5, 20)):
            uid = self._new_account_id()
            created = t - r.uniform(1 * _DAY, 30 * _DAY)
            for _ in range(r.randint(1, 2)):
                sessions.append((t + r.uniform(0.0, duration), uid, created))
        for ts, uid, created in sorted(sessions):
            dev, ua = r.choice(devices)
            ip = r.choice(ips)
            self._login(
                ts,
                uid,
                True,
                dev,
                ua,
                ip,
                cc,
                lat + r.gauss(0, 0.03),
                lon + r.gauss(0, 0.03),
                "password",
                1,
                scen,
            )
            for _ in range(1 if r.random() < 0.7 else 2):
                ts += r.uniform(60.0, 900.0)
                amount = round(math.exp(r.gauss(math.log(180.0), 0.5)), 2)
                self._order(
                    ts,
                    uid,
                    amount,
                    r.choice(merchants),
                    dev,
                    ip,
                    r.choice(cards),
                    r.choice(addrs),
                    created,
                    r.randint(1, 3),
                    None,
                    cc,
                    1,
                    scen,
                )

    def _credential_stuffing(self, t: float) -> None:
        r = self.r
        scen = "credential_stuffing"
        hosts = [r.choice(_HOSTING) for _ in range(r.randint(1, 3))]
        ips = [(self._ip(p), ci) for p, ci in hosts]
        rotate = r.random() < 0.5  # spoofs a fresh fingerprint per attempt
        dev, ua = self._hex("d"), r.choice(_UAS_BOT)
        per_min = r.uniform(20.0, 40.0)
        n_users = len(self.users)
        # ids no account has: every account created in the stream emits an event, so next_uid < users + events
        lo = n_users + self.c.events
        hi = max(lo + 10_000, 10_000_000)
        spot = [(ip, ci, r.gauss(0.0, 0.05), r.gauss(0.0, 0.05)) for ip, ci in ips]
        for _ in range(r.randint(30, 80)):
            ip, ci, dlat, dlon = r.choice(spot)
            cc, _, lat, lon, _, _ = _CITIES[ci]
            lat, lon = lat + dlat, lon + dlon
            if r.random() < 0.6:
                uid, exists = self.users[r.randrange(n_users)].uid, True
            else:
                uid, exists = f"u{r.randrange(lo, hi):07d}", False
            ok = exists and r.random() < 0.08
            if rotate:
                dev, ua = self._hex("d"), r.choice(_UAS_DESKTOP)
            self._login(t, uid, ok, dev, ua, ip, cc, lat, lon, "password", 1, scen)
            t += r.expovariate(per_min / 60.0)

    # --- benign surprises (label 0) -------------------------------------------------------------------------

    def _seasoned_user(self, t: float, min_age_days: float, seen: bool = False) -> _User:
        """A user with an account older than ``min_age_days``, at home and not in a session (and, with
        ``seen``, already active in the stream), if one turns up in 50 draws."""
        for _ in range(50):
            u = self._pick_user()
            if (
                u.busy_until < t
                and u.last_ts < t
                and t - u.created >= min_age_days * _DAY
                and (not seen or u.last_ts > -math.inf)
            ):
                return u
        return u

    def _benign_new_phone(self, t: float) -> None:
        r = self.r
        u = self._seasoned_user(t, 60.0)
        device = self._device(phone=True)
        self._session(
            t,
            u,
            "benign_new_phone",
            n_orders=r.choice((1, 1, 2)),
            device=device,
            ip=r.choice(u.ips),
            p_typo=0.25,
        )
        u.devices.append(device)

    def _benign_travel(self, t: float) -> None:
        r = self.r
        for attempt in range(50):
            u = self._seasoned_user(t, 30.0, seen=attempt < 40)
            ci = r.randrange(len(_CITIES))
            if _CITIES[ci][0] == u.cc:
                continue
            need = _km(u.lat, u.lon, _CITIES[ci][2], _CITIES[ci][3]) / 700.0 * _HOUR + 2 * _HOUR
            if u.last_ts <= t - need:
                break
        else:
            return
        stay = r.uniform(1 * _DAY, 4 * _DAY)
        u.busy_until = t + max(stay, need)
        ip = self._ip(r.choice(_PREFIXES[_CITIES[ci][0]]))
        device = u.devices[0]
        end = self._session(
            t, u, "benign_travel", n_orders=r.choice((1, 1, 2)), device=device, ip=ip, city=ci
        )
        if r.random() < 0.5:
            self._session(
                end + r.uniform(4 * _HOUR, stay - 2 * _HOUR) if stay > 7 * _HOUR else end + _HOUR,
                u,
                "benign_travel",
                n_orders=1,
                device=device,
                ip=ip,
                city=ci,
            )

    def _benign_seasonal_spike(self, t: float) -> None:
        r = self.r
        hours = r.uniform(2.0, 3.0)
        sale = [self._merchant() for _ in range(r.randint(2, 4))]
        n = round(r.uniform(0.04, 0.06) * self.sessions_per_s * hours * _HOUR)
        starts = sorted(t + r.uniform(0.0, hours * _HOUR) for _ in range(n))
        for ts in starts:
            u = self._pick_user()
            if u.busy_until > ts:
                continue
            self._session(
                ts,
                u,
                "benign_seasonal_spike",
                n_orders=r.choice((1, 1, 2, 3)),
                mult=r.uniform(1.3, 2.2),
                merchants=sale,
                promo=_SALE_CODE,
            )

    def _benign_big_purchase(self, t: float) -> None:
        r = self.r
        u = self._seasoned_user(t, 365.0)
        m = r.choice(u.favs + self.pricey[:5])
        self._session(t, u, "benign_big_purchase", n_orders=0, device=u.devices[0], ip=u.ips[0])
        ts = t + r.uniform(60.0, 900.0)
        amount = round(math.exp(u.mu) * r.uniform(3.0, 5.0), 2)
        self._order(
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
