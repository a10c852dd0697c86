"""Load for a real broker, and what the engine costs on top of the Kafka client.

- :func:`ensure_topics` creates the input topics co-partitioned (same partition count) when missing.
- :func:`produce_events` writes events to the configured input topics keyed by user id, optionally paced by a
  :class:`TokenBucket` (``riskstream simulate --to-kafka --rate N``).
- :func:`bench_kafka` (``riskstream bench --kafka``) produces one fixed simulated stream to fresh topics,
  then in the same run measures (a) a plain kafka-python consumer that only iterates over those records, and
  (b) the same records end to end through :func:`stream.kafka.consumer.run_consumer` (one group member, alerts
  published to a fresh alerts topic, checkpoints as configured) and through
  :func:`stream.kafka.replay.replay_kafka`; the ratio (b)/(a) is what the engine costs on top of the client.
  (b) runs twice, with ``kafka.exactly_once`` on (one Kafka transaction per unit and checkpoint) and off (at
  least once, idempotent producer), each as a fresh group with fresh state: their ratio is what exactly once
  costs.
"""

from __future__ import annotations

import gc
import platform
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stream.config import Settings
from stream.errors import ConfigError, SourceError
from stream.events import Event, encode

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import; not our code
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaAdminClient, TopicPartition

from stream.kafka.client import DEFAULT_BOOTSTRAP_TIMEOUT_MS, unreachable

__all__ = ["TokenBucket", "ensure_topics", "produce_events", "bench_kafka", "print_bench_kafka"]


class TokenBucket:
    """Pace work to ``rate`` units per second with bursts of at most ``burst`` units (time.monotonic).

    Tokens accumulate at ``rate`` per second up to ``burst``, so a stall is never made up for by an unbounded
    burst. ``rate <= 0`` means no pacing. A debt is slept off only once it is worth ``min_sleep`` seconds: a
    thread that sleeps gives up the GIL and may wait a whole switch interval (5 ms) to get it back from a busy
    thread, so sleeping a tenth of a millisecond per event at 10,000 events/s would pace far below the rate.

    >>> now = [0.0]
    >>> def sleep(s):
    ...     now[0] += s
    >>> bucket = TokenBucket(10, burst=1, clock=lambda: now[0], sleep=sleep)
    >>> for _ in range(5):
    ...     bucket.acquire()
    >>> round(now[0], 6)
    0.4
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, min_sleep: float = 0.005) -> None:
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 20.0)
        if self.burst < 1.0:
            raise ValueError("burst must be >= 1")
        if min_sleep < 0:
            raise ValueError("min_sleep must be >= 0")
        self.min_sleep = float(min_sleep)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def acquire(self, n: float = 1.0) -> None:
        """Take ``n`` tokens, sleeping until they are earned (a debt repaid by the sleep, so a coarse or
        jumpy clock never makes it spin)."""
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self._tokens < 0 and -self._tokens >= self.min_sleep * self.rate:
            self._sleep(-self._tokens / self.rate)


def ensure_topics(bootstrap: str, topics: Sequence[str], *, partitions: int = 4, replication_factor: int = 1,
                  copartitioned: Sequence[str] | None = None,
                  bootstrap_timeout_ms: int = DEFAULT_BOOTSTRAP_TIMEOUT_MS) -> dict[str, int]:
    """Create the missing ``topics`` with ``partitions`` partitions; return every topic's partition count.

    The ``copartitioned`` topics (default: all of them) must end up with equal partition counts, or a
    :class:`ConfigError` says which differ (an existing topic is never changed).
    """
    if partitions < 1 or replication_factor < 1:
        raise ConfigError("partitions and replication factor must be >= 1")
    names = list(dict.fromkeys(t for t in topics if t))
    try:
        admin = KafkaAdminClient(bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
                                 client_id="riskstream-admin", bootstrap_timeout_ms=bootstrap_timeout_ms)
    except kerrors.KafkaError as e:
        raise unreachable(bootstrap, e, bootstrap_timeout_ms) from e
    try:
        existing = set(admin.list_topics())
        missing = [t for t in names if t not in existing]
        if missing:
            admin.create_topics({t: {"num_partitions": partitions, "replication_factor": replication_factor}
                                 for t in missing}, raise_errors=False, wait_for_metadata=True)
        counts = {d.get("name") or d.get("topic"): len(d.get("partitions") or ())
                  for d in admin.describe_topics(names) if not d.get("error_code")}
    except kerrors.KafkaError as e:
        raise SourceError(f"Kafka at {bootstrap}: creating topics {', '.join(names)}: "
                          f"{type(e).__name__}: {e}", retriable=isinstance(e, kerrors.RetriableError)) from e
    finally:
        admin.close()
    absent = [t for t in names if not counts.get(t)]
    if absent:
        raise SourceError(f"Kafka at {bootstrap}: topic(s) {', '.join(absent)} could not be created")
    group = [t for t in (copartitioned if copartitioned is not None else names) if t]
    if len({counts[t] for t in group}) > 1:
        raise ConfigError("input topics must be co-partitioned (equal partition counts): "
                          + ", ".join(f"{t}={counts[t]}" for t in group))
    return counts


def _topic_of(settings: Settings) -> dict[str, str]:
    k = settings.kafka
    return {"order": str(k.get("orders_topic") or ""), "login": str(k.get("logins_topic") or ""),
            "label": str(k.get("labels_topic") or "")}


def produce_events(
    events: Iterable[Event],
    settings: Settings,
    *,
    bootstrap: str | None = None,
    rate: float = 0.0,
    user_map_size: int = 1_000_000,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> dict[str, Any]:
    """Write ``events`` to the configured input topics with the idempotent producer, keyed by user id.

    Orders and logins are keyed by their ``user_id``; a label by the user of the event it refers to, looked up
    in a map of the last ``user_map_size`` orders and logins produced (else by its ``ref_event_id``), so it
    lands in the same partition unit as that event. ``rate`` paces to events per second (0: as fast as the
    producer goes). Events whose topic is not configured (an empty name) are skipped.

    Returns counts per type, ``skipped``, ``seconds`` and ``events_per_second``; a delivery the broker did
    not confirm raises :class:`SourceError` after the rest were flushed.
    """
    from stream.kafka.client import make_producer

    topic_of = _topic_of(settings)
    bucket = TokenBucket(rate)
    user_of: dict[str, str] = {}
    counts = {"order": 0, "login": 0, "label": 0}
    skipped = 0
    failures: list[BaseException] = []
    producer = make_producer(settings, bootstrap=bootstrap, linger_ms=20, batch_size=256 * 1024)
    started = time.perf_counter()
    n = 0
    try:
        for e in events:
            topic = topic_of.get(e.type, "")
            if not topic:
                skipped += 1
                continue
            if e.type == "label":
                ref = e.ref_event_id  # type: ignore[union-attr]
                key = user_of.get(ref, ref)
            else:
                key = e.user_id  # type: ignore[union-attr]
                user_of[e.event_id] = key
                if len(user_of) > user_map_size:
                    del user_of[next(iter(user_of))]  # dicts keep insertion order: the oldest goes first
            bucket.acquire()
            producer.send(topic, key=key.encode(), value=encode(e)).add_errback(failures.append)
            counts[e.type] += 1
            n += 1
            if on_progress is not None and n % progress_every == 0:
                on_progress(n)
        producer.flush()
    except kerrors.KafkaError as e:
        raise SourceError(f"Kafka: producing: {type(e).__name__}: {e}",
                          retriable=isinstance(e, kerrors.RetriableError)) from e
    finally:
        producer.close(timeout=30)
    seconds = time.perf_counter() - started
    if failures:
        first = failures[0]
        raise SourceError(f"Kafka: {len(failures)} of {n} events were not delivered; first: "
                          f"{type(first).__name__}: {first}", retriable=True)
    return {"events": n, "orders": counts["order"], "logins": counts["login"], "labels": counts["label"],
            "skipped": skipped, "seconds": round(seconds, 3),
            "events_per_second": round(n / seconds, 1) if seconds > 0 else None,
            "topics": {k: v for k, v in topic_of.items() if v}}


# --- the benchmark ------------------------------------------------------------------------------------------


RAW_CONSUME_RUNS = 3  # reads of the input by a plain consumer; the median's rate is what the ratios divide by


def _raw_consume(settings: Settings, bootstrap: str, tps: Sequence[TopicPartition],
                 total: int, core_parsing: bool = False) -> dict[str, Any]:
    """A plain consumer (the runtime's client settings, no group) that only reads the records: iterating over
    them with kafka-python's own record parsing (the baseline), or ``core_parsing`` polling them as ``run`` reads
    them, in blocks of columns parsed by the core (``stream.kafka.fastparse``)."""
    from stream.kafka.client import make_consumer
    from stream.kafka.fastparse import install

    consumer = make_consumer(settings, group_id=None, bootstrap=bootstrap, core_parsing=False,
                             consumer_timeout_ms=30_000)
    blocks = core_parsing and install(consumer, blocks=True)
    try:
        consumer.assign(list(tps))
        consumer.seek_to_beginning(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve the start before the clock runs
        n = 0
        gc.collect()
        t0 = time.perf_counter()
        if blocks:
            deadline = t0 + 30.0
            size = int(settings.kafka["max_poll_records"])
            while n < total and time.perf_counter() < deadline:
                for recs in consumer.poll(timeout_ms=1000, max_records=size).values():
                    n += sum(len(b) for b in recs)
        else:
            for _ in consumer:
                n += 1
                if n >= total:
                    break
        seconds = time.perf_counter() - t0
    finally:
        consumer.close()
    if n < total:
        raise SourceError(f"raw consumer read only {n} of {total} records within its timeout")
    return {"records": n, "seconds": round(seconds, 3), "records_per_second": round(n / seconds, 1)}


def _run_group_member(settings: Settings, bootstrap: str, total: int, timeout_s: float) -> dict[str, Any]:
    """One ``run_consumer`` member on fresh topics; timed from its first record to its stop checkpoint (and
    separately to its last record processed, before the stop checkpoint)."""
    from stream.kafka import RuntimeStats, run_consumer

    stats = RuntimeStats()
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_consumer(settings, stop=stop, bootstrap=bootstrap, stats=stats, event_time_clock=True,
                         log_every_s=3600.0)
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(e)
            stop.set()

    gc.collect()
    t_launch = time.perf_counter()
    thread = threading.Thread(target=target, name="bench-run-consumer", daemon=True)
    thread.start()
    t_first: float | None = None
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        if t_first is None and stats.records_in > 0:
            t_first = time.perf_counter()
        if stats.events + stats.invalid >= total:
            break
        if time.monotonic() > deadline:
            stop.set()
            thread.join(60)
            raise SourceError(f"run_consumer processed {stats.events + stats.invalid} of {total} records in "
                              f"{timeout_s:.0f} s")
        time.sleep(0.002)
    t_done = time.perf_counter()
    stop.set()
    thread.join()
    t_end = time.perf_counter()
    if errors:
        raise errors[0]
    t_first = t_first if t_first is not None else t_launch
    seconds = t_end - t_first
    return {"records": stats.events + stats.invalid, "alerts": stats.alerts, "checkpoints": stats.checkpoints,
            "seconds": round(seconds, 3), "events_per_second": round(total / seconds, 1),
            "processed_seconds": round(t_done - t_first, 3), "stop_seconds": round(t_end - t_done, 3),
            "startup_seconds": round(t_first - t_launch, 3),
            "idle_timeout_s": float(settings.kafka.get("idle_timeout_s", 2.0)),
            "exactly_once": bool(settings.kafka.get("exactly_once"))}


def _latency_run(settings: Settings, bootstrap: str, stream: Sequence[Event], rate: float,
                 timeout_s: float) -> dict[str, Any]:
    """Event-to-decision latency of one ``run_consumer`` member at a paced input rate: the member joins first,
    then ``stream`` is produced at ``rate`` events/s; each event's latency is the wall time from its Kafka record
    timestamp (CreateTime, set by the producer) to the moment the runtime hands its alerts, if any, to the sinks
    (``RuntimeStats.observe_latency_array``). Alerts of that moment are in the alerts topic at once with at least
    once, at the unit's next transaction commit (``checkpoint_interval_s``) with exactly once."""
    import numpy as np

    from stream.kafka import RuntimeStats, run_consumer

    stats = RuntimeStats()
    stats.latency_samples = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_consumer(settings, stop=stop, bootstrap=bootstrap, stats=stats, event_time_clock=True,
                         log_every_s=3600.0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    thread = threading.Thread(target=target, name="bench-latency-consumer", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not stats.units and not stop.is_set():  # joined and assigned: the input starts now
        if time.monotonic() > deadline:
            stop.set()
            raise SourceError("run_consumer got no assignment in time")
        time.sleep(0.01)
    time.sleep(1.0)  # let it settle its start positions and transactions
    produced = produce_events(stream, settings, bootstrap=bootstrap, rate=rate)
    total = produced["events"]
    while stats.events + stats.invalid < total and not stop.is_set():
        if time.monotonic() > deadline:
            stop.set()
            thread.join(60)
            raise SourceError(f"run_consumer processed {stats.events + stats.invalid} of {total} records")
        time.sleep(0.01)
    stop.set()
    thread.join()
    if errors:
        raise errors[0]
    lat = np.concatenate(stats.latency_samples) if stats.latency_samples else np.zeros(0)
    pct = {f"p{q}": round(float(np.percentile(lat, q)) * 1000.0, 1) for q in (50, 90, 99)} if lat.size else {}
    return {"rate": rate, "produced_events_per_second": produced["events_per_second"], "events": total,
            "alerts": stats.alerts, "latency_ms": pct, "latency_max_ms": round(float(lat.max()) * 1000.0, 1)
            if lat.size else None, "observed": int(lat.size),
            "idle_timeout_s": float(settings.kafka.get("idle_timeout_s", 2.0)),
            "exactly_once": bool(settings.kafka.get("exactly_once"))}


def _run_replay(settings: Settings, bootstrap: str, total: int) -> dict[str, Any]:
    from sinks.kafka import KafkaAlertSink
    from stream.kafka import replay_kafka
    from stream.kafka.client import make_producer

    producer = make_producer(settings, bootstrap=bootstrap)
    try:
        sink = KafkaAlertSink(producer, str(settings.kafka["alerts_topic"]))
        gc.collect()
        t0 = time.perf_counter()
        report = replay_kafka(settings, bootstrap=bootstrap, sinks=[sink])
        seconds = time.perf_counter() - t0
    finally:
        producer.close(timeout=30)
    records = int(report["events"]) + int(report["invalid"]) + int(report["label_events"])
    if records != total:
        raise SourceError(f"replay_kafka processed {records} of {total} records")
    return {"records": records, "alerts": int(report["alerts"]), "seconds": round(seconds, 3),
            "events_per_second": round(total / seconds, 1)}


def bench_kafka(settings: Settings, bootstrap: str | None = None, events: int = 50_000, *, seed: int = 7,
                partitions: int = 4, timeout_s: float = 600.0, cleanup: bool = True,
                idle_timeout_s: float | None = 0.1, rate: float = 0.0, rate_events: int = 50_000) -> dict[str, Any]:
    """Throughput through a real broker: raw client consume rate beside the engine's, in the same run.

    Parameters
    ----------
    settings
        Detection and client settings; topic names, group, state directory and SQL/JSONL sinks are replaced by
        fresh, private ones (only the alerts topic receives alerts).
    bootstrap
        The broker (default ``kafka.bootstrap_servers``).
    events
        Size of the simulated stream (orders, logins and labels), produced once and read by every measurement.
    partitions
        Partitions of each fresh input topic.
    cleanup
        Delete the fresh topics afterwards.
    idle_timeout_s
        ``kafka.idle_timeout_s`` of the measured members (None: the configuration's, 2 s by default). The topics
        are complete before a member starts, so the merge waits for an idle decision only where a unit's topic
        has no more records (each unit's labels end before its orders): a fixed wait of up to a few times the
        timeout at the end, a latency setting rather than a cost per record. The bench uses 0.1 s (and
        ``idle_decision_interval_s`` half of it) so that the ratio measures the records' processing.
    rate
        Also measure event-to-decision latency with ``rate_events`` events produced at ``rate`` events/s into a
        member already running (the configuration's idle timeout; 0: skip).

    Returns a dict with ``produce``, ``raw_consume``, ``run_consumer`` (exactly once),
    ``run_consumer_at_least_once``, ``run_consumer_no_overlap`` (exactly once with ``kafka.overlap = false``;
    None when the settings turn overlap off already, or run the Python engine), ``replay_kafka`` (seconds and
    events/s each), ``ratio`` (run_consumer / raw consume events/s), ``exactly_once_ratio`` (exactly once / at
    least once events/s), ``overlap_ratio`` (overlap on / off), ``replay_ratio`` and where it ran.
    """
    from stream.sim import SimConfig, simulate

    boot = bootstrap or str(settings.kafka["bootstrap_servers"])
    x = uuid.uuid4().hex[:10]
    names = {"orders_topic": f"bench-{x}-orders", "logins_topic": f"bench-{x}-logins",
             "labels_topic": f"bench-{x}-labels", "alerts_topic": f"bench-{x}-alerts",
             "dead_letter_topic": f"bench-{x}-dead-letters"}
    alo_alerts = f"bench-{x}-alerts-alo"
    serial_alerts = f"bench-{x}-alerts-serial"
    state_dir = tempfile.mkdtemp(prefix="riskstream-bench-state-")
    overrides: dict[str, Any] = {f"kafka.{k}": v for k, v in names.items()}
    overrides.update({"kafka.bootstrap_servers": boot, "kafka.group_id": f"bench-{x}", "state.dir": state_dir,
                      "sinks.database": "", "sinks.jsonl": "", "sinks.dead_letter": ""})
    s = settings.replace(overrides)
    timed = s if idle_timeout_s is None else s.replace({
        "kafka.idle_timeout_s": idle_timeout_s, "kafka.idle_decision_interval_s": idle_timeout_s / 2})
    inputs = [names["orders_topic"], names["logins_topic"], names["labels_topic"]]
    lat_names = {k: f"{v}-lat" for k, v in names.items()}
    # (the Python engine never overlaps: its member without the overlap would be the same member again)
    overlap = bool(settings.kafka.get("overlap", True)) and str(settings.engine.get("core", "compiled")) != "python"
    created = [*names.values(), alo_alerts, *([serial_alerts] if overlap else ()),
               *(lat_names.values() if rate > 0 else ())]
    try:
        ensure_topics(boot, created, partitions=partitions, copartitioned=inputs)
        stream = list(simulate(SimConfig(events=events, seed=seed)))
        produced = produce_events(stream, s, bootstrap=boot)
        del stream
        total = produced["events"]
        tps = [TopicPartition(t, p) for t in inputs for p in range(partitions)]
        # The raw rate moved 57k-123k records/s between runs minutes apart on the 2-core development machine, and
        # every ratio below divides by it: three reads of the same records, the median is the reference.
        raws = sorted((_raw_consume(s, boot, tps, total) for _ in range(RAW_CONSUME_RUNS)),
                      key=lambda r: r["records_per_second"])
        raw = {**raws[len(raws) // 2], "runs_records_per_second": [r["records_per_second"] for r in raws]}
        # the same records polled as run reads them (stream.kafka.fastparse: blocks of columns, each value read
        # by the core's decoder): not a denominator, what the client side costs run now
        raw_core = _raw_consume(s, boot, tps, total, core_parsing=True)
        # Same records, two fresh groups with their own state: exactly once (one transaction per unit and
        # checkpoint), then at least once (its own alerts topic, so each topic holds one run's alerts).
        group = _run_group_member(timed.replace({"kafka.exactly_once": True, "kafka.group_id": f"bench-{x}-eos",
                                                 "state.dir": f"{state_dir}/eos"}), boot, total, timeout_s)
        alo = _run_group_member(timed.replace({"kafka.exactly_once": False, "kafka.group_id": f"bench-{x}-alo",
                                               "kafka.alerts_topic": alo_alerts, "state.dir": f"{state_dir}/alo"}),
                                boot, total, timeout_s)
        # The same exactly-once member scoring on its main thread (kafka.overlap off): what the engine thread
        # gains, in this run.
        serial = None
        if overlap:
            serial = _run_group_member(timed.replace({"kafka.exactly_once": True, "kafka.overlap": False,
                                                      "kafka.group_id": f"bench-{x}-serial",
                                                      "kafka.alerts_topic": serial_alerts,
                                                      "state.dir": f"{state_dir}/serial"}), boot, total, timeout_s)
        replay = _run_replay(s, boot, total)
        latency = None
        if rate > 0:
            ensure_topics(boot, list(lat_names.values()), partitions=partitions,
                          copartitioned=[lat_names["orders_topic"], lat_names["logins_topic"],
                                         lat_names["labels_topic"]])
            ls = s.replace({**{f"kafka.{k}": v for k, v in lat_names.items()}, "kafka.group_id": f"bench-{x}-lat",
                            "state.dir": f"{state_dir}/lat"})
            lat_stream = list(simulate(SimConfig(events=rate_events, seed=seed + 1)))
            latency = _latency_run(ls, boot, lat_stream, rate, timeout_s)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        if cleanup:
            _delete_topics(boot, created)
    return {
        "input": f"simulated stream: {events} events, seed {seed}, {partitions} partitions per input topic",
        "bootstrap": boot,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "produce": produced,
        "raw_consume": raw,
        "raw_consume_core_parsing": raw_core,
        "run_consumer": group,
        "run_consumer_at_least_once": alo,
        "run_consumer_no_overlap": serial,
        "replay_kafka": replay,
        "ratio": round(group["events_per_second"] / raw["records_per_second"], 4),
        "exactly_once_ratio": round(group["events_per_second"] / alo["events_per_second"], 4),
        "overlap_ratio": round(group["events_per_second"] / serial["events_per_second"], 4) if serial else None,
        "replay_ratio": round(replay["events_per_second"] / raw["records_per_second"], 4),
        "processed_ratio": round(total / group["processed_seconds"] / raw["records_per_second"], 4),
        "latency": latency,
        "config_hash": settings.config_hash,
    }


def _delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="riskstream-admin")
    except kerrors.KafkaError:
        return
    try:
        admin.delete_topics(list(topics), raise_errors=False)
    except kerrors.KafkaError:
        pass  # best effort: the names are unique
    finally:
        admin.close()


def print_bench_kafka(result: Mapping[str, Any]) -> None:
    """The Kafka benchmark as a table on standard output."""
    from rich.table import Table

    from stream.eval.report import console

    t = Table(title=f"riskstream bench --kafka — {result['input']} at {result['bootstrap']}",
              title_justify="left")
    t.add_column("path")
    t.add_column("events/s", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("alerts", justify="right")
    p, raw = result["produce"], result["raw_consume"]
    grp, rep = result["run_consumer"], result["replay_kafka"]
    alo = result.get("run_consumer_at_least_once")
    rows = [("produce (idempotent producer, acks=all)", p["events_per_second"], p["seconds"], ""),
            (f"raw kafka-python consume (iterate only; median of {len(raw.get('runs_records_per_second', [1]))})",
             raw["records_per_second"], raw["seconds"], ""),
            *([("raw consume in blocks parsed by the core (as run reads them)",
                result["raw_consume_core_parsing"]["records_per_second"],
                result["raw_consume_core_parsing"]["seconds"], "")] if result.get("raw_consume_core_parsing")
              else []),
            ("riskstream run (1 member, alerts topic, exactly once)", grp["events_per_second"], grp["seconds"],
             grp["alerts"])]
    if alo:
        rows.append(("riskstream run (1 member, alerts topic, at least once)", alo["events_per_second"],
                     alo["seconds"], alo["alerts"]))
    serial = result.get("run_consumer_no_overlap")
    if serial:
        rows.append(("riskstream run (exactly once, kafka.overlap = false)", serial["events_per_second"],
                     serial["seconds"], serial["alerts"]))
    rows.append(("riskstream replay --kafka-topic", rep["events_per_second"], rep["seconds"], rep["alerts"]))
    for name, rate, seconds, alerts in rows:
        t.add_row(name, f"{rate:,.0f}", f"{seconds:.2f}", f"{alerts:,}" if alerts != "" else "")
    console.print(t)
    if alo:
        console.print(f"exactly once / at least once: [bold]{result['exactly_once_ratio']:.3f}[/] "
                      f"({grp['checkpoints']} and {alo['checkpoints']} checkpoints)")
    if serial:
        console.print(f"overlap on / off (exactly once): [bold]{result['overlap_ratio']:.3f}[/]")
    runs = raw.get("runs_records_per_second")
    if runs and len(runs) > 1:
        console.print("raw consume, each read: " + ", ".join(f"{r:,.0f}" for r in runs) + " records/s")
    console.print(f"end to end / raw consume: [bold]{result['ratio']:.3f}[/]   replay / raw consume: "
                  f"{result['replay_ratio']:.3f}   (group join before the first record: "
                  f"{grp['startup_seconds']:.1f} s, not counted)")
    if "processed_ratio" in result:
        console.print(f"to the last record processed (before the stop checkpoint, {grp['stop_seconds']:.2f} s): "
                      f"{result['processed_ratio']:.3f}; merge idle timeout {grp.get('idle_timeout_s')} s")
    lat = result.get("latency")
    if lat:
        console.print(f"event-to-decision latency at {lat['rate']:,.0f} events/s offered "
                      f"({lat['produced_events_per_second']:,.0f} produced, exactly once {lat['exactly_once']}, "
                      f"idle timeout {lat['idle_timeout_s']} s): p50 {lat['latency_ms'].get('p50')} ms, "
                      f"p90 {lat['latency_ms'].get('p90')} ms, p99 {lat['latency_ms'].get('p99')} ms, "
                      f"max {lat['latency_max_ms']} ms over {lat['observed']:,} events")
