"""Online calibration: a raw score becomes its tail probability among recent scores.

A detector's raw scale is its own business (HST masses, summed z-scores, rule weights). The ensemble makes
them comparable by asking, for every event, *what fraction of the recent raw scores were at least this high?*:

.. math:: p(s) = \\frac{\\#\\{s' \\in R : s' \\ge s\\} + 1}{|R| + 1}

where the reference ``R`` is the window of the last ``window`` scores *as of the latest refresh point*: the
window is snapshotted after update 1, 2, 4, 8, ... up to ``refresh_every`` (so the first scores already have a
reference), then every ``refresh_every`` updates: fixed counts of updates. ``p`` lies in ``(0, 1]``;
small means rare; the ``+ 1`` counts the score itself, so the first scores get ``p = 1`` and the smallest
possible value is ``1 / (window + 1)``.

Why a snapshot. The reference is at most ``refresh_every - 1`` updates stale (256 of 20 000 by default: the
tail probabilities barely move), and in exchange a score's ``p`` depends on the snapshot alone: a whole run of
scores between two refresh points is ranked with one ``numpy.searchsorted``, and whether a score is in a
detector's tail (the learning gate) is known for a whole batch at once. Refresh points are fixed counts, so the
results never depend on how a caller splits its stream: :meth:`TailCalibrator.update_many` equals a loop of
:meth:`~TailCalibrator.update` bit for bit and leaves the same state.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable

import numpy as np

__all__ = ["TailCalibrator"]


class TailCalibrator:
    """Maps a raw score to ``p = P(reference score >= s)`` over a sliding window of recent scores.

    Parameters
    ----------
    window
        Number of most recent scores the tail probability is measured against.
    refresh_every
        The reference (a sorted snapshot of the window) is retaken every this many updates.

    Notes
    -----
    ``NaN`` scores are treated as ``-inf`` (the least anomalous value), so a broken score never looks rare.

    Examples
    --------
    >>> cal = TailCalibrator(window=4, refresh_every=2)
    >>> [round(cal.update(s), 3) for s in [1.0, 2.0, 3.0, 0.5, 3.0, 9.0]]
    [1.0, 0.5, 0.333, 1.0, 0.4, 0.2]
    >>> round(cal.tail(2.5), 3)
    0.8
    """

    def __init__(self, window: int = 20000, refresh_every: int = 256) -> None:
        if int(window) != window or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if int(refresh_every) != refresh_every or refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive integer, got {refresh_every!r}")
        self.window = int(window)
        self.refresh_every = int(refresh_every)
        self._ring = array("d")  # grows to `window`, then slot t % window holds update t
        self._t = 0  # updates so far
        self._snap = array("d")  # the reference: sorted window as of the last refresh point
        self._added: list[float] = []  # added since the last refresh
        self._evicted: list[float] = []  # evicted since the last refresh

    # -- queries ---------------------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of scores currently in the window."""
        return min(self._t, self.window)

    @property
    def count(self) -> int:
        """Number of updates so far."""
        return self._t

    def tail(self, s: float) -> float:
        """Tail probability of ``s`` against the reference, without adding it (pure)."""
        if s != s:
            s = -math.inf
        snap = self._snap
        return (len(snap) - bisect_left(snap, s) + 1) / (len(snap) + 1)

    # -- updates ---------------------------------------------------------------------------------------------

    def update(self, s: float) -> float:
        """Rank ``s`` against the reference, then add it; returns its tail probability."""
        s = float(s) + 0.0  # -0.0 becomes 0.0: equal scores, one representation, so the state is canonical
        if s != s:
            s = -math.inf
        snap = self._snap
        p = (len(snap) - bisect_left(snap, s) + 1) / (len(snap) + 1)
        t = self._t
        w = self.window
        if t < w:
            self._ring.append(s)
        else:
            slot = t % w
            self._evicted.append(self._ring[slot])
            self._ring[slot] = s
        self._added.append(s)
        t += 1
        self._t = t
        if t % self.refresh_every == 0 or (t < self.refresh_every and not t & (t - 1)):
            self._snap = array("d", _merge(self._snap, self._added, self._evicted).tobytes())
            self._added = []
            self._evicted = []
        return p

    def update_many(self, scores: Iterable[float] | np.ndarray, *, stop: np.ndarray | None = None,
                    protect: float = 0.0) -> np.ndarray:
        """:meth:`update` each score in order; returns the tail probabilities (equal to the loop, bitwise, and
        leaving the same state).

        With ``stop`` (a flag per score), the updates end right after the first score flagged in ``stop`` whose
        tail probability is ``<= protect``: only that prefix is added and returned (a learning gate whose refusal
        of such a score changes what comes next).
        """
        return self._run(scores, commit=True, stop=stop, protect=protect)

    def peek_many(self, scores: Iterable[float] | np.ndarray) -> np.ndarray:
        """What :meth:`update_many` would return for ``scores``, changing nothing (pure)."""
        return self._run(scores, commit=False)

    # -- internals -------------------------------------------------------------------------------------------

    def _run(self, scores: Iterable[float] | np.ndarray, commit: bool, stop: np.ndarray | None = None,
             protect: float = 0.0) -> np.ndarray:
        v = np.array(scores, dtype=np.float64).ravel() + 0.0  # -0.0 -> 0.0, as update() does
        v[np.isnan(v)] = -np.inf
        m = len(v)
        out = np.empty(m, dtype=np.float64)
        if not m:
            return out
        t0, w, every = self._t, self.window, self.refresh_every
        # the value each update evicts (update k evicts update k - w's): from the ring, or earlier in the batch
        ts = t0 + np.arange(m)
        gone = ts - w
        ev = np.full(m, np.nan)
        from_ring = (gone >= 0) & (gone < t0)
        if from_ring.any():
            ring = np.frombuffer(self._ring, dtype=np.float64)
            ev[from_ring] = ring[gone[from_ring] % w]
            del ring
        from_batch = gone >= t0
        if from_batch.any():
            ev[from_batch] = v[gone[from_batch] - t0]
        snap = np.frombuffer(self._snap, dtype=np.float64) if len(self._snap) else np.empty(0)
        added: list[float] = list(self._added)
        evicted: list[float] = list(self._evicted)
        pos, t = 0, t0
        while pos < m:
            k = min(m - pos, _next_refresh(t, every) - t)
            seg = v[pos : pos + k]
            p = (len(snap) - np.searchsorted(snap, seg, side="left") + 1) / (len(snap) + 1)
            if stop is not None:
                ends = np.flatnonzero(stop[pos : pos + k] & (p <= protect))
                if len(ends):  # the batch ends at this score
                    k = int(ends[0]) + 1
                    seg, p = seg[:k], p[:k]
                    m = pos + k
                    v, out, ev = v[:m], out[:m], ev[:m]
            out[pos : pos + k] = p
            added.extend(seg.tolist())
            evs = ev[pos : pos + k]
            evicted.extend(evs[~np.isnan(evs)].tolist())
            pos += k
            t += k
            if t == _next_refresh(t - k, every):
                snap = _merge(snap, added, evicted)
                added, evicted = [], []
        if commit:
            grow = max(0, min(m, w - t0))
            if grow:
                self._ring.frombytes(v[:grow].tobytes())
            if grow < m:
                keep = np.arange(max(grow, m - w), m)  # later updates overwrite earlier ones in the same slot
                ring = np.frombuffer(self._ring, dtype=np.float64)
                ring[(t0 + keep) % w] = v[keep]
                del ring  # an exported buffer would stop the array from growing
            if snap is not self._snap:
                self._snap = array("d", np.ascontiguousarray(snap).tobytes())
            self._added, self._evicted, self._t = added, evicted, t
        return out

    def __repr__(self) -> str:
        return f"TailCalibrator(window={self.window}, refresh_every={self.refresh_every}, n={self.n})"


def _next_refresh(t: int, every: int) -> int:
    """The first refresh point after ``t`` updates: 1, 2, 4, ... up to ``every`` (a reference from the start),
    then the multiples of ``every``."""
    if t < every:
        return min(1 << t.bit_length(), every)
    return (t // every + 1) * every


def _merge(snap: np.ndarray | array, added: list[float], evicted: list[float]) -> np.ndarray:
    """The sorted multiset ``snap + added - evicted`` (``snap`` sorted; ``evicted`` values are all present)."""
    base = np.frombuffer(snap, dtype=np.float64) if isinstance(snap, array) else snap
    if not len(base):
        base = np.empty(0)
    if added:
        add = np.sort(np.asarray(added, dtype=np.float64))
        base = np.insert(base, np.searchsorted(base, add, side="left"), add)
    if evicted:
        ev = np.sort(np.asarray(evicted, dtype=np.float64))
        # one position per evicted value, duplicates included (ev is sorted)
        dup = np.arange(len(ev)) - np.searchsorted(ev, ev, side="left")
        base = np.delete(base, np.searchsorted(base, ev, side="left") + dup)
    return base
