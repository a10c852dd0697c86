"""A checkpoint snapshots its units' compiled engines on several threads at once (the core serialises with the
GIL released): the snapshots are the ones taken one after the other, handed back in unit order, with no more
held ahead of the caller than there are threads."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from stream.config import load_settings
from stream.events import encode
from stream.kafka.consumer import _Runtime
from stream.sim import SimConfig, simulate

pytest.importorskip("stream._core")


def _engines(n: int) -> list:
    from stream.compiled import new_engine

    settings = load_settings(None, env={})
    records = [encode(e) for e in simulate(SimConfig(events=3000, seed=7))]
    engines = []
    for k in range(n):
        engine = new_engine(settings, clock=None)
        engine.process_raw(records[k * 500:])  # a different state each
        engines.append(engine)
    return engines


def test_parallel_snapshots_equal_the_sequential_ones_in_unit_order():
    engines = _engines(4)
    expected = [e.snapshot() for e in engines]
    assert len(set(expected)) == 4
    units = [(p, SimpleNamespace(engine=e), {"orders": p}) for p, e in enumerate(engines)]
    got = list(_Runtime._snapshots(SimpleNamespace(raw=True), units))
    assert [item for item, _ in got] == units
    assert [state for _, state in got] == expected


def test_parallel_snapshots_run_at_once_and_hold_at_most_one_per_thread(monkeypatch):
    monkeypatch.setattr("stream.kafka.consumer.usable_cpus", lambda: 2)
    lock, running, peak, started = threading.Lock(), [0], [0], []

    class Slow:
        def __init__(self, p: int) -> None:
            self.p = p

        def snapshot(self) -> bytes:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                started.append(self.p)
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return f"state {self.p}".encode()

    units = [(p, SimpleNamespace(engine=Slow(p)), {}) for p in range(5)]
    seen = []
    for item, state in _Runtime._snapshots(SimpleNamespace(raw=True), units):
        seen.append((item[0], state))
        time.sleep(0.15)  # a slow save: the threads must not run on through every unit meanwhile
        with lock:
            assert len(started) <= len(seen) + 1, (started, seen)
    assert seen == [(p, f"state {p}".encode()) for p in range(5)]
    assert peak[0] == 2


def test_usable_cpus_follow_the_affinity_mask(monkeypatch):
    from stream.kafka.consumer import usable_cpus

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert usable_cpus() == 3
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert usable_cpus() == 1


def test_the_python_engine_snapshots_on_the_calling_thread():
    names = []

    class Engine:
        def snapshot(self) -> bytes:
            names.append(threading.current_thread().name)
            return b"x"

    units = [(p, SimpleNamespace(engine=Engine()), {}) for p in range(3)]
    assert [s for _, s in _Runtime._snapshots(SimpleNamespace(raw=False), units)] == [b"x"] * 3
    assert names == [threading.current_thread().name] * 3
