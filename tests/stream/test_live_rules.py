"""Live rule packs without a broker: the engines' switch (Python reference = compiled core), the switch point a
partition unit records and a replay of it, and the version poll against a SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.migrations import upgrade
from sinks.sql import SqlSink, create_sql_engine
from stream.compiled import CompiledEngine
from stream.config import default_settings
from stream.errors import CheckpointError, ConfigError
from stream.events import Event
from stream.kafka.liverules import RuleWatch
from stream.kafka.units import RULES_KEY, PartitionUnit
from stream.pipeline import Engine
from stream.rulepacks import RulePackStore, configured_pack, settings_with_pack
from stream.sim import SimConfig, simulate

#: A rule the default pack lacks: it blocks large orders, so every event it fires on is an alert naming it.
EXTRA = {"name": "huge_order", "when": "order_amount > 250", "score": 5.0, "action": "block"}


def _pack() -> dict:
    pack = configured_pack(default_settings())
    pack["rules"].append(dict(EXTRA))
    return pack


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(simulate(SimConfig(events=8000, seed=11)))


def _names(alert) -> list[str]:
    return [r["feature"] for r in alert.reasons if r.get("detector") == "rules"]


def _run(engine: Engine, events: list[Event], at: int, params: dict | None, version: int | None) -> list:
    out = []
    for i in range(0, at, 500):
        out.extend(engine.process(events[i:min(i + 500, at)]).alerts)
    if params is not None:
        engine.set_rules(params, version)
    for i in range(at, len(events), 500):
        out.extend(engine.process(events[i:i + 500]).alerts)
    return out


def test_the_python_and_compiled_engines_switch_rules_alike(events: list[Event]) -> None:
    settings = default_settings()
    params = settings_with_pack(settings, _pack()).detectors["rules"]
    at = 4000
    py = _run(Engine(settings), events, at, params, 2)
    core = CompiledEngine(settings)
    assert core.detection == "compiled"
    co = _run(core, events, at, params, 2)
    assert py == co  # same ids, scores, reasons and rules_version
    ids_before = {e.event_id for e in events[:at]}
    before = [a for a in py if a.event_id in ids_before]
    after = [a for a in py if a.event_id not in ids_before]
    assert before and after
    assert {a.rules_version for a in before} == {None} and {a.rules_version for a in after} == {2}
    assert not any("huge_order" in _names(a) for a in before)
    assert sum("huge_order" in _names(a) for a in after) >= 5
    # without the switch the same events raise no huge_order alert, and the rules' calibration and the other
    # detectors' state were kept: the alerts before the switch are the same
    plain = _run(Engine(settings), events, at, None, None)
    assert [a for a in plain if a.event_id in ids_before] == before
    assert not any("huge_order" in _names(a) for a in plain)


def test_the_version_goes_through_a_checkpoint(events: list[Event]) -> None:
    settings = default_settings()
    params = settings_with_pack(settings, _pack()).detectors["rules"]
    for cls in (Engine, CompiledEngine):
        a = cls(settings)
        a.process(events[:3000])
        a.set_rules(params, 7)
        b = cls(settings)
        b.restore(a.snapshot())
        assert b.rules_version == 7
        assert a.process(events[3000:6000]).alerts == b.process(events[3000:6000]).alerts


def test_a_pack_the_core_cannot_run_is_refused_and_changes_nothing(events: list[Event]) -> None:
    settings = default_settings()
    pack = _pack()
    pack["blocklists"] = {"ip": ["203.0.113.9"]}
    params = settings_with_pack(settings, pack).detectors["rules"]
    core = CompiledEngine(settings)
    with pytest.raises(ConfigError, match="blocklists"):
        core.set_rules(params, 3)
    assert core.rules_version is None and "huge_order" not in {r.name for r in core.ensembles["order"]
                                                               .detectors["rules"]._rules}
    no_rules = settings.replace({"detectors.rules.enabled": False})
    with pytest.raises(ConfigError, match="no rules detector"):
        Engine(no_rules).set_rules(params, 3)


def _unit_stream(events: list[Event]) -> list[tuple[str, int, Event]]:
    """The events as records of a two-topic unit: orders and logins, with their own offsets."""
    offsets = {"orders": 0, "logins": 0}
    out = []
    for e in events:
        if e.type == "label":
            continue
        t = "orders" if e.type == "order" else "logins"
        out.append((t, offsets[t], e))
        offsets[t] += 1
    return out


def test_a_recorded_switch_replays_at_the_same_offsets(events: list[Event]) -> None:
    """Live: a unit processes what it has, switches at its next offsets (the checkpoint boundary) and records
    that point; a replay that gets all records at once stops at the recorded switch, switches, and goes on: the
    same alerts, with the same rules_version, on both sides of the switch."""
    settings = default_settings()
    params = {2: settings_with_pack(settings, _pack()).detectors["rules"]}
    records = _unit_stream(events)
    topics = ["orders", "logins"]
    live, engine = PartitionUnit(0, topics), Engine(settings)
    for t in topics:
        live.set_position(t, 0)
    alerts, switch = [], None
    half = len(records) // 2
    for k, (t, off, e) in enumerate(records):
        live.add(t, off, e)
        if k == half:  # a checkpoint boundary in the middle: the store now says version 2
            items, _ = live.release(lambda topic: False)
            alerts.extend(engine.process([it[1] for it in items]).alerts)
            switch = {**live.next_offsets(), RULES_KEY: 2}
            engine.set_rules(params[2], 2)
    items, _ = live.release(lambda topic: True)
    alerts.extend(engine.process([it[1] for it in items]).alerts)

    replay, engine2 = PartitionUnit(0, topics), Engine(settings)
    for t in topics:
        replay.set_position(t, 0)
    for t, off, e in records:
        replay.add(t, off, e)
    replay.add_cut(switch)
    again = []
    items, _ = replay.release(lambda topic: True)
    assert replay.reached == 2 and replay.next_offsets() == {t: switch[t] for t in topics}
    again.extend(engine2.process([it[1] for it in items]).alerts)
    engine2.set_rules(params[replay.reached], replay.reached)
    replay.reached = None
    items, _ = replay.release(lambda topic: True)
    again.extend(engine2.process([it[1] for it in items]).alerts)
    assert again == alerts
    assert {a.rules_version for a in alerts} == {None, 2}
    # a replay that ignores the switch point (switches where its release happened to stop) differs
    assert any("huge_order" in _names(a) for a in alerts if a.rules_version == 2)


def test_the_watch_reads_the_active_version_and_its_pack(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    db = create_sql_engine(url)
    upgrade(db)
    settings = default_settings()
    store = RulePackStore(db, settings)
    watch = RuleWatch(store, settings, interval_s=3600.0)
    assert watch.poll(force=True) is None  # nothing stored: the configured rules
    v = store.deploy(_pack(), author="alice", comment="huge orders").version
    assert v == 2
    assert watch.poll() is None  # polled less than interval_s ago: not read again
    assert watch.poll(force=True) == 2
    assert "huge_order" in [r["name"] for r in watch.params(2)["rules"]]
    assert "huge_order" not in [r["name"] for r in watch.params(1)["rules"]]
    with pytest.raises(LookupError):
        watch.params(9)
    # the alert store keeps the version (migration 0009)
    sink = SqlSink(url)
    engine = Engine(settings)
    engine.set_rules(watch.params(2), 2)
    alerts = engine.process(list(simulate(SimConfig(events=3000, seed=3)))).alerts
    sink.write_batch(alerts)
    got = sink.query(limit=None)
    assert got and {a.rules_version for a in got} == {2}
    # the store goes wrong: the watch keeps the version it read, and a pack it cannot read is a CheckpointError
    # (the consumer retries at the next boundary), not a crash
    with db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE rule_pack_active")
        conn.exec_driver_sql("DROP TABLE rule_packs")
    assert watch.poll(force=True) == 2
    with pytest.raises(CheckpointError, match="cannot read rule pack version 3"):
        watch.params(3)
    assert "huge_order" in [r["name"] for r in watch.params(2)["rules"]]  # read before: cached
    sink.close()
    db.dispose()
