"""The compiled engine's vectors equal the Python engine's: the detectors' whole input, event by event.

``stream._core.CoreEngine`` composes the compiled features, entity risk, link graph and label join the way
``stream.pipeline.Engine`` does (the graph built at the first linking event, failed logins scored against the
graph without linking, labels joined where they stand in the stream). The Python engine runs the same events
in micro-batches; its vectors are captured as it hands them to the detectors, and every one must equal the
compiled engine's: the same keys in the same order and the same floats, bit for bit.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from stream.compiled import core_engine
from stream.config import load_settings
from stream.eval.data import shared_data_dir
from stream.events import Label
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate
from stream.sources import ColumnMapping, FileSource

N = 20_000


def _python_vectors(engine: Engine, events: list[Any], batch: int) -> list[dict[str, float] | None]:
    """The vectors the Python engine scores ``events`` with (``None`` for labels), run in ``batch``-sized calls."""
    captured: list[dict[str, float]] = []
    original = engine.features.transform_many

    def capture(evs):  # the dicts returned here are the ones the engine completes and hands to the detectors
        xs = original(evs)
        captured.extend(xs)
        return xs

    engine.features.transform_many = capture  # type: ignore[method-assign]
    for i in range(0, len(events), batch):
        engine.process(events[i : i + batch])
    it = iter(captured)
    return [None if isinstance(e, Label) else next(it) for e in events]


def _assert_same(events: list[Any], settings: Any, batch: int = 2000, compiled_batch: int = 777) -> int:
    expected = _python_vectors(Engine(settings), events, batch)
    core = core_engine(Engine(settings))
    got: list[dict[str, float] | None] = []
    for i in range(0, len(events), compiled_batch):
        got.extend(core.vectors(events[i : i + compiled_batch]))
    assert len(got) == len(expected)
    for i, (g, x) in enumerate(zip(got, expected, strict=True)):
        if x is None:
            assert g is None, i
            continue
        assert list(g) == list(x), f"event {i} ({events[i].event_id}): keys differ"
        bad = {k: (g[k], x[k]) for k in x if g[k].hex() != float(x[k]).hex()}
        assert not bad, f"event {i} ({events[i].event_id}): {bad}"
    return sum(x is not None for x in expected)


def _sim(seed: int, **kw: Any) -> list[Any]:
    return list(simulate(SimConfig(events=N, seed=seed, label_delay_s=2 * 3600.0, **kw)))


@pytest.mark.parametrize("seed", [7, 11, 13, 17])
def test_default_configuration_on_simulated_streams(seed: int) -> None:
    events = _sim(seed)
    settings = load_settings()
    assert settings.data["links"]["graph"]  # the default builds the link graph: it is part of what is compared
    n = _assert_same(events, settings)
    assert n > 0.9 * N


def test_entity_risk_graph_flagged_and_small_caps() -> None:
    events = _sim(7)
    settings = load_settings(overrides={"links.entity_risk": True, "links.max_users": 3, "links.max_values": 2,
                                        "links.max_group": 4, "links.max_entities": 500,
                                        "features.max_entities": 300, "labels.store_size": 1000})
    _assert_same(events, settings)


def test_entity_risk_with_the_cohort_prior() -> None:
    events = _sim(5)
    settings = load_settings(overrides={"links.entity_risk": True, "links.risk_prior": True,
                                        "links.prior_strength": 4.0})
    _assert_same(events, settings)


@pytest.mark.parametrize("prior", [False, True])
def test_restored_state_continues_exactly(prior: bool) -> None:
    events = _sim(11)
    settings = load_settings(overrides={"links.entity_risk": True, "links.risk_prior": prior})
    expected = _python_vectors(Engine(settings), events, 2000)
    core = core_engine(Engine(settings))
    half = len(events) // 2
    first = core.vectors(events[:half])
    again = core_engine(Engine(settings))
    again.restore(core.snapshot())
    second = again.vectors(events[half:])
    for g, x in zip(first + second, expected, strict=True):
        assert (g is None) == (x is None)
        if x is not None:
            assert list(g.items()) == list(x.items())


def _data_file(folder: str, name: str) -> Path:
    where = shared_data_dir(folder, must_exist=False)
    if not where.is_dir():
        pytest.skip(f"shared data folder {where} is missing")
    return where / name


def _file_events(path: Path, mapping: ColumnMapping, rows: int) -> list[Any]:
    src = FileSource([path], mapping=mapping, batch_size=5000)
    try:
        return list(itertools.islice((e for b in src for e in b.events), rows))
    finally:
        src.close()


def test_ulb_card_file_with_its_pass_through_features() -> None:
    path = _data_file("creditcard_ulb", "creditcard.csv.gz")
    mapping = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                                  set_spec="user_id=card,merchant_id=unknown")
    events = _file_events(path, mapping, 20_000)
    assert events and events[0].features  # the V1..V28 columns come through as pass-through features
    _assert_same(events, load_settings())


def test_handbook_stream_with_entity_risk() -> None:
    path = _data_file("fraud_handbook", "transactions.csv.gz")
    mapping = ColumnMapping.parse(type="order", map_spec="ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,"
                                  "amount=TX_AMOUNT,label=TX_FRAUD,event_id=TRANSACTION_ID")
    events = _file_events(path, mapping, 20_000)
    settings = load_settings(overrides={"links.entity_risk": True, "links.risk_kinds": ["merchant", "user"],
                                        "links.risk_prior": True})
    _assert_same(events, settings)


def test_raw_records_with_junk_reach_the_same_state_and_refusals_as_decoded_events() -> None:
    """The Kafka/JSONL path: raw bytes decoded by the compiled decoder (Python's for what it leaves to it),
    junk among them; the state after them equals that of the object path on the events alone, and every
    refused record has the reason ``stream.events.decode`` gives."""
    import random

    from stream.compiled import run_raw
    from stream.errors import InvalidEvent
    from stream.events import decode, encode
    from stream.sim.junk import junk_records

    events = _sim(13)
    settings = load_settings(overrides={"links.entity_risk": True})
    raw = [encode(e) for e in events]
    junk = list(junk_records(events[:3000], n=3000, seed=5))
    rng = random.Random(1)
    mixed = list(raw)
    for j in junk:
        mixed.insert(rng.randrange(len(mixed) + 1), j)
    expected_refused = []
    good = []
    for i, r in enumerate(mixed):
        try:
            good.append(decode(r))
        except InvalidEvent as e:
            expected_refused.append((i, str(e)))
    assert len(expected_refused) > 1000

    by_objects = core_engine(Engine(settings))
    by_objects.vectors(good)
    by_bytes = core_engine(Engine(settings))
    refused = []
    for k in range(0, len(mixed), 1500):
        chunk, got = mixed[k : k + 1500], run_raw(by_bytes, mixed[k : k + 1500])[0]
        refused.extend((k + i, why) for i, why in got)
        assert len(chunk) >= len(got)
    assert refused == expected_refused
    assert by_bytes.events_seen == by_objects.events_seen == sum(1 for e in good if not isinstance(e, Label))
    assert by_bytes.snapshot() == by_objects.snapshot()
