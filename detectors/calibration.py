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
        s = float(s) + 0.0  # -0.0 becomes 0.0: equal scores, one representation, so the state is canonical
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
        """:meth:`update` each score in order; returns the tail probabilities (equal to the loop, bitwise, and
        leaving the same state)."""
        v, ev, p = self._batch(scores)
        self._commit(v, ev)
        return p

    def peek_many(self, scores: Iterable[float] | np.ndarray) -> np.ndarray:
        """What :meth:`update_many` would return for ``scores``, changing nothing (pure)."""
        return self._batch(scores)[2]

    # -- internals -------------------------------------------------------------------------------------------

    def _batch(self, scores: Iterable[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scores (NaN as -inf), the value each of their updates evicts (NaN: none) and their tail
        probabilities.

        A tail probability is an exact count, so it does not depend on refresh points: score ``i`` is ranked
        against the window now, plus the batch's earlier scores, minus the values the batch's earlier updates
        evict. The two "earlier" counts take O(m log m) (:func:`_earlier_ge`), not a loop.
        """
        v = np.array(scores, dtype=np.float64).ravel() + 0.0  # -0.0 -> 0.0, as update() does
        v[np.isnan(v)] = -np.inf
        m = len(v)
        t = self._t
        w = self.window
        ts = t + np.arange(m)
        ev = np.full(m, np.nan)  # update k evicts update k - w's value: in the ring, or earlier in this batch
        gone = ts - w
        from_ring = (gone >= 0) & (gone < t)
        if from_ring.any():
            ring = np.frombuffer(self._ring, dtype=np.float64)
            ev[from_ring] = ring[gone[from_ring] % w]
        from_batch = gone >= t
        if from_batch.any():
            ev[from_batch] = v[gone[from_batch] - t]
        ge = self._count_ge(v)
        if m > 1:
            ge += _earlier_ge(v, v)
            if from_ring.any() or from_batch.any():
                ge -= _earlier_ge(ev, v)
        return v, ev, (ge + 1) / (np.minimum(ts, w) + 1)

    def _commit(self, v: np.ndarray, ev: np.ndarray) -> None:
        """Add the batch ``v`` (evicting ``ev``) to the state, refreshing where the loop would have."""
        m = len(v)
        if not m:
            return
        t, w, every = self._t, self.window, self.refresh_every
        ring = self._ring
        grow = max(0, min(m, w - t))
        if grow:
            ring.frombytes(v[:grow].tobytes())
        if grow < m:
            keep = np.arange(max(grow, m - w), m)  # later updates overwrite earlier ones in the same slot
            arr = np.frombuffer(ring, dtype=np.float64)
            arr[(t + keep) % w] = v[keep]
            del arr  # the array must not stay exported: it grows again after a restore of a shorter ring
        last = (t + m) // every * every  # the last refresh point the loop passes in this batch
        evicted = ~np.isnan(ev)
        if last > t:
            k = last - t
            self._added = sorted(self._added + v[:k].tolist())
            self._evicted = sorted(self._evicted + ev[:k][evicted[:k]].tolist())
            self._refresh()
            v, ev, evicted = v[k:], ev[k:], evicted[k:]
        if len(v):
            self._added = sorted(self._added + v.tolist())
            if evicted.any():
                self._evicted = sorted(self._evicted + ev[evicted].tolist())
        self._t = t + m


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


def _earlier_ge(left: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``out[i] = #{j < i : left[j] >= query[i]}`` (``NaN`` in ``left`` counts as nothing), in O(m log m).

    Bottom-up merge counting: at block size ``s``, every query in the right half of a ``2s`` block counts the
    sorted left half's values ``>=`` it with one ``searchsorted`` for all blocks (values are dense integer ranks,
    offset per block so the blocks never mix).
    """
    m = len(query)
    both = np.concatenate([left, query])
    ok = ~np.isnan(both)
    ranks = np.full(2 * m, -1, dtype=np.int64)  # NaN ranks below everything: never >= a query
    ranks[ok] = np.unique(both[ok], return_inverse=True)[1].ravel()
    size = 1 << max(0, (m - 1).bit_length())
    big = 2 * m + 2
    lr = np.full(size, -1, dtype=np.int64)
    lr[:m] = ranks[:m]
    qr = np.zeros(size, dtype=np.int64)
    qr[:m] = ranks[m:]
    out = np.zeros(size, dtype=np.int64)
    blocks = lr.reshape(size, 1)  # sorted blocks of the left values
    s = 1
    while s < size:
        nb = size // (2 * s)
        pair = blocks.reshape(nb, 2 * s)
        off = (np.arange(nb, dtype=np.int64) * big)[:, None]
        sorted_left = (pair[:, :s] + off).ravel()
        q = qr.reshape(nb, 2, s)[:, 1, :] + off
        below = np.searchsorted(sorted_left, q.ravel(), side="left").reshape(nb, s) - np.arange(nb)[:, None] * s
        out.reshape(nb, 2, s)[:, 1, :] += s - below
        blocks = np.sort(pair, axis=1)
        s *= 2
    return out[:m]
