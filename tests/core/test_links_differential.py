"""The Rust link graph, entity risk and label store give exactly the Python reference's results.

Each stream is replayed through the calls :class:`stream.pipeline.Engine` makes per event (``_score`` and
``_learn_label``: the graph built at the first linking event, failed logins read the graph without linking, label
cuts, the label store's full or graph-only entries, flags after each scored part), once into
``stream.links`` / ``stream.labels`` and once into ``stream._core``, comparing every returned dict (values
bit for bit, and key order) and every join, then the sizes and the store's order at the end.
"""

from __future__ import annotations

import functools
import pickle
import zlib
from itertools import islice
from typing import Any

import pytest

from stream.events import Event, Label, Login, Order
from stream.labels import Joined, LabelStore
from stream.links import EntityRisk, LinkGraph
from stream.pipeline import _links, _shows_control, entity_ids
from stream.sim import SimConfig, simulate

core = pytest.importorskip("stream._core", reason="the compiled core is not built (scripts/build-core.sh)")

DAY = 86400.0
N = 25_000


def _same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, Joined):
        assert b is not None, f"{what}: Python joined, Rust did not"
        ev, x, y, kind, ts, ents = b
        assert (a.event_id, a.y, a.kind, a.ts) == (ev, y, kind, ts), what
        assert a.x == x, f"{what}: vectors differ"
        assert list(a.entities.items()) == list(ents.items()), what
    elif isinstance(a, dict):
        assert list(a.items()) == list(b.items()), f"{what}: {a} != {b}"  # values and key order
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


class Twin:
    """A Python object and its Rust port, called alike; each call's results must be identical."""

    def __init__(self, py: Any, rs: Any) -> None:
        self.py, self.rs = py, rs
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            a = getattr(self.py, name)(*args, **kw)
            b = getattr(self.rs, name)(*args, **kw)
            self.calls += 1
            _same(a, b, f"{name}{args[:3]}")
            return a
        return call

    def round_trip(self) -> None:
        """Snapshot and restore both (pickle for Python, serde/bincode for Rust)."""
        self.py = pickle.loads(pickle.dumps(self.py))
        self.rs = type(self.rs).restore(self.rs.snapshot())


def _alerted(e: Order | Login, x: dict[str, float]) -> bool:
    """A deterministic stand-in for the ensemble's alerts (some frauds, some well-linked accounts)."""
    return (e.label == 1 and zlib.crc32(e.event_id.encode()) % 3 != 0) or x.get("link_neighbours", 0.0) >= 4


class Replay:
    """The engine's per-event calls into the link state (stream/pipeline.py ``_score`` and ``_learn_label``)."""

    def __init__(self, graph: dict | None, risk: dict | None, store: dict, full: bool) -> None:
        self.graph_params = graph
        self.graph: Twin | None = None
        self.risk = Twin(EntityRisk(**risk), core.EntityRiskCore(**risk)) if risk is not None else None
        self.store = Twin(LabelStore(**store), core.LabelStoreCore(**store))
        self.full = full  # store the vector and every id (a label-learning detector), else graph-only entries
        self.shared: dict[str, dict[str, str]] = {}
        self.stats = {"joined": 0, "confirmed": 0, "linked": 0, "flagged": 0, "risky": 0}

    def twins(self) -> list[Twin]:
        return [t for t in (self.graph, self.risk, self.store) if t is not None]

    def score(self, part: list[Order | Login]) -> None:
        graph_from = 0
        if self.graph is None and self.graph_params is not None:
            graph_from = next((i for i, e in enumerate(part) if _links(e)), len(part))
            if graph_from < len(part):
                self.graph = Twin(LinkGraph(**self.graph_params), core.LinkGraphCore(**self.graph_params))
        ids = [entity_ids(e) for e in part]
        xs = []
        for i, (e, ent) in enumerate(zip(part, ids, strict=True)):
            x = {"amount": getattr(e, "amount", 1.0)}  # stands for the event's feature vector
            if self.risk is not None:
                f = self.risk.features(ent, e.ts)
                self.stats["risky"] += any(v > 0 for k, v in f.items() if "_frauds_" in k)
                x.update(f)
            if self.graph is not None and i >= graph_from:
                if _shows_control(e):
                    x.update(self.graph.features_then_observe(e.user_id, ent, e.ts))
                else:
                    x.update(self.graph.features(e.user_id, ent, e.ts))
                self.stats["linked"] += x["link_neighbours"] > 0
            xs.append(x)
        if self.full:
            for e, x, ent in zip(part, xs, ids, strict=True):
                self.store.put(e.event_id, e.ts, x, kind=e.type, entities=ent)
        elif self.graph is not None:
            kinds = self.graph.py.kinds
            for e, ent in zip(part, ids, strict=True):
                if _shows_control(e) and any(k in ent for k in kinds):
                    uid = ent["user"]
                    one = self.shared.get(uid)
                    if one is None:
                        if len(self.shared) >= 65536:
                            self.shared.clear()
                        one = self.shared[uid] = {"user": uid}
                    self.store.put(e.event_id, e.ts, {}, kind=e.type, entities=one)
        if self.graph is not None:
            for e, x in zip(part, xs, strict=True):
                if _alerted(e, x):
                    self.graph.flag(e.user_id, e.ts)
                    self.stats["flagged"] += 1

    def learn_label(self, label: Label) -> None:
        self.store.advance(label.ts)
        joined = self.store.join(label.ref_event_id, int(label.label or 0))
        if joined is None:
            return
        self.stats["joined"] += 1
        if self.risk is not None:
            self.risk.learn(joined.entities, joined.y, label.ts)
        if self.graph is not None and joined.y and "user" in joined.entities:
            self.graph.confirm(joined.entities["user"], label.ts)
            self.stats["confirmed"] += 1

    def run(self, events: list[Event], batch: int = 500, round_trip_at: int | None = None) -> None:
        pending: list[Order | Login] = []
        for n, e in enumerate(events):
            if n == round_trip_at:
                if pending:
                    self.score(pending)
                    pending = []
                for t in self.twins():
                    t.round_trip()
            if isinstance(e, Label):
                if pending:
                    self.score(pending)
                    pending = []
                self.learn_label(e)
            else:
                pending.append(e)
                if len(pending) >= batch:
                    self.score(pending)
                    pending = []
        if pending:
            self.score(pending)
        self.check_state()

    def check_state(self) -> None:
        if self.graph is not None:
            g = self.graph
            _same_state(g)
            g.py._expire()
            g.rs.expire()
            _same_state(g)
        if self.risk is not None:
            assert self.risk.rs.size() == self.risk.py.size()
        s = self.store
        assert s.rs.keys() == list(s.py._items)  # same items in the same order
        assert s.rs.stats() == s.py.stats()
        assert s.rs.watermark == s.py.watermark


@functools.cache
def sim_stream(seed: int) -> list[Event]:
    # labels 2 h late (not the default 36 h) so that most arrive within the stream
    return list(simulate(SimConfig(events=N, seed=seed, label_delay_s=2 * 3600.0)))


DEFAULT_GRAPH = {"window": 7 * DAY, "max_users": 32, "max_values": 16, "max_group": 256, "flagged": True}
SMALL_GRAPH = {"window": 3 * 3600.0, "max_users": 3, "max_values": 2, "max_group": 6, "expire_every": 700,
               "flagged": True, "max_entries": 40}
DEFAULT_RISK = {}
SMALL_RISK = {"kinds": ("merchant", "user", "ip", "device"), "windows": (7200.0, 3600.0, 86400.0),
              "bucket": 1800.0, "expire_every": 50}


@pytest.mark.parametrize("seed", [7, 11, 13, 17])
@pytest.mark.parametrize("config", ["default-full", "small-full", "default-graph-only", "small-graph-only",
                                    "default-prior-full", "small-prior-full"])
def test_sim_stream_replays_identically(seed: int, config: str) -> None:
    small = config.startswith("small")
    full = config.endswith("full")
    risk = dict(SMALL_RISK if small else DEFAULT_RISK)
    if "prior" in config:  # the cohort prior: shrunk rates, and a cohort bucket list per kind
        risk["prior_strength"] = 3.0 if small else 10.0
    r = Replay(graph=SMALL_GRAPH if small else DEFAULT_GRAPH, risk=risk if full else None,
               store={"max_size": 2500, "ttl": 2.5 * 3600.0} if small else {"max_size": 500_000, "ttl": 45 * DAY},
               full=full)
    events = sim_stream(seed)
    r.run(events, batch=97 if small else 500, round_trip_at=len(events) // 2)
    # the stream exercised what it should: links, labels joined, frauds confirmed, flags
    assert r.graph is not None and r.graph.calls > 0.9 * sum(not isinstance(e, Label) for e in events)
    least = (20, 30, 1) if small else (100, 100, 5)
    got = (r.stats["linked"], r.stats["joined"], r.stats["confirmed"])
    assert all(g >= n for g, n in zip(got, least, strict=True)), r.stats
    assert r.stats["flagged"] > 5
    if small:  # the caps bit: evictions happened on both sides alike
        assert r.store.py.stats()["expired"] > 1000
        assert r.graph.rs.slots()[0] < 2000  # slots stay bounded by the caps, not by the users seen


def test_caps_hold_under_a_flood_and_max_group_caps_the_group() -> None:
    """Fresh ids in a flood (LRU eviction of both tables), one busy value (max_users), one busy user
    (max_values), a big ring (max_group): identical features throughout."""
    params = {"window": DAY, "max_users": 5, "max_values": 3, "max_group": 7, "expire_every": 997, "max_entries": 70}
    g = Twin(LinkGraph(**params), core.LinkGraphCore(**params))
    for i in range(6000):
        t = float(i)
        g.features_then_observe(f"bot{i}", {"device": f"d{i}", "ip": f"i{i % 40}"}, t)
        g.features_then_observe(f"ring{i % 60}", {"payment": f"p{i % 9}", "address": f"a{i % 13}"}, t + 0.5)
        g.features_then_observe("busy", {"device": f"bd{i % 7}", "ip": "hub"}, t + 0.25)
        if i % 7 == 0:
            g.confirm(f"ring{i % 11}", t)
            g.flag(f"bot{i - 3}", t)
        if i % 500 == 0:
            g.round_trip()
        g.features(f"ring{(i * 7) % 60}", {"ip": "hub", "payment": "p1"}, t + 0.75)
    _same_state(g)


def _same_state(g: Twin) -> None:
    """The same tables, and Rust's slots alive are exactly the users and values Python still refers to."""
    py = g.py
    assert g.rs.table_sizes() == (len(py._by_user), len(py._by_value))
    users = set(py._by_user) | {u for us in py._by_value.values() for u in us} | set(py._confirmed) | set(py._flagged)
    values = set(py._by_value) | {v for vs in py._by_user.values() for v in vs}
    assert g.rs.live() == (len(users), len(values))


def test_the_comparison_can_fail() -> None:
    """Guard against a vacuous test: a Rust graph with another max_group gives other features on a ring stream."""
    events = sim_stream(7)[:8000]
    py, rs = LinkGraph(max_group=256), core.LinkGraphCore(max_group=5)
    differ = 0
    for e in events:
        if not isinstance(e, Label) and _shows_control(e):
            ent = entity_ids(e)
            differ += py.features_then_observe(e.user_id, ent, e.ts) != rs.features_then_observe(e.user_id, ent, e.ts)
    assert differ > 0


def test_parameters_are_validated_alike() -> None:
    for bad in ({"max_users": 0}, {"max_values": True}, {"max_group": 2.0}, {"window": 0.0},
                {"window": float("nan")}, {"max_entries": -1}):
        for cls in (LinkGraph, core.LinkGraphCore):
            with pytest.raises(ValueError):
                cls(**bad)
    for bad in ({"windows": ()}, {"windows": (DAY, -1.0)}, {"bucket": 0.0}, {"prior_strength": 0.0},
                {"prior_strength": -2.0}, {"prior_strength": float("nan")}, {"prior_strength": float("inf")}):
        for cls in (EntityRisk, core.EntityRiskCore):
            with pytest.raises(ValueError):
                cls(**bad)
    for bad in ({"max_size": 0}, {"max_size": False}, {"ttl": 0}, {"ttl": "1"}):
        for cls in (LabelStore, core.LabelStoreCore):
            with pytest.raises(ValueError):
                cls(**bad)
    a, b = EntityRisk(windows=(90.0, 7200.0, 86400.5)), core.EntityRiskCore(windows=(90.0, 7200.0, 86400.5))
    assert list(a.features({}, 0.0)) == b.feature_names() == list(b.features({}, 0.0))


def test_handbook_entity_risk_replays_identically() -> None:
    """The Fraud-Detection-Handbook stream (first 30k transactions, labels a day late in hourly drops), with the
    handbook config's entity risk (terminal = merchant, customer = user; 1/7/30-day windows)."""
    from stream.eval.data import shared_data_dir
    from stream.eval.delayed_labels import DelayedLabels
    from stream.sources import ColumnMapping, FileSource, ListSource

    folder = shared_data_dir("fraud_handbook", must_exist=False)
    path = folder / "transactions.csv.gz"
    if not path.exists():
        pytest.skip(f"no {path}")
    mapping = ColumnMapping.parse(
        type="order", features="none", drop="TX_FRAUD_SCENARIO,TX_TIME_SECONDS,TX_TIME_DAYS",
        map_spec="ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,amount=TX_AMOUNT,label=TX_FRAUD,"
                 "event_id=TRANSACTION_ID")
    src = FileSource([path], mapping=mapping)
    orders = list(islice((e for b in src for e in b.events), 30_000))
    src.close()
    events = [e for b in DelayedLabels(ListSource(orders, batch_size=2000), delay=DAY, every=3600.0)
              for e in b.events]
    r = Replay(graph=None, risk={"kinds": ("merchant", "user"), "windows": (DAY, 7 * DAY, 30 * DAY),
                                 "prior_strength": 10.0},
               store={"max_size": 500_000, "ttl": 45 * DAY}, full=True)
    r.run(events, batch=2000, round_trip_at=len(events) // 2)
    assert r.stats["joined"] > 20_000
    assert r.risk is not None and r.risk.calls > 50_000
    assert r.stats["risky"] > 20, r.stats  # events with counted frauds: the features are not all zero
