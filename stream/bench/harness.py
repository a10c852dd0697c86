"""Process and broker helpers shared by the Kafka integration tests (``tests/kafka/conftest.py`` re-exports
them as fixtures) and the fault suite (:mod:`stream.bench.faults`, ``bench/faults/suite.py``): a real broker
(a private one that may be restarted), unique co-partitioned topics, simulated input, ``riskstream run``
processes, a private PostgreSQL cluster that may be killed, and readers for what the processes leave behind
(alerts topic, store, offsets, checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from sinks.alert import Alert
from sinks.memory import MemorySink
from stream.config import Settings, load_settings
from stream.events import encode
from stream.kafka import replay_kafka
from stream.sim import SimConfig, simulate
from stream.state import LocalStateStore

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services"
RUN_COMMAND = [sys.executable, "-c", "from stream.cli import main; main()", "run"]
PARTITIONS = 4


# --- the broker ---------------------------------------------------------------------------------------------


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def services_env() -> dict[str, str]:
    out = subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export ") :].split("=", 1)
            env[k] = v
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    """A Kafka broker the tests talk to; ``restart`` stops and starts it (data kept) when this run owns it;
    ``restart(down_s)`` keeps it stopped ``down_s`` seconds in between, where the broker supports it."""

    bootstrap: str
    restart: Callable[..., None] | None = None
    stop: Callable[[], None] | None = None


def container_broker() -> Broker:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.kafka import KafkaContainer

    port = free_port()
    container = KafkaContainer().with_kraft().with_bind_ports(9093, port)
    container.start()

    def restart() -> None:  # the fixed host port keeps the advertised listener valid across the restart
        container.get_wrapped_container().restart(timeout=30)
        wait_for_broker(container.get_bootstrap_server())

    return Broker(container.get_bootstrap_server(), restart, container.stop)


def private_services_broker(root: Path) -> Broker:
    """A broker of our own (own folder and ports) started with ``scripts/services``, so restarting it does not
    disturb anyone else using the shared one."""
    env = {
        **os.environ,
        "RISKSTREAM_SERVICES_DIR": str(root),
        "RISKSTREAM_KAFKA_PORT": str(free_port()),
        "RISKSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
    }

    def run(cmd: str) -> None:
        subprocess.run([str(SERVICES), cmd], env=env, check=True, capture_output=True, timeout=300)

    def restart(down_s: float = 0.0) -> None:
        if down_s > 0:
            run("down")
            time.sleep(down_s)
        run("restart-kafka")

    run("restart-kafka")
    return Broker(f"127.0.0.1:{env['RISKSTREAM_KAFKA_PORT']}", restart, lambda: run("down"))


def wait_for_broker(bootstrap: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000).close()
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > end:
                raise
            time.sleep(1)


# --- topics and input ---------------------------------------------------------------------------------------


@dataclass
class Topics:
    """One test's topics (unique names), created with :data:`PARTITIONS` partitions each."""

    orders: str
    logins: str
    labels: str
    alerts: str
    dead_letters: str
    group: str

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.orders, self.logins, self.labels)

    def input_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.inputs for p in range(PARTITIONS)]


def make_topics(bootstrap: str) -> Topics:
    x = uuid.uuid4().hex[:10]
    t = Topics(f"orders-{x}", f"logins-{x}", f"labels-{x}", f"alerts-{x}", f"dead-{x}", f"group-{x}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {
                name: {"num_partitions": PARTITIONS, "replication_factor": 1}
                for name in (*t.inputs, t.alerts, t.dead_letters)
            },
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return t


@dataclass
class Produced:
    """What was written to the input topics."""

    orders: int = 0
    logins: int = 0
    labels: int = 0
    extra: list[tuple[str, int, int, bytes]] = field(
        default_factory=list
    )  # (topic, partition, offset, value)

    @property
    def scored(self) -> int:
        return self.orders + self.logins


def produce_simulated(bootstrap: str, topics: Topics, events: int, seed: int,
                      sim: Mapping[str, Any] | None = None, part: tuple[float, float] = (0.0, 1.0)) -> Produced:
    """Simulated traffic keyed by user id: orders, logins and labels to their topics (a label is keyed by the
    user of the event it is about, so it lands in that event's partition unit); ``sim``: more ``SimConfig``
    settings (e.g. a shorter ``label_delay_s``); ``part``: only this stretch of the stream, as fractions of its
    length (``(0, 0.5)`` then ``(0.5, 1)`` produce the whole stream in two goes)."""
    stream = list(simulate(SimConfig(events=events, seed=seed, **(sim or {}))))
    user_of = {e.event_id: e.user_id for e in stream if e.type != "label"}
    out = Produced()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    try:
        for e in stream[round(part[0] * len(stream)) : round(part[1] * len(stream))]:
            if e.type == "label":
                key, topic = user_of.get(e.ref_event_id, e.ref_event_id), topics.labels
                out.labels += 1
            elif e.type == "order":
                key, topic = e.user_id, topics.orders
                out.orders += 1
            else:
                key, topic = e.user_id, topics.logins
                out.logins += 1
            producer.send(topic, key=key.encode(), value=encode(e))
        producer.flush()
    finally:
        producer.close()
    return out


def produce_raw(
    bootstrap: str, topic: str, values: Sequence[bytes], key: bytes = b"poison"
) -> list[tuple[int, int]]:
    """Send raw values; returns their (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    try:
        futures = [producer.send(topic, key=key, value=v) for v in values]
        producer.flush()
        return [(f.get(timeout=30).partition, f.get(timeout=30).offset) for f in futures]
    finally:
        producer.close()


# --- settings, store, processes -----------------------------------------------------------------------------


def write_config(
    path: Path, bootstrap: str, topics: Topics, *, state_dir: Path, database: str, **kafka: Any
) -> Path:
    """A config file for ``riskstream run`` (short group timeouts, frequent checkpoints)."""
    k = {
        "bootstrap_servers": bootstrap,
        "group_id": topics.group,
        "orders_topic": topics.orders,
        "logins_topic": topics.logins,
        "labels_topic": topics.labels,
        "alerts_topic": topics.alerts,
        "dead_letter_topic": topics.dead_letters,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "checkpoint_interval_s": 1.0,
        "poll_timeout_ms": 200,
        "max_poll_records": 500,
        **kafka,
    }

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = [
        "[kafka]",
        *(f"{key} = {val(v)}" for key, v in k.items()),
        "",
        "[state]",
        f"dir = {val(str(state_dir))}",
        "",
        "[sinks]",
        f"database = {val(database)}",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def settings_for(config: Path) -> Settings:
    return load_settings(config, env={})


class RunProcess:
    """One ``riskstream run --event-time-clock`` process; output goes to ``log``."""

    def __init__(
        self, config: Path, log: Path, *, database: str, bootstrap: str, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM")}
        self.env.update(
            RISKSTREAM_DATABASE_URL=database, RISKSTREAM_KAFKA_BOOTSTRAP=bootstrap, PYTHONUNBUFFERED="1"
        )
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            fh.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen(
                [*RUN_COMMAND, "--config", str(self.config), "--event-time-clock"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log.parent,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM and wait; the exit code (a process that hangs is killed and reported as -9)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# --- reading back -------------------------------------------------------------------------------------------


def end_offsets(bootstrap: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return c.end_offsets(list(tps))
    finally:
        c.close()


def committed_offsets(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets (absent partitions have none yet)."""
    got = admin.list_group_offsets({group: None}).get(group, {})
    return {tp: om.offset for tp, om in got.items() if om is not None and om.offset >= 0}


def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, procs: Sequence[RunProcess] = (), every: float = 0.2
) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            logs = "\n".join(f"--- {p.log.name} ---\n{p.output()[-3000:]}" for p in procs)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(every)


def read_topic(bootstrap: str, topic: str, *, committed: bool = False) -> list[Any]:
    """Every record of ``topic`` up to its current end, partition by partition (``committed``: as a
    ``read_committed`` reader, up to the last stable offset)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      isolation_level="read_committed" if committed else "read_uncommitted")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while any(c.position(tp) < end[tp] for tp in tps):
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
        return out
    finally:
        c.close()


def store_alerts(database: str) -> list[Alert]:
    from sinks.sql import SqlSink

    sink = SqlSink(database, create=False)
    try:
        return sink.query(limit=None)
    finally:
        sink.close()


def store_ids(database: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            try:
                return [r[0] for r in conn.execute(text("SELECT alert_id FROM alerts"))]
            except Exception:  # noqa: BLE001 - the table is created by the first process to start
                return []
    finally:
        engine.dispose()


def reference_alerts(settings: Settings) -> list[Alert]:
    """The uninterrupted replay of the same topics: what the consumer group must produce."""
    sink = MemorySink()
    replay_kafka(settings, sinks=[sink])
    return sink.alerts


def comparable(a: Alert) -> dict[str, Any]:
    """An alert's JSON form without ``reasons``: the explanation text of the HST detector depends on
    micro-batch boundaries (it reads the model after the whole batch), which differ between a live consumer
    and a replay."""
    d = a.to_dict()
    d.pop("reasons")
    return d


def checkpoints(state_dir: Path, group: str) -> dict[int, Any]:
    store = LocalStateStore(state_dir)
    return {u: store.load(group, u) for u in store.units(group)}


# --- a whole scenario: topics + input + config + processes + checks -----------------------------------------


class Scenario:
    """One test's world: unique topics filled with simulated input, a config for ``riskstream run``, an alert
    store and a state directory; starts processes and checks what they leave behind."""

    def __init__(
        self,
        root: Path,
        bootstrap: str,
        database: str,
        procs: list[RunProcess],
        *,
        events: int,
        seed: int,
        poison: Sequence[bytes] = (),
        sim: Mapping[str, Any] | None = None,
        held_back: float = 0.0,
        **kafka: Any,
    ) -> None:
        self.root = root
        self.bootstrap = bootstrap
        self.database = database
        self.procs = procs
        self.topics = make_topics(bootstrap)
        self.poison_at = produce_raw(bootstrap, self.topics.orders, poison) if poison else []
        self.poison = list(poison)
        # ``held_back``: the last fraction of the stream waits for :meth:`release`, so a test can put an event
        # (a member joining) before part of the input however fast the machine consumes the rest
        self._input = (events, seed, sim, 1.0 - held_back)
        self.produced = produce_simulated(bootstrap, self.topics, events, seed, sim, part=(0.0, 1.0 - held_back))
        self.state_dir = root / "state"
        self.config = write_config(
            root / "riskstream.toml",
            bootstrap,
            self.topics,
            state_dir=self.state_dir,
            database=database,
            **kafka,
        )
        self.settings = settings_for(self.config)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.end = end_offsets(bootstrap, self.topics.input_partitions())
        self.total = sum(self.end.values())

    def release(self) -> None:
        """Produce the input held back at construction (``held_back``); the end offsets now include it."""
        events, seed, sim, start = self._input
        assert start < 1.0, "nothing was held back"
        more = produce_simulated(self.bootstrap, self.topics, events, seed, sim, part=(start, 1.0))
        self.produced = Produced(self.produced.orders + more.orders, self.produced.logins + more.logins,
                                 self.produced.labels + more.labels)
        self._input = (events, seed, sim, 1.0)
        self.end = end_offsets(self.bootstrap, self.topics.input_partitions())
        self.total = sum(self.end.values())

    def configure(self, toml: str) -> None:
        """Append ``toml`` to the members' config file (read when each starts) and reload :attr:`settings`."""
        with open(self.config, "a") as fh:
            fh.write("\n" + toml)
        self.settings = settings_for(self.config)

    def kill_and_resume(self, name: str = "p1", at: float = 0.4) -> tuple[RunProcess, list[Alert]]:
        """One member killed (-9) once ``at`` of the input is committed, restarted, run to the end: it and the
        uninterrupted replay's alerts, which the store and the alerts topic were checked to hold exactly."""
        p = self.start(name)
        at_kill = self.wait_progress(at)
        p.kill()
        p.start()
        self.wait_done(timeout=300)
        self.stop_all()
        assert at_kill < 1.0, "the kill came after the input was consumed"
        reference = self.reference()
        self.assert_exact(reference)
        return p, reference

    def start(self, name: str) -> RunProcess:
        p = RunProcess(
            self.config, self.root / f"{name}.log", database=self.database, bootstrap=self.bootstrap
        )
        self.procs.append(p)
        return p

    def committed(self) -> dict[TopicPartition, int]:
        return committed_offsets(self.admin, self.topics.group)

    def progress(self) -> float:
        """Fraction of the input records below the group's committed offsets."""
        try:
            c = self.committed()
        except Exception:  # noqa: BLE001 - coordinator moving (broker restart); no progress known
            return 0.0
        return sum(min(c.get(tp, 0), end) for tp, end in self.end.items()) / self.total

    def done(self) -> bool:
        """Every input record committed, and every unit's saved state caught up with it. The two can part: with
        exactly once the state is saved after its transaction commits, so a member that leaves between the two
        (an in-process restart after a broker error leaves without a checkpoint) hands its successor a state
        behind the committed offsets, which the successor re-processes up to them (without publishing) and saves
        at a later checkpoint. :meth:`assert_exact` checks both, so this waits for both."""
        try:
            c = self.committed()
        except Exception:  # noqa: BLE001
            return False
        if not all(c.get(tp, -1) == end for tp, end in self.end.items()):
            return False
        try:
            cks = self.checkpoints()
        except Exception:  # noqa: BLE001 - a checkpoint being replaced; the next poll reads it
            return False
        return sorted(cks) == list(range(PARTITIONS)) and self._state_behind(cks) is None

    def _state_behind(self, cks: dict[int, Any]) -> str | None:
        """The first unit whose saved offsets are not the end of its input (``unit U TOPIC: OFFSET``), or None."""
        for unit, ck in cks.items():
            if ck is None:
                return f"unit {unit}: no checkpoint"
            for topic, off in ck.offsets.items():
                if off != self.end[TopicPartition(topic, unit)]:
                    return f"unit {unit} {topic}: {off}"
        return None

    def wait_progress(self, fraction: float, timeout: float = 120.0) -> float:
        wait_until(
            lambda: self.progress() >= fraction,
            timeout,
            f"{fraction:.0%} of the input committed",
            self.procs,
            every=0.05,
        )
        return self.progress()

    def wait_done(self, timeout: float = 180.0) -> None:
        wait_until(self.done, timeout, "every input record committed and in the saved state", self.procs)

    def stop_all(self) -> None:
        codes = {p.log.name: p.terminate() for p in self.procs if p.alive}
        bad = {k: v for k, v in codes.items() if v != 0}
        assert not bad, f"exit codes {bad}\n" + "\n".join(p.output()[-3000:] for p in self.procs)

    def reference(self) -> list[Alert]:
        """The alerts of an uninterrupted replay of this scenario's input."""
        return reference_alerts(self.settings)

    def store_ids(self) -> list[str]:
        return store_ids(self.database)

    def checkpoints(self) -> dict[int, Any]:
        return checkpoints(self.state_dir, self.topics.group)

    def read(self, topic: str) -> list[Any]:
        return read_topic(self.bootstrap, topic)

    def close(self) -> None:
        try:
            self.admin.delete_topics(
                [*self.topics.inputs, self.topics.alerts, self.topics.dead_letters], raise_errors=False
            )
        except Exception:  # noqa: BLE001 - best effort; names are unique anyway
            pass
        self.admin.close()

    # -- checks ----------------------------------------------------------------------------------------------

    def assert_exact(self, reference: Sequence[Alert]) -> None:
        """The store and the alerts topic hold exactly the reference alerts; every input record was processed
        exactly once into the saved state; committed offsets are at the end of the input."""
        ref = {a.alert_id: a for a in reference}
        assert len(ref) == len(reference), "the reference itself has duplicate ids"
        assert ref, "the scenario raised no alert at all; it would prove nothing"

        ids = store_ids(self.database)
        assert len(ids) == len(set(ids)), "duplicate alert ids in the store"
        assert set(ids) == set(ref), (
            f"store differs from the replay: missing {len(set(ref) - set(ids))}, "
            f"extra {len(set(ids) - set(ref))}"
        )
        for a in store_alerts(self.database):
            assert comparable(a) == comparable(ref[a.alert_id]), f"alert {a.alert_id} differs from the replay"

        records = read_topic(self.bootstrap, self.topics.alerts)
        topic_ids = set()
        for r in records:
            headers = dict(r.headers)
            alert = Alert.from_json(r.value)
            assert headers["alert_id"].decode() == alert.alert_id
            assert headers["schema_version"] == b"1"
            assert r.key.decode() == alert.entity_key
            assert comparable(alert) == comparable(ref[alert.alert_id])
            topic_ids.add(alert.alert_id)
        assert topic_ids == set(ref), "alerts topic differs from the replay"

        committed = self.committed()
        assert {tp: committed.get(tp) for tp in self.end} == self.end

        cks = checkpoints(self.state_dir, self.topics.group)
        assert sorted(cks) == list(range(PARTITIONS))
        behind = self._state_behind(cks)
        assert behind is None, behind
        # Engine state counts every order and login it absorbed: each exactly once, across crashes and moves.
        assert sum(ck.events for ck in cks.values()) == self.produced.scored


def delete_topics(bootstrap: str, topics: Topics) -> None:
    """Delete a test's topics (best effort; the names are unique anyway)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    except Exception:  # noqa: BLE001
        return
    try:
        admin.delete_topics([*topics.inputs, topics.alerts, topics.dead_letters], raise_errors=False)
    except Exception:  # noqa: BLE001
        pass
    finally:
        admin.close()


@contextlib.contextmanager
def private_schema(base: str | None, sqlite_dir: Path) -> Iterator[str]:
    """A private alert store: a new schema of the PostgreSQL at ``base`` (dropped afterwards), else SQLite."""
    if not base:
        yield f"sqlite:///{sqlite_dir / 'alerts.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    schema = f"kt_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"
    finally:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        except Exception:  # noqa: BLE001 - a killed server that is not back; the cluster is thrown away anyway
            pass
        engine.dispose()


# --- a PostgreSQL server that may be killed -----------------------------------------------------------------


def pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries under /usr/lib/postgresql (what ``scripts/services`` installs)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                   if p.parent.name.isdigit() else 0)
    found = [d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return found[-1] if found else None


@dataclass
class KillablePg:
    """A private PostgreSQL cluster: ``url``; ``kill()`` crashes it, ``start()`` brings it back on the same port."""

    bin: Path
    root: Path
    port: int
    as_postgres: bool

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=3"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text()[-2000:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.root / "data"), "-U", "postgres", "-E", "UTF8", "--auth=trust",
                  "--no-sync")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off")  # commits stay synchronous: a killed server keeps them
        self._run("pg_ctl", "start", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o", opts)

    def kill(self) -> None:
        """Stop at once, without a shutdown checkpoint (the server recovers from its WAL on the next start)."""
        self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w", "-t", "60")

    def running(self) -> bool:
        cmd = [str(self.bin / "pg_ctl"), "status", "-D", str(self.root / "data")]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def killable_pg_server(binaries: Path | None = None) -> Iterator[KillablePg]:
    """Start a throwaway cluster (initdb into a temporary folder, a free port); removed on exit."""
    binaries = binaries or pg_bin()
    if binaries is None:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (scripts/services up "
                           "installs them)")
    as_postgres = os.geteuid() == 0  # postgres refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="riskstream-pgtest-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    server = KillablePg(binaries, root, free_port(), as_postgres)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
