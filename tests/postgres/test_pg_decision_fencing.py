"""Owner epochs of the merge-decision log in PostgreSQL (migration 0006): the upgrade from 0005 keeps existing cuts
(visible, ``owner`` NULL) and adds ``riskstream_decision_owners``; a claim raises the unit's epoch; an append under
an older epoch is refused (``DecisionFenced``) and writes nothing; and a claim racing a zombie's appends leaves no
cut of the old epoch committed after it (the compare-and-set and the claim lock the same row)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from sinks.migrations import _config, current, upgrade
from stream.errors import DecisionFenced
from stream.state.postgres import PgStateStore

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def stores(pg_url: str) -> Any:
    """Two handles on the same schema, as two members would have (each its own connection pool)."""
    a, b = PgStateStore(pg_url, key=KEY), PgStateStore(pg_url, key=KEY, create=False)
    yield a, b
    a.close()
    b.close()


def test_migration_0006_keeps_the_0005_cuts_and_adds_the_owner_epochs(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        assert upgrade(engine, "0005") == "0005"
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO riskstream_merge_decisions (group_id, unit, cut, decided_at) VALUES "
                              "('g', 0, '{\"orders\": 4, \"logins\": 1}', now()), "
                              "('g', 0, '{\"orders\": 9, \"logins\": 3}', now())"))
        assert "riskstream_decision_owners" not in inspect(engine).get_table_names()
        assert upgrade(engine, "0006") == "0006" == current(engine)
        cols = {c["name"]: c for c in inspect(engine).get_columns("riskstream_merge_decisions")}
        assert cols["owner"]["nullable"] is True
        assert {c["name"] for c in inspect(engine).get_columns("riskstream_decision_owners")} == {
            "group_id", "unit", "epoch", "member", "claimed_at"}
        store = PgStateStore(engine, key=KEY, create=False)
        assert store.load_decisions("g", 0) == [{"orders": 4, "logins": 1}, {"orders": 9, "logins": 3}]
        e = store.claim_unit("g", 0, "m")
        assert e == 1
        store.append_decision("g", 0, {"orders": 12, "logins": 3}, epoch=e)
        assert [d["owner"] for d in store.decision_log("g", 0)] == [None, None, 1]
        assert len(store.load_decisions("g", 0)) == 3
        with engine.begin() as conn:  # and back: the owner column and table go, the cuts stay
            command.downgrade(_config(conn), "0005")
        assert current(engine) == "0005"
        assert "riskstream_decision_owners" not in inspect(engine).get_table_names()
        assert "owner" not in {c["name"] for c in inspect(engine).get_columns("riskstream_merge_decisions")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM riskstream_merge_decisions")).scalar_one() == 3
        assert upgrade(engine, "0006") == "0006"
    finally:
        engine.dispose()


def test_a_claim_fences_the_previous_owner(stores: Any) -> None:
    old, new = stores
    e1 = old.claim_unit("g", 3, "old")
    old.append_decision("g", 3, {"orders": 5}, epoch=e1)
    e2 = new.claim_unit("g", 3, "new")
    assert (e1, e2) == (1, 2) and old.epoch("g", 3) == 2
    with pytest.raises(DecisionFenced) as info:
        old.append_decision("g", 3, {"orders": 8}, epoch=e1)
    assert (info.value.epoch, info.value.current) == (1, 2)
    with pytest.raises(DecisionFenced):  # an epoch from the future is not the latest either
        new.append_decision("g", 3, {"orders": 8}, epoch=e2 + 1)
    new.append_decision("g", 3, {"orders": 7}, epoch=e2)
    assert old.load_decisions("g", 3) == [{"orders": 5}, {"orders": 7}]
    assert [d["owner"] for d in old.decision_log("g", 3)] == [1, 2]
    assert new.claim_unit("other", 3, "x") == 1  # per group and unit
    new.delete("g", 3)
    assert new.epoch("g", 3) == 0 and new.load_decisions("g", 3) == []


def test_a_cut_slipped_in_under_a_superseded_epoch_is_invisible_and_pruned(stores: Any) -> None:
    store, _ = stores
    e1 = store.claim_unit("g", 0, "a")
    store.append_decision("g", 0, {"orders": 2}, epoch=e1)
    e2 = store.claim_unit("g", 0, "b")
    store.append_decision("g", 0, {"orders": 3}, epoch=e2)
    with store.engine.begin() as conn:  # bypass the compare-and-set
        conn.execute(text("INSERT INTO riskstream_merge_decisions (group_id, unit, cut, decided_at, owner) "
                          "VALUES ('g', 0, '{\"orders\": 4}', now(), :e)"), {"e": e1})
    assert store.load_decisions("g", 0) == [{"orders": 2}, {"orders": 3}]
    assert [d["visible"] for d in store.decision_log("g", 0)] == [True, True, False]
    assert store.prune_decisions("g", 0, {"orders": 2}) == 2  # the cut at the log start and the invisible one
    assert store.load_decisions("g", 0) == [{"orders": 3}]
    assert store.prune_decisions("g", 0, {"orders": 2}) == 0


def test_a_claim_racing_a_zombies_appends_leaves_none_of_them_after_it(stores: Any) -> None:
    """A zombie appends under epoch 1 as fast as it can while the new owner claims: every cut of epoch 1 was
    committed before the claim returned (counted right after it), and none after. Each insert is slowed down (a
    trigger), so a check of the epoch that does not lock the claim row (``INSERT ... SELECT ... WHERE EXISTS``)
    lets a cut commit after the claim in most rounds."""
    zombie, owner = stores
    with owner.engine.begin() as conn:  # every insert takes 50 ms: a wide window between the epoch check and commit
        conn.execute(text("CREATE FUNCTION slow_insert() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.05); "
                          "RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER slow_insert BEFORE INSERT ON riskstream_merge_decisions "
                          "FOR EACH ROW EXECUTE FUNCTION slow_insert()"))
    for unit in range(6):
        e1 = zombie.claim_unit("race", unit, "zombie")
        result: list[Any] = []

        def spam(unit: int = unit, e1: int = e1, result: list[Any] = result) -> None:
            n = 0
            try:
                while True:
                    zombie.append_decision("race", unit, {"orders": n}, epoch=e1)
                    n += 1
            except DecisionFenced:
                result.append(n)
            except BaseException as e:  # noqa: BLE001 - reported below
                result.append(e)

        t = threading.Thread(target=spam)
        t.start()
        time.sleep(0.15)
        owner.claim_unit("race", unit, "owner")
        at_claim = sum(1 for d in owner.decision_log("race", unit) if d["owner"] == e1)
        t.join(30)
        assert result and isinstance(result[0], int), result
        assert at_claim == result[0] > 0
        assert sum(1 for d in owner.decision_log("race", unit) if d["owner"] == e1) == at_claim
