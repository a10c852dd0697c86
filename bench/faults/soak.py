"""A soak: paced live traffic through ``riskstream run`` for an hour, two members, one of them killed periodically.

    python bench/faults/soak.py --minutes 60 --rate 300 --kill-every 300 --out bench/results/soak_60m.json
    python bench/faults/soak.py --minutes 60 --rate 300 --kill-every 300 --config bench/faults/soak-caps.toml \
        --out bench/results/soak_60m_caps.json

``riskstream simulate --to-kafka --rate R`` produces the traffic while two ``riskstream run`` members of one
group consume it (exactly-once output, the alerts also stored in PostgreSQL). Member ``a`` runs the whole time, so
its RSS over the hour says whether memory stays flat while partition units move to it and away; member ``b`` is
SIGKILLed every ``--kill-every`` seconds and restarted a few seconds later (its units move to ``a`` and back).

Every ``--sample-every`` seconds: each member's RSS (``/proc``), the group's lag (input end offsets minus committed
offsets) and the records produced. A subscriber reads the alerts topic ``read_committed`` the whole time and
stamps each alert on arrival; at the end every alert's input record is looked up for its Kafka timestamp (the
producer's send time), which gives two latencies: **detection** (the alert's ``detected_at``, wall clock, minus
the send time) and **visible** (arrival at a ``read_committed`` subscriber minus the send time: what a review
tool or an automation waits, checkpoint interval and transaction commit included). At the end the committed
topic and the store are compared by alert id (duplicates, missing on either side).

``--config FILE`` lays a riskstream TOML (e.g. smaller state caps: ``[features] max_entities``, ``[links]
max_entities``, ``[labels] store_size``) under the soak's own ``[kafka]`` and ``[state]`` sections, which it may
not name (the soak owns the topics, the group and the state folder).

Needs a broker and PostgreSQL: ``--bootstrap`` / ``--database`` or ``RISKSTREAM_KAFKA_BOOTSTRAP`` /
``RISKSTREAM_DATABASE_URL`` (``scripts/services up; eval "$(scripts/services env)"``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
import uuid
import warnings
from pathlib import Path
from typing import Any

import orjson

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

PARTITIONS = 4
CLI = [sys.executable, "-c", "from stream.cli import main; main()"]


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class Member:
    def __init__(self, name: str, config: Path, log: Path, env: dict[str, str]) -> None:
        self.name, self.config, self.log, self.env = name, config, log, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            fh.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen([*CLI, "run", "--config", str(self.config)], stdout=fh,
                                         stderr=subprocess.STDOUT, env=self.env)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Subscriber(threading.Thread):
    """Reads the alerts topic read_committed from the beginning; stamps each record on arrival."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                          isolation_level="read_committed", fetch_max_wait_ms=100)
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        try:
            while not self.halt.is_set():
                for recs in c.poll(timeout_ms=200).values():
                    now = time.time()
                    for r in recs:
                        self.arrivals.append((now, orjson.loads(r.value)))
        finally:
            c.close()


def _private_schema(base: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}", (engine, schema)


def _store_ids(database: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT alert_id FROM alerts"))]
    finally:
        engine.dispose()


def _send_times(bootstrap: str, wanted: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], float]:
    """The Kafka timestamps (seconds) of the input records ``wanted`` names."""
    out: dict[tuple[str, int, int], float] = {}
    by_tp: dict[TopicPartition, int] = {}
    for t, p, o in wanted:
        tp = TopicPartition(t, p)
        by_tp[tp] = max(by_tp.get(tp, -1), o)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    try:
        c.assign(list(by_tp))
        c.seek_to_beginning(*by_tp)
        left = set(by_tp)
        deadline = time.monotonic() + 600
        while left and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                for r in recs:
                    if (tp.topic, tp.partition, r.offset) in wanted:
                        out[(tp.topic, tp.partition, r.offset)] = r.timestamp / 1000.0
                if recs and recs[-1].offset >= by_tp[tp]:
                    left.discard(tp)
                    c.pause(tp)
    finally:
        c.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=300.0, help="events a second produced")
    ap.add_argument("--kill-every", type=float, default=300.0, help="seconds between SIGKILLs of member b (0: none)")
    ap.add_argument("--down-for", type=float, default=5.0, help="seconds member b stays dead")
    ap.add_argument("--sample-every", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bootstrap", default=os.environ.get("RISKSTREAM_KAFKA_BOOTSTRAP"))
    ap.add_argument("--database", default=os.environ.get("RISKSTREAM_DATABASE_URL"))
    ap.add_argument("--config", type=Path, default=None,
                    help="a riskstream TOML laid under the soak's [kafka]/[state] (e.g. smaller state caps)")
    ap.add_argument("--workdir", default=None, help="config, state and logs (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="write the samples and the summary here (JSON)")
    args = ap.parse_args(argv)
    if not args.bootstrap or not args.database:
        ap.error("a broker and PostgreSQL are needed: --bootstrap/--database or RISKSTREAM_KAFKA_BOOTSTRAP/"
                 "RISKSTREAM_DATABASE_URL")
    if args.minutes <= 0 or args.rate <= 0:
        ap.error("--minutes and --rate must be > 0")
    extra = ""
    if args.config is not None:
        extra = args.config.read_text()
        owned = {"kafka", "state"} & set(tomllib.loads(extra))
        if owned:
            ap.error(f"--config may not set {sorted(owned)}: the soak owns those sections")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="riskstream-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    x = uuid.uuid4().hex[:8]
    names = {k: f"soak-{k}-{x}" for k in ("orders", "logins", "labels", "alerts", "dead")}
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics({n: {"num_partitions": PARTITIONS, "replication_factor": 1} for n in names.values()},
                        wait_for_metadata=True)
    database, (pg_engine, schema) = _private_schema(args.database)
    config = work / "riskstream.toml"
    config.write_text("\n".join([
        "[kafka]",
        f'bootstrap_servers = "{args.bootstrap}"',
        f'group_id = "soak-group-{x}"',
        f'orders_topic = "{names["orders"]}"',
        f'logins_topic = "{names["logins"]}"',
        f'labels_topic = "{names["labels"]}"',
        f'alerts_topic = "{names["alerts"]}"',
        f'dead_letter_topic = "{names["dead"]}"',
        "session_timeout_ms = 10000",
        "heartbeat_interval_ms = 2000",
        "checkpoint_interval_s = 2.0",
        "",
        "[state]",
        f'dir = "{work / "state"}"',
        "",
        extra,
    ]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM")}
    env.update(RISKSTREAM_DATABASE_URL=database, PYTHONUNBUFFERED="1")
    members = {n: Member(n, config, work / f"member-{n}.log", env) for n in ("a", "b")}
    for m in members.values():
        m.start()
    sub = Subscriber(args.bootstrap, names["alerts"])
    sub.start()

    events = int(args.rate * args.minutes * 60)
    with open(work / "producer.log", "ab") as plog:
        producer = subprocess.Popen([*CLI, "simulate", "--to-kafka", "--rate", f"{args.rate:g}", "--events",
                                     str(events), "--seed", str(args.seed), "--config", str(config)],
                                    stdout=plog, stderr=subprocess.STDOUT, env=env)
    inputs = [TopicPartition(names[k], p) for k in ("orders", "logins", "labels") for p in range(PARTITIONS)]
    group = f"soak-group-{x}"
    probe = KafkaConsumer(bootstrap_servers=args.bootstrap)

    def lag_and_produced() -> tuple[int, int]:
        end = probe.end_offsets(inputs)
        got = admin.list_group_offsets({group: None}).get(group, {})
        committed = {tp: om.offset for tp, om in got.items() if om is not None and om.offset >= 0}
        return sum(end[tp] - committed.get(tp, 0) for tp in inputs), sum(end.values())

    samples: list[dict[str, Any]] = []
    kills: list[float] = []
    t0 = time.monotonic()
    next_kill = t0 + args.kill_every if args.kill_every > 0 else float("inf")
    revive_at: float | None = None
    next_sample = t0

    def sample() -> None:
        lag, produced = lag_and_produced()
        s = {"t": round(time.monotonic() - t0, 1), "lag": lag, "produced": produced, "alerts": len(sub.arrivals),
             **{f"rss_{n}": _rss_mb(m.pid) if m.pid else None for n, m in members.items()}}
        samples.append(s)
        print(f"t={s['t']:>7.0f}s produced={produced:>9,} lag={lag:>7,} alerts={s['alerts']:>6,} "
              f"rss a={s['rss_a'] or 0:7.0f} MB b={s['rss_b'] or 0:7.0f} MB", flush=True)

    while producer.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            sample()
            next_sample += args.sample_every
        if now >= next_kill and revive_at is None:
            members["b"].kill()
            kills.append(round(now - t0, 1))
            revive_at = now + args.down_for
            next_kill += args.kill_every
        if revive_at is not None and now >= revive_at:
            members["b"].start()
            revive_at = None
        for m in members.values():
            if m.pid is None and not (m.name == "b" and revive_at is not None):
                raise SystemExit(f"soak: member {m.name} exited on its own (rc {m.proc.returncode}); see {m.log}")
        time.sleep(0.2)
    if revive_at is not None:
        members["b"].start()
    produced_rc = producer.returncode
    drain_start = time.monotonic()
    while True:  # drain: every input record consumed and committed
        lag, _ = lag_and_produced()
        if lag == 0 or time.monotonic() - drain_start > 600:
            break
        time.sleep(1.0)
    drained_s = time.monotonic() - drain_start
    sample()
    time.sleep(5.0)  # the last transaction's alerts reach the subscriber
    exit_codes = {n: m.stop() for n, m in members.items()}
    sub.halt.set()
    sub.join(timeout=30)
    probe.close()

    topic_ids = [a["alert_id"] for _, a in sub.arrivals]
    store = _store_ids(database)
    wanted = {_source(a) for _, a in sub.arrivals}
    sent = _send_times(args.bootstrap, wanted)
    visible, detect = [], []
    for arrived, a in sub.arrivals:
        key = _source(a)
        if key in sent:
            visible.append(arrived - sent[key])
            det = _epoch(a["detected_at"])
            detect.append(det - sent[key])
    steady = [s for s in samples if s["t"] >= 600 and s["rss_a"]]
    first, last = (steady[0], steady[-1]) if len(steady) >= 2 else (None, None)
    summary = {
        "command": " ".join(["python", "bench/faults/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": str(args.config) if args.config else None, "config_text": extra or None,
        "minutes": args.minutes, "rate": args.rate, "events": events, "producer_rc": produced_rc,
        "kills_of_b": len(kills), "restarts_of_b": members["b"].starts - 1, "drain_s": round(drained_s, 1),
        "member_exit_codes": exit_codes,
        "lag_max": max(s["lag"] for s in samples), "lag_p99": _quantile([s["lag"] for s in samples], 0.99),
        "rss_a_mb_at_10min": first["rss_a"] if first else None, "rss_a_mb_end": last["rss_a"] if last else None,
        "rss_a_mb_max": max((s["rss_a"] or 0) for s in samples),
        "rss_b_mb_max": max((s["rss_b"] or 0) for s in samples),
        "rss_a_mb_every_5min": {f"{m}min": _at(samples, m * 60) for m in range(5, int(args.minutes) + 1, 5)},
        "alerts_topic": len(topic_ids), "alerts_topic_unique": len(set(topic_ids)),
        "alerts_store": len(store), "alerts_store_unique": len(set(store)),
        "topic_not_in_store": len(set(topic_ids) - set(store)), "store_not_in_topic": len(set(store) - set(topic_ids)),
        "latency_detect_s": {"p50": _quantile(detect, 0.5), "p99": _quantile(detect, 0.99),
                             "max": max(detect, default=float("nan")), "n": len(detect)},
        "latency_visible_s": {"p50": _quantile(visible, 0.5), "p99": _quantile(visible, 0.99),
                              "max": max(visible, default=float("nan")), "n": len(visible),
                              "mean": statistics.fmean(visible) if visible else float("nan")},
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if args.out:
        Path(args.out).write_bytes(orjson.dumps({"summary": summary, "samples": samples, "kills_at_s": kills},
                                                option=orjson.OPT_INDENT_2))
    try:
        admin.delete_topics(list(names.values()))
    except Exception:  # noqa: BLE001 - best effort clean-up of unique names
        pass
    admin.close()
    from sqlalchemy import text

    with pg_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    pg_engine.dispose()
    bad = summary["alerts_topic"] != summary["alerts_topic_unique"] or summary["topic_not_in_store"] \
        or summary["store_not_in_topic"] or summary["alerts_store"] != summary["alerts_store_unique"]
    return 1 if bad else 0


def _at(samples: list[dict[str, Any]], t: float) -> float | None:
    """Member a's RSS (MB) in the last sample taken at or before ``t`` seconds."""
    before = [s for s in samples if s["t"] <= t and s["rss_a"]]
    return round(before[-1]["rss_a"], 1) if before else None


def _source(alert: dict[str, Any]) -> tuple[str, int, int]:
    p = alert["provenance"]
    return p["topic"], p["partition"], p["offset"]


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
