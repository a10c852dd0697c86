"""Per-step timeline of run_consumer (poll, ingest, process, checkpoint per step) on a fresh simulated stream.

    PYTHONPATH=. python bench/kafka_run_timeline.py 50000 1 kafka.idle_timeout_s=0.1 kafka.idle_decision_interval_s=0.05

Arguments: events, exactly once (1 or 0), then config overrides (numbers, or true / false). Needs
RISKSTREAM_KAFKA_BOOTSTRAP. The drain column is the main thread waiting for the engine thread (kafka.overlap)
and handing its alerts over; the checkpoint column includes a checkpoint's own drain.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from kafka import KafkaConsumer, TopicPartition

import stream.kafka.consumer as C
from stream.bench.kafka import _delete_topics, _raw_consume, ensure_topics, produce_events
from stream.config import load_settings
from stream.kafka import RuntimeStats, run_consumer
from stream.sim import SimConfig, simulate


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    eos = (sys.argv[2] if len(sys.argv) > 2 else "1") == "1"
    extra = dict(a.split("=", 1) for a in sys.argv[3:])
    boot = os.environ["RISKSTREAM_KAFKA_BOOTSTRAP"]
    x = uuid.uuid4().hex[:10]
    names = {"orders_topic": f"prof-{x}-orders", "logins_topic": f"prof-{x}-logins",
             "labels_topic": f"prof-{x}-labels", "alerts_topic": f"prof-{x}-alerts",
             "dead_letter_topic": f"prof-{x}-dl"}
    ov: dict[str, Any] = {f"kafka.{k}": v for k, v in names.items()}
    ov.update({"kafka.bootstrap_servers": boot, "kafka.group_id": f"prof-{x}", "state.dir": tempfile.mkdtemp(),
               "sinks.database": "", "sinks.jsonl": "", "sinks.dead_letter": "", "kafka.exactly_once": eos})
    for k, v in extra.items():
        ov[k] = (v == "true") if v in ("true", "false") else float(v) if "." in v else int(v)
    s = load_settings(None).replace(ov)
    inputs = [names["orders_topic"], names["logins_topic"], names["labels_topic"]]
    ensure_topics(boot, list(names.values()), partitions=4, copartitioned=inputs)
    total = produce_events(list(simulate(SimConfig(events=events, seed=7))), s, bootstrap=boot)["events"]
    raw = _raw_consume(s, boot, [TopicPartition(t, p) for t in inputs for p in range(4)], total)
    print("raw", raw, flush=True)

    timeline: list[tuple[Any, ...]] = []
    acc = {"poll": 0.0, "drain": 0.0, "ingest": 0.0, "process": 0.0, "ckpt": 0.0, "n": 0.0}
    orig_step, orig_ingest = C._Runtime.step, C._Runtime._ingest
    orig_process, orig_ck = C._Runtime._process, C._Runtime._checkpoint
    orig_drain, orig_poll = C._Runtime._drain, KafkaConsumer.poll

    def poll(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        r = orig_poll(self, *a, **k)
        acc["poll"] += time.perf_counter() - t
        return r

    def drain(self: Any) -> None:  # waiting for the engine thread (kafka.overlap) and taking its batches
        t = time.perf_counter()
        orig_drain(self)
        acc["drain"] += time.perf_counter() - t

    def ingest(self: Any, tp: Any, recs: Any) -> None:
        t = time.perf_counter()
        orig_ingest(self, tp, recs)
        acc["ingest"] += time.perf_counter() - t
        acc["n"] += sum(len(b) for b in recs) if self.blocks else len(recs)  # blocks of records, or records

    def process(self: Any) -> None:
        t = time.perf_counter()
        orig_process(self)
        acc["process"] += time.perf_counter() - t

    def checkpoint(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        r = orig_ck(self, *a, **k)
        acc["ckpt"] += time.perf_counter() - t
        return r

    def step(self: Any) -> None:
        t = time.perf_counter()
        before = dict(acc)
        orig_step(self)
        dt = time.perf_counter() - t
        timeline.append((t, round(dt, 3), int(acc["n"] - before["n"]),
                         *(round(acc[k] - before[k], 3) for k in ("poll", "drain", "ingest", "process", "ckpt")),
                         self.stats.events, self.stats.buffered, len(self.paused)))

    C._Runtime.step, C._Runtime._ingest, C._Runtime._process, C._Runtime._checkpoint = (
        step, ingest, process, checkpoint)
    C._Runtime._drain, KafkaConsumer.poll = drain, poll
    stats, stop = RuntimeStats(), threading.Event()
    th = threading.Thread(target=run_consumer, args=(s,), kwargs={
        "stop": stop, "bootstrap": boot, "stats": stats, "event_time_clock": True, "log_every_s": 3600})
    t0 = time.perf_counter()
    th.start()
    t_first = None
    while stats.events + stats.invalid < total:
        if t_first is None and stats.records_in > 0:
            t_first = time.perf_counter()
        time.sleep(0.002)
    t_done = time.perf_counter()
    stop.set()
    th.join()
    t_end = time.perf_counter()
    assert t_first is not None
    rate = total / (t_end - t_first)
    print(f"run: startup {t_first - t0:.2f}s processing {t_done - t_first:.2f}s stop {t_end - t_done:.2f}s -> "
          f"{rate:.0f} ev/s; ratio {rate / raw['records_per_second']:.3f}; alerts {stats.alerts} "
          f"ckpt {stats.checkpoints}")
    print("t step_s recs poll drain ingest process ckpt events buffered paused")
    for r in timeline:
        print(round(r[0] - t_first, 3), *r[1:])
    print("totals", {k: round(v, 3) for k, v in acc.items()})
    _delete_topics(boot, list(names.values()))


if __name__ == "__main__":
    main()
