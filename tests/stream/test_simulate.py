"""The traffic simulator: deterministic, ordered, decodable, and each scenario carries its signature."""

from __future__ import annotations

import gzip
import itertools
import math
import statistics
from collections import Counter, defaultdict

import orjson
import pytest

from stream.errors import ConfigError
from stream.events import Event, Label, Login, Order, decode, encode
from stream.sim import (
    ATTACK_SCENARIOS,
    BENIGN_SCENARIOS,
    NORMAL,
    AttackRates,
    BenignRates,
    SimConfig,
    scenario_counts,
    simulate,
    write_jsonl,
)

N = 50_000


@pytest.fixture(scope="module")
def stream() -> list[Event]:
    return list(simulate(SimConfig(events=N, seed=7)))


def by(events: list[Event], scenario: str, kind: type | None = None) -> list:
    return [e for e in events if e.scenario == scenario and (kind is None or isinstance(e, kind))]


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def history(events: list[Event]) -> list[tuple[Event, set, set, Login | None]]:
    """For each event: the devices and addresses its user had used before it in legitimate (label 0)
    successful logins and orders, and the user's previous legitimate successful login."""
    devices: dict[str, set] = defaultdict(set)
    addrs: dict[str, set] = defaultdict(set)
    last_login: dict[str, Login] = {}
    out = []
    for e in events:
        if isinstance(e, Label):
            continue
        out.append((e, set(devices[e.user_id]), set(addrs[e.user_id]), last_login.get(e.user_id)))
        if e.label:
            continue
        if isinstance(e, Order):
            devices[e.user_id].add(e.device_id)
            addrs[e.user_id].add(e.address_id)
        elif e.success:
            devices[e.user_id].add(e.device_id)
            last_login[e.user_id] = e
    return out


# --- the stream as a whole ----------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    def encoded(seed: int) -> list[bytes]:
        return [encode(e) for e in simulate(SimConfig(events=4000, seed=seed))]

    first = encoded(11)
    assert encoded(11) == first
    assert encoded(-11) != first
    other = encoded(12)
    assert other != first
    assert len({orjson.loads(b)["user_id"] for b in other if b"user_id" in b}) > 100


def test_count_order_and_unique_ids(stream: list[Event]) -> None:
    assert len(stream) == N
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(stream))
    assert len({e.event_id for e in stream}) == N
    orders = [e for e in stream if isinstance(e, Order)]
    assert len({o.order_id for o in orders}) == len(orders)
    assert 0.3 < len(orders) / N < 0.6


def test_every_event_decodes_back_to_itself(stream: list[Event]) -> None:
    for e in stream:
        assert decode(encode(e)) == e


def test_labels_and_scenarios_are_set_and_consistent(stream: list[Event]) -> None:
    for e in stream:
        assert e.label in (0, 1)
        assert e.scenario in (NORMAL, *ATTACK_SCENARIOS, *BENIGN_SCENARIOS)
        assert e.label == (1 if e.scenario in ATTACK_SCENARIOS else 0)
    assert all(s.startswith("benign_") for s in BENIGN_SCENARIOS)


def test_every_scenario_is_present_at_default_rates(stream: list[Event]) -> None:
    counts = scenario_counts(stream)
    assert set(counts) == {NORMAL, "label", *ATTACK_SCENARIOS, *BENIGN_SCENARIOS}
    assert sum(counts.values()) == N


def test_attack_and_benign_shares_are_within_the_documented_range(stream: list[Event]) -> None:
    counts = scenario_counts(stream)
    attacks = sum(counts[s] for s in ATTACK_SCENARIOS) / N
    benign = sum(counts[s] for s in BENIGN_SCENARIOS) / N
    assert 0.003 <= attacks <= 0.006  # documented at 50k events: 0.3-0.6%
    assert 0.006 <= benign <= 0.01  # documented at 50k events: 0.6-1%


def test_zero_rates_give_only_ordinary_traffic() -> None:
    cfg = SimConfig(events=3000, seed=1, attacks=AttackRates(0, 0, 0, 0, 0), benign=BenignRates(0, 0, 0, 0))
    assert set(scenario_counts(simulate(cfg))) - {"label"} == {NORMAL}


def test_label_events_follow_orders_they_reference(stream: list[Event]) -> None:
    seen: dict[str, Event] = {}
    labels = 0
    for e in stream:
        if isinstance(e, Label):
            labels += 1
            ref = seen[e.ref_event_id]  # a label refers to an event already emitted
            assert isinstance(ref, Order)
            assert (e.label, e.scenario) == (ref.label, ref.scenario)
            assert e.source == ("chargeback" if e.label else "review")
            assert e.ts - ref.ts >= 600.0
        seen[e.event_id] = e
    assert labels > 50
    assert any(e.label == 1 for e in stream if isinstance(e, Label))


def test_no_labels_when_disabled() -> None:
    events = list(simulate(SimConfig(events=20_000, seed=2, labels=False)))
    assert not any(isinstance(e, Label) for e in events)


def test_generation_is_lazy_and_the_population_is_bounded() -> None:
    # a stream of 10^9 events: if simulate materialised it, this would never return
    first = list(itertools.islice(simulate(SimConfig(events=10**9, users=3000, seed=5)), 3000))
    assert len(first) == 3000
    base = {e.user_id for e in first if e.scenario == NORMAL and e.user_id < "u0003000"}
    assert 500 < len(base) <= 3000


def test_default_population_scales_with_events() -> None:
    assert SimConfig(events=200_000).n_users == 25_000
    assert SimConfig(events=1000).n_users == 2000
    assert SimConfig(events=1000, users=50).n_users == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"events": -1},
        {"events": 10.5},
        {"seed": "7"},
        {"start": "not a date"},
        {"rate_per_hour": 0},
        {"users": 0},
        {"label_normal_fraction": 1.5},
        {"attacks": AttackRates(-1, 0, 0, 0, 0)},
        {"benign": BenignRates(math.nan, 0, 0, 0)},
    ],
)
def test_bad_config_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SimConfig(**kwargs)


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_write_jsonl_writes_one_decodable_line_per_event(tmp_path, name: str) -> None:
    events = list(simulate(SimConfig(events=1500, seed=3)))
    path = tmp_path / name
    assert write_jsonl(iter(events), path) == 1500
    data = path.read_bytes()
    if name.endswith(".gz"):
        assert data[:2] == b"\x1f\x8b"
        data = gzip.decompress(data)
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 1501
    assert [decode(line) for line in lines[:-1]] == events


# --- ordinary traffic ---------------------------------------------------------------------------------------


def test_ordinary_traffic_has_users_sessions_and_typos(stream: list[Event]) -> None:
    logins = by(stream, NORMAL, Login)
    orders = by(stream, NORMAL, Order)
    assert len({e.user_id for e in logins}) > 5000
    failed = [e for e in logins if not e.success]
    assert 0.02 <= len(failed) / len(logins) <= 0.06
    # a typo is followed by a success of the same user, on the same device, within a minute
    next_ok: dict[str, float] = {}
    for e in reversed(logins):
        if e.success:
            next_ok[e.user_id] = e.ts
        elif e.user_id in next_ok:
            assert next_ok[e.user_id] - e.ts < 60.0
        else:  # the success would come after the stream's end
            assert stream[-1].ts - e.ts < 60.0
    # every ordinary order comes after a successful login of its user
    logged_in: dict[str, float] = {}
    for e in stream:
        if e.scenario == NORMAL and isinstance(e, Login) and e.success:
            logged_in[e.user_id] = e.ts
        elif e.scenario == NORMAL and isinstance(e, Order):
            assert 0 <= e.ts - logged_in[e.user_id] < 2 * 3600
    merchants = Counter(o.merchant_id for o in orders)
    assert len(merchants) > 100
    top = merchants.most_common(10)
    assert sum(c for _, c in top) > 0.25 * len(orders)  # Zipf popularity
    assert 0.01 < sum(1 for o in orders if o.promo_code) / len(orders) < 0.06


def test_ordinary_amounts_are_log_normal_per_user(stream: list[Event]) -> None:
    amounts = [o.amount for o in by(stream, NORMAL, Order)]
    logs = [math.log(a) for a in amounts]
    assert 20 < statistics.median(amounts) < 80
    assert statistics.mean(amounts) > statistics.median(amounts)  # right-skewed
    assert 0.6 < statistics.stdev(logs) < 1.3


def test_ordinary_logins_follow_a_diurnal_curve_in_local_time(stream: list[Event]) -> None:
    hours = Counter(int((e.ts / 3600 + e.lon / 15) % 24) for e in by(stream, NORMAL, Login))
    night = sum(hours[h] for h in (2, 3, 4))
    evening = sum(hours[h] for h in (19, 20, 21))
    assert evening > 4 * night


def test_habitual_devices_and_home_countries(stream: list[Event]) -> None:
    per_user_devices: dict[str, set] = defaultdict(set)
    per_user_countries: dict[str, set] = defaultdict(set)
    for e in by(stream, NORMAL, Login):
        per_user_devices[e.user_id].add(e.device_id)
        per_user_countries[e.user_id].add(e.country)
    users = list(per_user_devices)
    # 1-3 habitual devices; a new phone or a cleared browser now and then adds one
    assert sum(len(per_user_devices[u]) <= 3 for u in users) >= 0.97 * len(users)
    assert all(len(per_user_countries[u]) == 1 for u in users)  # ordinary traffic is from home
    assert len({c for cs in per_user_countries.values() for c in cs}) >= 15


# --- attacks ------------------------------------------------------------------------------------------------


def test_account_takeover_new_device_new_address_high_value(stream: list[Event]) -> None:
    hist = history(stream)
    usual: dict[str, list[float]] = defaultdict(list)
    for e in stream:
        if isinstance(e, Order) and e.scenario == NORMAL:
            usual[e.user_id].append(e.amount)
    logins = orders = impossible = recent = 0
    ratios: list[float] = []
    for e, devices, addrs, prev in hist:
        if e.scenario != "account_takeover":
            continue
        if isinstance(e, Login):
            if e.success:
                logins += 1
                assert e.device_id not in devices
                if prev is not None and e.ts - prev.ts < 4 * 3600:  # the victim was active hours before
                    recent += 1
                    hours = max(e.ts - prev.ts, 1.0) / 3600
                    impossible += km(prev.lat, prev.lon, e.lat, e.lon) / hours > 1000
        else:
            orders += 1
            assert e.address_id not in addrs and e.amount >= 150
            if len(usual[e.user_id]) >= 3:
                ratios.append(e.amount / statistics.median(usual[e.user_id]))
    assert logins >= 5 and orders >= logins
    assert recent >= 0.8 * logins
    assert impossible >= 0.25 * logins  # many arrive from far away, right after the user's own login
    assert not ratios or statistics.median(ratios) > 2.5  # several times the user's usual spend


def test_card_testing_one_device_many_cards_small_amounts_in_minutes(stream: list[Event]) -> None:
    orders = by(stream, "card_testing", Order)
    per_device: dict[str, list[Order]] = defaultdict(list)
    for o in orders:
        per_device[o.device_id].append(o)
    assert per_device
    for burst in per_device.values():
        cards = {o.payment_id for o in burst}
        assert len(cards) >= 10 and len(cards) >= 0.6 * len(burst)
        assert all(0.5 <= o.amount <= 5.0 for o in burst)
        assert burst[-1].ts - burst[0].ts < 30 * 60
        assert len({o.user_id for o in burst}) <= 3
        assert all(o.ts - o.account_created_ts < 3 * 3600 for o in burst)
    normal_devices = {e.device_id for e in stream if e.scenario == NORMAL and not isinstance(e, Label)}
    assert not normal_devices & set(per_device)


def test_credential_stuffing_few_ips_many_users_mostly_failed_fast(stream: list[Event]) -> None:
    logins = by(stream, "credential_stuffing", Login)
    per_ip: dict[str, list[Login]] = defaultdict(list)
    for e in logins:
        per_ip[e.ip].append(e)
    assert 1 <= len(per_ip) <= 3
    assert len({e.user_id for e in logins}) >= 25
    assert sum(not e.success for e in logins) >= 0.85 * len(logins)
    per_minute = len(logins) / max((logins[-1].ts - logins[0].ts) / 60, 1.0)
    assert per_minute >= 12
    # ids from a breached list: some exist on this platform, some never did; only existing accounts get in
    population = f"u{SimConfig(events=N).n_users:07d}"
    assert any(e.user_id < population for e in logins)
    assert any(e.user_id >= population for e in logins)
    assert all(e.user_id < population for e in logins if e.success)


def test_promo_abuse_new_accounts_on_one_device_same_code(stream: list[Event]) -> None:
    orders = by(stream, "promo_abuse", Order)
    per_device: dict[str, list[Order]] = defaultdict(list)
    for o in orders:
        per_device[o.device_id].append(o)
    for group in per_device.values():
        assert len({o.user_id for o in group}) >= 5
        assert len({o.promo_code for o in group}) == 1 and group[0].promo_code
        assert all(0 <= o.ts - o.account_created_ts < 20 * 60 for o in group)
        assert all(o.amount <= 30 for o in group)
        assert len({o.ip for o in group}) <= 2


def test_fraud_ring_accounts_share_devices_addresses_cards(stream: list[Event]) -> None:
    orders = by(stream, "fraud_ring", Order)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for o in orders:
        for key in (o.device_id, o.address_id, o.payment_id):
            parent[find("u:" + o.user_id)] = find(key)
    rings: dict[str, set] = defaultdict(set)
    for o in orders:
        rings[find("u:" + o.user_id)].add(o.user_id)
    assert rings and all(len(users) >= 4 for users in rings.values())
    users_per_card = defaultdict(set)
    for o in orders:
        users_per_card[o.payment_id].add(o.user_id)
    assert max(len(u) for u in users_per_card.values()) >= 2
    assert statistics.median(o.amount for o in orders) > 80


# --- benign surprises ---------------------------------------------------------------------------------------


def test_benign_travel_is_flight_feasible_and_abroad(stream: list[Event]) -> None:
    checked = 0
    for e, _, _, prev in history(stream):
        if e.scenario != "benign_travel" or not isinstance(e, Login) or prev is None:
            continue
        if prev.scenario == "benign_travel":
            continue
        checked += 1
        assert e.country != prev.country
        hours = (e.ts - prev.ts) / 3600
        assert km(prev.lat, prev.lon, e.lat, e.lon) <= 900 * hours
    assert checked >= 5


def test_benign_new_phone_is_a_new_device_at_home(stream: list[Event]) -> None:
    hist = history(stream)
    logins = [
        (e, d, p)
        for e, d, _, p in hist
        if e.scenario == "benign_new_phone" and isinstance(e, Login) and e.success
    ]
    assert logins
    for e, devices, prev in logins:
        assert e.device_id not in devices
        if prev is not None and prev.scenario == NORMAL:
            assert prev.country == e.country and km(prev.lat, prev.lon, e.lat, e.lon) < 100


def test_benign_big_purchase_is_several_times_the_usual_spend(stream: list[Event]) -> None:
    usual: dict[str, list[float]] = defaultdict(list)
    for o in by(stream, NORMAL, Order):
        usual[o.user_id].append(o.amount)
    big = by(stream, "benign_big_purchase", Order)
    assert big
    ratios = [o.amount / statistics.median(usual[o.user_id]) for o in big if len(usual[o.user_id]) >= 3]
    assert ratios and statistics.median(ratios) > 2
    assert all(o.ts - o.account_created_ts > 365 * 86400 for o in big)


def test_benign_seasonal_spike_concentrates_on_a_few_merchants(stream: list[Event]) -> None:
    orders = by(stream, "benign_seasonal_spike", Order)
    assert len(orders) >= 50
    assert len({o.merchant_id for o in orders}) <= 4
    assert orders[-1].ts - orders[0].ts < 4 * 3600
    assert len({o.user_id for o in orders}) >= 30
    assert any(o.promo_code == "SALE24" for o in orders)
