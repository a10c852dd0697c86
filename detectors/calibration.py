"""Online calibration: a raw score becomes its tail probability among recent scores.

A detector's raw scale is its own business (HST masses, summed z-scores, rule weights). The ensemble makes
them comparable by asking, for every event, *what fraction of the recent raw scores were at least this high?*:

.. math:: p(s) = \\frac{\\#\\{\\text{past } s' \\ge s\\} + 1}{n + 1}

over the last ``window`` scores (``n`` of them, fewer at the start). ``p`` lies in ``(0, 1]``; small means
rare. The ``+ 1`` counts the score itself, so a first-ever score gets ``p = 1`` and the smallest possible
value is ``1 / (window + 1)``.

Exactness and speed. The window lives in a ring buffer. Ranks come from a sorted snapshot of the window, taken
every ``refresh_every`` updates (at fixed counts of updates, so the result never depends on how a caller
splits its stream), corrected exactly by the few values added and evicted since: a short sorted list each. One
:meth:`TailCalibrator.update` costs about 1.6 µs; :meth:`TailCalibrator.update_many` ranks a whole segment
between two refresh points with numpy and equals a loop of :meth:`~TailCalibrator.update` bit for bit.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable

import numpy as np

__all__ = ["TailCalibrator"]


class TailCalibrator:
    """Maps a raw score to ``p = P(past score >= s)`` over a sliding window of recent scores.

    Parameters
    ----------
    window
        Number of most recent scores the tail probability is measured against.
    refresh_every
        The sorted snapshot of the window is rebuilt every this many updates (a memory-speed trade-off; it
        does not change any result).

    Notes
    -----
    ``NaN`` scores are treated as ``-inf`` (the least anomalous value), so a broken score never looks rare.

    Examples
    --------
    >>> cal = TailCalibrator(window=4)
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
        self._snap = array("d")  # sorted window as of the last refresh
        self._added: list[float] = []  # sorted, added since the last refresh
        self._evicted: list[float] = []  # sorted, evicted since the last refresh

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
        """Tail probability of ``s`` against the current window, without adding it (pure)."""
        if s != s:
            s = -math.inf
        snap, add, ev = self._snap, self._added, self._evicted
        ge = len(snap) - bisect_left(snap, s) + len(add) - bisect_left(add, s) - len(ev) + bisect_left(ev, s)
        return (ge + 1) / (self.n + 1)

    # -- updates ---------------------------------------------------------------------------------------------

    def update(self, s: float) -> float:
        """Rank ``s`` against the window, then add it; returns its tail probability."""
        s = float(s)
        if s != s:
            s = -math.inf
        snap, add, ev = self._snap, self._added, self._evicted
        t = self._t
        w = self.window
        ge = len(snap) - bisect_left(snap, s) + len(add) - bisect_left(add, s) - len(ev) + bisect_left(ev, s)
        p = (ge + 1) / ((t if t < w else w) + 1)
        if t < w:
            self._ring.append(s)
        else:
            slot = t % w
            insort(ev, self._ring[slot])
            self._ring[slot] = s
        insort(add, s)
        t += 1
        self._t = t
        if t % self.refresh_every == 0:
            self._refresh()
        return p

    def update_many(self, scores: Iterable[float] | np.ndarray) -> np.ndarray:
        """:meth:`update` each score in order; returns the tail probabilities (equal to the loop, bitwise)."""
        v = np.array(scores, dtype=np.float64).ravel()
        v[np.isnan(v)] = -np.inf
        out = np.empty(len(v), dtype=np.float64)
        pos = 0
        w = self.window
        while pos < len(v):
            t = self._t
            m = min(len(v) - pos, self.refresh_every - t % self.refresh_every)
            seg = v[pos : pos + m]
            # values evicted by each update of the segment (NaN where nothing is evicted yet)
            ts = t + np.arange(m)
            ev_seg = np.full(m, np.nan)
            full = ts >= w
            if full.any():
                ring = self._ring
                ev_seg[full] = [ring[k % w] for k in ts[full].tolist()]
            ge = self._count_ge(seg)
            before = np.tri(m, m, -1, dtype=bool)  # [i, j]: update j happens before update i
            ge += (before & (seg[None, :] >= seg[:, None])).sum(axis=1)
            ge -= (before & (ev_seg[None, :] >= seg[:, None])).sum(axis=1)
            n = np.minimum(ts, w)
            out[pos : pos + m] = (ge + 1) / (n + 1)
            self._append(seg, ev_seg, full)
            pos += m
        return out

    # -- internals -------------------------------------------------------------------------------------------

    def _count_ge(self, seg: np.ndarray) -> np.ndarray:
        """Per value: how many scores in the window as of now are >= it."""
        snap = np.frombuffer(self._snap, dtype=np.float64) if len(self._snap) else np.empty(0)
        ge = len(snap) - np.searchsorted(snap, seg, side="left")
        if self._added:
            add = np.asarray(self._added)
            ge += len(add) - np.searchsorted(add, seg, side="left")
        if self._evicted:
            ev = np.asarray(self._evicted)
            ge -= len(ev) - np.searchsorted(ev, seg, side="left")
        return ge.astype(np.int64)

    def _append(self, seg: np.ndarray, ev_seg: np.ndarray, full: np.ndarray) -> None:
        w = self.window
        t = self._t
        vals = seg.tolist()
        ring = self._ring
        grow = max(0, min(len(vals), w - t))
        if grow:
            ring.extend(vals[:grow])
        for k in range(grow, len(vals)):
            ring[(t + k) % w] = vals[k]
        if full.any():
            self._evicted = sorted(self._evicted + ev_seg[full].tolist())
        self._added = sorted(self._added + vals)
        self._t = t + len(vals)
        if self._t % self.refresh_every == 0:
            self._refresh()

    def _refresh(self) -> None:
        # window = snapshot + added - evicted, as multisets (a value may come and go between refreshes)
        snap = np.frombuffer(self._snap, dtype=np.float64) if len(self._snap) else np.empty(0)
        if self._added:
            add = np.asarray(self._added)
            snap = np.insert(snap, np.searchsorted(snap, add, side="left"), add)
        if self._evicted:
            ev = np.asarray(self._evicted)
            # one position per evicted value, duplicates included (ev is sorted)
            dup = np.arange(len(ev)) - np.searchsorted(ev, ev, side="left")
            snap = np.delete(snap, np.searchsorted(snap, ev, side="left") + dup)
        self._snap = array("d", snap.tobytes())
        self._added = []
        self._evicted = []

    def __repr__(self) -> str:
        return f"TailCalibrator(window={self.window}, refresh_every={self.refresh_every}, n={self.n})"
