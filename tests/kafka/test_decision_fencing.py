"""Owner epochs on the merge-decision log: a member that owns a unit claims its decision log (the unit's epoch goes
up), and a cut is recorded only under the latest epoch, as a compare-and-set serialised with the claims. A member
that lost the unit but keeps running (a zombie: stalled past its timeouts, then resumed) gets ``DecisionFenced``
at its next decision and steps down from the unit without recording anything; nothing it tried to record after
losing the claim is ever read by the new owner or by ``replay_kafka(..., group=...)``, and the replay of the group
equals what the group published. Pruning deletes cuts below the input topics' log-start offsets
(``kafka.decision_prune_interval_s``), counted in ``decisions_pruned``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from sinks.alert import Alert
from sinks.memory import MemorySink
from stream.cli import cli as cli_main
from stream.config import Settings, load_settings
from stream.errors import DecisionFenced
from stream.events import encode
from stream.kafka import RuntimeStats, replay_kafka, run_consumer
from stream.kafka.observability import RuntimeCollector
from stream.sim import SimConfig, simulate
from stream.state import LocalStateStore, open_state_store
from stream.state.postgres import PgStateStore
from tests.kafka.conftest import (
    PARTITIONS,
    RunProcess,
    Topics,
    committed_offsets,
    comparable,
    end_offsets,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.kafka

KEY = b"0123456789abcdef0123456789abcdef"


def _store(kind: str, root: Path) -> Any:
    """A fresh handle on the shared state of a test (each member opens its own, as separate processes do)."""
    if kind == "local":
        return LocalStateStore(root / "state", fsync=False)
    return PgStateStore(f"sqlite:///{root / 'state.db'}", key=KEY)


def _settings(bootstrap: str, topics: Topics, kind: str, root: Path, **kafka: Any) -> Settings:
    """The members' settings; ``[state]`` names the store :func:`_store` opens, so that
    ``replay_kafka(settings, group=...)`` reads the decisions the members recorded (as ``riskstream replay --kafka
    --group`` does with the run's configuration), not some other directory's."""
    over = {"bootstrap_servers": bootstrap, "orders_topic": topics.orders, "logins_topic": topics.logins,
            "labels_topic": topics.labels, "alerts_topic": topics.alerts, "dead_letter_topic": topics.dead_letters,
            "group_id": topics.group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
            "checkpoint_interval_s": 1.0, "poll_timeout_ms": 200, "max_poll_records": 100,
            "idle_timeout_s": 0.3, "idle_decision_interval_s": 0.05, **kafka}
    overrides: dict[str, Any] = {f"kafka.{k}": v for k, v in over.items()}
    env: dict[str, str] = {}
    if kind == "local":
        overrides |= {"state.store": "local", "state.dir": str(root / "state")}
    else:
        overrides |= {"state.store": "postgres", "state.database": f"sqlite:///{root / 'state.db'}",
                      "state.key_env": "RISKSTREAM_STATE_KEY"}
        env["RISKSTREAM_STATE_KEY"] = KEY.decode()
    return load_settings(None, env=env, overrides=overrides)


class Bursts:
    """Simulated orders and logins written in ``bursts`` bursts ``gap_s`` apart, from a thread, while the members
    run; the labels topic stays silent. Each quiet gap makes every unit decide that the topics it waits for ended
    where they stand, so the decision logs fill as the input arrives."""

    def __init__(self, bootstrap: str, topics: Topics, *, events: int, seed: int, bursts: int, gap_s: float) -> None:
        stream = [e for e in simulate(SimConfig(events=events, seed=seed)) if e.type != "label"]
        size = -(-len(stream) // bursts)
        self.chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        self.bootstrap, self.topics, self.gap_s = bootstrap, topics, gap_s
        self.errors: list[BaseException] = []
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20, acks="all")
        try:
            for chunk in self.chunks:
                for e in chunk:
                    topic = self.topics.orders if e.type == "order" else self.topics.logins
                    producer.send(topic, key=e.user_id.encode(), value=encode(e))
                producer.flush()
                self.first.set()
                time.sleep(self.gap_s)
        except BaseException as e:  # noqa: BLE001 - reported by join
            self.errors.append(e)
        finally:
            producer.close()

    def join(self) -> None:
        self.thread.join(timeout=300)
        assert not self.thread.is_alive() and not self.errors, self.errors


def _committed_alerts(bootstrap: str, topic: str) -> list[Alert]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out: list[Alert] = []
        deadline = time.monotonic() + 60
        while any(c.position(tp) < end[tp] for tp in tps):
            for recs in c.poll(timeout_ms=500).values():
                out.extend(Alert.from_json(r.value) for r in recs)
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
        return out
    finally:
        c.close()


def _assert_replay_equals_published(settings: Settings, bootstrap: str, topics: Topics,
                                    recorded: Any) -> list[Alert]:
    """``replay_kafka(group=...)`` (the recorded cuts applied) gives exactly the alerts on the committed topic.

    ``recorded`` is a handle on the store the members wrote their decisions to: the store the settings name (the
    one the replay reads) must hold the same cuts, and some, or the replay would merge by the data alone and the
    comparison would hold or fail by the timing of the input, not by what the group decided."""
    expected = {u: recorded.load_decisions(topics.group, u) for u in range(PARTITIONS)}
    assert any(expected.values()), "the members recorded no decision: the replay of the group would prove nothing"
    store = open_state_store(settings.state, key=settings.state_key)
    try:
        read = {u: store.load_decisions(topics.group, u) for u in range(PARTITIONS)}  # type: ignore[attr-defined]
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    assert read == expected, (f"the replay would read other decisions than the members recorded: cuts per unit "
                              f"{ {u: len(c) for u, c in read.items()} } in {settings.state!r}, recorded "
                              f"{ {u: len(c) for u, c in expected.items()} }")
    ref = MemorySink()
    replay_kafka(settings, sinks=[ref], group=topics.group)
    published = _committed_alerts(bootstrap, topics.alerts)
    ids = Counter(a.alert_id for a in published)
    assert not [i for i, n in ids.items() if n > 1], "an alert was published twice"
    by_id = {a.alert_id: a for a in ref.alerts}
    assert ref.alerts, "the scenario raised no alert at all; it would prove nothing"
    assert set(ids) == set(by_id), (f"published vs replay of the group: {len(set(by_id) - set(ids))} missing, "
                                    f"{len(set(ids) - set(by_id))} extra")
    for a in published:
        assert comparable(a) == comparable(by_id[a.alert_id]), f"alert {a.alert_id} differs from the replay"
    return published


class StallingStore:
    """A member's state store that stalls its ``stall_at``-th decision (before it reaches the store) until
    ``release`` is set: the member is a zombie from then on if the group moves its unit meanwhile."""

    def __init__(self, inner: Any, stall_at: int) -> None:
        self.inner = inner
        self.stall_at = stall_at
        self.calls = 0
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.stalled_call: tuple[int, int | None, dict[str, int]] | None = None
        self.outcome: Any = None
        self.recorded: Counter[tuple[int, int | None]] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append_decision(self, group: str, unit: int, cut: Any, *, epoch: int | None = None) -> None:
        self.calls += 1
        if self.calls == self.stall_at:
            self.stalled_call = (unit, epoch, dict(cut))
            self.stalled.set()
            assert self.release.wait(180), "never released"
            try:
                self.inner.append_decision(group, unit, cut, epoch=epoch)
            except BaseException as e:
                self.outcome = e
                raise
            self.outcome = "recorded"
        else:
            self.inner.append_decision(group, unit, cut, epoch=epoch)
        self.recorded[(unit, epoch)] += 1


class Member:
    """``run_consumer`` in a thread."""

    def __init__(self, settings: Settings, store: Any) -> None:
        self.stats = RuntimeStats()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(settings, store), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings, store: Any) -> None:
        try:
            run_consumer(settings, stop=self.stop, store=store, stats=self.stats,
                         event_time_clock=True, log_every_s=600, install_signal_handlers=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            import traceback

            traceback.print_exc()
            self.errors.append(e)

    def wait_owning(self, n: int = PARTITIONS, timeout: float = 60) -> None:
        """Until the member owns ``n`` units and has begun processing (so input written from now on arrives
        live, burst after burst)."""
        def ready() -> bool:
            assert not self.errors, repr(self.errors[0])
            return len(self.stats.units) >= n and self.stats.transactions + self.stats.checkpoints > 0

        wait_until(ready, timeout, f"the member to own {n} units")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "the member did not stop"
        assert not self.errors, repr(self.errors[0])


def _wait_committed(bootstrap: str, topics: Topics, members: list[Member], timeout: float = 180) -> None:
    end = end_offsets(bootstrap, topics.input_partitions())
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        def done() -> bool:
            for m in members:
                assert not m.errors, repr(m.errors[0])
            got = committed_offsets(admin, topics.group)
            return all(got.get(tp) == off for tp, off in end.items())

        try:
            wait_until(done, timeout, "every input record committed")
        except AssertionError:
            got = committed_offsets(admin, topics.group)
            behind = {f"{tp.topic}/{tp.partition}": (got.get(tp), off) for tp, off in end.items() if got.get(tp) != off}
            raise AssertionError(f"not committed (committed, end): {behind}; members: "
                                 f"{[m.stats.snapshot() | {'latency': None} for m in members]}") from None
    finally:
        admin.close()


# --- the stores, without Kafka ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "sqlite"])
def test_a_claim_fences_the_previous_owner_and_its_late_cut_is_never_recorded(kind, tmp_path):
    old, new = _store(kind, tmp_path), _store(kind, tmp_path)
    e1 = old.claim_unit("g", 2, "old")
    old.append_decision("g", 2, {"orders": 5, "logins": 3}, epoch=e1)
    e2 = new.claim_unit("g", 2, "new")
    assert (e1, e2) == (1, 2)
    assert new.load_decisions("g", 2) == [{"orders": 5, "logins": 3}]  # what old recorded while it owned the unit
    with pytest.raises(DecisionFenced) as info:
        old.append_decision("g", 2, {"orders": 9, "logins": 9}, epoch=e1)
    assert (info.value.epoch, info.value.current) == (1, 2)
    new.append_decision("g", 2, {"orders": 7, "logins": 4}, epoch=e2)
    for s in (old, new, _store(kind, tmp_path)):
        assert s.load_decisions("g", 2) == [{"orders": 5, "logins": 3}, {"orders": 7, "logins": 4}]
        assert [d["owner"] for d in s.decision_log("g", 2)] == [1, 2]
    assert new.load_decisions("g", 1) == [] and new.claim_unit("g", 1, "x") == 1  # per unit


@pytest.mark.parametrize("kind", ["local", "sqlite"])
def test_the_replay_of_the_group_reads_the_members_decisions(kind, tmp_path):
    """The settings the members run with name their store, so ``replay_kafka(settings, group=...)`` applies the
    cuts they recorded. (The settings once left ``[state]`` at its default, a ``riskstream-state`` folder in the
    working directory: the replay read no cut at all, merged by the data alone, and the two-owner comparison
    failed whenever a decision had mattered, intermittently: "published vs replay of the group: 0 missing, 2
    extra". Applied, the recorded cuts gave exactly the published alerts.)"""
    from stream.kafka.replay import _recorded_cuts

    topics = Topics("o", "l", "b", "a", "d", "g")
    settings = _settings("127.0.0.1:1", topics, kind, tmp_path)
    member = _store(kind, tmp_path)
    e = member.claim_unit("g", 1, "m")
    cuts = [{"o": 3, "l": 0, "b": 0}, {"o": 5, "l": 2, "b": 0}]
    for c in cuts:
        member.append_decision("g", 1, c, epoch=e)
    assert _recorded_cuts(settings, "g", list(range(PARTITIONS))) == {u: cuts if u == 1 else []
                                                                      for u in range(PARTITIONS)}


def test_a_cut_slipped_in_under_a_superseded_epoch_is_invisible_and_pruned(tmp_path):
    """The reader's side of the rule: a cut of an older epoch written after a newer claim (by a store that lost its
    lock, a copied file) is never returned, not even after pruning the cuts around it."""
    store = LocalStateStore(tmp_path, fsync=False)
    e1 = store.claim_unit("g", 0, "a")
    store.append_decision("g", 0, {"orders": 2}, epoch=e1)
    store.claim_unit("g", 0, "b")
    with open(store.decisions_path("g", 0), "ab") as fh:  # bypass the CAS
        fh.write(b"\n" + orjson.dumps({"cut": {"orders": 3}, "owner": e1, "at": 0.0}) + b"\n")
    assert store.load_decisions("g", 0) == [{"orders": 2}]
    assert [d["visible"] for d in store.decision_log("g", 0)] == [True, False]
    assert store.prune_decisions("g", 0, {"orders": 2}) == 2
    assert store.load_decisions("g", 0) == []
    with open(store.decisions_path("g", 0), "ab") as fh:  # the epoch survives the rewrite
        fh.write(b"\n" + orjson.dumps({"cut": {"orders": 4}, "owner": e1, "at": 0.0}) + b"\n")
    assert store.load_decisions("g", 0) == []


@pytest.mark.parametrize("kind", ["local", "sqlite"])
def test_pruning_keeps_every_cut_a_reader_can_still_need(kind, tmp_path):
    store = _store(kind, tmp_path)
    e = store.claim_unit("g", 0, "a")
    cuts = [{"orders": 3, "logins": 0, "labels": 0}, {"orders": 3, "logins": 2, "labels": 0},
            {"orders": 6, "logins": 2, "labels": 1}]
    for c in cuts:
        store.append_decision("g", 0, c, epoch=e)
    assert store.prune_decisions("g", 0, {"orders": 0, "logins": 0, "labels": 0}) == 0
    assert store.prune_decisions("g", 0, {"orders": 5, "logins": 1}) == 0  # labels' log start unknown: kept
    assert store.prune_decisions("g", 0, {"orders": 5, "logins": 1, "labels": 0}) == 1
    assert store.prune_decisions("g", 0, {"orders": 5, "logins": 1, "labels": 0}) == 0
    assert store.load_decisions("g", 0) == cuts[1:]
    assert store.prune_decisions("g", 0, {"orders": 5, "logins": 2, "labels": 0}) == 1
    assert store.load_decisions("g", 0) == cuts[2:]
    with pytest.raises(DecisionFenced):  # pruning does not reset the epoch
        store.append_decision("g", 0, {"orders": 7}, epoch=e - 1 if e > 1 else 0)
    store.append_decision("g", 0, {"orders": 7, "logins": 2, "labels": 1}, epoch=e)
    assert len(store.load_decisions("g", 0)) == 2


def test_local_claims_and_appends_never_interleave(tmp_path):
    """A zombie appends as fast as it can while the new owner claims: once the claim has returned, not one more
    cut of the old epoch reaches the log (the flock serialises the compare-and-set with the claim). Without the
    lock about half the rounds fail; five rounds."""
    zombie, owner = LocalStateStore(tmp_path, fsync=False), LocalStateStore(tmp_path, fsync=False)
    for unit in range(5):
        e1 = zombie.claim_unit("g", unit, "zombie")
        done: list[int] = []

        def spam(unit: int = unit, e1: int = e1, done: list[int] = done) -> None:
            n = 0
            try:
                while True:
                    zombie.append_decision("g", unit, {"orders": n}, epoch=e1)
                    n += 1
            except DecisionFenced:
                done.append(n)

        t = threading.Thread(target=spam)
        t.start()
        time.sleep(0.1)
        owner.claim_unit("g", unit, "owner")
        at_claim = sum(1 for d in owner.decision_log("g", unit) if d["owner"] == e1)
        t.join(10)
        assert done and at_claim == done[0] > 0
        assert sum(1 for d in owner.decision_log("g", unit) if d["owner"] == e1) == at_claim


# --- with Kafka ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "sqlite"])
def test_two_owners_the_old_one_is_fenced_and_its_decision_never_visible(kind, kafka_bootstrap, topics, tmp_path):
    """Member A stalls inside its 10th decision (before the store sees it) past ``max_poll_interval_ms``: its
    heartbeat thread leaves the group, member B joins, gets every unit and claims their decision logs. A is
    released: its decision is refused (``DecisionFenced``), it steps down from the unit, rejoins, and the group
    finishes the input. The refused cut is in no log; the committed alerts topic equals the group's replay."""
    settings = _settings(kafka_bootstrap, topics, kind, tmp_path, max_poll_interval_ms=7000)
    a_store = StallingStore(_store(kind, tmp_path), stall_at=10)
    a = Member(settings, a_store)
    members = [a]
    a.wait_owning()
    bursts = Bursts(kafka_bootstrap, topics, events=16_000, seed=41, bursts=40, gap_s=0.3)
    try:
        assert a_store.stalled.wait(120), "member A never made 10 decisions"
        unit, a_epoch, cut = a_store.stalled_call  # type: ignore[misc]
        assert a_epoch is not None
        observer = _store(kind, tmp_path)
        recorded_before = [d for d in observer.decision_log(topics.group, unit) if d["owner"] == a_epoch]
        b = Member(settings, _store(kind, tmp_path))
        members.append(b)
        wait_until(lambda: observer.epoch(topics.group, unit) > a_epoch, 90, "member B to claim the unit")
        a_store.release.set()
        wait_until(lambda: a_store.outcome is not None, 30, "member A's stalled decision to return")
        assert isinstance(a_store.outcome, DecisionFenced), a_store.outcome
        assert a.stats.decisions_fenced >= 1 and a.stats.fenced >= 1
        after = [d for d in observer.decision_log(topics.group, unit) if d["owner"] == a_epoch]
        assert after == recorded_before, "the zombie recorded a cut after losing the claim"
        bursts.join()
        _wait_committed(kafka_bootstrap, topics, members)
    finally:
        a_store.release.set()
        for m in members:
            m.close()
    log = observer.decision_log(topics.group, unit)
    assert all(d["visible"] for d in log), "an invisible cut reached the log"
    assert [d["owner"] for d in log if d["owner"] == a_epoch] == [a_epoch] * len(recorded_before)
    assert sum(len(observer.load_decisions(topics.group, u)) for u in range(PARTITIONS)) > 10
    _assert_replay_equals_published(settings, kafka_bootstrap, topics, observer)


_ZOMBIE = textwrap.dedent("""
    import os, signal, sys
    import orjson
    from stream.cli import main
    from stream.state import local

    stall_file, note = sys.argv[1], sys.argv[2]
    real = local.LocalStateStore.append_decision

    def publish(path, data):  # whole or not at all: the test reads a file as soon as it exists
        with open(path + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(path + ".tmp", path)

    def append_decision(self, group, unit, cut, *, epoch=None):
        if os.path.exists(stall_file):
            os.unlink(stall_file)
            publish(note, orjson.dumps({"unit": unit, "epoch": epoch, "cut": dict(cut)}))
            os.kill(os.getpid(), signal.SIGSTOP)  # a stall exactly at the decision: resumed by the test
            try:
                real(self, group, unit, cut, epoch=epoch)
            except Exception as e:
                publish(note + ".outcome", type(e).__name__.encode())
                raise
            publish(note + ".outcome", b"recorded")
            return
        return real(self, group, unit, cut, epoch=epoch)

    local.LocalStateStore.append_decision = append_decision
    sys.argv = ["riskstream", *sys.argv[3:]]
    main()
""")


class ZombieProcess(RunProcess):
    """``riskstream run`` whose next decision after ``stall`` appears SIGSTOPs the process (see ``_ZOMBIE``)."""

    def __init__(self, *args: Any, stall: Path, note: Path, **kwargs: Any) -> None:
        self.stall, self.note = stall, note
        super().__init__(*args, **kwargs)

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ZOMBIE, str(self.stall), str(self.note), "run", "--config",
                 str(self.config), "--event-time-clock"],
                stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=self.log.parent)


def test_a_resumed_zombie_steps_down_cleanly(kafka_bootstrap, topics, tmp_path, alert_db, processes):
    """``riskstream run`` p1 is SIGSTOPped inside a decision (before the store sees it), past its session timeout;
    p2 takes every unit over and claims them. p1 is resumed (SIGCONT): its decision is refused, it logs
    ``decision_fenced``, drops the unit without recording, publishing or saving, rejoins, and both stop with exit
    code 0. The refused cut is in no log, and the group's replay equals the committed alerts topic."""
    config = write_config(tmp_path / "riskstream.toml", kafka_bootstrap, topics, state_dir=tmp_path / "state",
                          database=alert_db, max_poll_records=100, idle_timeout_s=0.3, idle_decision_interval_s=0.05)
    settings = load_settings(config, env={})
    stall, note = tmp_path / "stall", tmp_path / "stalled.json"
    p1 = ZombieProcess(config, tmp_path / "p1.log", database=alert_db, bootstrap=kafka_bootstrap,
                       stall=stall, note=note)
    processes.append(p1)
    assert p1.proc is not None
    bursts = Bursts(kafka_bootstrap, topics, events=20_000, seed=43, bursts=50, gap_s=0.3)
    store = LocalStateStore(tmp_path / "state")
    wait_until(lambda: sum(len(store.load_decisions(topics.group, u)) for u in range(PARTITIONS)) >= 8, 90,
               "p1 to record some decisions", [p1])
    stall.touch()
    wait_until(note.exists, 60, "p1 to stall in a decision", [p1])
    time.sleep(0.2)
    stalled = orjson.loads(note.read_bytes())
    unit, epoch = stalled["unit"], stalled["epoch"]
    before = [d for d in store.decision_log(topics.group, unit) if d["owner"] == epoch]
    try:
        p2 = RunProcess(config, tmp_path / "p2.log", database=alert_db, bootstrap=kafka_bootstrap)
        processes.append(p2)
        wait_until(lambda: store.epoch(topics.group, unit) > epoch, 90, "p2 to claim the unit", [p2])
    finally:
        os.kill(p1.proc.pid, signal.SIGCONT)
    outcome = Path(str(note) + ".outcome")
    wait_until(outcome.exists, 60, "p1's stalled decision to return", [p1])
    assert outcome.read_text() == "DecisionFenced"
    bursts.join()
    end = end_offsets(kafka_bootstrap, topics.input_partitions())
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        wait_until(lambda: all(committed_offsets(admin, topics.group).get(tp) == o for tp, o in end.items()),
                   240, "every input record committed", [p1, p2])
    finally:
        admin.close()
    codes = {p.log.name: p.terminate() for p in (p1, p2)}
    assert codes == {"p1.log": 0, "p2.log": 0}, codes
    out = p1.output()
    assert f"event=decision_fenced unit={unit}" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert [d for d in store.decision_log(topics.group, unit) if d["owner"] == epoch] == before
    assert all(d["visible"] for u in range(PARTITIONS) for d in store.decision_log(topics.group, u))
    _assert_replay_equals_published(settings, kafka_bootstrap, topics, store)


# --- pruning -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "sqlite"])
def test_decisions_below_the_log_start_are_pruned(kind, kafka_bootstrap, topics, tmp_path):
    """A member records cuts while it consumes; nothing is pruned while the topics start at 0. Then the log start
    of every input partition is moved (``delete_records``) to the offsets of one of its unit's middle cuts: the
    member prunes exactly the cuts at or below it, keeps the rest, and counts them in ``decisions_pruned``."""
    settings = _settings(kafka_bootstrap, topics, kind, tmp_path, decision_prune_interval_s=0.5)
    store = _store(kind, tmp_path)
    m = Member(settings, _store(kind, tmp_path))
    try:
        m.wait_owning()
        Bursts(kafka_bootstrap, topics, events=6_000, seed=45, bursts=8, gap_s=0.4).join()
        _wait_committed(kafka_bootstrap, topics, [m])
        time.sleep(1.5)  # a few prune rounds with the log start at 0
        assert m.stats.decisions_pruned == 0
        cuts = {u: store.load_decisions(topics.group, u) for u in range(PARTITIONS)}
        assert all(len(c) >= 3 for c in cuts.values()), {u: len(c) for u, c in cuts.items()}
        target = {u: c[len(c) // 2] for u, c in cuts.items()}
        moves = {TopicPartition(t, u): off for u, cut in target.items() for t, off in cut.items() if off > 0}
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_records(moves)
        finally:
            admin.close()
        c = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
        try:
            begin = c.beginning_offsets(list(moves))
        finally:
            c.close()
        assert begin == moves, "delete_records did not move the log start"
        expected = {u: [c for c in cs if not all(o <= target[u][t] for t, o in c.items())] for u, cs in cuts.items()}
        gone = sum(len(cuts[u]) - len(expected[u]) for u in cuts)
        assert gone == sum(len(c) // 2 + 1 for c in cuts.values())
        wait_until(lambda: m.stats.decisions_pruned >= gone, 30, f"{gone} decisions pruned")
        time.sleep(1.0)
        assert m.stats.decisions_pruned == gone
        for u in range(PARTITIONS):
            assert store.load_decisions(topics.group, u) == expected[u]
        metrics = {f.name: f.samples[0].value for f in RuntimeCollector(m.stats).collect() if f.samples}
        assert metrics["riskstream_decisions_pruned"] == gone
    finally:
        m.close()


@pytest.mark.parametrize("value", ['"soon"', "-5", "nan", "inf"])
def test_a_bad_decision_prune_interval_is_one_line_and_exit_2(tmp_path: Path, value: str):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[kafka]\ndecision_prune_interval_s = {value}\n")
    result = CliRunner().invoke(cli_main, ["run", "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("riskstream: error: config key 'kafka.decision_prune_interval_s' must be ")
