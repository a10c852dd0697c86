"""Benchmark of the link stage, Python (``stream.links``, ``stream.labels``) against the Rust core (``stream._core``).

The simulated stream (seed 7, 100k events with its delayed labels by default) is replayed through the calls the
engine makes per event (see ``tests/core/test_links_differential.py``): link features then observe (a failed
login only reads the graph), a label-store entry, and per label event: advance, join, entity risk learning, graph
confirm. The stream is cut at every label, as the engine cuts its batches. Two configurations:

- ``default``: the engine's defaults (graph on, ``link_flagged`` off, graph-only store entries: user id only);
- ``risk``: also entity risk (six kinds, 1/7/30 days) and full store entries (every id; vectors are the detectors'
  business and are not stored here);
- ``risk+prior``: the same with the cohort prior (``prior_strength = 10``: the shrunk rates, one cohort per kind).

Printed per configuration: µs/event of Python, of Rust called through its batch methods (with the conversion
of Python strings), and of the Rust core alone (timed inside the core; label calls included through the
wrapper); the Rust results are checked equal to Python's. Memory after the stream: Python's
state measured with tracemalloc (what the run allocates and keeps: not the id strings and, with ``risk``, not
the entity dicts it shares with the decoded events, so an underestimate; entity risk included), Rust's graph and
store counted exactly (``heap_bytes``: capacities and strings, without the allocator's per-allocation overhead).
Build with ``scripts/build-core.sh --release`` first.

    python bench/core_links_bench.py                  # seed 7, 100k events
    python bench/core_links_bench.py --events 200000
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from typing import Any

import numpy as np

from stream import _core as core
from stream.events import Label
from stream.labels import LabelStore
from stream.links import EntityRisk, LinkGraph
from stream.pipeline import _shows_control, entity_ids
from stream.sim import SimConfig, simulate

PRIOR = 10.0  # prior_strength of the risk+prior configuration

KINDS = core.ENTITY_KINDS
DAY = 86400.0


def segments(events: list) -> list[tuple[str, Any]]:
    """("score", columns of the events up to the next label) and ("label", label) in stream order."""
    out: list[tuple[str, Any]] = []
    pending: list = []

    def flush() -> None:
        if pending:
            ids = [entity_ids(e) for e in pending]
            out.append(("score", {
                "events": list(pending), "ids": ids,
                "users": [e.user_id for e in pending], "ts": [e.ts for e in pending],
                "observe": [_shows_control(e) for e in pending],
                "cols": [[d.get(k) for d in ids] for k in KINDS],
                "event_ids": [e.event_id for e in pending], "kinds": [e.type for e in pending],
            }))
            pending.clear()

    for e in events:
        if isinstance(e, Label):
            flush()
            out.append(("label", e))
        else:
            pending.append(e)
    flush()
    return out


def run_python(segs: list, risk_on: bool | str, keep: bool = True) -> tuple[float, list, Any]:
    graph = LinkGraph(window=7 * DAY, flagged=False)
    risk = EntityRisk(prior_strength=PRIOR if risk_on == "prior" else None) if risk_on else None
    store = LabelStore(max_size=500_000, ttl=45 * DAY)
    shared: dict[str, dict[str, str]] = {}
    rows = []
    t0 = time.perf_counter()
    for what, s in segs:
        if what == "label":
            store.advance(s.ts)
            j = store.join(s.ref_event_id, int(s.label or 0))
            if j is not None:
                if risk is not None:
                    risk.learn(j.entities, j.y, s.ts)
                if j.y and "user" in j.entities:
                    graph.confirm(j.entities["user"], s.ts)
            continue
        for e, ent, obs in zip(s["events"], s["ids"], s["observe"], strict=True):
            x: dict[str, float] = {}
            if risk is not None:
                x.update(risk.features(ent, e.ts))
            x.update(graph.features_then_observe(e.user_id, ent, e.ts) if obs else graph.features(e.user_id, ent, e.ts))
            if keep:
                rows.append(x)
            if risk is not None:
                store.put(e.event_id, e.ts, {}, kind=e.type, entities=ent)
            elif obs and any(k in ent for k in graph.kinds):
                one = shared.get(e.user_id)
                if one is None:
                    one = shared[e.user_id] = {"user": e.user_id}
                store.put(e.event_id, e.ts, {}, kind=e.type, entities=one)
    return time.perf_counter() - t0, rows, (graph, risk, store)


def run_rust(segs: list, risk_on: bool | str, keep: bool = True) -> tuple[float, tuple[int, ...], list, Any]:
    graph = core.LinkGraphCore(window=7 * DAY, flagged=False)
    risk = core.EntityRiskCore(prior_strength=PRIOR if risk_on == "prior" else None) if risk_on else None
    store = core.LabelStoreCore(max_size=500_000, ttl=45 * DAY)
    out = []
    label_ns = 0
    t0 = time.perf_counter()
    for what, s in segs:
        if what == "label":
            t1 = time.perf_counter_ns()
            store.advance(s.ts)
            j = store.join(s.ref_event_id, int(s.label or 0))
            if j is not None:
                if risk is not None:
                    risk.learn(j[5], j[2], s.ts)
                if j[2] and "user" in j[5]:
                    graph.confirm(j[5]["user"], s.ts)
            label_ns += time.perf_counter_ns() - t1
            continue
        g = graph.features_many(s["users"], s["cols"], s["ts"], s["observe"])
        if risk is not None:
            r = risk.features_many(s["cols"], s["ts"])
            if keep:
                out.append(np.hstack([r, g]))
            store.put_many(s["event_ids"], s["ts"], s["kinds"], s["cols"])
        else:
            if keep:
                out.append(g)
            # graph-only entries: events that showed control and linked, with their user id only
            cs = s["cols"]
            linked = [i for i, o in enumerate(s["observe"]) if o and any(cs[k][i] is not None for k in (1, 2, 3, 4))]
            if linked:
                cols = [[s["users"][i] for i in linked]] + [[None] * len(linked)] * 5
                store.put_many([s["event_ids"][i] for i in linked], [s["ts"][i] for i in linked],
                               [s["kinds"][i] for i in linked], cols)
    wall = time.perf_counter() - t0
    split = (graph.core_ns, store.core_ns, risk.core_ns if risk else 0, label_ns)
    return wall, split, out, (graph, risk, store)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    events = list(simulate(SimConfig(events=args.events, seed=args.seed)))
    segs = segments(events)
    n = sum(len(s["users"]) for w, s in segs if w == "score")
    labels = sum(w == "label" for w, _ in segs)
    print(f"seed {args.seed}: {len(events)} events ({n} orders/logins, {labels} labels, {len(segs)} segments)")
    for name, risk_on in (("default", False), ("risk", True), ("risk+prior", "prior")):
        wall_rs, (g_ns, s_ns, r_ns, l_ns), mats, (g_rs, r_rs, s_rs) = run_rust(segs, risk_on)
        core_s = (g_ns + s_ns + r_ns + l_ns) / 1e9
        wall_py, rows, (g_py, r_py, s_py) = run_python(segs, risk_on)
        got = np.vstack(mats)
        want = np.array([list(x.values()) for x in rows])
        assert got.shape == want.shape and np.array_equal(got, want), "Rust and Python features differ"
        assert s_rs.stats() == s_py.stats() and g_rs.table_sizes() == (len(g_py._by_user), len(g_py._by_value))
        us = 1e6 / n
        ents, held = g_py.size(), len(s_py)
        print(f"[{name}] Python {wall_py * us:.2f} µs/event | Rust {wall_rs * us:.2f} µs/event with conversions, "
              f"{core_s * us:.2f} core only | ratio {wall_py / wall_rs:.1f}x ({wall_py / core_s:.1f}x core)")
        extra = f", entity risk {r_py.size()} entities" if r_py is not None else ""
        print(f"    state: graph {ents} users+values (Rust slots alive {sum(g_rs.live())}), "
              f"store {held} entries{extra}")
        del mats, rows, g_rs, r_rs, s_rs
        state_rs = run_rust(segs, risk_on, keep=False)[3]
        gc.collect()
        tracemalloc.start()
        state_py = run_python(segs, risk_on, keep=False)[2]
        mem_py = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        mem_rs = sum(x.heap_bytes() for x in (state_rs[0], state_rs[2]))
        print(f"    memory of graph + store: Python {mem_py / 2**20:.1f} MB (tracemalloc), "
              f"Rust {mem_rs / 2**20:.1f} MB; "
              f"per graph user/value + store entry: Python {mem_py / (ents + held):.0f} B, "
              f"Rust {mem_rs / (ents + held):.0f} B")
        gb, sb = state_rs[0].heap_bytes(), state_rs[2].heap_bytes()
        print(f"    Rust heap (exact, without malloc overhead): graph {gb / 2**20:.1f} MB = {gb / ents:.0f} B per "
              f"user/value, store {sb / 2**20:.1f} MB = {sb / max(1, held):.0f} B per entry")
        print(f"    core time split: graph {g_ns / n * 1e-3:.2f}, store {s_ns / n * 1e-3:.2f}, "
              f"entity risk {r_ns / n * 1e-3:.2f}, labels {l_ns / n * 1e-3:.2f} µs/event")
        print(f"    snapshot: Rust graph {len(state_rs[0].snapshot()) / 2**20:.2f} MB, "
              f"store {len(state_rs[2].snapshot()) / 2**20:.2f} MB")
        del state_rs, state_py, g_py, r_py, s_py


if __name__ == "__main__":
    main()
