"""µs per event of the feature stage: Python :class:`stream.features.FeatureExtractor` against the compiled
``stream._core.FeatureCore``, on the same simulated stream in the same run (so the ratio holds on a busy machine).

Printed, best of ``--repeat`` each, for ``simulate`` seed 7:

- ``python``: ``FeatureExtractor.transform_many`` (dicts);
- ``rust dicts``: ``FeatureCore.transform_many``, the same dicts (reads each Event's attributes, builds the dict);
- ``rust columns``: ``FeatureCore.transform_columns`` (reads the attributes, returns numpy matrices);
- ``rust kernel``: the part of ``transform_columns`` spent in ``FeatureState::transform`` itself, events already
  converted: what the compiled engine pays per event.

Then the state's size: entities, the kernel's estimate of bytes per entity (records, keys, index, allocator
rounding), the snapshot's bytes per entity, and Python's ``stats()`` for comparison.

Build the extension optimised first: ``scripts/build-core.sh --release``.

    python bench/core_features_bench.py                 # 100 000 events
    python bench/core_features_bench.py --events 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from stream._core import FeatureCore

from stream.events import Event, Label
from stream.features import FeatureExtractor
from stream.sim import SimConfig, simulate


def best(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of the fastest of ``repeat`` runs, and what the last one returned."""
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    events: list[Event] = list(simulate(SimConfig(events=a.events, seed=a.seed)))
    n = sum(1 for e in events if not isinstance(e, Label))
    print(f"simulate seed {a.seed}: {len(events)} events ({n} orders and logins), best of {a.repeat} "
          f"(load average {os.getloadavg()[0]:.1f})")  # fmt: skip

    py_s, fx = best(a.repeat, lambda: _run(FeatureExtractor(), "transform_many", events))
    dict_s, _ = best(a.repeat, lambda: _run(FeatureCore(), "transform_many", events))
    kernel: list[float] = []

    def columns() -> FeatureCore:
        core = _run(FeatureCore(), "transform_columns", events)
        kernel.append(core.last_kernel_seconds)
        return core

    col_s, core = best(a.repeat, columns)
    kernel_s = min(kernel)
    us = 1e6 / len(events)
    print(f"  python FeatureExtractor.transform_many   {py_s * us:7.2f} µs/event")
    print(f"  rust   FeatureCore.transform_many        {dict_s * us:7.2f} µs/event  ({py_s / dict_s:5.1f}x)")
    print(f"  rust   FeatureCore.transform_columns     {col_s * us:7.2f} µs/event  ({py_s / col_s:5.1f}x)")
    print(f"  rust   kernel (FeatureState::transform)  {kernel_s * us:7.3f} µs/event  ({py_s / kernel_s:5.0f}x)")

    st = dict(core.stats())
    ents = max(int(st["entities"]), 1)
    snap = len(core.snapshot())
    pst = fx.stats()
    print(f"  state: {ents} entities; rust {st['approx_bytes'] / ents:.0f} B/entity in memory (estimate), "
          f"{snap / ents:.0f} B/entity in its snapshot; python {pst['approx_bytes'] / max(pst['entities'], 1):.0f} "
          f"B/entity (stats())")  # fmt: skip
    kinds = [k.removeprefix("entities_") for k in st if k.startswith("entities_") and st[k]]
    print("    rust " + "  ".join(f"{k} {int(st['entities_' + k])} x {st['bytes_' + k] / st['entities_' + k]:.0f} B"
                                  for k in kinds))  # fmt: skip


def _run(fx: Any, method: str, events: list[Event]) -> Any:
    getattr(fx, method)(events)
    return fx


if __name__ == "__main__":
    main()
