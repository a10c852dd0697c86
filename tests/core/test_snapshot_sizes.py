"""``CoreEngine.snapshot_sizes()`` accounts for the checkpoint ``snapshot()`` writes, part by part."""

from __future__ import annotations

from stream.compiled import core_engine
from stream.config import load_settings
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


def _sizes(core) -> dict[str, int]:
    sizes = core.snapshot_sizes()
    names = [name for name, _ in sizes]
    assert len(names) == len(set(names)), names
    return dict(sizes)


def test_the_parts_add_up_to_the_snapshot_and_grow_with_the_entities_seen() -> None:
    settings = load_settings(None)
    events = list(simulate(SimConfig(events=6_000, seed=7)))
    core = core_engine(Engine(settings))
    empty = _sizes(core)
    assert {"features", "graph", "entity_risk", "label_store"} <= set(empty)

    core.vectors(events[:1_000])
    early = _sizes(core)
    core.vectors(events[1_000:])
    late = _sizes(core)

    for sizes in (empty, early, late):
        assert all(v >= 0 for v in sizes.values()), sizes
    # each part is serialised once inside the snapshot, which adds only framing (lengths, options, scalars)
    total = len(core.snapshot())
    assert sum(late.values()) <= total < sum(late.values()) + 64 * 1024, (late, total)
    # more users, devices and IPs seen: more feature state and a bigger link graph, never less
    assert empty["features"] < early["features"] < late["features"]
    assert early["graph"] <= late["graph"]
    assert late["graph"] > 0
