"""A checkpoint snapshots its units' compiled engines on several threads at once (the core serialises with the
GIL released), starting before the transactions' commits: the snapshots are the ones taken one after the other,
handed back in unit order, with no more held ahead of the caller than there are threads, and those of units
whose commit failed are dropped."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from stream.config import load_settings
from stream.events import encode
from stream.kafka.consumer import _Snapshots
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
    got = list(_Snapshots(units, threads=4).taken(range(4)))
    assert [item for item, _ in got] == units
    assert [state for _, state in got] == expected


class _Slow:
    """An engine whose snapshot takes 50 ms, counting how many run at once."""

    lock = threading.Lock()

    def __init__(self, p: int, running: list[int], peak: list[int], started: list[int]) -> None:
        self.p, self.running, self.peak, self.started = p, running, peak, started

    def snapshot(self) -> bytes:
        with self.lock:
            self.running[0] += 1
            self.peak[0] = max(self.peak[0], self.running[0])
            self.started.append(self.p)
        time.sleep(0.05)
        with self.lock:
            self.running[0] -= 1
        return f"state {self.p}".encode()


def test_parallel_snapshots_run_at_once_and_hold_at_most_one_per_thread():
    running, peak, started = [0], [0], []

    units = [(p, SimpleNamespace(engine=_Slow(p, running, peak, started)), {}) for p in range(5)]
    seen = []
    snapshots = _Snapshots(units, threads=2)
    try:
        for item, state in snapshots.taken(range(5)):
            seen.append((item[0], state))
            time.sleep(0.15)  # a slow save: the threads must not run on through every unit meanwhile
            with _Slow.lock:
                assert len(started) <= len(seen) + 2, (started, seen)  # two held ahead of the one being saved
    finally:
        snapshots.close()
    assert seen == [(p, f"state {p}".encode()) for p in range(5)]
    assert peak[0] == 2


def test_snapshots_start_before_they_are_asked_for_and_a_unit_not_kept_is_dropped():
    """They overlap the commits: two start at once when the checkpoint begins; the unit whose commit failed
    (1) is not handed back, and its snapshot is not taken if it has not started."""
    running, peak, started = [0], [0], []
    units = [(p, SimpleNamespace(engine=_Slow(p, running, peak, started)), {}) for p in range(5)]
    snapshots = _Snapshots(units, threads=2)
    try:
        deadline = time.monotonic() + 10
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sorted(started) == [0, 1]  # under way before taken() is called
        got = [(item[0], state) for item, state in snapshots.taken({0, 2, 4})]
    finally:
        snapshots.close()
    assert got == [(0, b"state 0"), (2, b"state 2"), (4, b"state 4")]
    assert 3 not in started  # never kept: never taken


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
    snapshots = _Snapshots(units, threads=0)
    assert names == []  # nothing taken ahead
    assert [s for _, s in snapshots.taken({0, 2})] == [b"x"] * 2
    assert names == [threading.current_thread().name] * 2
