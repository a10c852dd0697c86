"""The engine: deterministic at any batch split, checkpointable, blind to labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stream.config import default_settings
from stream.errors import CheckpointError
from stream.events import Label, Login, Order
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


@pytest.fixture(scope="module")
def events():
    return list(simulate(SimConfig(events=6000, seed=3)))


def run(engine: Engine, events, batch: int):
    risk, alerts = [], []
    for i in range(0, len(events), batch):
        out = engine.process(events[i : i + batch])
        risk.append(out.risk)
        alerts.extend(out.alerts)
    return np.concatenate(risk), alerts


def settings():
    # a small min_history so a 6k-event stream alerts
    return default_settings().replace({"engine.budget": 0.02, "ensemble.min_history": 100})


def test_same_results_at_any_batch_size(events):
    r1, a1 = run(Engine(settings()), events, 6000)
    r2, a2 = run(Engine(settings()), events, 97)
    r3, a3 = run(Engine(settings()), events, 1)
    assert a1, "the stream should raise alerts"
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(r1, r3)
    def decision(alerts):  # everything but the reasons' numbers, which read the models after the batch
        return [(a.alert_id, a.score, a.severity, a.action, dict(a.detector_scores)) for a in alerts]

    assert decision(a1) == decision(a2) == decision(a3)
    again = run(Engine(settings()), events, 97)[1]
    assert [a.to_json() for a in a2] == [a.to_json() for a in again], "same batching: byte-identical alerts"


def test_labels_in_the_batch_the_link_graph_starts_in_are_learned():
    """The graph starts at the first linking event, and labels feed it from then on, whatever the batch split.

    Whether labels matter used to be decided once per batch, before the graph existed: the whole first batch's
    labels were dropped, so a big batch and small ones gave different ``link_confirmed`` features and scores
    (found by the compiled engine's differential test)."""
    stream = list(simulate(SimConfig(events=6000, seed=11, label_delay_s=2 * 3600.0)))
    assert any(isinstance(e, Label) and e.label == 1 for e in stream)
    whole, small = Engine(settings()), Engine(settings())
    r1, _ = run(whole, stream, 6000)
    r2, _ = run(small, stream, 50)
    assert whole.graph is not None and whole.graph._confirmed, "fraud labels reached the graph"
    assert whole.graph._confirmed == small.graph._confirmed
    np.testing.assert_array_equal(r1, r2)


def test_snapshot_restore_continues_identically(events):
    half = len(events) // 2
    full_risk, full_alerts = run(Engine(settings()), events, 500)
    first = Engine(settings())
    r_a, a_a = run(first, events[:half], 500)
    second = Engine(settings())
    second.restore(first.snapshot())
    r_b, a_b = run(second, events[half:], 500)
    np.testing.assert_array_equal(full_risk, np.concatenate([r_a, r_b]))
    assert [a.alert_id for a in full_alerts] == [a.alert_id for a in a_a + a_b]
    fresh_risk, _ = run(Engine(settings()), events[half:], 500)
    assert not np.array_equal(fresh_risk, r_b), "restored state must matter"


def test_restore_refuses_another_configuration_and_garbage(events):
    e = Engine(settings())
    e.process(events[:200])
    other = Engine(settings().replace({"detectors.hst.seed": 1}))
    with pytest.raises(CheckpointError, match="configuration"):
        other.restore(e.snapshot())
    with pytest.raises(CheckpointError, match="does not load"):
        other.restore(b"not a pickle")


def test_labels_and_scenarios_never_reach_the_detectors(events):
    rng = np.random.default_rng(0)
    shuffled = []
    for e in events:
        if isinstance(e, Order | Login):
            e = dataclasses.replace(e, label=int(rng.integers(0, 2)), scenario=str(rng.integers(0, 9)))
        shuffled.append(e)
    r1, a1 = run(Engine(settings()), events, 1000)
    r2, a2 = run(Engine(settings()), shuffled, 1000)
    np.testing.assert_array_equal(r1, r2)
    assert [a.alert_id for a in a1] == [a.alert_id for a in a2]


def test_alerts_carry_reasons_and_deterministic_ids(events):
    _, alerts = run(Engine(settings()), events, 1000)
    by_event = {e.event_id: e for e in events}
    for a in alerts:
        assert a.reasons and all("detector" in r for r in a.reasons)
        assert a.severity in ("low", "medium", "high", "critical") and a.action in ("review", "block")
        assert 0.0 <= a.score <= 1.0
        assert a.entities["user"] == by_event[a.event_id].user_id
        assert a.detected_at == a.event_ts  # replay clock: event time
    _, again = run(Engine(settings()), events, 1000)
    assert [a.alert_id for a in alerts] == [a.alert_id for a in again]
    _, other = run(Engine(settings().replace({"engine.budget": 0.021})), events, 1000)
    assert not {a.alert_id for a in alerts} & {a.alert_id for a in other}, "ids include the config hash"


def test_label_events_are_passed_through_not_scored(events):
    orders = [e for e in events[:3000] if isinstance(e, Order)][:50]
    labels = [Label(event_id=f"l{i}", ts=o.ts + 1, ref_event_id=o.event_id, label=1) for i, o in enumerate(orders)]
    mixed = sorted(events[:3000] + labels, key=lambda e: e.ts)
    out = Engine(settings()).process(mixed)
    assert out.labels == labels
    assert len(out.scored) == 3000 and len(out.risk) == 3000


def test_outcome_exposes_each_detectors_raw_and_calibrated_scores(events):
    """Per event and detector: the raw score its calibrator ranked and the tail probability ``p`` it gave,
    the same ``p`` an alert carries in ``detector_scores``; one engine per batch split, same numbers."""
    from detectors.calibration import TailCalibrator

    names = list(settings().detectors)
    engine = Engine(settings())
    outs = [engine.process(events[i : i + 1500]) for i in range(0, len(events), 1500)]
    for out in outs:
        assert set(out.raw) == set(out.calibrated) == set(names)
        for name in names:
            assert out.raw[name].shape == out.calibrated[name].shape == (len(out.scored),)
            assert np.isfinite(out.raw[name]).all() and ((out.calibrated[name] > 0) & (out.calibrated[name] <= 1)).all()
        pos = {e.event_id: i for i, e in enumerate(out.scored)}
        for a in out.alerts:
            assert {n: float(out.calibrated[n][pos[a.event_id]]) for n in names} == dict(a.detector_scores)
    # the raw scores are what each detector's calibrator ranked (every score is ranked, learned or not)
    for kind in ("order", "login"):
        mask = np.array([e.type == kind for e in outs[0].scored])
        for name in names:
            again = TailCalibrator(int(settings().ensemble["calibration_window"])).update_many(outs[0].raw[name][mask])
            np.testing.assert_array_equal(again, outs[0].calibrated[name][mask])
    one = Engine(settings()).process(events)
    for name in names:
        np.testing.assert_array_equal(one.raw[name], np.concatenate([o.raw[name] for o in outs]))
        np.testing.assert_array_equal(one.calibrated[name], np.concatenate([o.calibrated[name] for o in outs]))
