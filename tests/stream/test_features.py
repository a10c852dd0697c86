"""FeatureExtractor: windows against a brute-force reference, prequential order, novelty, geo-velocity, expiry,
bounded memory, label blindness, pickling and batch equivalence."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from stream.events import Label, Login, Order
from stream.features import DAY, LOGIN_WINDOWS, FeatureExtractor, window_name

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z, a multiple of every bucket width used here
ENTITIES = (("user", "user_id"), ("device", "device_id"), ("ip", "ip"), ("payment", "payment_id"),
            ("address", "address_id"), ("merchant", "merchant_id"))  # fmt: skip


def order(ts: float, user: str = "u1", amount: float = 10.0, **kw: object) -> Order:
    kw.setdefault("merchant_id", "m1")
    return Order(event_id=f"o-{user}-{ts}", ts=ts, user_id=user, order_id=f"{user}-{ts}", amount=amount,
                 currency="EUR", **kw)  # type: ignore[arg-type]  # fmt: skip


def login(ts: float, user: str = "u1", success: bool = True, **kw: object) -> Login:
    return Login(event_id=f"l-{user}-{ts}", ts=ts, user_id=user, success=success, **kw)  # type: ignore[arg-type]


def random_stream(seed: int, n: int, step: float, login_share: float = 0.3) -> list[Order | Login]:
    """Orders and logins of small id pools at times that are multiples of ``step`` (in order). The first event is
    an order carrying every optional id, so every order has every feature (see the optional-fields test)."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.integers(0, 4, n)) * step
    out: list[Order | Login] = []
    for i in range(n):
        pick = rng.integers(0, 6, 8)
        maybe = rng.random(8) < 0.15  # some ids missing
        if i == 0:
            maybe[:] = False
        if rng.random() < login_share and i > 0:
            out.append(login(float(ts[i]), f"u{pick[0]}", bool(rng.random() < 0.6),
                             ip=None if maybe[1] else f"ip{pick[1]}", device_id=f"d{pick[2]}",
                             label=int(rng.random() < 0.1), scenario=str(pick[5])))  # fmt: skip
        else:
            out.append(order(
                float(ts[i]), f"u{pick[0]}", float(np.round(rng.lognormal(3, 1), 2)),
                merchant_id=f"m{pick[1]}", device_id=None if maybe[2] else f"d{pick[2]}",
                ip=None if maybe[3] else f"ip{pick[3]}", payment_id=None if maybe[4] else f"p{pick[4]}",
                address_id=None if maybe[5] else f"a{pick[5]}", promo_code=f"P{pick[6] % 2}" if maybe[6] else None,
                country=f"C{pick[7] % 3}", label=int(rng.random() < 0.1), scenario=str(pick[7]),
                items=1 if i == 0 else None,
            ))  # fmt: skip
    return out


# -- windows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_order_windows_match_brute_force(seed: int) -> None:
    windows = (60.0, 600.0, 3600.0)  # buckets 5 s, 50 s, 300 s
    events = random_stream(seed, 1500, step=5.0)
    fx = FeatureExtractor(windows=windows)
    history: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    checked_exact = 0
    for e in events:
        x = fx.transform_one(e)
        if not isinstance(e, Order):
            continue
        t = e.ts
        for entity, attr in ENTITIES:
            key = getattr(e, attr)
            past = history[(entity, key)] if key is not None else []
            for w in windows:
                g = w / 12
                name = window_name(w)
                count, amount = x[f"{entity}_orders_{name}"], x[f"{entity}_amount_{name}"]
                inside = [a for s, a in past if s >= t - w]
                if t % g == 0:  # bucket-aligned: exact
                    assert count == len(inside), (entity, w, t)
                    assert amount == pytest.approx(sum(inside), rel=1e-9, abs=1e-9)
                    checked_exact += 1
                else:  # otherwise it covers [t - W - g, t] at most
                    wider = [a for s, a in past if s >= t - w - g]
                    assert len(inside) <= count <= len(wider), (entity, w, t)
            if key is not None:
                history[(entity, key)].append((t, e.amount))
    assert checked_exact > 1000


def test_login_windows_ratio_and_users_per_ip_match_brute_force() -> None:
    events = [e for e in random_stream(4, 1500, step=5.0, login_share=0.7) if isinstance(e, Login)]
    fx = FeatureExtractor()
    attempts: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    users_on_ip: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for e in events:
        x = fx.transform_one(e)
        t = e.ts
        for entity, key in (("user", e.user_id), ("ip", e.ip)):
            past = attempts[(entity, key)] if key is not None else []
            for w in LOGIN_WINDOWS:
                if t % (w / 12) == 0:
                    inside = [ok for s, ok in past if s >= t - w]
                    assert x[f"{entity}_logins_{window_name(w)}"] == len(inside)
                    assert x[f"{entity}_failed_logins_{window_name(w)}"] == inside.count(False)
            n, failed = x[f"{entity}_logins_1h"], x[f"{entity}_failed_logins_1h"]
            assert x[f"{entity}_failed_login_ratio_1h"] == (failed / n if n else 0.0)
            if key is not None:
                attempts[(entity, key)].append((t, e.success))
        if e.ip is not None:
            assert x["ip_login_users_1h"] == len({u for s, u in users_on_ip[e.ip] if s >= t - 3600})
            users_on_ip[e.ip].append((t, e.user_id))
        else:
            assert x["ip_login_users_1h"] == 0.0


def test_distinct_counts_and_promo_redemptions_match_brute_force() -> None:
    events = [e for e in random_stream(5, 1200, step=60.0, login_share=0.0) if isinstance(e, Order)]
    fx = FeatureExtractor()
    seen: list[Order] = []
    for e in events:
        x = fx.transform_one(e)
        t = e.ts
        day = [p for p in seen if p.ts >= t - DAY]

        def distinct(attr: str, value: str | None, of: str, day: list[Order] = day) -> float:
            if value is None:
                return 0.0
            return float(len({getattr(p, of) for p in day if getattr(p, attr) == value and getattr(p, of)}))

        assert x["user_devices_24h"] == distinct("user_id", e.user_id, "device_id")
        assert x["user_ips_24h"] == distinct("user_id", e.user_id, "ip")
        assert x["user_payments_24h"] == distinct("user_id", e.user_id, "payment_id")
        assert x["user_addresses_24h"] == distinct("user_id", e.user_id, "address_id")
        assert x["user_countries_24h"] == distinct("user_id", e.user_id, "country")
        assert x["device_users_24h"] == distinct("device_id", e.device_id, "user_id")
        assert x["ip_users_24h"] == distinct("ip", e.ip, "user_id")
        assert x["payment_users_24h"] == distinct("payment_id", e.payment_id, "user_id")
        assert x["address_users_24h"] == distinct("address_id", e.address_id, "user_id")
        assert x["device_payments_24h"] == distinct("device_id", e.device_id, "payment_id")
        assert x["ip_payments_24h"] == distinct("ip", e.ip, "payment_id")
        promo_users = {p.user_id for p in day if p.device_id == e.device_id and p.promo_code}
        assert x["device_promo_users_24h"] == (len(promo_users) if e.device_id else 0)
        for w in (3600.0, DAY):
            if e.promo_code is not None and t % (w / 12) == 0:
                got = x[f"promo_redemptions_{window_name(w)}"]
                assert got == sum(1 for p in seen if p.promo_code == e.promo_code and p.ts >= t - w)
        assert x["order_is_promo"] == (e.promo_code is not None)
        seen.append(e)


def test_distinct_counts_saturate_at_max_distinct() -> None:
    fx = FeatureExtractor(max_distinct=5)
    for i in range(20):
        x = fx.transform_one(order(T0 + i, f"u{i}", device_id="shared"))
        assert x["device_users_24h"] == min(i, 5)


def test_new_accounts_per_device() -> None:
    fx = FeatureExtractor()
    fx.transform_one(order(T0, "old", device_id="d", account_created_ts=T0 - 400 * DAY))
    fx.transform_one(order(T0 + 10, "fresh1", device_id="d", account_created_ts=T0 - 3600))
    fx.transform_one(order(T0 + 20, "fresh2", device_id="d"))  # unknown age: first seen now
    x = fx.transform_one(order(T0 + 30, "fresh3", device_id="d", account_created_ts=T0))
    assert x["device_new_accounts_24h"] == 2.0
    assert x["device_users_24h"] == 3.0
    assert x["account_age_days"] == pytest.approx(30 / DAY)
    assert fx.transform_one(order(T0 + 2 * DAY, "fresh4", device_id="d"))["device_new_accounts_24h"] == 0.0


# -- prequential, novelty, user history ---------------------------------------------------------------------------


def test_prequential_an_event_is_not_in_its_own_windows() -> None:
    fx = FeatureExtractor()
    a = fx.transform_one(order(T0, amount=100.0, device_id="d"))
    b = fx.transform_one(order(T0 + 1, amount=7.0, device_id="d"))
    assert a["user_orders_1m"] == a["user_amount_24h"] == a["device_orders_1h"] == 0.0
    assert (b["user_orders_1m"], b["user_amount_1m"], b["device_amount_24h"]) == (1.0, 100.0, 100.0)
    assert (a["order_amount"], b["order_amount"], b["order_log_amount"]) == (100.0, 7.0, math.log1p(7.0))


def test_novelty_flags() -> None:
    fx = FeatureExtractor(idle_ttl=10 * DAY)
    first = fx.transform_one(order(T0, device_id="d1", ip="i1", country="FR", payment_id="p1", address_id="a1"))
    assert first["user_first_seen"] == 1.0
    assert all(first[f"user_new_{k}"] == 0.0 for k in ("device", "ip", "country", "payment", "address"))
    same = fx.transform_one(order(T0 + 60, device_id="d1", ip="i1", country="FR", payment_id="p1", address_id="a1"))
    assert same["user_first_seen"] == 0.0
    assert all(same[f"user_new_{k}"] == 0.0 for k in ("device", "ip", "country", "payment", "address"))
    other = fx.transform_one(order(T0 + 120, device_id="d2", ip="i1", country="DE", payment_id="p2"))
    assert (other["user_new_device"], other["user_new_ip"], other["user_new_country"]) == (1.0, 0.0, 1.0)
    assert (other["user_new_payment"], other["user_new_address"]) == (1.0, 0.0)  # missing -> 0
    # a failed login from a new device teaches nothing; a successful one does
    assert fx.transform_one(login(T0 + 200, success=False, device_id="d9"))["user_new_device"] == 1.0
    assert fx.transform_one(order(T0 + 260, device_id="d9"))["user_new_device"] == 1.0
    assert fx.transform_one(login(T0 + 300, device_id="d8"))["user_new_device"] == 1.0
    assert fx.transform_one(order(T0 + 360, device_id="d8"))["user_new_device"] == 0.0
    # a value unused for longer than idle_ttl is forgotten (the user is still active through other values)
    fx.transform_one(order(T0 + 6 * DAY, device_id="d2"))
    assert fx.transform_one(order(T0 + 11 * DAY, device_id="d1"))["user_new_device"] == 1.0
    assert fx.transform_one(order(T0 + 11 * DAY + 1, device_id="d2"))["user_new_device"] == 0.0
    # a user whose only earlier events failed has nothing in memory: its first success is not a novelty
    fx.transform_one(login(T0, user="typo", success=False, device_id="p1", ip="i1", country="FR"))
    fx.transform_one(login(T0 + 5, user="typo", success=False, device_id="p1", ip="i1", country="FR"))
    ok = fx.transform_one(login(T0 + 20, user="typo", device_id="p1", ip="i1", country="FR"))
    assert (ok["user_first_seen"], ok["user_new_device"], ok["user_new_ip"], ok["user_new_country"]) == (0.0,) * 4
    assert fx.transform_one(login(T0 + 30, user="typo", device_id="p2"))["user_new_device"] == 1.0


def test_fresh_values_are_new_ones_picked_up_within_the_hour() -> None:
    """An account takeover orders from the device it logged in on minutes before, to an address it adds in the same
    session: neither is new at the second order, both are fresh. An hour later they are not."""
    fx = FeatureExtractor()
    kinds = ("device", "ip", "country", "payment", "address")

    def fresh(x: dict[str, float]) -> tuple[float, ...]:
        return tuple(x[f"user_fresh_{k}"] for k in kinds)

    base = fx.transform_one(order(T0, device_id="d1", ip="i1", country="FR", payment_id="p1", address_id="a1"))
    assert fresh(base) == (0.0,) * 5  # a brand-new user's values are not novelties
    t = T0 + DAY
    failed = fx.transform_one(login(t, success=False, device_id="d2", ip="i2"))
    assert (failed["user_new_device"], failed["user_fresh_device"], failed["user_fresh_ip"]) == (1.0, 1.0, 1.0)
    ok = fx.transform_one(login(t + 60, device_id="d2", ip="i2", country="FR"))
    assert (ok["user_new_device"], ok["user_fresh_device"], ok["user_fresh_country"]) == (1.0, 1.0, 0.0)
    first = fx.transform_one(order(t + 600, device_id="d2", ip="i2", country="FR", payment_id="p1", address_id="a2"))
    assert (first["user_new_device"], first["user_new_address"]) == (0.0, 1.0)
    assert fresh(first) == (1.0, 1.0, 0.0, 0.0, 1.0)
    second = fx.transform_one(order(t + 900, device_id="d2", ip="i2", country="FR", payment_id="p1", address_id="a2"))
    assert (second["user_new_device"], second["user_new_address"]) == (0.0, 0.0)
    assert fresh(second) == (1.0, 1.0, 0.0, 0.0, 1.0)
    # d2 and i2 became known at t + 60 (the failed attempt taught nothing), a2 at t + 600
    later = fx.transform_one(order(t + 3661, device_id="d2", ip="i2", payment_id="p1", address_id="a2"))
    assert fresh(later) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert fresh(fx.transform_one(order(t + 4201, device_id="d2", address_id="a2"))) == (0.0,) * 5
    # only the attribute's last new value is fresh; a known value stays not fresh
    fx.transform_one(login(t + 5000, device_id="d3"))
    fx.transform_one(login(t + 5060, device_id="d4"))
    assert fx.transform_one(order(t + 5120, device_id="d4"))["user_fresh_device"] == 1.0
    assert fx.transform_one(order(t + 5180, device_id="d3"))["user_fresh_device"] == 0.0
    assert fx.transform_one(order(t + 5240, device_id="d1"))["user_fresh_device"] == 0.0
    # a brand-new account's first device is not fresh on its second event either
    fx.transform_one(login(t, user="u2", device_id="d7"))
    assert fx.transform_one(order(t + 60, user="u2", device_id="d7"))["user_fresh_device"] == 0.0


def test_user_distinct_counts_only_count_the_last_day() -> None:
    fx = FeatureExtractor()
    fx.transform_one(order(T0, device_id="d1", payment_id="p1"))
    fx.transform_one(order(T0 + 2 * DAY, device_id="d2", payment_id="p2"))
    x = fx.transform_one(order(T0 + 2 * DAY + 60, device_id="d3"))
    assert (x["user_devices_24h"], x["user_payments_24h"], x["user_new_device"]) == (1.0, 1.0, 1.0)
    y = fx.transform_one(order(T0 + 2 * DAY + 120, device_id="d1"))  # remembered, though not in the last day
    assert (y["user_devices_24h"], y["user_new_device"]) == (2.0, 0.0)


def test_user_memory_is_bounded_by_max_known() -> None:
    fx = FeatureExtractor(max_known=4)
    for i in range(10):
        fx.transform_one(order(T0 + i, device_id=f"d{i}"))
    x = fx.transform_one(order(T0 + 20, device_id="d0"))  # pushed out by d6..d9
    assert x["user_new_device"] == 1.0 and x["user_devices_24h"] == 4.0
    assert fx.transform_one(order(T0 + 21, device_id="d9"))["user_new_device"] == 0.0


def test_amount_against_the_users_history() -> None:
    fx = FeatureExtractor()
    xs = [fx.transform_one(order(T0 + i * 60, amount=a)) for i, a in enumerate((20.0, 22.0, 19.0, 21.0, 900.0))]
    assert [x["user_amount_z"] for x in xs[:3]] == [0.0, 0.0, 0.0]  # fewer than 3 earlier orders
    assert abs(xs[3]["user_amount_z"]) < 3.0
    assert xs[4]["user_amount_z"] == 10.0  # clipped
    assert xs[0]["user_amount_ratio_max"] == 1.0
    assert xs[4]["user_amount_ratio_max"] == pytest.approx(901.0 / 23.0)
    low = fx.transform_one(order(T0 + 600, amount=1.0))["user_amount_z"]
    assert low < -1.0


def test_account_age_and_seconds_since_last_login() -> None:
    fx = FeatureExtractor()
    horizon = 30 * DAY
    a = fx.transform_one(order(T0, account_created_ts=T0 - 3 * DAY))
    assert a["account_age_days"] == pytest.approx(3.0)
    assert a["user_seconds_since_last_login"] == horizon  # never logged in
    fx.transform_one(login(T0 + 100))
    fx.transform_one(login(T0 + 200, success=False))
    b = fx.transform_one(order(T0 + 400))  # age from the account_created_ts seen before
    assert b["account_age_days"] == pytest.approx(3.0 + 400 / DAY)
    assert b["user_seconds_since_last_login"] == 300.0  # the last *successful* one
    c = fx.transform_one(login(T0 + 500))
    assert c["user_seconds_since_prev_login"] == 300.0 and c["user_seconds_since_last_login"] == 400.0
    new = fx.transform_one(login(T0 + 600, "newbie"))
    assert new["account_age_days"] == 0.0 and new["user_first_seen"] == 1.0
    assert new["user_seconds_since_prev_login"] == horizon


def test_geo_velocity_between_known_cities() -> None:
    fx = FeatureExtractor()
    paris, new_york, london = (48.8566, 2.3522), (40.7128, -74.0060), (51.5074, -0.1278)
    first = fx.transform_one(login(T0, lat=paris[0], lon=paris[1]))
    assert first["login_velocity_kmh"] == first["login_distance_km"] == 0.0  # nothing to compare with
    nyc = fx.transform_one(login(T0 + 7200, lat=new_york[0], lon=new_york[1]))
    assert nyc["login_distance_km"] == pytest.approx(5837, rel=0.005)
    assert nyc["login_velocity_kmh"] == pytest.approx(5837 / 2, rel=0.005)
    blind = fx.transform_one(login(T0 + 7300))  # no coordinates: 0, and the reference stays New York
    assert blind["login_velocity_kmh"] == blind["login_distance_km"] == 0.0
    hop = fx.transform_one(login(T0 + 7310, lat=london[0], lon=london[1]))  # 5570 km in 110 s
    assert hop["login_distance_km"] == pytest.approx(5570, rel=0.005)
    assert hop["login_velocity_kmh"] == 20000.0  # capped
    assert fx.transform_one(login(T0 + 9000, lat=london[0], lon=london[1]))["login_velocity_kmh"] == 0.0


def test_distinct_users_logging_in_from_a_device_over_a_day() -> None:
    fx = FeatureExtractor()
    got = [fx.transform_one(login(T0 + 60 * i, f"u{i % 3}", device_id="d1"))["device_login_users_24h"]
           for i in range(6)]
    assert got == [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]  # before each attempt; the same users again do not add up
    assert fx.transform_one(login(T0 + 400, "u9", device_id="d2"))["device_login_users_24h"] == 0.0
    assert fx.transform_one(login(T0 + DAY + 400, "u9", device_id="d1"))["device_login_users_24h"] == 0.0
    assert fx.transform_one(login(T0 + DAY + 500, "u1"))["device_login_users_24h"] == 0.0  # no device
    # an order on the device does not count as a login, and the order's own device_users_24h ignores logins
    x = fx.transform_one(order(T0 + DAY + 600, "u5", device_id="d1"))
    assert x["device_users_24h"] == 0.0
    assert x["device_login_users_24h"] == 1.0  # an order reads the device's login users (u9 today) too
    assert fx.transform_one(login(T0 + DAY + 700, "u6", device_id="d1"))["device_login_users_24h"] == 1.0


def test_credential_stuffing_signals() -> None:
    fx = FeatureExtractor()
    for i in range(30):
        x = fx.transform_one(login(T0 + i, f"victim{i}", success=False, ip="bad"))
    assert x["ip_login_users_1h"] == 29.0
    assert x["ip_failed_logins_1m"] == 29.0 and x["ip_failed_login_ratio_1h"] == 1.0
    assert x["user_logins_1h"] == 0.0 and x["login_success"] == 0.0


# -- time, state, determinism -------------------------------------------------------------------------------------


def test_late_events_are_clamped_to_the_watermark() -> None:
    fx = FeatureExtractor()
    fx.transform_one(login(T0 + 100))
    late = fx.transform_one(login(T0 + 95, success=False))
    assert late["user_seconds_since_prev_login"] == 0.0  # never negative
    x = fx.transform_one(order(T0 + 90, account_created_ts=T0 + 120))
    assert x["account_age_days"] == 0.0 and x["user_seconds_since_last_login"] == 0.0
    y = fx.transform_one(order(T0 + 101))
    assert y["user_orders_1m"] == 1.0
    assert all(v >= 0.0 or k == "user_amount_z" for k, v in y.items())


def test_idle_entities_expire_and_come_back_new() -> None:
    fx = FeatureExtractor(idle_ttl=3600.0, expire_every=100)
    for i in range(100):
        fx.transform_one(order(T0 + i, f"u{i}", device_id=f"d{i}"))
    assert fx.stats()["entities_user"] == 100
    for i in range(100):  # 2 days later, one active user
        fx.transform_one(order(T0 + 2 * DAY + i, "active"))
    stats = fx.stats()
    assert stats["entities_user"] == 1 and stats["entities_device"] == 0 and stats["entities_merchant"] == 1
    back = fx.transform_one(order(T0 + 2 * DAY + 200, "u5", device_id="d5"))
    assert back["user_first_seen"] == 1.0 and back["device_orders_24h"] == 0.0


def test_one_shot_users_do_not_accumulate() -> None:
    fx = FeatureExtractor(idle_ttl=1.0, expire_every=1000)
    step = 60.0  # one new user a minute; anything idle for 26 h (the longest window and its buckets) goes
    peak = 0
    for i in range(60_000):
        fx.transform_one(login(T0 + i * step, f"u{i}"))
        if i % 1000 == 999:
            peak = max(peak, int(fx.stats(sample=1)["entities_user"]))
    assert peak <= 26 * 3600 / step + 1000 + 1
    assert fx.stats()["entities_user"] < 60_000 / 2


def test_a_flood_of_fresh_ids_is_capped_at_max_entities_least_recently_seen_first() -> None:
    # a bot flood inside the idle TTL: every event a new user, device and IP (one second apart, nothing expires)
    fx = FeatureExtractor(max_entities=500, expire_every=100)
    peak = 0
    for i in range(20_000):
        fx.transform_one(login(T0 + 1 + i, f"bot{i}", device_id=f"d{i}", ip=f"i{i}"))
        if i % 10 == 9:  # between two expiries: at most the cap plus the entities of expire_every events
            peak = max(peak, max(int(fx.stats(sample=1)[f"entities_{k}"]) for k in ("user", "device", "ip")))
    assert 500 <= peak <= 500 + 100
    # the least recently seen went first: the earliest bots are new again, the latest still known
    assert fx.transform_one(login(T0 + 30_000, "bot0", device_id="d0", ip="i0"))["user_first_seen"] == 1.0
    assert fx.transform_one(login(T0 + 30_001, "bot19999", device_id="d19999", ip="i19999"))["user_first_seen"] == 0.0


def test_below_the_cap_nothing_changes_and_old_checkpoints_get_the_default_cap() -> None:
    events = random_stream(3, 3000, step=5.0)
    a, b = FeatureExtractor(), FeatureExtractor(max_entities=10_000)
    assert [a.transform_one(e) for e in events] == [b.transform_one(e) for e in events]
    state = pickle.loads(pickle.dumps(a)).__dict__
    del state["max_entities"]  # what a checkpoint made before the cap holds
    old = FeatureExtractor.__new__(FeatureExtractor)
    old.__setstate__(state)
    assert old.max_entities == 1_000_000


def test_memory_stays_flat_for_one_busy_user() -> None:
    fx = FeatureExtractor()
    sizes = []
    for i in range(200_000):
        fx.transform_one(order(T0 + i * 2.0, "busy", amount=float(i % 97), device_id=f"d{i % 50}",
                               ip=f"i{i % 7}", payment_id="p", address_id="a", promo_code="P" if i % 9 else None))
        if i in (50_000, 199_999):  # after 28 h every window is full; then nothing may grow
            sizes.append(len(pickle.dumps(fx)))
    assert fx.stats()["entities"] == 50 + 7 + 1 + 1 + 1 + 1 + 1
    assert sizes[1] < sizes[0] * 1.05


def test_labels_change_nothing() -> None:
    fx = FeatureExtractor()
    for e in random_stream(6, 200, step=5.0):
        fx.transform_one(e)
    before = pickle.dumps(fx)
    assert fx.transform_one(Label(event_id="l", ts=T0 + 10**7, ref_event_id="x", label=1)) == {}
    assert pickle.dumps(fx) == before


def test_features_ignore_labels_and_scenarios() -> None:
    events = random_stream(7, 600, step=5.0)
    donors = np.random.default_rng(0).permutation(len(events))  # each event takes another's label and scenario
    shuffled = [dataclasses.replace(e, label=1 - (events[j].label or 0), scenario=events[j].scenario)
                for e, j in zip(events, donors, strict=True)]  # fmt: skip
    assert sum(a.label != b.label for a, b in zip(events, shuffled, strict=True)) > 100
    assert FeatureExtractor().transform_many(events) == FeatureExtractor().transform_many(shuffled)


def test_transform_many_equals_transform_one() -> None:
    events = random_stream(8, 800, step=5.0)
    one = FeatureExtractor()
    expected = [one.transform_one(e) for e in events]
    many = FeatureExtractor()
    got = many.transform_many(events[:300]) + many.transform_many(events[300:301]) + many.transform_many(events[301:])
    assert got == expected


def test_pickle_round_trip_continues_identically() -> None:
    events = random_stream(9, 1000, step=5.0)
    fx = FeatureExtractor(expire_every=64)
    fx.transform_many(events[:500])
    blob = pickle.dumps(fx, protocol=pickle.HIGHEST_PROTOCOL)
    copy = pickle.loads(blob)
    assert copy.transform_many(events[500:]) == fx.transform_many(events[500:])
    assert len(blob) / fx.stats()["entities"] < 2000  # modest checkpoints


# -- names, pass-through, config --------------------------------------------------------------------------------


def test_every_event_of_a_kind_has_the_same_documented_names() -> None:
    fx = FeatureExtractor(passthrough=False)
    names = set(fx.feature_names())
    keys: dict[str, set[frozenset[str]]] = {"order": set(), "login": set()}
    for e in random_stream(10, 300, step=5.0):
        x = fx.transform_one(e)
        assert all(isinstance(v, float) and math.isfinite(v) for v in x.values())
        keys[e.type].add(frozenset(x))
    assert len(keys["order"]) == len(keys["login"]) == 1
    emitted = set().union(*keys["order"], *keys["login"])
    assert emitted == names
    doc = (Path(__file__).parents[2] / "docs" / "features.md").read_text(encoding="utf-8")
    assert [n for n in sorted(names) if f"`{n}`" not in doc] == []


def test_orders_get_the_features_of_optional_fields_once_the_stream_carried_them() -> None:
    """A stream without devices (a card-transaction export, say) has no device_* columns stuck at 0; from the
    first order naming a device on, every order has them (0 when it names none), and a checkpoint keeps that."""
    fx = FeatureExtractor(passthrough=False)
    bare = fx.transform_one(order(T0, amount=5.0))
    names = set(fx._order_names)
    device_names = {n for n in names if n.startswith("device_")} | {
        "user_devices_24h", "user_new_device", "user_fresh_device"}
    optional = device_names | {n for n in names if n.startswith(("ip_", "payment_", "address_"))} | {
        f"user_{k}" for k in ("ips_24h", "new_ip", "fresh_ip", "payments_24h", "new_payment", "fresh_payment",
                              "addresses_24h", "new_address", "fresh_address", "countries_24h", "new_country",
                              "fresh_country")} | {"order_items", "account_age_days"}
    order_names = names
    assert set(bare) == order_names - optional
    with_device = fx.transform_one(order(T0 + 1, device_id="d1"))
    assert set(with_device) == set(bare) | device_names
    assert "account_age_days" not in with_device  # no order carried a creation time yet
    restored = pickle.loads(pickle.dumps(fx))
    again = restored.transform_one(order(T0 + 2))  # no device: its device features are there, at 0
    assert set(again) == set(with_device) and again["device_orders_1h"] == 0.0
    assert again["user_devices_24h"] == 1.0  # the user's device of the previous order is still known
    old = fx.__dict__.copy()
    del old["_seen"], old["_active"]  # a checkpoint from before: every feature, whatever the stream carried
    legacy = FeatureExtractor.__new__(FeatureExtractor)
    legacy.__setstate__(old)
    assert set(legacy.transform_one(order(T0 + 3))) == order_names
    layout3 = fx.__dict__.copy()  # before account_age_days waited for a creation time: it was always there
    layout3["_layout"] = 3
    older = FeatureExtractor.__new__(FeatureExtractor)
    older.__setstate__(layout3)
    assert older.transform_one(order(T0 + 4, device_id="d1"))["account_age_days"] == pytest.approx(4 / DAY)
    created = fx.transform_one(order(T0 + 5, device_id="d1", account_created_ts=T0 - DAY))
    assert created["account_age_days"] == pytest.approx(1.0 + 5 / DAY)
    assert "account_age_days" in fx.transform_one(order(T0 + 6))  # from then on in every order


def test_passthrough_features_never_shadow_engine_names() -> None:
    e = order(T0, features={"order_amount": 1.5, "model_score": 0.9, "in_order_amount": 2.0})
    x = FeatureExtractor().transform_one(e)
    assert x["order_amount"] == 10.0 and x["model_score"] == 0.9 and x["in_order_amount"] == 2.0
    assert x["in_in_order_amount"] == 1.5
    assert "model_score" not in FeatureExtractor(passthrough=False).transform_one(e)


def test_custom_windows_name_their_features() -> None:
    fx = FeatureExtractor(windows=[300, 30.0, 7200])
    assert fx.windows == (30.0, 300.0, 7200.0)
    x = fx.transform_one(order(T0, ip="i1"))
    assert {"user_orders_30s", "merchant_amount_5m", "ip_orders_2h"} <= set(x)
    assert "user_orders_1h" not in x


@pytest.mark.parametrize("kwargs", [{"windows": []}, {"windows": [-1]}, {"windows": [float("inf")]},
                                    {"windows": ["x"]}, {"idle_ttl": 0}, {"max_distinct": 0},
                                    {"max_known": 1.5}, {"expire_every": True}, {"max_entities": 0}])  # fmt: skip
def test_bad_configuration_is_a_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FeatureExtractor(**kwargs)  # type: ignore[arg-type]


def test_stats_reports_entities_and_bytes() -> None:
    fx = FeatureExtractor()
    fx.transform_many(random_stream(11, 300, step=5.0))
    st = fx.stats()
    kinds = ("user", "device", "ip", "payment", "address", "merchant", "promo")
    assert st["entities"] == sum(st[f"entities_{k}"] for k in kinds) > 0
    assert all(st[f"bytes_per_{k}"] > 0 for k in kinds if st[f"entities_{k}"])
    assert st["approx_bytes"] == pytest.approx(sum(st[f"entities_{k}"] * st[f"bytes_per_{k}"] for k in kinds), 1e-3)


@pytest.mark.parametrize("layout", [1, 2])
def test_a_checkpoint_of_an_older_record_layout_loads_and_continues(layout: int) -> None:
    """Device records used to end their slots before the login users (layout 1), user records before the fresh
    values (layouts 1 and 2); loading such a state inserts the slots."""
    events = random_stream(12, 600, step=5.0)
    fx = FeatureExtractor()
    fx.transform_many(events[:300])
    assert any(rec[18] is not None for rec in fx._users.values())  # some user picked up a fresh value
    old = pickle.loads(pickle.dumps(fx)).__dict__
    for rec in old["_users"].values():
        del rec[18]
    if layout == 1:
        for rec in old["_devices"].values():
            del rec[7]
        del old["_layout"]
    else:
        old["_layout"] = 2
    legacy = FeatureExtractor.__new__(FeatureExtractor)
    legacy.__setstate__(old)
    for rec in fx._users.values():  # what the old layouts never recorded: fresh values so far
        rec[18] = None
    if layout == 1:
        for rec in fx._devices.values():  # ... and logins per device so far
            rec[7] = None
    fx._seen |= 1 << 6  # ... and they always emitted account_age_days
    fx._active = fx._active_order_names()
    assert legacy.transform_many(events[300:]) == fx.transform_many(events[300:])
