"""The label join and delayed labels: bounded, expiring, in event-time order, and never early."""

from __future__ import annotations

import pickle

import pytest

from stream.config import Settings, load_settings
from stream.errors import ConfigError
from stream.eval.delayed_labels import DelayedLabels, parse_duration
from stream.events import Label, Order
from stream.labels import LabelStore
from stream.pipeline import Engine
from stream.sources import ListSource


def _order(i: int, ts: float, label: int | None = None, user: str = "u", merchant: str = "m",
           amount: float = 10.0) -> Order:
    return Order(event_id=f"e{i}", ts=ts, user_id=user, order_id=f"o{i}", amount=amount, currency="EUR",
                 merchant_id=merchant, label=label)


def test_store_joins_once_and_expires_by_ttl_and_size() -> None:
    store = LabelStore(max_size=2, ttl=100.0)
    store.put("a", 0.0, {"x": 1.0}, kind="order", entities={"user": "u"})
    j = store.join("a", 1)
    assert j is not None and j.x == {"x": 1.0} and j.y == 1 and j.entities == {"user": "u"}
    assert store.join("a", 1) is None  # joined once
    store.put("b", 10.0, {"x": 2.0})
    store.put("c", 20.0, {"x": 3.0})
    store.put("d", 30.0, {"x": 4.0})  # size 2: b goes
    assert store.join("b", 0) is None and len(store) == 2
    store.advance(125.0)  # c (20) is older than 125 - 100
    assert store.join("c", 0) is None and store.join("d", 0) is not None
    assert store.stats()["expired"] == 2
    assert pickle.loads(pickle.dumps(store)).ttl == 100.0


def test_store_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        LabelStore(max_size=0)
    with pytest.raises(ValueError):
        LabelStore(ttl=0)


def test_delayed_labels_are_injected_late_in_time_order_and_nothing_else_changes() -> None:
    evs = [_order(i, float(i * 10), label=i % 2) for i in range(10)] + [_order(99, 95.0)]
    out = [e for b in DelayedLabels(ListSource(evs, batch_size=3), delay=25.0) for e in b.events]
    orders = [e for e in out if e.type == "order"]
    labels = [e for e in out if e.type == "label"]
    assert orders == evs  # untouched, same order
    assert len(labels) == 10  # the unlabelled order gets none
    assert all(isinstance(lab, Label) for lab in labels)
    for lab in labels:
        ref = next(e for e in evs if e.event_id == lab.ref_event_id)
        assert lab.ts == ref.ts + 25.0 and lab.label == ref.label
        pos = out.index(lab)
        assert all(e.ts <= lab.ts for e in out[:pos] if e.type == "order")  # never before its time
        assert all(e.ts > lab.ts for e in out[pos + 1:] if e.type == "order")  # delivered before later events


def test_label_drops_round_up_to_the_drop_grid() -> None:
    evs = [_order(0, 1.0, label=1), _order(1, 200.0)]
    out = [e for b in DelayedLabels(ListSource(evs), delay=5.0, every=60.0) for e in b.events]
    assert [(e.type, e.ts) for e in out] == [("order", 1.0), ("label", 60.0), ("order", 200.0)]


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400.0 and parse_duration("1.5h") == 5400.0
    with pytest.raises(ConfigError):
        parse_duration("soon")


def _supervised_settings(batch: int, model: str = "logreg") -> Settings:
    base = load_settings(None, overrides={"engine.batch_size": batch}).data
    extra = {"refit_every": 100} if model == "boosting" else {}
    return Settings({**base,
                     "detectors": {"supervised": {"model": model, "warmup": 5, "features": ["order_amount"],
                                                  **extra}},
                     "ensemble": {**base["ensemble"], "weights": {"supervised": 1.0}},
                     "links": {**base["links"], "entity_risk": True}})


def _stream() -> list:
    evs = []
    for i in range(1200):
        fraud = int(i % 17 == 0)
        evs.append(_order(i, float(i), label=fraud, user=f"u{i % 50}", merchant=f"m{i % 7}",
                          amount=400.0 if fraud else 20.0 + (i % 13)))
    return evs


@pytest.mark.parametrize("model", ["logreg", "boosting", "mlp"])
def test_engine_learns_only_from_arrived_labels_and_is_batch_independent(model: str) -> None:
    settings = _supervised_settings(100, model)
    runs = []
    for batch in (1000, 37):
        engine = Engine(settings)
        risks = []
        for b in DelayedLabels(ListSource(_stream(), batch_size=batch), delay=200.0, every=50.0):
            out = engine.process(b.events)
            risks.extend(out.risk.tolist())
        runs.append((engine, risks))
    (e1, r1), (e2, r2) = runs
    assert r1 == r2  # same scores whatever the batch split
    det = e1.ensembles["order"].detectors["supervised"]
    assert det.ready and sum(det.counts) == 1200  # every label joined after its delay
    assert e1.label_store.stats()["missed"] == 0
    # Before the first label drop (ts 200) nothing is known: the supervised score is its 0.0 prior.
    engine = Engine(settings)
    evs = _stream()
    batches = list(DelayedLabels(ListSource(evs[:200], batch_size=50), delay=200.0, every=50.0))
    for b in batches[:-1]:  # the last batch is the labels still pending when the source ended
        engine.process(b.events)
    assert sum(engine.ensembles["order"].detectors["supervised"].counts) == 0
    assert all(e.type == "label" for e in batches[-1].events)
    # After learning, frauds (large amounts) outrank normal orders.
    fraud_r = [r for e, r in zip(evs, r1, strict=True) if e.label == 1 and e.ts > 600]
    normal_r = [r for e, r in zip(evs, r1, strict=True) if e.label == 0 and e.ts > 600]
    assert min(fraud_r) > sorted(normal_r)[len(normal_r) // 2]


def test_engine_snapshot_keeps_label_state() -> None:
    settings = _supervised_settings(100)
    engine = Engine(settings)
    for b in DelayedLabels(ListSource(_stream()[:600], batch_size=100), delay=200.0):
        engine.process(b.events)
    copy = Engine(settings)
    copy.restore(engine.snapshot())
    assert copy.label_store.stats() == engine.label_store.stats()
    m0 = {"merchant": "m0"}
    assert copy.entity_risk.features(m0, 600.0) == engine.entity_risk.features(m0, 600.0)


def test_window_collector_counts_the_window_and_drops_cards_known_before_the_day() -> None:
    import numpy as np

    from stream.eval.metrics import WindowCollector
    from stream.pipeline import Outcome

    day = 86400.0
    evs = [_order(0, 0.5 * day, label=1, user="a"), _order(1, 2.2 * day, label=1, user="a"),
           _order(2, 2.3 * day, label=0, user="b"), _order(3, 2.4 * day, label=1, user="c"),
           _order(4, 5.0 * day, label=1, user="d")]
    col = WindowCollector(eval_from=2 * day, eval_to=3 * day, k=2)
    col.add(Outcome(scored=evs[:1], risk=np.array([0.1]), alerted=np.array([False])))
    lab = Label(event_id="l0", ts=1.0 * day, ref_event_id="e0", label=1)  # a's fraud known on day 1
    col.add(Outcome(labels=[lab]))
    col.add(Outcome(scored=evs[1:], risk=np.array([0.9, 0.8, 0.7, 0.99]), alerted=np.zeros(4, dtype=bool)))
    rep = col.report()
    assert rep["eval_events"] == 3  # days 2 only
    assert col.known_since == {"a": 1.0 * day}
    assert rep["card_precision_at_k"] == 0.5  # top-2 without a: b (no fraud), c (fraud)
    hb = rep["handbook_protocol"]
    assert hb["events"] == 2 and hb["roc_auc"] == 0.0 and hb["card_precision_at_k"] == 0.5


def test_handbook_protocol_knows_cards_only_through_frauds_since_known_from_and_drops_found_cards() -> None:
    import numpy as np

    from stream.eval.metrics import WindowCollector
    from stream.pipeline import Outcome

    day = 86400.0
    col = WindowCollector(eval_from=3 * day, eval_to=6 * day, k=1, known_from=1 * day)
    early = [_order(0, 0.5 * day, label=1, user="a"), _order(1, 1.5 * day, label=1, user="b")]
    col.add(Outcome(scored=early, risk=np.array([0.5, 0.5]), alerted=np.zeros(2, dtype=bool)))
    col.add(Outcome(labels=[Label(event_id="l0", ts=2 * day, ref_event_id="e0", label=1),
                            Label(event_id="l1", ts=2 * day, ref_event_id="e1", label=1)]))
    # day 3: a (fraud, known only through a fraud before known_from) and b (known) -> b leaves the protocol set
    # day 4: c is found (fraud, top-1); day 5: c again tops the list but was found, so d (no fraud) is the top-1
    evs = [_order(2, 3.1 * day, label=1, user="a"), _order(3, 3.2 * day, label=1, user="b"),
           _order(4, 4.1 * day, label=1, user="c"), _order(5, 5.1 * day, label=1, user="c"),
           _order(6, 5.2 * day, label=0, user="d"), _order(7, 3.3 * day, label=0, user="e")]
    evs.sort(key=lambda e: e.ts)
    risk = {"a": 0.9, "b": 0.95, "c": 0.9, "d": 0.5, "e": 0.1}
    col.add(Outcome(scored=evs, risk=np.array([risk[e.user_id] for e in evs]), alerted=np.zeros(6, dtype=bool)))
    rep = col.report()
    assert col.known_since == {"a": 2 * day, "b": 2 * day}
    assert col.protocol_known_since == {"b": 2 * day}
    assert rep["card_precision_per_day"] == [0.0, 1.0, 1.0]  # a and b dropped on day 3 (e left); c counted twice
    hb = rep["handbook_protocol"]
    assert hb["events"] == 5 and hb["positives"] == 3  # b's event left, a's stayed
    assert hb["card_precision_per_day"] == [1.0, 1.0, 0.0]


def test_a_store_pickled_before_it_kept_an_ordered_dict_loads_in_order_and_evicts_the_oldest() -> None:
    store = LabelStore(max_size=3, ttl=1e9)
    for i in range(3):
        store.put(f"e{i}", float(i), {"x": float(i)})
    state = pickle.loads(pickle.dumps(store)).__dict__
    state["_items"] = dict(state["_items"])  # what a checkpoint of the earlier code holds
    old = LabelStore.__new__(LabelStore)
    old.__setstate__(state)
    old.put("e1", 3.0, {"x": 9.0})  # a replayed id moves to the back
    old.put("e3", 4.0, {"x": 3.0})  # full: the oldest, e0, goes
    assert old.join("e0", 1) is None and old.stats()["expired"] == 1
    assert old.join("e1", 1).x == {"x": 9.0} and old.join("e2", 0) is not None


def test_engine_snapshot_keeps_the_cohort_prior() -> None:
    base = _supervised_settings(100)
    settings = base.replace({"links.risk_prior": True, "links.prior_strength": 5.0})
    engine = Engine(settings)
    batches = list(DelayedLabels(ListSource(_stream(), batch_size=100), delay=200.0))
    for b in batches[:6]:
        engine.process(b.events)
    copy = Engine(settings)
    copy.restore(engine.snapshot())
    fresh = {"merchant": "never-seen"}
    assert copy.entity_risk.features(fresh, 600.0) == engine.entity_risk.features(fresh, 600.0)
    assert engine.entity_risk.features(fresh, 600.0)["risk_merchant_shrunk_1d"] > 0  # the cohort's rate
    for b in batches[6:]:  # both go on alike
        a, c = engine.process(b.events), copy.process(b.events)
        assert a.risk.tolist() == c.risk.tolist()
    assert copy.entity_risk.features(fresh, 1400.0) == engine.entity_risk.features(fresh, 1400.0)
