"""FeatureCore (Rust, ``core/src/features.rs``) against FeatureExtractor (Python, the reference): the same dicts,
key order included, with every value bit-identical, on simulated streams, the ULB and handbook files read through
FileSource, non-default parameters, out-of-order times, pass-through clashes, and a snapshot restored mid-stream.

Bit-identical is what the port aims at (same float operations in the same order, same libm): the comparison is on
``float.hex``, so a difference of one ulp fails and names the event and the feature. None was needed to relax."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from stream._core import FeatureCore

from stream.eval.data import shared_data_dir
from stream.events import Event, Label, Login, Order
from stream.features import FeatureExtractor
from stream.sim import SimConfig, simulate
from stream.sources import ColumnMapping, FileSource

T0 = 1_714_521_600.0
SIM_EVENTS = 25_000
FILE_ROWS = 30_000


def assert_same(expected: Sequence[dict[str, float]], got: Sequence[dict[str, float]], what: str) -> None:
    """Same length, same keys in the same order, bit-identical values; the first difference is named."""
    assert len(got) == len(expected), what
    for i, (x, y) in enumerate(zip(expected, got, strict=True)):
        if list(x) != list(y):
            missing = [k for k in x if k not in y][:5]
            extra = [k for k in y if k not in x][:5]
            pytest.fail(f"{what}: event {i}: keys differ (missing {missing}, extra {extra}, or order)")
        for k, v in x.items():
            w = y[k]
            if type(w) is not float or float(v).hex() != w.hex():
                pytest.fail(f"{what}: event {i}: {k} = {v!r} (Python) != {w!r} (Rust)")


def assert_non_trivial(xs: Sequence[dict[str, float]], at_least: int) -> None:
    """The dicts are not all empty or constant: at least ``at_least`` features take two or more values."""
    values: dict[str, set[float]] = {}
    for x in xs:
        for k, v in x.items():
            values.setdefault(k, set()).add(v)
    varying = [k for k, vs in values.items() if len(vs) > 1]
    assert len(varying) >= at_least, sorted(values)


def compare(events: Sequence[Event], what: str, **params: Any) -> list[dict[str, float]]:
    expected = FeatureExtractor(**params).transform_many(events)
    got = FeatureCore(**params).transform_many(events)
    assert_same(expected, got, what)
    return expected


def sim(seed: int, n: int = SIM_EVENTS) -> list[Event]:
    return list(simulate(SimConfig(events=n, seed=seed)))


# -- simulated traffic ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 11, 13, 17])
def test_simulated_streams_give_the_same_dicts(seed: int) -> None:
    events = sim(seed)
    kinds = {type(e) for e in events}
    assert {Order, Login} <= kinds
    xs = compare(events, f"simulate seed {seed}")
    assert sum(1 for e in events if isinstance(e, Label)) == sum(1 for x in xs if not x)  # labels give {}
    assert_non_trivial(xs, 60)
    assert any(x.get("login_velocity_kmh", 0.0) > 0 for x in xs)
    assert any(x.get("user_fresh_device", 0.0) == 1.0 for x in xs)


def test_non_default_parameters_and_small_caps() -> None:
    events = sim(11, 15_000)
    params: list[dict[str, Any]] = [
        {"windows": [7200, 30.0, 300, 30], "max_entities": 40, "expire_every": 97},
        {"max_distinct": 2, "max_known": 1, "idle_ttl": 3600.0, "expire_every": 50, "passthrough": False},
        {"windows": (1.5, 90.0, 3 * 86400.0), "idle_ttl": 86400.0 * 2, "max_entities": 1},
    ]
    for p in params:
        xs = compare(events, f"parameters {p}", **p)
        assert_non_trivial(xs, 40)
    # the caps bite: fewer entities than without them
    capped = FeatureCore(max_entities=40, expire_every=97)
    capped.transform_many(events)
    free = FeatureCore()
    free.transform_many(events)
    assert dict(capped.stats())["entities_user"] < dict(free.stats())["entities_user"]


def test_parameters_are_validated_as_in_python() -> None:
    for bad in ({"windows": []}, {"windows": [60, -1]}, {"windows": [30, 30.0000001]}, {"windows": "x"},
                {"idle_ttl": 0}, {"idle_ttl": True}, {"max_known": 0}, {"max_distinct": 2.0},
                {"expire_every": None}, {"max_entities": -3}, {"nope": 1}):  # fmt: skip
        with pytest.raises((ValueError, TypeError)) as py_err:
            FeatureExtractor(**bad)
        with pytest.raises(py_err.type) as rs_err:
            FeatureCore(**bad)
        assert str(rs_err.value) == str(py_err.value)
    core = FeatureCore(windows=[300, 30.0, 7200])
    fx = FeatureExtractor(windows=[300, 30.0, 7200])
    assert tuple(core.windows) == fx.windows and core.feature_names() == fx.feature_names()
    assert core.schema_names("order") == list(fx._order_names)
    assert core.schema_names("login") == list(fx._login_names)


# -- real files through the project's own reader -------------------------------------------------------------------


def read_file(path: Any, mapping: ColumnMapping, rows: int) -> list[Event]:
    source = FileSource([path], mapping=mapping)
    try:
        events = list(itertools.islice((e for b in source for e in b.events), rows))
    finally:
        source.close()
    return events


def data_file(*parts: str) -> Any:
    folder = shared_data_dir(parts[0], must_exist=False)
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} is missing")
    return folder.joinpath(*parts[1:])


def test_ulb_card_file_with_its_28_pass_through_features() -> None:
    path = data_file("creditcard_ulb", "creditcard.csv.gz")
    mapping = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                                  set_spec="user_id=card,merchant_id=unknown")  # README's --map
    events = read_file(path, mapping, FILE_ROWS)
    assert len(events) == FILE_ROWS and len(events[0].features) == 28
    xs = compare(events, "ULB")
    assert "V14" in xs[-1] and "device_orders_1m" not in xs[-1]  # pass-throughs, no device columns
    assert_non_trivial(xs, 35)


def test_fraud_handbook_stream() -> None:
    path = data_file("fraud_handbook", "transactions.csv.gz")  # mapped as in bench/handbook/README.md
    mapping = ColumnMapping.parse(
        type="order", features="none", drop="TX_FRAUD_SCENARIO,TX_TIME_SECONDS,TX_TIME_DAYS",
        map_spec="ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,amount=TX_AMOUNT,label=TX_FRAUD,"
                 "event_id=TRANSACTION_ID",
    )  # fmt: skip
    events = read_file(path, mapping, FILE_ROWS)
    assert len(events) == FILE_ROWS
    xs = compare(events, "handbook")
    assert max(x["user_orders_24h"] for x in xs) >= 2 and max(x["merchant_orders_1h"] for x in xs) >= 1
    assert_non_trivial(xs, 15)


# -- edge cases: late events, optional fields appearing, pass-through clashes, labels ------------------------------


def messy_stream(seed: int, n: int) -> list[Event]:
    """Small id pools (shared devices, IPs, cards), events up to 40 s late, optional fields that appear only
    mid-stream, account creation times in the future, logins with and without coordinates, labels, and
    pass-through features in varying key order, some named like engine features."""
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    t = T0
    for i in range(n):
        t += float(rng.exponential(20.0))
        ts = t - (float(rng.uniform(0, 40)) if rng.random() < 0.2 else 0.0)  # late
        ts = round(ts, 3) if rng.random() < 0.5 else ts
        pick = rng.integers(0, 8, 8)
        some = rng.random(8) < (0.0 if i < n // 4 else 0.8)  # optional fields from a quarter of the way on
        feats: dict[str, float] = {}
        if rng.random() < 0.3:
            names = ["score", "order_amount", "in_order_amount", "user_logins_1m", "rate"]
            for k in rng.permutation(names)[: int(rng.integers(1, 5))]:
                feats[str(k)] = float(rng.normal())
        common: dict[str, Any] = {"event_id": f"e{i}", "ts": ts, "user_id": f"u{pick[0]}", "features": feats}
        r = rng.random()
        if r < 0.05:
            out.append(Label(event_id=f"l{i}", ts=ts, ref_event_id=f"e{i - 1}", label=int(pick[1] % 2)))
        elif r < 0.45:
            geo = rng.random() < 0.7
            out.append(Login(**common, success=bool(rng.random() < 0.7),
                             device_id=f"d{pick[1]}" if rng.random() < 0.8 else None,
                             ip=f"ip{pick[2]}" if rng.random() < 0.8 else None,
                             country=f"C{pick[3] % 3}" if rng.random() < 0.5 else None,
                             lat=float(rng.uniform(-90, 90)) if geo else None,
                             lon=float(rng.uniform(-180, 180)) if geo else None))  # fmt: skip
        else:
            out.append(Order(
                **common, order_id=f"o{i}", amount=float(np.round(rng.lognormal(3, 1.5), 2)) * (rng.random() > 0.02),
                currency="EUR", merchant_id=f"m{pick[4] % 3}",
                device_id=f"d{pick[1]}" if some[0] else None, ip=f"ip{pick[2]}" if some[1] else None,
                payment_id=f"p{pick[5]}" if some[2] else None, address_id=f"a{pick[6]}" if some[3] else None,
                country=f"C{pick[3] % 3}" if some[4] else None, items=int(pick[7]) if some[5] else None,
                account_created_ts=ts + float(rng.normal(0, 3 * 86400)) if some[6] else None,
                promo_code=f"P{pick[7] % 2}" if rng.random() < 0.2 else None,
            ))  # fmt: skip
    return out


def test_late_events_optional_fields_and_pass_through_clashes() -> None:
    events = messy_stream(3, 12_000)
    assert sum(1 for a, b in itertools.pairwise(events) if b.ts < a.ts) > 1000
    xs = compare(events, "messy", expire_every=500, idle_ttl=6 * 3600.0)
    assert any("in_in_order_amount" in x for x in xs) and any("in_user_logins_1m" in x for x in xs)
    orders = [x for e, x in zip(events, xs, strict=True) if isinstance(e, Order)]
    assert "device_orders_1m" not in orders[0] and "device_orders_1m" in orders[-1]  # appeared mid-stream
    assert_non_trivial(xs, 60)
    compare(events, "messy, small caps", max_distinct=3, max_known=2, max_entities=5, expire_every=64)


def test_simulated_stream_with_late_events() -> None:
    rng = np.random.default_rng(5)
    events = [dataclasses.replace(e, ts=e.ts - float(rng.uniform(0, 120))) if rng.random() < 0.15 else e
              for e in sim(13, 15_000)]  # fmt: skip
    assert sum(1 for a, b in itertools.pairwise(events) if b.ts < a.ts) > 500
    compare(events, "simulate seed 13, late")


# -- state ---------------------------------------------------------------------------------------------------------


def test_snapshot_restore_mid_stream_continues_exactly() -> None:
    events = messy_stream(4, 6000) + sim(17, 8000)
    params = {"expire_every": 128, "max_entities": 300}
    fx = FeatureExtractor(**params)
    core = FeatureCore(**params)
    cut = 7000
    assert_same(fx.transform_many(events[:cut]), core.transform_many(events[:cut]), "before the snapshot")
    blob = core.snapshot()
    assert isinstance(blob, bytes) and len(blob) > 1000
    restored = FeatureCore()  # other parameters: the snapshot carries its own
    restored.restore(blob)
    pickled = pickle.loads(pickle.dumps(core))
    assert restored.snapshot() == blob == pickled.snapshot()
    expected = fx.transform_many(events[cut:])
    assert_same(expected, restored.transform_many(events[cut:]), "restored")
    assert_same(expected, pickled.transform_many(events[cut:]), "unpickled")
    assert_same(expected, core.transform_many(events[cut:]), "original")
    assert restored.snapshot() == core.snapshot()
    with pytest.raises(ValueError):
        FeatureCore().restore(blob[: len(blob) // 2])


def test_transform_columns_equals_the_dicts() -> None:
    events = messy_stream(6, 4000)
    dicts = FeatureCore().transform_many(events)
    names_o, m_o, names_l, m_l, idx_o, idx_l = FeatureCore().transform_columns(events)
    assert m_o.shape == (len(idx_o), len(names_o)) and m_l.shape == (len(idx_l), len(names_l))
    assert len(idx_o) + len(idx_l) == sum(1 for x in dicts if x)
    for names, m, idx in ((names_o, m_o, idx_o), (names_l, m_l, idx_l)):
        for row, i in zip(m, idx, strict=True):
            present = {n: v for n, v in zip(names, row.tolist(), strict=True) if v == v}
            assert present == dicts[i]
