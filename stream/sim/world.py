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
With ``login_labels=True`` logins are labelled too, at the same shares and delays (``source="account_review"``
for attacks, ``"review"`` otherwise), from a generator of their own: the events do not change.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.events import Event, Label, Login, Order, encode, parse_ts
from stream.sim.config import ATTACK_SCENARIOS, BENIGN_SCENARIOS, CURRENCY, NORMAL, SimConfig
from stream.sim.data import (
    ATTACK_CITIES,
    CITIES,
    CUM_ORDER_COUNTS,
    CURVE,
    CURVE_MAX,
    DAY,
    EVENTS_PER_SESSION,
    HOUR,
    ORDER_COUNTS,
    P_PASSWORD,
    P_SIGNUP,
    P_TYPO,
    PREFIXES,
    PROMOS_NORMAL,
    UAS_DESKTOP,
    UAS_PHONE,
    km,
    pick,
    stratified,
)
from stream.sim.scenarios import CAMPAIGNS

__all__ = ["simulate", "write_jsonl", "scenario_counts", "Simulator", "User"]


def simulate(config: SimConfig) -> Iterator[Event]:
    """Yield ``config.events`` events in non-decreasing event time (ties in a fixed order).

    Every order and login carries ``label`` (0 or 1) and ``scenario``; every event has a unique ``event_id``
    (``sim<seed>-<n>``). Memory is bounded by the user population and the event rate, not by ``events``.
    """
    return Simulator(config).run()


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


@dataclass(slots=True)
class User:
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


class Simulator:
    """Merges three time-ordered sources into one stream: pending events (a heap), the next ordinary session
    (a thinned Poisson process following each user's local diurnal curve) and the next campaign start."""

    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.ss = np.random.SeedSequence([abs(config.seed), int(config.seed < 0), 0x7269736B])  # "risk"
        self.np = np.random.Generator(np.random.PCG64(self.ss))
        self.r = random.Random(int(self.ss.generate_state(1, dtype=np.uint64)[0]))
        self.t0 = parse_ts(config.start)
        self.span = config.events / config.rate_per_hour * HOUR  # expected length of the stream, seconds
        self.sessions_per_s = config.rate_per_hour / EVENTS_PER_SESSION / HOUR
        self.heap: list[tuple[float, int, type, dict[str, Any]]] = []
        self.seq = 0
        self.order_n = 0
        self.recent: deque[tuple[float, User]] = deque(maxlen=4096)
        self._build_world()

    # --- world ----------------------------------------------------------------------------------------------

    def _build_world(self) -> None:
        g, r = self.np, self.r
        n = self.c.n_users
        self.next_uid = n
        city_w = np.array([c[5] for c in CITIES])
        cities = g.choice(len(CITIES), size=n, p=city_w / city_w.sum()).tolist()
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

        self.users: list[User] = []
        for i in range(n):
            ci = cities[i]
            cc, _, lat, lon, tz, _ = CITIES[ci]
            pref = PREFIXES[cc]
            devices = [self.device(phone=r.random() < 0.6) for _ in range(n_dev[i])]
            self.users.append(
                User(
                    uid=f"u{i:07d}",
                    city=ci,
                    cc=cc,
                    lat=lat + jitter[i][0],
                    lon=lon + jitter[i][1],
                    tz=tz,
                    devices=devices,
                    ips=[self.ip(r.choice(pref[:-1])) for _ in range(n_ip[i])],
                    cards=[self.hex("c") for _ in range(n_card[i])],
                    addrs=[self.hex("a") for _ in range(n_addr[i])],
                    created=self.t0 - age_days[i] * DAY,
                    mu=math.log(median[i]),
                    sigma=sigma[i],
                    favs=favs[i],
                )
            )
        self.drops = [
            self.hex("a")
            for _ in range(min(1000, max(4, round(self.c.attacks.account_takeover * self.c.events / 3e4))))
        ]

    def hex(self, prefix: str) -> str:
        return f"{prefix}{self.r.getrandbits(48):012x}"

    def ip(self, prefix: str) -> str:
        r = self.r
        return f"{prefix}.{1 + int(r.random() * 254)}.{1 + int(r.random() * 254)}"

    def device(self, phone: bool) -> tuple[str, str]:
        return self.hex("d"), self.r.choice(UAS_PHONE if phone else UAS_DESKTOP)

    def _draws(self, cum: np.ndarray) -> list[int]:
        """A batch of indices drawn with weights ``cum`` (cumulative), in the order they are to be popped."""
        idx = np.searchsorted(cum, self.np.random(4096) * cum[-1], side="right")
        out: list[int] = np.minimum(idx, len(cum) - 1)[::-1].tolist()
        return out

    def pick_user(self) -> User:
        """A user, drawn by activity (heavy users more often)."""
        if not self.user_draws:
            self.user_draws = self._draws(self.cum_activity)
        return self.users[self.user_draws.pop()]

    def merchant(self, u: User | None = None) -> int:
        """A merchant: one of ``u``'s favourites 60% of the time, else by Zipf popularity."""
        if u is not None and self.r.random() < 0.6:
            return pick(self.r, u.favs)
        if not self.merchant_draws:
            self.merchant_draws = self._draws(self.cum_merchants)
        return self.merchant_draws.pop()

    def amount(self, u: User, merchant: int, mult: float = 1.0) -> float:
        v = math.exp(self.r.gauss(u.mu, u.sigma)) * math.sqrt(self.price[merchant]) * mult
        return round(max(1.0, v), 2)

    # --- emitting -------------------------------------------------------------------------------------------

    def push(self, cls: type, kw: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (kw["ts"], self.seq, cls, kw))

    def login(
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
        self.push(
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

    def order(
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
        self.push(
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
        # login labels draw from their own generator: turning them on leaves every event of the stream as it was
        r_login = random.Random(f"login-labels-{c.seed}") if c.labels and c.login_labels else None
        while emitted < c.events:
            t_camp = camp[0] if camp is not None else inf
            if heap and heap[0][0] <= t_sess and heap[0][0] <= t_camp:
                ts, _, cls, kw = heapq.heappop(heap)
                ev = cls(event_id=f"{prefix}{emitted:09d}", **kw)
                emitted += 1
                if cls is Order:
                    self._maybe_label(r, ts, ev.event_id, kw, label_fraud, label_normal, delay_mu, "chargeback")
                elif r_login is not None and cls is Login:
                    self._maybe_label(r_login, ts, ev.event_id, kw, label_fraud, label_normal, delay_mu,
                                      "account_review")
                yield ev
            elif camp is not None and t_camp <= t_sess:
                CAMPAIGNS[camp[1]](self, t_camp)
                camp = next(campaigns, None)
            else:
                if u_sess.busy_until <= t_sess and u_sess.last_ts <= t_sess:  # a campaign may have taken them
                    self._session(t_sess, u_sess)
                t_sess, u_sess = self._next_session(t_sess)

    def _maybe_label(self, rng: random.Random, ts: float, event_id: str, kw: dict[str, Any], p_fraud: float,
                     p_normal: float, delay_mu: float, fraud_source: str) -> None:
        """With probability ``p_fraud`` (a fraud) or ``p_normal`` (the others), a label for the event emitted at
        ``ts``, due a log-normal delay (median ``exp(delay_mu)``, at least 10 minutes) later, drawn from ``rng``."""
        lab = kw["label"]
        if rng.random() < (p_fraud if lab else p_normal):
            due = round(ts + max(600.0, math.exp(rng.gauss(delay_mu, 0.7))), 3)
            self.push(Label, {"ts": due, "ref_event_id": event_id, "label": lab,
                              "source": fraud_source if lab else "review", "scenario": kw["scenario"]})

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
                streams.append(stratified(name, n, lo, hi, random.Random(int(ss.generate_state(1)[0]))))
        return heapq.merge(*streams)

    # --- ordinary traffic -----------------------------------------------------------------------------------

    def _next_session(self, t: float) -> tuple[float, User]:
        r = self.r
        rate = self.sessions_per_s * CURVE_MAX
        while True:
            t += r.expovariate(rate)
            u = self.pick_user()
            if u.busy_until > t or u.last_ts > t:  # away, or in a session already
                continue
            h = (t / HOUR + u.tz) % 24.0
            i = int(h)
            f = h - i
            if r.random() * CURVE_MAX < CURVE[i] * (1.0 - f) + CURVE[(i + 1) % 24] * f:
                return t, u

    def _session(
        self,
        t: float,
        u: User,
        scen: str = NORMAL,
        n_orders: int | None = None,
        mult: float = 1.0,
        merchants: list[int] | None = None,
        promo: str | None = None,
        device: tuple[str, str] | None = None,
        ip: str | None = None,
        city: int | None = None,
        p_typo: float = P_TYPO,
    ) -> float:
        """A session of ``u`` at ``t``: a login (maybe after a typo), then orders. Returns its last time."""
        r = self.r
        if scen == NORMAL and r.random() < P_SIGNUP:
            u = self.signup(t, u)
        if device is None:
            if scen == NORMAL and r.random() < 0.005:
                device = self.device(phone=r.random() < 0.6)  # cleared cookies / private window
            else:
                device = u.devices[0] if r.random() < 0.55 else pick(r, u.devices)
        dev, ua = device
        if city is None:
            cc, lat, lon = u.cc, u.lat, u.lon
        else:
            cc, _, lat, lon, _, _ = CITIES[city]
        if ip is None:
            pref = PREFIXES[cc]
            ip = self.ip(pref[-1]) if (city is not None or r.random() < 0.15) else pick(r, u.ips)
        lat += (r.random() - 0.5) * 0.07  # where the IP geolocates, near home
        lon += (r.random() - 0.5) * 0.07
        x = r.random()
        method = "password" if x < P_PASSWORD else ("token" if x < 0.9 else "sso")
        if method == "password" and r.random() < p_typo / P_PASSWORD:
            if r.random() < 0.1:
                self.login(t, u.uid, False, dev, ua, ip, cc, lat, lon, method, 0, scen)
                t += r.uniform(4.0, 20.0)
            self.login(t, u.uid, False, dev, ua, ip, cc, lat, lon, method, 0, scen)
            t += r.uniform(4.0, 25.0)
        self.login(t, u.uid, True, dev, ua, ip, cc, lat, lon, method, 0, scen)
        if n_orders is None:
            n_orders = min(bisect_right(CUM_ORDER_COUNTS, r.random()), len(ORDER_COUNTS) - 1)
        for _ in range(n_orders):
            t += 20.0 + r.expovariate(1 / 180.0)
            m = pick(r, merchants) if merchants else self.merchant(u)
            card = u.cards[0] if r.random() < 0.75 else pick(r, u.cards)
            if scen == NORMAL and r.random() < 0.01:
                addr = self.hex("a")  # a gift to someone else
            else:
                addr = u.addrs[0] if r.random() < 0.8 else pick(r, u.addrs)
            code = promo if promo is not None and r.random() < 0.4 else None
            if code is None and r.random() < 0.03:
                code = r.choice(PROMOS_NORMAL)
            items = 1 + min(int(r.expovariate(0.9)), 9)
            self.order(
                t,
                u.uid,
                self.amount(u, m, mult),
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

    def signup(self, t: float, like: User) -> User:
        """A genuine new customer in ``like``'s city who created the account minutes ago (not kept)."""
        r = self.r
        return User(
            uid=self.new_account_id(),
            city=like.city,
            cc=like.cc,
            lat=like.lat,
            lon=like.lon,
            tz=like.tz,
            devices=[self.device(phone=r.random() < 0.6)],
            ips=[self.ip(r.choice(PREFIXES[like.cc][:-1]))],
            cards=[self.hex("c")],
            addrs=[self.hex("a")],
            created=t - r.uniform(60.0, 1800.0),
            mu=like.mu,
            sigma=like.sigma,
            favs=like.favs,
        )

    def new_account_id(self) -> str:
        uid = f"u{self.next_uid:07d}"
        self.next_uid += 1
        return uid

    def attacker_city(self, far_from: User | None = None, min_km: float = 0.0) -> int:
        r = self.r
        idx = [c for c, _ in ATTACK_CITIES]
        w = [w for _, w in ATTACK_CITIES]
        for _ in range(20):
            ci = r.choices(idx, w)[0]
            if far_from is None or km(far_from.lat, far_from.lon, CITIES[ci][2], CITIES[ci][3]) >= min_km:
                return ci
        far = [
            i
            for i in range(len(CITIES))
            if far_from is None or km(far_from.lat, far_from.lon, CITIES[i][2], CITIES[i][3]) >= min_km
        ]
        return r.choice(far) if far else r.randrange(len(CITIES))

    # --- benign surprises (label 0) -------------------------------------------------------------------------

    def seasoned_user(self, t: float, min_age_days: float, seen: bool = False) -> User:
        """A user with an account older than ``min_age_days``, at home and not in a session (and, with
        ``seen``, already active in the stream), if one turns up in 50 draws."""
        for _ in range(50):
            u = self.pick_user()
            if (
                u.busy_until < t
                and u.last_ts < t
                and t - u.created >= min_age_days * DAY
                and (not seen or u.last_ts > -math.inf)
            ):
                return u
        return u
