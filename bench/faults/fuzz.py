"""Fuzzing at full size: 100,000 broken records mixed into a simulated stream, through ``replay`` and through
``run`` (a real broker), checked against the same stream without them.

    python bench/faults/fuzz.py --junk 100000 --events 100000 --out bench/results/fuzz.json
    python bench/faults/fuzz.py ... --bootstrap 127.0.0.1:19092      # also through the Kafka runtime

What it checks, each a count that must be 0: crashes, refused records missing from the dead-letter path,
dead letters whose bytes differ from the original, dead letters seen twice, alerts that differ (id, score,
severity, action, detector scores) from the stream without the junk. It also reports what the decoder accepted
among the mutations (well-formed but absurd values) and how the engine scored those.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from sinks.deadletter import MemoryDeadLetterSink
from sinks.memory import MemorySink
from stream.config import load_settings
from stream.events import decode, encode
from stream.replay import replay
from stream.sim import SimConfig, simulate
from stream.sim.junk import junk_with_kinds, split_refused
from stream.sources import FileSource, ListSource


def _decided(alerts: list[Any]) -> list[tuple[Any, ...]]:
    return [(a.alert_id, a.score, a.severity, a.action, tuple(sorted(a.detector_scores.items()))) for a in alerts]


def _junk(events: list[Any], n: int, seed: int) -> tuple[list[bytes], Counter[str]]:
    pairs = list(junk_with_kinds(events, n=n, seed=seed))
    return [raw for _, raw in pairs], Counter(kind for kind, _ in pairs)


def through_replay(events: list[Any], refused: list[bytes], settings: Any, work: Path) -> dict[str, Any]:
    lines = [encode(e) for e in events]
    r = random.Random(1)
    for raw in refused:
        lines.insert(r.randrange(len(lines) + 1), raw)
    mixed = work / "mixed.jsonl"
    mixed.write_bytes(b"".join(line + b"\n" for line in lines))
    clean_sink, mixed_sink, dead = MemorySink(), MemorySink(), MemoryDeadLetterSink()
    replay(ListSource(events), settings, sinks=[clean_sink])
    t0 = time.perf_counter()
    crashed = None
    try:
        rep = replay(FileSource([mixed]), settings, sinks=[mixed_sink], dead_letters=dead)
    except Exception as e:  # noqa: BLE001 - counted, not raised: a crash is the finding
        crashed, rep = f"{type(e).__name__}: {e}", {}
    seconds = time.perf_counter() - t0
    got = Counter(d.raw for d in dead.records)
    want = Counter(refused)
    return {
        "crashes": int(crashed is not None), "crash": crashed,
        "records": len(lines), "refused": len(refused), "dead_letters": sum(got.values()),
        "refused_missing": sum((want - got).values()), "dead_letters_unexpected": sum((got - want).values()),
        "dead_letters_without_reason": sum(1 for d in dead.records if not d.reason),
        "alerts_clean": len(clean_sink.alerts), "alerts_mixed": len(mixed_sink.alerts),
        "alerts_differing": sum(1 for a, b in zip(_decided(clean_sink.alerts), _decided(mixed_sink.alerts),
                                                   strict=False) if a != b)
        + abs(len(clean_sink.alerts) - len(mixed_sink.alerts)),
        "seconds": round(seconds, 2), "records_per_second": round(len(lines) / seconds) if seconds else None,
        "top_reasons": Counter(d.reason.split(" (")[0] for d in dead.records).most_common(12),
        "invalid_in_report": rep.get("invalid"),
    }


def absurd_values(events: list[Any], accepted: list[bytes], settings: Any) -> dict[str, Any]:
    """The mutations the decoder accepts (well-formed, absurd values) replayed among the good events: scored,
    finite, no crash."""
    extra = [decode(raw) for raw in accepted]
    stream = sorted([*events, *extra], key=lambda e: e.ts)
    sink = MemorySink()
    risks: list[float] = []

    def on_batch(batch: Any, outcome: Any) -> None:
        risks.extend(float(x) for x in outcome.risk)

    replay(ListSource(stream), settings, sinks=[sink], on_batch=on_batch)
    ids = {e.event_id for e in extra}
    return {"accepted": len(extra), "scored_risks_not_finite": sum(not math.isfinite(x) for x in risks),
            "alerted": sum(a.event_id in ids for a in sink.alerts)}


def through_run(events: list[Any], refused: list[bytes], bootstrap: str, work: Path) -> dict[str, Any]:
    from kafka import KafkaProducer

    from stream.bench.kafka import _delete_topics, ensure_topics
    from stream.kafka import RuntimeStats, replay_kafka, run_consumer
    from stream.state import LocalStateStore

    tag = uuid.uuid4().hex[:8]
    names = {k: f"fuzz-{k}-{tag}" for k in ("orders", "logins", "labels", "dead")}
    settings = load_settings(None, env={}, overrides={
        "kafka.bootstrap_servers": bootstrap, "kafka.orders_topic": names["orders"],
        "kafka.logins_topic": names["logins"], "kafka.labels_topic": names["labels"],
        "kafka.group_id": f"fuzz-{tag}",
        "kafka.checkpoint_interval_s": 1.0})
    ensure_topics(bootstrap, [names["orders"], names["logins"], names["labels"]], partitions=4)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_request_size=2_000_000)
    user_of = {e.event_id: e.user_id for e in events if e.type != "label"}
    r = random.Random(2)
    junk = list(refused)
    total = 0
    for e in events:
        while junk and r.random() < len(refused) / (len(refused) + len(events)):
            producer.send(names[r.choice(("orders", "logins"))], key=f"junk{r.randrange(1000)}".encode(),
                          value=junk.pop())
            total += 1
        topic = {"order": "orders", "login": "logins", "label": "labels"}[e.type]
        key = user_of.get(e.ref_event_id, e.ref_event_id) if e.type == "label" else e.user_id
        producer.send(names[topic], key=key.encode(), value=encode(e))
        total += 1
    for raw in junk:
        producer.send(names["orders"], key=b"junk", value=raw)
        total += 1
    producer.flush()
    producer.close()
    live, dead, stats, stop = MemorySink(), MemoryDeadLetterSink(), RuntimeStats(), threading.Event()
    error: list[BaseException] = []

    def run() -> None:
        try:
            run_consumer(settings, stop=stop, stats=stats, event_time_clock=True, sinks=[live],
                         dead_letters=[dead], store=LocalStateStore(work / "state"))
        except BaseException as e:  # noqa: BLE001
            error.append(e)

    t0 = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while stats.records_in < total and not error and time.perf_counter() - t0 < 1800:
        time.sleep(0.5)
    while stats.snapshot()["lag_total"] and not error and time.perf_counter() - t0 < 1800:
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join(timeout=120)
    ref = MemorySink()
    replay_kafka(settings, sinks=[ref])
    _delete_topics(bootstrap, [names["orders"], names["logins"], names["labels"]])
    got, want = Counter(d.raw for d in dead.records), Counter(refused)
    live_by_id = {a.alert_id: a for a in live.alerts}
    return {
        "crashes": len(error), "crash": repr(error[0]) if error else None, "records": total,
        "refused_missing": sum((want - got).values()), "dead_letters_unexpected": sum((got - want).values()),
        "alerts_reference": len(ref.alerts), "alerts_live": len(live_by_id),
        "alerts_missing": sum(a.alert_id not in live_by_id for a in ref.alerts),
        "alerts_differing": sum(1 for a in ref.alerts if a.alert_id in live_by_id
                                and _decided([a]) != _decided([live_by_id[a.alert_id]])),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--junk", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bootstrap", default=None, help="also through run_consumer on this broker")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    settings = load_settings(None, env={})
    events = list(simulate(SimConfig(events=args.events, seed=args.seed)))
    junk, kinds = _junk(events, args.junk, args.seed)
    refused, accepted = split_refused(junk)
    result: dict[str, Any] = {"events": args.events, "junk": args.junk, "kinds": dict(sorted(kinds.items())),
                              "refused": len(refused), "accepted": len(accepted)}
    with tempfile.TemporaryDirectory() as tmp:
        result["replay"] = through_replay(events, refused, settings, Path(tmp))
        result["absurd_values"] = absurd_values(events, accepted, settings)
        if args.bootstrap:
            result["run"] = through_run(events, refused, args.bootstrap, Path(tmp))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.out:
        Path(args.out).write_bytes(text + b"\n")
    sys.stdout.write(text.decode() + "\n")
    checks = ("crashes", "refused_missing", "dead_letters_unexpected", "alerts_differing")
    bad = [result["replay"][k] for k in checks]
    if "run" in result:
        bad += [result["run"][k] for k in ("crashes", "refused_missing", "alerts_missing", "alerts_differing")]
    return 1 if any(bad) or result["absurd_values"]["scored_risks_not_finite"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
