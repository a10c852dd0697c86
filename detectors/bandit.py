"""The review allocator: a Thompson-sampling bandit that spends the alert budget where reviews find fraud.

Every alert is a review slot. The fixed ensemble fills the slots by one risk ``q`` (the event's tail probability
of combined evidence). With the allocator on, each event also has an *arm*: the alert's driver, the detector with
the largest share ``w_d * -ln(p_d)`` of the evidence, or for a rules detector the highest-scoring rule it fired
(``"rules:card_burst_device"``). Each arm keeps a ``Beta(frauds + 1, legit + 1)`` posterior of its reviewed
precision, updated only from verdicts (label events) on events it *alerted*: a label for an event that never
alerted, or that arrives after the event fell out of the ``max_pending`` most recent alerts, teaches nothing.

Allocation, per event::

    theta_a ~ Beta(frauds_a + 1, legit_a + 1)      drawn once per arm every ``resample_every`` events
    z = -ln(q) + strength * ln(theta_a / ref)      priority: rarity times the arm's sampled precision, relative
                                                   to ref, the best reviewed arm's mean (stable scale)
    q' = TailCalibrator(z)                         rank among recent traffic, so the budget still holds
    alert = q' <= budget

An arm with reviewed precision 0.5 gets its events' priority doubled against an arm at 0.25 (``strength = 1``),
so slots move to the arms whose alerts reviews confirm; an arm with few verdicts has a wide posterior and is
sometimes sampled high: that is its exploration. Samples come from a generator seeded by ``(seed, period, arm)``,
so the same stream gives the same alerts at any batch split, and the whole object pickles (checkpoint state).

>>> alloc = ReviewAllocator(seed=1)
>>> alloc.remember("e1", "hst"); alloc.remember("e2", "rules:burst")
>>> alloc.learn("e1", 0), alloc.learn("e2", 1), alloc.learn("e3", 1)   # e3 never alerted: ignored
(True, True, False)
>>> alloc.posterior("rules:burst"), alloc.posterior("hst")
((2, 1), (1, 2))
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detectors.calibration import TailCalibrator

__all__ = ["ReviewAllocator"]


class ReviewAllocator:
    """Thompson sampling over alert drivers, fed by late review verdicts (see the module docstring).

    Parameters
    ----------
    seed
        Seed of the posterior samples (same seed, same stream: same alerts).
    strength
        Exponent of the sampled precision in the priority (0: the fixed ensemble's order).
    resample_every
        Events between two draws of each arm's sample (counted by the ensemble, not by batch).
    max_pending
        Most recent alerts whose verdict is waited for (older ones are forgotten, oldest first).
    calibration_window
        Recent priorities the allocated rank ``q'`` is taken among (the ensemble passes its own).
    """

    def __init__(self, seed: int = 0, strength: float = 1.0, resample_every: int = 1000,
                 max_pending: int = 200_000, calibration_window: int = 20000) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"bandit seed must be an integer >= 0, got {seed!r}")
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 10:
            raise ValueError(f"bandit strength must be a number in [0, 10], got {strength!r}")
        for name, v in (("resample_every", resample_every), ("max_pending", max_pending)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"bandit {name} must be an integer >= 1, got {v!r}")
        self.seed = seed
        self.strength = float(strength)
        self.resample_every = resample_every
        self.max_pending = max_pending
        self.frauds: dict[str, int] = {}
        self.legit: dict[str, int] = {}
        self._pending: OrderedDict[str, str] = OrderedDict()  # alerted event id -> its arm
        self._period = -1
        self._samples: dict[str, float] = {}  # this period's sample of each arm asked so far
        self._cal = TailCalibrator(calibration_window)

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed, "strength": self.strength, "resample_every": self.resample_every,
                "max_pending": self.max_pending}

    # -- posteriors ------------------------------------------------------------------------------------------

    def posterior(self, arm: str) -> tuple[int, int]:
        """``(alpha, beta)`` of the arm's Beta posterior: ``(frauds + 1, legit + 1)``."""
        return self.frauds.get(arm, 0) + 1, self.legit.get(arm, 0) + 1

    def remember(self, event_id: str, arm: str) -> None:
        """Event ``event_id`` alerted, driven by ``arm``: its verdict, when it comes, updates that arm."""
        pend = self._pending
        pend[event_id] = arm
        pend.move_to_end(event_id)
        while len(pend) > self.max_pending:
            pend.popitem(last=False)

    def learn(self, event_id: str, y: int) -> bool:
        """A verdict ``y`` (1 fraud, 0 legit) on ``event_id``; True if it was an alert waiting for it."""
        arm = self._pending.pop(event_id, None)
        if arm is None:
            return False
        counts = self.frauds if y else self.legit
        counts[arm] = counts.get(arm, 0) + 1
        return True

    def sample(self, arm: str, period: int) -> float:
        """The arm's posterior sample for ``period`` (drawn at first ask, from the posterior then)."""
        if period != self._period:
            self._period = period
            self._samples = {}
        s = self._samples.get(arm)
        if s is None:
            a, b = self.posterior(arm)
            rng = np.random.default_rng([self.seed, period, zlib.crc32(arm.encode())])
            s = self._samples[arm] = max(float(rng.beta(a, b)), 1e-9)
        return s

    # -- allocation ------------------------------------------------------------------------------------------

    def allocate(self, q: np.ndarray, arms: Sequence[str], seen: int) -> np.ndarray:
        """The allocated ranks ``q'`` of a batch whose final ranks are ``q`` and drivers ``arms``; ``seen`` is the
        number of events the ensemble scored before the batch (it fixes each event's sampling period)."""
        n = len(q)
        theta = np.empty(n)
        every = self.resample_every
        for i, arm in enumerate(arms):
            theta[i] = self.sample(arm, (seen + i) // every)
        # relative to the best reviewed arm's mean precision: when every arm is equally poor nothing shifts, so the
        # priorities keep one scale over the calibration window and the budget holds while precisions drift
        ref = self.reference()
        z = -np.log(np.maximum(q, 1e-300)) + self.strength * np.log(theta / ref)
        return self._cal.update_many(z)

    def reference(self) -> float:
        """The highest posterior mean precision among arms with verdicts (0.5, the prior's, before any)."""
        arms = set(self.frauds) | set(self.legit)
        if not arms:
            return 0.5
        return max(self.posterior(a)[0] / sum(self.posterior(a)) for a in arms)

    def why(self, arm: str) -> str:
        """The reason text of an alert driven by ``arm``."""
        a, b = self.posterior(arm)
        return (f"review slot allocated to {arm}: {a - 1} fraud / {a + b - 2} reviewed alerts so far "
                f"(posterior mean precision {a / (a + b):.2f})")

    def stats(self) -> dict[str, dict[str, float]]:
        """Per arm: reviewed frauds and legit verdicts and the posterior mean precision."""
        arms = sorted(set(self.frauds) | set(self.legit))
        return {a: {"frauds": self.frauds.get(a, 0), "legit": self.legit.get(a, 0),
                    "mean": round(self.posterior(a)[0] / sum(self.posterior(a)), 4)} for a in arms}

    def __repr__(self) -> str:
        return f"ReviewAllocator(seed={self.seed}, arms={len(set(self.frauds) | set(self.legit))}, " \
               f"pending={len(self._pending)})"


def drivers(contrib: Mapping[str, np.ndarray], rule_arm: Mapping[str, Any], xs: Sequence[Mapping[str, float]],
            forced: Sequence[Sequence[tuple[str, str]]]) -> list[str]:
    """Each event's arm: the forced block's rule, else the detector with the largest evidence share, refined to its
    top fired rule for a detector in ``rule_arm`` (name -> detector with ``fired(x)``)."""
    names = list(contrib)
    n = len(forced)
    if not names:
        return ["none"] * n
    mat = np.vstack([contrib[k] for k in names])
    top = np.argmax(mat, axis=0)
    out: list[str] = []
    for i in range(n):
        if forced[i]:
            det, why = forced[i][0]
            out.append(f"{det}:{why}")
            continue
        name = names[int(top[i])]
        det = rule_arm.get(name)
        if det is not None and mat[int(top[i]), i] > 0 and not math.isnan(mat[int(top[i]), i]):
            fired = det.fired(xs[i])
            if fired:
                # the strongest rule: the highest score, or for priors (whose slot holds p) the rarest
                sign = -1.0 if getattr(det, "probabilistic", False) else 1.0
                best = max(fired, key=lambda r: (sign * r.score, r.name))
                name = f"{name}:{best.name}"
        out.append(name)
    return out
