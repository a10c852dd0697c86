"""PgStateStore on a real PostgreSQL: round trip, and every kind of damaged checkpoint refused before unpickling."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from stream.errors import CheckpointError
from stream.state import Checkpoint, StateStore
from stream.state.postgres import PgStateStore

pytestmark = pytest.mark.postgres

KEY = b"0123456789abcdef0123456789abcdef"


class Payload:
    """A pickle that runs code when loaded: it creates a file. What an attacker who can write the table plants."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.fixture
def store(pg_url: str) -> Any:
    s = PgStateStore(pg_url, key=KEY)
    yield s
    s.close()


def _sql(url: str, stmt: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return conn.execute(text(stmt), params).all() if stmt.lstrip().upper().startswith("SELECT") else \
                conn.execute(text(stmt), params)
    finally:
        engine.dispose()


def test_checkpoints_round_trip_per_group_and_unit(store: PgStateStore, pg_url: str) -> None:
    assert isinstance(store, StateStore)
    assert store.load("fraud", 0) is None
    state = pickle.dumps({"windows": list(range(1000)), "model": b"\x00\xff" * 500})
    one = Checkpoint(offsets={"orders": 120, "logins": 75, "labels": 3}, state=state, config_hash="abc", events=198)
    store.save("fraud", 0, one)
    store.save("fraud", 2, Checkpoint(offsets={"orders": 7}, state=b"two", config_hash="abc"))
    store.save("other-group", 0, Checkpoint(offsets={"orders": 1}, state=b"x", config_hash="z"))
    back = store.load("fraud", 0)
    assert back == one
    assert store.units("fraud") == [0, 2] and store.generation("fraud", 0) == 1
    newer = Checkpoint(offsets={"orders": 220, "logins": 80, "labels": 3}, state=b"newer", config_hash="abc")
    store.save("fraud", 0, newer)
    assert store.load("fraud", 0) == newer and store.generation("fraud", 0) == 2
    # Another process (its own engine and connections) sees the same checkpoint.
    elsewhere = PgStateStore(pg_url, key=KEY, create=False)
    assert elsewhere.load("fraud", 0) == newer and elsewhere.load("other-group", 0).state == b"x"
    elsewhere.close()
    # The offsets are readable in SQL for operators, beside the verified blob.
    (row,) = _sql(pg_url, "SELECT offsets, config_hash, events FROM riskstream_checkpoints "
                          "WHERE group_id = 'fraud' AND unit = 0")
    assert row[0] == {"orders": 220, "logins": 80, "labels": 3} and row[1] == "abc"
    assert store.delete("fraud", 2) == 1 and store.units("fraud") == [0]


def _plant(store: PgStateStore, tmp_path: Path) -> Path:
    """Save an honest checkpoint of unit 0 of group g; return where a planted payload would leave its mark."""
    store.save("g", 0, Checkpoint(offsets={"orders": 1}, state=b"honest state", config_hash="c"))
    return tmp_path / "pwned"


def test_a_flipped_byte_is_refused_by_the_checksum(store: PgStateStore, pg_url: str, tmp_path: Path) -> None:
    _plant(store, tmp_path)
    (blob,) = _sql(pg_url, "SELECT blob FROM riskstream_checkpoints WHERE group_id = 'g'")[0]
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    _sql(pg_url, "UPDATE riskstream_checkpoints SET blob = :b WHERE group_id = 'g'", b=bytes(flipped))
    with pytest.raises(CheckpointError, match=r"group 'g' unit 0 .*checksum mismatch.*truncated or was modified"):
        store.load("g", 0)


def test_a_truncated_blob_is_refused_by_the_checksum(store: PgStateStore, pg_url: str, tmp_path: Path) -> None:
    _plant(store, tmp_path)
    _sql(pg_url, "UPDATE riskstream_checkpoints SET blob = substring(blob from 1 for 20) WHERE group_id = 'g'")
    with pytest.raises(CheckpointError, match=r"checksum mismatch: the stored state \(20 bytes\) is truncated"):
        store.load("g", 0)


def test_a_planted_pickle_with_a_matching_checksum_is_refused_by_the_hmac_and_never_unpickled(
    store: PgStateStore, pg_url: str, tmp_path: Path
) -> None:
    marker = _plant(store, tmp_path)
    evil = Checkpoint(offsets={"orders": 1}, state=pickle.dumps(Payload(marker)), config_hash="c").to_bytes()
    _sql(pg_url, "UPDATE riskstream_checkpoints SET blob = :b, sha256 = :d WHERE group_id = 'g'",
         b=evil, d=hashlib.sha256(evil).hexdigest())
    with pytest.raises(CheckpointError, match="HMAC mismatch.*refusing to load it"):
        store.load("g", 0)
    assert not marker.exists()
    # The same planted row, loaded and unpickled without the check, would have run the attacker's code:
    pickle.loads(Checkpoint.from_bytes(evil).state)
    assert marker.exists()


def test_a_checkpoint_copied_to_another_unit_is_refused(store: PgStateStore, pg_url: str) -> None:
    store.save("g", 0, Checkpoint(offsets={"orders": 500}, state=b"unit zero", config_hash="c"))
    store.save("g", 1, Checkpoint(offsets={"orders": 3}, state=b"unit one", config_hash="c"))
    _sql(pg_url, "UPDATE riskstream_checkpoints AS t SET blob = s.blob, sha256 = s.sha256, hmac = s.hmac "
                 "FROM riskstream_checkpoints AS s WHERE s.unit = 0 AND t.unit = 1")
    with pytest.raises(CheckpointError, match="HMAC mismatch"):
        store.load("g", 1)
    assert store.load("g", 0).state == b"unit zero"


def test_a_store_with_another_key_refuses_the_checkpoint(store: PgStateStore, pg_url: str) -> None:
    store.save("g", 0, Checkpoint(offsets={"orders": 1}, state=b"s", config_hash="c"))
    other = PgStateStore(pg_url, key="a different key of 32 characters!", create=False)
    with pytest.raises(CheckpointError, match="HMAC mismatch: the checkpoint was written with another key"):
        other.load("g", 0)
    other.close()
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PgStateStore(pg_url, key=b"short", create=False)


def test_saves_are_atomic_under_concurrent_writers_and_readers(store: PgStateStore, pg_url: str) -> None:
    written = {Checkpoint(offsets={"orders": n}, state=bytes([n % 256]) * (n * 997 % 50_000), config_hash="c",
                          saved_at=float(n)).to_bytes() for n in range(1, 41)}
    store.save("g", 0, Checkpoint.from_bytes(next(iter(written))))
    errors: list[BaseException] = []
    seen: list[bytes] = []
    stop = threading.Event()

    def write(part: list[bytes]) -> None:
        w = PgStateStore(pg_url, key=KEY, create=False)
        for blob in part:
            w.save("g", 0, Checkpoint.from_bytes(blob))
        w.close()

    def read() -> None:
        r = PgStateStore(pg_url, key=KEY, create=False)
        try:
            while not stop.is_set():
                ck = r.load("g", 0)  # verified: never a mix of two saves
                assert ck is not None
                seen.append(ck.to_bytes())
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)
        finally:
            r.close()

    blobs = sorted(written)
    writers = [threading.Thread(target=write, args=(blobs[i::2],)) for i in range(2)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    assert seen and set(seen) <= written
    assert store.generation("g", 0) == 41


def _row(url: str, unit: int = 0) -> Any:
    (row,) = _sql(url, "SELECT blob, sha256, hmac, generation FROM riskstream_checkpoints WHERE group_id = 'g' "
                       "AND unit = :u", u=unit)
    return row


def _put_back(url: str, row: Any, unit: int = 0, **changes: Any) -> None:
    values = {"blob": bytes(row.blob), "sha256": row.sha256, "hmac": row.hmac, "generation": row.generation,
              **changes}
    _sql(url, "UPDATE riskstream_checkpoints SET blob = :blob, sha256 = :sha256, hmac = :hmac, "
              "generation = :generation WHERE group_id = 'g' AND unit = :u", u=unit, **values)


def test_an_older_checkpoint_put_back_is_refused_by_a_process_that_saw_a_newer_one(store: PgStateStore,
                                                                                     pg_url: str) -> None:
    store.save("g", 0, Checkpoint(offsets={"orders": 10}, state=b"old", config_hash="c"))
    old = _row(pg_url)
    store.save("g", 0, Checkpoint(offsets={"orders": 20}, state=b"new", config_hash="c"))
    assert old.generation == 1 and store.generation("g", 0) == 2
    _put_back(pg_url, old)  # a rollback: a valid, older row, with its own generation and MAC
    with pytest.raises(CheckpointError, match="rollback: generation 1 is older than generation 2"):
        store.load("g", 0)
    # A process that never saw generation 2 cannot tell (documented): nothing in the row says it is stale.
    fresh = PgStateStore(pg_url, key=KEY, create=False)
    assert fresh.load("g", 0).state == b"old"
    fresh.close()


def test_the_generation_is_under_the_mac(store: PgStateStore, pg_url: str) -> None:
    store.save("g", 0, Checkpoint(offsets={"orders": 10}, state=b"old", config_hash="c"))
    old = _row(pg_url)
    for _ in range(3):
        store.save("g", 0, Checkpoint(offsets={"orders": 20}, state=b"new", config_hash="c"))
    _put_back(pg_url, old, generation=9)  # the stale row relabelled newer than the real one
    fresh = PgStateStore(pg_url, key=KEY, create=False)
    with pytest.raises(CheckpointError, match="HMAC mismatch: .*its generation was changed"):
        fresh.load("g", 0)
    with pytest.raises(CheckpointError, match="HMAC mismatch"):
        store.load("g", 0)
    fresh.close()


def test_load_and_save_track_the_generation_and_delete_starts_it_again(store: PgStateStore, pg_url: str) -> None:
    other = PgStateStore(pg_url, key=KEY, create=False)  # another process of the group, taking the unit over
    store.save("g", 0, Checkpoint(offsets={"orders": 1}, state=b"a", config_hash="c"))
    other.save("g", 0, Checkpoint(offsets={"orders": 2}, state=b"b", config_hash="c"))
    assert store.load("g", 0).state == b"b"  # newer than what this process saved: fine
    store.delete("g", 0)
    other.save("g", 0, Checkpoint(offsets={"orders": 3}, state=b"c", config_hash="c"))
    assert store.generation("g", 0) == 1 and store.load("g", 0).state == b"c"
    other.close()


def _sign_v1(url: str, unit: int = 0) -> None:
    """Rewrite the row's MAC in format 1 (no generation), as riskstream signed checkpoints before."""
    row = _row(url, unit)
    msg = b"\n".join((b"riskstream-checkpoint/1", b"g", str(unit).encode(), row.sha256.encode()))
    _put_back(url, row, unit, hmac=hmac.new(KEY, msg, hashlib.sha256).hexdigest())


def test_a_format_1_checkpoint_is_refused_naming_the_fix_or_upgraded_once_when_allowed(
        store: PgStateStore, pg_url: str) -> None:
    store.save("g", 0, Checkpoint(offsets={"orders": 7}, state=b"v1 state", config_hash="c"))
    _sign_v1(pg_url)
    with pytest.raises(CheckpointError, match="signed in MAC format 1.*state.accept_v1_mac = true"):
        PgStateStore(pg_url, key=KEY, create=False).load("g", 0)
    upgrading = PgStateStore(pg_url, key=KEY, create=False, accept_v1_mac=True)
    cp = upgrading.load("g", 0)
    assert cp.state == b"v1 state" and cp.offsets == {"orders": 7}
    upgrading.save("g", 0, cp)  # the next checkpoint re-signs it in format 2
    upgrading.close()
    assert PgStateStore(pg_url, key=KEY, create=False).load("g", 0).state == b"v1 state"


def test_state_accept_v1_mac_reaches_the_store(store: PgStateStore, pg_url: str) -> None:
    from stream.config import load_settings
    from stream.state import open_state_store

    store.save("g", 0, Checkpoint(offsets={"orders": 7}, state=b"v1 state", config_hash="c"))
    _sign_v1(pg_url)
    for env, ok in (({}, False), ({"RISKSTREAM__STATE__ACCEPT_V1_MAC": "true"}, True)):
        settings = load_settings(env={"RISKSTREAM__STATE__STORE": '"postgres"', "K": KEY.decode(),
                                      "RISKSTREAM__STATE__KEY_ENV": '"K"', **env})
        opened = open_state_store(settings.state, key=settings.state_key, database=pg_url)
        if ok:
            assert opened.load("g", 0).state == b"v1 state"
        else:
            with pytest.raises(CheckpointError, match="MAC format 1"):
                opened.load("g", 0)
        opened.close()


def test_merge_decisions_append_in_order_per_group_and_unit_and_go_with_delete(store: PgStateStore) -> None:
    from stream.state import DecisionLog

    assert isinstance(store, DecisionLog)
    assert store.load_decisions("fraud", 1) == []
    cuts = [{"orders": 3, "logins": 0, "labels": 0}, {"orders": 3, "logins": 9, "labels": 1},
            {"orders": 12, "logins": 9, "labels": 1}]
    for c in cuts:
        store.append_decision("fraud", 1, c)
    store.append_decision("fraud", 2, {"orders": 1})
    store.append_decision("other-group", 1, {"orders": 99})
    assert store.load_decisions("fraud", 1) == cuts
    assert store.load_decisions("other-group", 1) == [{"orders": 99}]
    store.save("fraud", 1, Checkpoint(offsets={"orders": 1}, state=b"x", config_hash="z"))
    store.delete("fraud", 1)
    assert store.load_decisions("fraud", 1) == [] and store.load_decisions("fraud", 2) == [{"orders": 1}]
    store.delete("fraud")
    assert store.load_decisions("fraud", 2) == [] and store.load_decisions("other-group", 1) == [{"orders": 99}]
