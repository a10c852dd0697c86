"""Entity risk counts only arrived labels within its windows; the link graph is bounded and forgets."""

from __future__ import annotations

import pickle

import pytest

from stream.links import EntityRisk, LinkGraph

DAY = 86400.0


def test_entity_risk_counts_arrived_labels_per_window() -> None:
    risk = EntityRisk(kinds=("merchant", "user"), windows=(DAY, 7 * DAY))
    for d in range(5):  # one label a day, frauds on days 3 and 4
        risk.learn({"merchant": "t1", "user": f"u{d}"}, int(d >= 3), arrived=d * DAY + 10.0)
    f = risk.features({"merchant": "t1", "user": "u4"}, ts=4 * DAY + 100.0)
    assert f["risk_merchant_labels_7d"] == 5.0 and f["risk_merchant_frauds_7d"] == 2.0
    assert f["risk_merchant_rate_7d"] == pytest.approx(0.4)
    assert f["risk_merchant_labels_1d"] == 1.0 and f["risk_merchant_rate_1d"] == 1.0
    assert f["risk_user_frauds_7d"] == 1.0
    other = risk.features({"merchant": "t2"}, ts=4 * DAY)
    assert other["risk_merchant_labels_7d"] == 0.0 and other["risk_merchant_rate_7d"] == 0.0
    assert "risk_user_rate_1d" in other  # every name present even without the entity
    later = risk.features({"merchant": "t1"}, ts=12 * DAY)
    assert later["risk_merchant_labels_7d"] == 0.0  # all arrived more than 7 days ago


def test_entity_risk_expires_idle_entities() -> None:
    risk = EntityRisk(kinds=("merchant",), windows=(DAY,), expire_every=1)
    risk.learn({"merchant": "old"}, 1, arrived=0.0)
    risk.learn({"merchant": "new"}, 0, arrived=10 * DAY)
    assert risk.size() == 1
    assert pickle.loads(pickle.dumps(risk)).size() == 1


def test_link_graph_groups_neighbours_confirmed_and_flagged() -> None:
    g = LinkGraph(window=DAY)
    g.observe("a", {"device": "d1"}, 0.0)
    g.observe("b", {"device": "d1", "payment": "p1"}, 10.0)
    g.observe("c", {"payment": "p1"}, 20.0)
    g.observe("z", {"device": "d9"}, 20.0)
    g.confirm("c", 30.0)
    g.flag("b", 31.0)
    fa = g.features("a", {"device": "d1"}, 40.0)
    assert fa == {"link_neighbours": 1.0, "link_group": 2.0, "link_confirmed": 0.0, "link_flagged": 1.0}
    fb = g.features("b", {}, 40.0)  # its own recent values count even when this event carries none
    assert fb["link_neighbours"] == 2.0 and fb["link_confirmed"] == 1.0
    assert g.features("a", {"device": "d1"}, 2 * DAY)["link_neighbours"] == 0.0  # links outside the window
    quiet = LinkGraph(window=DAY, flagged=False)  # the engine's default: no batch-split-dependent feature
    quiet.observe("a", {"device": "d1"}, 0.0)
    quiet.flag("a", 1.0)
    assert quiet.features("b", {"device": "d1"}, 2.0) == {"link_neighbours": 1.0, "link_group": 1.0,
                                                          "link_confirmed": 0.0}
    assert "link_flagged" not in quiet.features("z", {}, 2.0)


def test_link_graph_is_bounded() -> None:
    g = LinkGraph(window=10 * DAY, max_users=4, max_values=2, max_group=3, expire_every=50)
    for i in range(200):
        g.observe(f"u{i}", {"ip": "shared", "device": f"d{i}", "payment": f"p{i % 3}"}, float(i))
    assert max(len(v) for v in g._by_value.values()) <= 4
    assert max(len(v) for v in g._by_user.values()) <= 2
    f = g.features("new", {"ip": "shared"}, 300.0)
    assert f["link_neighbours"] == 4.0 and f["link_group"] <= 3.0
    g.observe("late", {"ip": "x"}, 100 * DAY)
    g._expire()
    assert g.size() == 2  # everything older than the window is gone


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        EntityRisk(windows=())
    with pytest.raises(ValueError):
        LinkGraph(max_users=0)
    # expire_every 0 used to pass here and divide by zero at the first label or linking event
    with pytest.raises(ValueError, match="expire_every"):
        EntityRisk(expire_every=0)
    with pytest.raises(ValueError, match="expire_every"):
        LinkGraph(expire_every=0)


@pytest.mark.parametrize("graph", [True, False])
def test_default_linked_accounts_rule_reads_the_graph(graph: bool) -> None:
    """A ring's next account logs in from a device nobody used yet, but over an IP three ring accounts used:
    the shipped `linked_accounts` rule sees the group only through the link graph."""
    from stream.config import Settings, load_settings
    from stream.events import Login
    from stream.pipeline import Engine

    base = load_settings(None).data
    engine = Engine(Settings({**base, "links": {**base["links"], "graph": graph}}))
    rules = engine.ensembles["login"].detectors["rules"]
    ring = [Login(event_id=f"r{i}", ts=100.0 * i, user_id=f"ring{i}", success=True, device_id=f"dev{i % 2}",
                  ip="10.0.0.1") for i in range(3)]
    normal = [Login(event_id=f"n{i}", ts=50.0 + 100.0 * i, user_id=f"n{i}", success=True, device_id=f"nd{i}",
                    ip=f"10.1.0.{i}") for i in range(3)]
    engine.process(sorted(ring + normal, key=lambda e: e.ts))
    fresh = Login(event_id="r9", ts=400.0, user_id="ring9", success=True, device_id="dev-new", ip="10.0.0.1")
    x = engine.features.transform_one(fresh)
    if graph:
        x.update(engine.graph.features(fresh.user_id, {"device": "dev-new", "ip": "10.0.0.1"}, fresh.ts))
        assert x["link_group"] == 3.0
    assert [r.name for r in rules.fired(x)] == (["linked_accounts"] if graph else [])
    assert rules.score_one(x) == (0.7 if graph else 0.0)


def test_graph_alone_keeps_only_linked_events_users_for_their_labels() -> None:
    """With the graph the only reader of labels, the store keeps no vectors, skips events that link nobody,
    and a fraud label still reaches the graph: the neighbour sees link_confirmed."""
    from stream.config import Settings, load_settings
    from stream.events import Label, Login, Order
    from stream.pipeline import Engine

    base = load_settings(None).data
    engine = Engine(Settings({**base, "links": {**base["links"], "graph": True}}))

    def order(i: int, ts: float, user: str, device: str | None) -> Order:
        return Order(event_id=f"o{i}", ts=ts, user_id=user, order_id=f"o{i}", amount=20.0, currency="EUR",
                     merchant_id="m", device_id=device)

    engine.process([order(1, 1.0, "a", "d1"), order(2, 2.0, "b", None), order(3, 3.0, "c", "d1"),
                    order(4, 3.5, "a", "d2"),
                    Login(event_id="f1", ts=3.6, user_id="a", success=False, device_id="d9", ip="10.0.0.9")])
    items = engine.label_store._items
    assert set(items) == {"o1", "o3", "o4"}  # o2 carried nothing that links, the failed login f1 linked nobody
    assert all(x == {} and ent == {"user": u} for (_, _, x, ent), u in zip(items.values(), "aca", strict=True))
    assert items["o1"][3] is items["o4"][3]  # one user's entries share one ids dict (memory)
    engine.process([Label(event_id="l1", ts=5.0, ref_event_id="o1", label=1)])
    assert engine.graph.features("c", {"device": "d1"}, 6.0)["link_confirmed"] == 1.0


def test_graph_starts_at_the_first_linking_event_whatever_the_batch_split() -> None:
    """A card-only stream never builds the graph; a stream whose first events link nothing gets link features
    from its first linking event on, the same at every batch size."""
    import numpy as np

    from stream.config import Settings, load_settings
    from stream.events import Order
    from stream.pipeline import Engine

    base = load_settings(None).data
    settings = Settings({**base, "links": {**base["links"], "graph": True}})

    def order(i: int, device: str | None) -> Order:
        return Order(event_id=f"o{i}", ts=float(i), user_id=f"u{i % 5}", order_id=f"o{i}", amount=10.0 + i % 7,
                     currency="EUR", merchant_id="m", device_id=device)

    cards = Engine(settings)
    cards.process([order(i, None) for i in range(50)])
    assert cards.graph is None and cards.label_store.stats()["held"] == 0

    evs = [order(i, None if i < 30 else f"d{i % 3}") for i in range(120)]
    seen: list[list[bool]] = []
    risks = []
    for batch in (120, 7, 1):
        engine = Engine(settings)
        linked, risk = [], []
        for k in range(0, len(evs), batch):
            chunk = evs[k : k + batch]
            xs: list = []
            original = engine.features.transform_many
            engine.features.transform_many = lambda es, xs=xs, f=original: xs.extend(f(es)) or xs[-len(es):]
            risk.extend(engine.process(chunk).risk.tolist())
            engine.features.transform_many = original
            linked.extend("link_group" in x for x in xs)
        seen.append(linked)
        risks.append(risk)
    assert seen[0] == [i >= 30 for i in range(120)]
    assert seen[0] == seen[1] == seen[2]
    np.testing.assert_array_equal(risks[0], risks[1])
    np.testing.assert_array_equal(risks[0], risks[2])


def test_a_failed_login_is_scored_against_the_graph_but_links_nobody() -> None:
    """A stuffing IP tries many accounts and gets into few: only the accounts it got into are tied to it (and so
    to each other); the failed attempts still see the group the IP is in."""
    from stream.config import Settings, load_settings
    from stream.events import Login
    from stream.pipeline import Engine

    base = load_settings(None).data
    engine = Engine(Settings({**base, "links": {**base["links"], "graph": True}}))
    tries = [Login(event_id=f"t{i}", ts=float(i), user_id=f"victim{i}", success=i % 10 == 0, device_id="bot",
                   ip="203.0.113.9") for i in range(30)]
    engine.process(tries)
    g = engine.graph
    assert set(g._by_value[("ip", "203.0.113.9")]) == {"victim0", "victim10", "victim20"}
    assert "victim1" not in g._by_user
    # victim1's own next login, from home: nothing ties it to the attacker's IP
    assert g.features("victim1", {"device": "home1", "ip": "198.51.100.1"}, 40.0)["link_group"] == 0.0
    assert g.features("victim10", {"device": "home10"}, 40.0)["link_group"] == 2.0
    x = engine.features.transform_one(Login(event_id="t99", ts=41.0, user_id="victim99", success=False,
                                            device_id="bot", ip="203.0.113.9"))
    x.update(g.features("victim99", {"device": "bot", "ip": "203.0.113.9"}, 41.0))
    assert x["link_neighbours"] == 3.0


def test_the_graph_is_capped_at_max_entries_least_recently_used_first() -> None:
    g = LinkGraph(max_entries=300)
    g.observe("old", {"device": "shared"}, ts=0.0)
    for i in range(10_000):  # a flood of fresh accounts on fresh devices and IPs, well inside the window
        g.observe(f"bot{i}", {"device": f"d{i}", "ip": f"i{i}"}, ts=1.0 + i)
        if i % 50 == 0:
            g.observe("old", {"device": "shared"}, ts=1.0 + i)  # used again and again: never the oldest
        assert len(g._by_user) <= 300 + 64 and len(g._by_value) <= 300 + 64  # the cap, plus its slack
    assert "old" in g._by_user and ("device", "shared") in g._by_value
    assert "bot0" not in g._by_user and "bot9999" in g._by_user
    g.observe("new", {"device": "shared"}, ts=20_000.0)
    assert g.features("new", {"device": "shared"}, ts=20_001.0)["link_neighbours"] == 1.0  # "old", still linked



# --- transfer: the cohort prior (risk_<kind>_shrunk_<w>) --------------------------------------------------------


def _cohort(k: float = 4.0) -> EntityRisk:
    """Merchant labels at day 0: m1..m4 one label each, two of them frauds (the cohort's rate is 1/2 with t1's)."""
    risk = EntityRisk(kinds=("merchant",), windows=(DAY, 7 * DAY), prior_strength=k)
    for m, y in (("m1", 1), ("m2", 1), ("m3", 0), ("m4", 0)):
        risk.learn({"merchant": m}, y, arrived=100.0)
    return risk


def test_shrunk_rate_of_an_entity_with_no_labels_is_its_cohort_rate() -> None:
    risk = _cohort()
    f = risk.features({"merchant": "fresh"}, ts=200.0)
    assert f["risk_merchant_labels_7d"] == 0.0 and f["risk_merchant_rate_7d"] == 0.0  # the rate knows nothing
    assert f["risk_merchant_shrunk_7d"] == 0.5 and f["risk_merchant_shrunk_1d"] == 0.5  # the cohort's rate
    assert risk.features({}, ts=200.0)["risk_merchant_shrunk_7d"] == 0.5  # an event without a merchant too
    plain = EntityRisk(kinds=("merchant",), windows=(DAY,))
    assert not any("shrunk" in n for n in plain.features({"merchant": "m"}, 0.0))  # off by default


def test_shrunk_rate_moves_to_the_entity_own_rate_as_its_labels_grow() -> None:
    risk = _cohort(k=4.0)
    seen = []
    for i in range(200):  # t1: every label a fraud
        risk.learn({"merchant": "t1"}, 1, arrived=200.0 + i)
        f = risk.features({"merchant": "t1"}, ts=500.0)
        seen.append(f["risk_merchant_shrunk_1d"])
    assert seen[0] > 0.5  # one fraud already moves it above the cohort's rate
    assert all(b > a for a, b in zip(seen[:-1], seen[1:], strict=True))  # then closer with every label
    f = risk.features({"merchant": "t1"}, ts=500.0)
    n, fr = f["risk_merchant_labels_1d"], f["risk_merchant_frauds_1d"]
    p = (2 + 200) / (4 + 200)  # the cohort now holds t1's labels too
    assert f["risk_merchant_shrunk_1d"] == pytest.approx((fr + 4.0 * p) / (n + 4.0))
    assert seen[-1] > 0.99 and f["risk_merchant_rate_1d"] == 1.0


def test_shrunk_rate_counts_labels_by_arrival_time_in_its_window() -> None:
    risk = _cohort(k=4.0)  # the cohort's labels arrived on day 0
    risk.learn({"merchant": "t1"}, 1, arrived=3 * DAY + 10.0)  # t1's one fraud arrives on day 3
    f = risk.features({"merchant": "t1"}, ts=3 * DAY + 20.0)
    # 1-day window: only t1's label (cohort rate 1): (1 + 4 * 1) / (1 + 4) = 1
    assert f["risk_merchant_shrunk_1d"] == 1.0
    # 7-day window: the cohort holds 5 labels, 3 frauds: (1 + 4 * 0.6) / (1 + 4)
    assert f["risk_merchant_shrunk_7d"] == pytest.approx((1 + 4 * 0.6) / 5)
    assert risk.features({"merchant": "fresh"}, ts=3 * DAY + 20.0)["risk_merchant_shrunk_1d"] == 1.0
    gone = risk.features({"merchant": "fresh"}, ts=20 * DAY)
    assert gone["risk_merchant_shrunk_7d"] == 0.0  # every label left the window: no rate to back off to
    assert len(risk._cohort["merchant"]) <= 7 + 1  # the cohort is bucketed like an entity: bounded


def test_shrunk_rate_survives_pickle_and_old_pickles_load_without_it() -> None:
    risk = _cohort()
    back = pickle.loads(pickle.dumps(risk))
    assert back.features({"merchant": "m1"}, 200.0) == risk.features({"merchant": "m1"}, 200.0)
    # a pickle made before the option: no prior_strength, no cohort lists, 3-name tuples
    old = EntityRisk(kinds=("merchant",), windows=(DAY,))
    old.learn({"merchant": "m1"}, 1, arrived=0.0)
    state = dict(old.__dict__)
    del state["prior_strength"], state["_cohort"], state["_csums"]
    state["_names"] = {k: [n[:3] for n in v] for k, v in state["_names"].items()}
    revived = EntityRisk.__new__(EntityRisk)
    revived.__setstate__(state)
    assert revived.prior_strength is None
    assert revived.features({"merchant": "m1"}, 10.0) == {"risk_merchant_labels_1d": 1.0,
                                                          "risk_merchant_frauds_1d": 1.0,
                                                          "risk_merchant_rate_1d": 1.0}
    revived.learn({"merchant": "m1"}, 0, arrived=20.0)
    assert revived.features({"merchant": "m1"}, 30.0)["risk_merchant_rate_1d"] == 0.5


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), True, "3"])
def test_bad_prior_strength_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="prior_strength"):
        EntityRisk(prior_strength=bad)  # type: ignore[arg-type]
