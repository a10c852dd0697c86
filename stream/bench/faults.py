"""The fault suite: ``riskstream run`` members under faults, with live traffic, checked against a replay.

Each scenario (issue 16) does, at the ``riskstream`` level:

1. unique co-partitioned topics (4 partitions), a private alert-store schema, a state directory, a config with
   ``kafka.exactly_once`` (the default) and short group timeouts;
2. ``members`` processes of ``riskstream run`` in one group, writing to PostgreSQL and the alerts topic;
3. a live producer, ``riskstream simulate --to-kafka --rate R``, started once every member owns units;
4. the fault, while the producer writes:

   - ``kills``: SIGKILL of a random member ``kills`` times, spread over the production, each restarted at once;
   - ``zombie``: SIGSTOP of a member owning units past the session timeout (the others take its units over and
     fence its transactional ids), then SIGCONT: it must step down (``event=fenced`` / ``partitions_lost``)
     and publish nothing;
   - ``broker-restart``: the (private) broker is stopped, left down ``broker_down_s`` (20 s: past the 5 s its
     transactions wait and a new client's 10 s bootstrap timeout), and started again;
   - ``pg-outage``: the (private) PostgreSQL server, which holds the alert store *and* the state store
     (checkpoints and merge decisions), is killed (``pg_ctl stop -m immediate``) and started again later;
   - ``join``: a member joins mid-run;

5. wait until the producer is done and the group's committed offsets reach the end of every input partition,
   then SIGTERM every member (each must exit 0);
6. ``riskstream replay --kafka --group G`` of the same offsets (the group's recorded merge decisions applied),
   and compare: the store against the replay's alerts (missing, duplicated, differing by id and every field
   but the HST reason text, score included), the alerts topic as a ``read_committed`` reader sees it
   (duplicated, missing, extra, differing), and the events the saved engine states absorbed against the
   orders and logins produced (every one exactly once).

:func:`run_scenario` returns a :class:`Result`; ``bench/faults/suite.py`` is the command line and
``tests/faults/test_fault_suite.py`` runs every scenario at a small size.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream.bench.harness import (
    PARTITIONS,
    RunProcess,
    Topics,
    committed_offsets,
    comparable,
    delete_topics,
    end_offsets,
    killable_pg_server,
    make_topics,
    private_schema,
    private_services_broker,
    read_topic,
    store_alerts,
    write_config,
)

SCENARIOS = ("kills", "zombie", "join", "broker-restart", "pg-outage")
CLI = [sys.executable, "-c", "from stream.cli import main; main()"]
STATE_KEY = "fault-suite-state-key-0123456789abcdef"


@dataclass
class FaultConfig:
    """One scenario's size and knobs."""

    scenario: str
    events: int = 40_000
    rate: float = 700.0
    members: int = 3
    kills: int = 20
    seed: int = 7
    #: The shared broker (kills, zombie, join, pg-outage); broker-restart starts a private one.
    bootstrap: str | None = None
    #: The shared PostgreSQL (the alert store is a private schema of it); pg-outage starts a private server.
    database: str | None = None
    workdir: Path | None = None
    session_timeout_ms: int = 6000
    checkpoint_interval_s: float = 1.0
    #: How long the zombie stays stopped, past the session timeout.
    zombie_stop_s: float | None = None
    #: How long PostgreSQL stays down.
    pg_down_s: float = 8.0
    #: How long the broker stays stopped before it starts again (broker-restart): past the 5 s its transactions wait
    #: for it there (``kafka.flush_timeout_s``) and a new client's ``kafka.bootstrap_timeout_ms`` (10 s), so units
    #: rewind and a producer opened meanwhile finds no broker at all.
    broker_down_s: float = 20.0
    #: Longest wait for the input to be consumed after the producer is done.
    drain_timeout_s: float = 300.0
    keep: bool = False


@dataclass
class Result:
    scenario: str
    events: int
    rate: float
    members: int
    faults: str = ""
    fault_count: int = 0
    produced: int = 0
    produce_s: float = 0.0
    total_s: float = 0.0
    drain_s: float = 0.0
    reference: int = 0
    store: int = 0
    store_missing: int = 0
    store_duplicated: int = 0
    store_extra: int = 0
    store_differing: int = 0
    topic: int = 0
    topic_missing: int = 0
    topic_duplicated: int = 0
    topic_extra: int = 0
    topic_differing: int = 0
    #: Events the saved engine states absorbed minus the orders and logins produced (0: each exactly once).
    state_events_delta: int | None = None
    exit_codes: dict[str, int] = field(default_factory=dict)
    #: Runtime log events that say what the fault did (fenced, partitions_lost, rewind, checkpoint_failed...).
    log_events: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    workdir: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return (not self.error and not self.crashes and self.reference > 0 and self.fault_count > 0
                and self.store_missing == self.store_duplicated == self.store_extra == self.store_differing == 0
                and self.topic_missing == self.topic_duplicated == self.topic_extra == self.topic_differing == 0
                and self.state_events_delta == 0 and all(c == 0 for c in self.exit_codes.values()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# --- the world of one scenario ------------------------------------------------------------------------------


@contextlib.contextmanager
def _broker(cfg: FaultConfig, root: Path) -> Iterator[tuple[str, Callable[[], None] | None]]:
    if cfg.scenario != "broker-restart":
        yield _shared_bootstrap(cfg), None
        return
    broker = private_services_broker(root / "kafka")
    try:
        yield broker.bootstrap, broker.restart
    finally:
        assert broker.stop is not None
        broker.stop()


def _shared_bootstrap(cfg: FaultConfig) -> str:
    boot = cfg.bootstrap or os.environ.get("RISKSTREAM_KAFKA_BOOTSTRAP")
    if not boot:
        raise RuntimeError("no broker: set RISKSTREAM_KAFKA_BOOTSTRAP (eval \"$(scripts/services env)\")")
    return boot


@contextlib.contextmanager
def _database(cfg: FaultConfig, root: Path) -> Iterator[tuple[str, Any]]:
    if cfg.scenario != "pg-outage":
        with private_schema(cfg.database or os.environ.get("RISKSTREAM_DATABASE_URL"), root) as url:
            yield url, None
        return
    with killable_pg_server() as server, private_schema(server.url, root) as url:
        yield url, server


def _without_alert_store(config: str) -> str:
    """The config without ``[sinks] database``."""
    out, section = [], ""
    for line in config.splitlines():
        if line.startswith("["):
            section = line.strip()
        if section == "[sinks]" and line.startswith("database ="):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _log_counts(procs: list[RunProcess]) -> dict[str, int]:
    names = ("fenced", "partitions_lost", "rewind", "checkpoint_failed", "checkpoint_recovered", "decision_failed",
             "transaction_ready", "transaction_failed", "unit_open_failed", "fence_cleared", "commit_failed",
             "revoked_without_checkpoint", "restart")
    text = "\n".join(p.output() for p in procs)
    return {n: len(re.findall(rf"event={n}\b", text)) for n in names if re.search(rf"event={n}\b", text)}


def _crashes(procs: list[RunProcess]) -> list[str]:
    """Tracebacks in the members' logs (a killed process leaves none; a crash does)."""
    out = []
    for p in procs:
        # a transient Kafka error restarts the member in-process (``event=restart``, logged with its traceback):
        # that is the recovery the scenario tests, counted in the events, not a crash
        text = re.sub(r"^\S+ \S+ WARNING \S+ event=restart .*?(?=^\d{4}-\d\d-\d\d |\Z)", "", p.output(),
                      flags=re.S | re.M)
        for m in re.finditer(r"Traceback \(most recent call last\):.*?(?=\n---|\n\S+=|\Z)", text, re.S):
            out.append(f"{p.log.name}: {m.group(0)[-600:]}")
        for m in re.finditer(r"riskstream: error: .*", text):
            out.append(f"{p.log.name}: {m.group(0)}")
    return out


class _Producer:
    """``riskstream simulate --to-kafka --rate R``, as a process."""

    def __init__(self, cfg: FaultConfig, config: Path, bootstrap: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM")}
        env.update(RISKSTREAM_KAFKA_BOOTSTRAP=bootstrap, PYTHONUNBUFFERED="1")
        self.log = log
        self.started = time.monotonic()
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [*CLI, "simulate", "--to-kafka", "--config", str(config), "--events", str(cfg.events),
                 "--seed", str(cfg.seed), "--rate", f"{cfg.rate:g}", "--partitions", str(PARTITIONS)],
                stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=log.parent)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def counts(self) -> dict[str, int]:
        m = re.search(r"produced ([\d,]+) events \(orders ([\d,]+), logins ([\d,]+), labels ([\d,]+)\)",
                      self.log.read_text(errors="replace"))
        if not m:
            return {}
        n = [int(g.replace(",", "")) for g in m.groups()]
        return {"events": n[0], "orders": n[1], "logins": n[2], "labels": n[3]}


class _World:
    def __init__(self, cfg: FaultConfig, root: Path, bootstrap: str, database: str) -> None:
        self.cfg, self.root, self.bootstrap, self.database = cfg, root, bootstrap, database
        self.topics: Topics = make_topics(bootstrap)
        self.procs: list[RunProcess] = []
        state_dir = root / "state"
        kafka = {"session_timeout_ms": cfg.session_timeout_ms, "heartbeat_interval_ms": 1000,
                 "checkpoint_interval_s": cfg.checkpoint_interval_s, "max_poll_records": 500,
                 "exactly_once": True}
        if cfg.scenario == "broker-restart":
            # Transactions give up on a silent broker after 5 s (not 30): units rewind and reopen while it is
            # still down, as they would in a longer outage.
            kafka["flush_timeout_s"] = 5.0
        self.config = write_config(root / "riskstream.toml", bootstrap, self.topics, state_dir=state_dir,
                                   database=database, **kafka)
        text = self.config.read_text()
        self.env: dict[str, str] = {}
        if cfg.scenario == "pg-outage":
            # The state store in PostgreSQL too: the outage hits checkpoints and merge decisions, not only alerts.
            text = text.replace("[state]\n", f'[state]\nstore = "postgres"\ndatabase = "{database}"\n')
            self.env["RISKSTREAM_STATE_KEY"] = STATE_KEY
        # A larger review budget: more alerts, so a record processed in another order shows in the comparison.
        text += "\n[engine]\nbudget = 0.05\n"
        self.config.write_text(text)
        # The replay's config: the same, but no alert store (a replay would write its alerts there).
        self.replay_config = root / "replay.toml"
        self.replay_config.write_text(_without_alert_store(text))

    def start(self, name: str) -> RunProcess:
        p = RunProcess(self.config, self.root / f"{name}.log", database=self.database, bootstrap=self.bootstrap,
                       env=self.env)
        self.procs.append(p)
        return p

    def owners(self) -> list[RunProcess]:
        """Members whose last assignment gave them units."""
        out = []
        for p in self.procs:
            got = re.findall(r"event=assigned units=(\S+)", p.output())
            if p.alive and got and got[-1] != "-":
                out.append(p)
        return out

    def wait_assigned(self, procs: list[RunProcess], timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not all(re.search(r"event=assigned units=\d", p.output()) for p in procs):
            if time.monotonic() > end or not all(p.alive for p in procs):
                raise TimeoutError("members did not get units:\n" + "\n".join(p.output()[-2000:] for p in procs))
            time.sleep(0.2)

    def inputs_end(self) -> dict[Any, int]:
        from kafka import TopicPartition

        return end_offsets(self.bootstrap, [TopicPartition(t, p) for t in self.topics.inputs
                                            for p in range(PARTITIONS)])

    def committed(self) -> dict[Any, int]:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        except Exception:  # noqa: BLE001 - the broker is restarting
            return {}
        try:
            return committed_offsets(admin, self.topics.group)
        except Exception:  # noqa: BLE001 - coordinator moving
            return {}
        finally:
            admin.close()

    def close(self) -> None:
        for p in self.procs:
            if p.alive:
                assert p.proc is not None
                if p.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.proc.send_signal(signal.SIGCONT)
                p.proc.kill()
                p.proc.wait()
        delete_topics(self.bootstrap, self.topics)


# --- faults -------------------------------------------------------------------------------------------------


def _wait_producing(world: _World, producer: _Producer, timeout_s: float = 120.0) -> None:
    """Until the producer's first records are in the input topics: each fault's timing is a fraction of the
    production, which starts only once the producer has imported and connected (~1 s idle, over 10 s on a loaded
    machine; a broker restarted before the producer's first connection made it give up)."""
    t0 = time.monotonic()
    while sum(world.inputs_end().values()) == 0:
        if not producer.running():
            return  # its exit code and log are reported by the caller
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"the producer wrote nothing within {timeout_s:.0f} s: {producer.log}")
        time.sleep(0.2)


def _kills(world: _World, producer: _Producer, cfg: FaultConfig, rng: random.Random) -> tuple[str, int]:
    span = cfg.events / cfg.rate if cfg.rate else 10.0
    gap = max(0.2, span / (cfg.kills + 1) - 0.45)  # minus the mean wait before the restart
    done = during = 0
    while done < cfg.kills:
        time.sleep(gap * rng.uniform(0.6, 1.4))
        alive = [p for p in world.procs if p.alive]
        victim = rng.choice(alive)
        victim.kill()
        done += 1
        during += producer.running()
        time.sleep(rng.uniform(0.1, 0.8))
        victim.start()
    return f"{done} x SIGKILL of a random member, restarted at once ({during} while producing)", done


def _zombie(world: _World, producer: _Producer, cfg: FaultConfig, rng: random.Random) -> tuple[str, int]:
    time.sleep(min(5.0, cfg.events / cfg.rate / 5 if cfg.rate else 2.0))
    owners = world.owners()
    victim = rng.choice(owners or [p for p in world.procs if p.alive])
    assert victim.proc is not None
    stop_s = cfg.zombie_stop_s or cfg.session_timeout_ms / 1000.0 * 2 + 4.0
    others = [p for p in world.procs if p is not victim]
    ready_before = sum(p.output().count("event=transaction_ready") for p in others)
    victim.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        # Past the session timeout, and until the others have opened transactions (fencing the zombie's ids).
        while time.monotonic() - t0 < stop_s or (
                sum(p.output().count("event=transaction_ready") for p in others) == ready_before
                and time.monotonic() - t0 < stop_s + 60):
            time.sleep(0.2)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    taken = sum(p.output().count("event=transaction_ready") for p in others) - ready_before
    world.zombie = victim  # type: ignore[attr-defined]
    return f"SIGSTOP of {victim.log.stem} for {time.monotonic() - t0:.0f} s (session {cfg.session_timeout_ms} ms), " \
           f"{taken} units taken over", 1 if taken else 0


def _join(world: _World, producer: _Producer, cfg: FaultConfig, rng: random.Random) -> tuple[str, int]:
    time.sleep((cfg.events / cfg.rate if cfg.rate else 10.0) * rng.uniform(0.3, 0.5))
    p = world.start(f"m{len(world.procs) + 1}")
    world.wait_assigned([p])
    return f"{p.log.stem} joined mid-run", 1


def _broker_restart(restart: Callable[[float], None]) -> Callable[..., tuple[str, int]]:
    def fault(world: _World, producer: _Producer, cfg: FaultConfig, rng: random.Random) -> tuple[str, int]:
        time.sleep((cfg.events / cfg.rate if cfg.rate else 10.0) * rng.uniform(0.25, 0.4))
        t0 = time.monotonic()
        restart(cfg.broker_down_s)
        return f"broker stopped for {cfg.broker_down_s:g} s and started again ({time.monotonic() - t0:.0f} s)", 1
    return fault


def _pg_outage(server: Any) -> Callable[..., tuple[str, int]]:
    def fault(world: _World, producer: _Producer, cfg: FaultConfig, rng: random.Random) -> tuple[str, int]:
        time.sleep((cfg.events / cfg.rate if cfg.rate else 10.0) * rng.uniform(0.25, 0.4))
        server.kill()
        t0 = time.monotonic()
        time.sleep(cfg.pg_down_s)
        server.start()
        return f"PostgreSQL (alert store + state store) killed for {time.monotonic() - t0:.0f} s", 1
    return fault


# --- the run ------------------------------------------------------------------------------------------------


def run_scenario(cfg: FaultConfig, log: Callable[[str], None] = lambda s: None) -> Result:
    """Run one scenario end to end; the :class:`Result` says what was found (never raises for a finding)."""
    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {cfg.scenario!r}; one of {', '.join(SCENARIOS)}")
    root = Path(tempfile.mkdtemp(prefix=f"faults-{cfg.scenario}-", dir=cfg.workdir))
    res = Result(cfg.scenario, cfg.events, cfg.rate, cfg.members, workdir=str(root))
    rng = random.Random(cfg.seed)
    t_start = time.monotonic()
    try:
        with _broker(cfg, root) as (bootstrap, restart), _database(cfg, root) as (database, pg):
            world = _World(cfg, root, bootstrap, database)
            try:
                _run(world, cfg, res, rng, restart, pg, log)
            finally:
                res.log_events = {**_log_counts(world.procs), **res.log_events}
                res.crashes = _crashes(world.procs)
                world.close()
    except Exception as e:  # noqa: BLE001 - reported in the result
        import traceback

        res.error = f"{type(e).__name__}: {e}"
        log(traceback.format_exc())
    res.total_s = round(time.monotonic() - t_start, 1)
    if not cfg.keep and res.ok:
        shutil.rmtree(root, ignore_errors=True)
    return res


def _run(world: _World, cfg: FaultConfig, res: Result, rng: random.Random, restart: Any, pg: Any,
         log: Callable[[str], None]) -> None:
    first = cfg.members - 1 if cfg.scenario == "join" else cfg.members
    members = [world.start(f"m{i + 1}") for i in range(first)]
    world.wait_assigned(members)
    log(f"{cfg.scenario}: {first} members own units; producing {cfg.events} events at {cfg.rate:g}/s")
    producer = _Producer(cfg, world.config, world.bootstrap, world.root / "producer.log")
    _wait_producing(world, producer)
    fault = {"kills": _kills, "zombie": _zombie, "join": _join}.get(cfg.scenario)
    if cfg.scenario == "broker-restart":
        fault = _broker_restart(restart)
    elif cfg.scenario == "pg-outage":
        fault = _pg_outage(pg)
    assert fault is not None
    res.faults, res.fault_count = fault(world, producer, cfg, rng)
    log(f"{cfg.scenario}: {res.faults}")
    if producer.running():
        res.faults += " (during production)"
    else:
        res.faults += " (after production ended)"
    code = producer.wait(timeout=cfg.events / max(cfg.rate, 1.0) * 3 + 300)
    res.produce_s = round(time.monotonic() - producer.started, 1)
    if code != 0:
        raise RuntimeError(f"the producer exited {code}: {producer.log.read_text()[-2000:]}")
    counts = producer.counts()
    res.produced = counts.get("events", 0)
    # Drain: the group's committed offsets at the end of every input partition.
    end = world.inputs_end()
    t0 = time.monotonic()
    while True:
        c = world.committed()
        if all(c.get(tp) == off for tp, off in end.items()):
            break
        dead = [p.log.stem for p in world.procs if not p.alive]
        if dead and not any(p.alive for p in world.procs):
            raise RuntimeError(f"every member has exited: {dead}")
        if time.monotonic() - t0 > cfg.drain_timeout_s:
            behind = {f"{tp.topic}/{tp.partition}": (c.get(tp), off) for tp, off in end.items() if c.get(tp) != off}
            raise TimeoutError(f"input not consumed within {cfg.drain_timeout_s:.0f} s: {behind}")
        time.sleep(0.5)
    res.drain_s = round(time.monotonic() - t0, 1)
    log(f"{cfg.scenario}: input consumed {res.drain_s} s after the producer ended; stopping members")
    for p in world.procs:
        if p.alive:
            res.exit_codes[p.log.stem] = p.terminate()
        elif p.proc is not None and p.proc.returncode not in (0, -signal.SIGKILL):
            res.exit_codes[p.log.stem] = p.proc.returncode
    # The reference: replay --kafka --group over the same offsets (the input's end, where the run stopped).
    out = world.root / "replay.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM")}
    env.update(world.env, RISKSTREAM_KAFKA_BOOTSTRAP=world.bootstrap)
    done = subprocess.run([*CLI, "replay", "--kafka", "-c", str(world.replay_config), "--group", world.topics.group,
                           "--alerts-out", str(out), "--quiet"], capture_output=True, text=True, env=env,
                          cwd=world.root, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"replay --kafka exited {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    from sinks.alert import Alert

    reference = {}
    for line in out.read_bytes().splitlines():
        if line.strip():
            a = Alert.from_json(line)
            reference[a.alert_id] = a
    res.reference = len(reference)
    _compare_store(res, store_alerts(world.database), reference)
    _compare_topic(res, read_topic(world.bootstrap, world.topics.alerts, committed=True), reference)
    res.state_events_delta = _state_events(world, cfg) - (counts.get("orders", 0) + counts.get("logins", 0))
    if cfg.scenario == "zombie":
        z = getattr(world, "zombie", None)
        if z is not None:
            text = z.output()
            res.log_events["zombie_fenced"] = text.count("event=fenced")
            res.log_events["zombie_lost"] = text.count("event=partitions_lost")
            # with owner epochs the resumed zombie may first be refused a merge decision (it steps down the same way)
            res.log_events["zombie_decision_fenced"] = text.count("event=decision_fenced")
            if not (res.log_events["zombie_fenced"] or res.log_events["zombie_lost"]
                    or res.log_events["zombie_decision_fenced"]):
                res.fault_count = 0  # it never noticed: not a zombie test
    log(f"{cfg.scenario}: {summary_line(res)}")


def _compare_store(res: Result, stored: list[Any], reference: dict[str, Any]) -> None:
    ids = Counter(a.alert_id for a in stored)
    res.store = len(stored)
    res.store_duplicated = sum(n - 1 for n in ids.values() if n > 1)
    res.store_missing = len(set(reference) - set(ids))
    res.store_extra = len(set(ids) - set(reference))
    got = {a.alert_id: a for a in stored}
    res.store_differing = sum(1 for i in set(reference) & set(got) if comparable(got[i]) != comparable(reference[i]))


def _compare_topic(res: Result, records: list[Any], reference: dict[str, Any]) -> None:
    from sinks.alert import Alert

    alerts = [Alert.from_json(r.value) for r in records]
    ids = Counter(a.alert_id for a in alerts)
    res.topic = len(alerts)
    res.topic_duplicated = sum(n - 1 for n in ids.values() if n > 1)
    res.topic_missing = len(set(reference) - set(ids))
    res.topic_extra = len(set(ids) - set(reference))
    res.topic_differing = sum(1 for a in alerts if a.alert_id in reference
                              and comparable(a) != comparable(reference[a.alert_id]))


def _state_events(world: _World, cfg: FaultConfig) -> int:
    """Events the saved engine states absorbed (each unit's last checkpoint)."""
    from stream.config import load_settings
    from stream.state import open_state_store

    settings = load_settings(world.config, env={"RISKSTREAM_STATE_KEY": STATE_KEY} if world.env else {})
    store = open_state_store(settings.state, key=settings.state_key, database=world.database)
    try:
        total = 0
        for unit in range(PARTITIONS):
            ck = store.load(world.topics.group, unit)
            total += ck.events if ck is not None else 0
        return total
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


# --- reporting ----------------------------------------------------------------------------------------------

COLUMNS = ("scenario", "faults", "produced", "reference", "store: missing/dup/extra/diff",
           "topic (read_committed): missing/dup/extra/diff", "state events Δ", "drain s", "total s", "ok")


def row(r: Result) -> list[str]:
    return [r.scenario, f"{r.fault_count}: {r.faults}" if not r.error else "ERROR " + " ".join(r.error.split())[:160],
            f"{r.produced:,}", f"{r.reference:,}",
            f"{r.store_missing}/{r.store_duplicated}/{r.store_extra}/{r.store_differing} of {r.store:,}",
            f"{r.topic_missing}/{r.topic_duplicated}/{r.topic_extra}/{r.topic_differing} of {r.topic:,}",
            str(r.state_events_delta), f"{r.drain_s:g}", f"{r.total_s:g}", "yes" if r.ok else "NO"]


def table(results: list[Result]) -> str:
    """A Markdown table of results."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


def summary_line(r: Result) -> str:
    return (f"{'OK' if r.ok else 'FAILED'} faults={r.fault_count} reference={r.reference} "
            f"store missing={r.store_missing} dup={r.store_duplicated} extra={r.store_extra} "
            f"diff={r.store_differing}; topic missing={r.topic_missing} dup={r.topic_duplicated} "
            f"extra={r.topic_extra} diff={r.topic_differing}; state events delta={r.state_events_delta}; "
            f"exits={r.exit_codes}; events={r.log_events}; crashes={len(r.crashes)} {r.error}")


def dump(results: list[Result], path: Path, command: str) -> None:
    path.write_text(json.dumps({"command": command, "results": [r.to_dict() for r in results]}, indent=2) + "\n")


__all__ = ["SCENARIOS", "FaultConfig", "Result", "run_scenario", "table", "summary_line", "dump"]
