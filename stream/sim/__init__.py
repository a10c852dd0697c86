"""The simulator: realistic labelled e-commerce traffic with attack campaigns and benign surprises.

- :mod:`stream.sim.config`: :class:`SimConfig` and the campaign rates.
- :mod:`stream.sim.data`: the world's fixed tables (cities, IP prefixes, user agents, the diurnal curve).
- :mod:`stream.sim.world`: the population, ordinary sessions, and :func:`simulate` that merges them with the
  campaigns in event time.
- :mod:`stream.sim.scenarios`: one module per attack and benign surprise.

See ``docs/simulator.md``.
"""

from __future__ import annotations

from stream.sim.config import (
    ATTACK_SCENARIOS,
    BENIGN_SCENARIOS,
    CURRENCY,
    NORMAL,
    AttackRates,
    BenignRates,
    SimConfig,
)
from stream.sim.world import scenario_counts, simulate, write_jsonl

__all__ = ["AttackRates", "BenignRates", "SimConfig", "simulate", "write_jsonl", "scenario_counts",
           "ATTACK_SCENARIOS", "BENIGN_SCENARIOS", "NORMAL", "CURRENCY"]
