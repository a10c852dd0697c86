"""Half-Space Trees on online min-max scaled features, vectorised, with exactly river's scores.

What it computes
----------------
For every event carrying all its tracked features, :class:`HalfSpaceTrees` returns the very float that river's
reference pipeline ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(...)`` returns when driven by the
same score-then-learn loop (``tests/detectors/test_hst.py`` checks it bit for bit at several batch sizes):

* scaling is river's ``MinMaxScaler``: ``(x - min) / (max - min)`` with the running min and max of the
  *learned* events (``0.0`` while ``max == min``); scoring uses the statistics before the event, learning
  uses them after updating with the event itself, as river's ``Pipeline.learn_one`` does;
* the trees are river's trees: same ``seed``, same sorted feature list, same ``padding = 0.15`` limits, the
  same sequence of ``random.Random`` draws, rebuilt here with numpy (no river objects are kept);
* the score is ``1 - sum(r_mass * 2**depth along each tree's path) / max_score``, walking down while the
  reference mass is at least ``0.1 * window_size``; ``0.0`` during the first window.

Why it is fast
--------------
A score reads only the *reference* masses, which change only when ``window_size`` learned events complete the
latest window. So a micro-batch is scaled and routed down all trees in one numpy pass per tree level, the
caller's gate is consulted event by event, and learning only records the leaf each learned event reached (a
node's mass is the number of learned leaves below it). At the window swap the reference masses of all nodes
are recounted from the sorted leaves (run lengths, one pass for every level), and the rest of the batch is
rescored. The scaler is handled the same way: the running min/max over a batch is a prefix
``fmin``/``fmax``; an event the gate refuses that would have moved the min or max invalidates the rest of
the batch, which is then rescored.

Where it differs from river
---------------------------
* A tracked feature that is missing (or ``NaN``) follows, at each split on it, the child holding more of the
  *reference* window's mass (ties go left). river follows the child with more *latest-window* mass, which
  would make every score depend on every learn and rule out batching; both mean "go where the data is".
* The trees are built when the first window of learned events is complete (scores are 0 until then in river
  too), on every key those events carried, sorted; river builds them on the first learned event's keys. The two
  agree when the first window's events all carry the same keys; ours does not lose a feature that a stream's
  first event happened to lack. Keys first seen later are ignored, as in river (whose trees cannot split on a
  feature they were not built with). ``features`` fixes the list instead.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Frame, Gate, ask_gate
from detectors.registry import register
from detectors.text import number

__all__ = ["HalfSpaceTrees", "describe_hst"]

_PADDING = 0.15
#: Longest run of events scored in one vectorised pass (bounds the work a gate refusal can waste).
_MAX_CHUNK = 512


def build_trees(
    n_features: int, n_trees: int, height: int, seed: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The forest for a seed (cached: detectors with the same shape and seed share read-only arrays)."""
    if seed is None:
        return _build_trees(n_features, n_trees, height, None)
    return _build_trees_cached(n_features, n_trees, height, seed)


def _build_trees(
    n_features: int, n_trees: int, height: int, seed: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """river's ``make_padded_tree`` forest over features ``0..n_features-1`` with limits ``(0, 1)``,
    vectorised.

    river builds each tree depth-first; every branch node draws two uniforms from ``random.Random(seed)``: one
    for ``rng.choices`` (the feature, weighted by the width of its current limits) and one for ``rng.uniform``
    (the threshold inside the padded limits). We draw the same numbers in the same order, then evaluate the
    same float arithmetic for all nodes of a level at once.

    Returns per-level arrays ``feat[d]`` (int) and ``thr[d]`` (float), each of shape ``(n_trees * 2**d,)``;
    node ``k`` of level ``d`` of tree ``t`` is at ``t * 2**d + k``, its children at ``2k`` and ``2k + 1`` of
    level ``d + 1``.
    """
    rng = random.Random(seed)
    n_branch = 2**height - 1
    draws = np.array([rng.random() for _ in range(2 * n_branch * n_trees)], dtype=np.float64)
    draws = draws.reshape(n_trees, n_branch, 2)
    feat = [np.empty(n_trees * 2**d, dtype=np.int32) for d in range(height)]
    thr = [np.empty(n_trees * 2**d, dtype=np.float64) for d in range(height)]
    for t in range(n_trees):
        lo = np.zeros((1, n_features))
        hi = np.ones((1, n_features))
        pre = np.zeros(1, dtype=np.int64)  # depth-first (pre-order) index of each branch node of the level
        for d in range(height):
            k = 2**d
            cum = np.cumsum(hi - lo, axis=1)  # itertools.accumulate: sequential, same floats
            x = draws[t, pre, 0] * cum[:, -1]
            # random.choices: bisect_right(cum_weights, x, 0, n - 1)
            on = (cum[:, :-1] <= x[:, None]).sum(axis=1)
            rows = np.arange(k)
            a = lo[rows, on]
            b = hi[rows, on]
            lo_pad = a + _PADDING * (b - a)
            hi_pad = b - _PADDING * (b - a)
            at = lo_pad + (hi_pad - lo_pad) * draws[t, pre, 1]  # random.uniform(lo_pad, hi_pad)
            feat[d][t * k : (t + 1) * k] = on
            thr[d][t * k : (t + 1) * k] = at
            if d + 1 < height:
                lo = np.repeat(lo, 2, axis=0)
                hi = np.repeat(hi, 2, axis=0)
                hi[2 * rows, on] = at
                lo[2 * rows + 1, on] = at
                nxt = np.empty(2 * k, dtype=np.int64)
                nxt[0::2] = pre + 1
                nxt[1::2] = pre + 1 + (2 ** (height - d - 1) - 1)
                pre = nxt
    for a in feat + thr:
        a.setflags(write=False)
    return feat, thr


_build_trees_cached = functools.lru_cache(maxsize=8)(_build_trees)


@register("hst")
class HalfSpaceTrees(Detector):
    """Half-Space Trees (Tan, Ting & Liu, 2011) on online min-max scaled features; river's scores, vectorised.

    Parameters
    ----------
    n_trees
        Number of trees.
    height
        Height of each tree (``2**height`` leaves; at most 18). Memory is about ``n_trees * 2**height * 20``
        bytes (splits and node masses): 16 MB for the defaults. A pickle holds neither: the trees are rebuilt
        from ``seed`` on loading (unless ``seed`` is None) and the masses from the reference leaves.
    window_size
        Learned events per mass window; the reference masses that scores read are swapped in every
        ``window_size`` learned events. Scores are ``0.0`` until the first window is complete.
    seed
        Seed of the trees' random splits (river's ``random.Random(seed)``).
    features
        Features the trees split on. ``None``: every key of the first window's learned events, fixed from then on.

    Notes
    -----
    :meth:`explain` attributes the point's isolation to features: along each tree's scoring path, a split on
    feature ``f`` that sends the point from a node holding ``r`` reference events to a child holding ``r'``
    contributes ``ln((r + 1) / (r' + 1))`` to ``f``; contributions are averaged over trees. A feature scores
    high when splits on it cut the point away from most of the recent traffic.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> hst = HalfSpaceTrees(n_trees=10, height=6, window_size=50, seed=42)
    >>> for _ in range(200):
    ...     hst.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)})
    >>> hst.score_one({"a": 0.1, "b": -0.2}) < hst.score_one({"a": 0.1, "b": 9.0})
    True
    >>> hst.explain({"a": 0.1, "b": 9.0}, top=1)[0][0]
    'b'
    """

    def __init__(
        self,
        n_trees: int = 25,
        height: int = 15,
        window_size: int = 250,
        seed: int | None = 42,
        features: Sequence[str] | None = None,
    ) -> None:
        for name, v in (("n_trees", n_trees), ("height", height), ("window_size", window_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if height > 18:
            raise ValueError(f"height must be <= 18 (memory grows as n_trees * 2**height), got {height}")
        if features is not None and (isinstance(features, str) or len(features) == 0):
            raise ValueError("features must be a non-empty list of feature names, or None")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.features = features
        self._names: list[str] | None = None  # tracked features, sorted (river sorts them)
        self._pending: list[Features] = []  # the first window's learned events, until the trees are built
        self._getter: Any = None
        self._feat: list[np.ndarray] = []
        self._thr: list[np.ndarray] = []
        self._lo = np.empty(0)
        self._hi = np.empty(0)
        self._counter = 0  # learned events in the latest window
        self._latest: list[np.ndarray] = []  # leaves of the latest window's learned events, (k, n_trees) each
        self._ref: np.ndarray | None = None  # leaves of the reference window, (window_size, n_trees)
        # cache, not pickled: reference mass of every node, and which entries are non-zero
        self._all: np.ndarray | None = None
        self._nonzero: np.ndarray | None = None
        self._mass_ok = False

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"n_trees": 6, "height": 8, "window_size": 40}
        yield {"n_trees": 3, "height": 5, "window_size": 25, "seed": 3, "features": ["f0", "f1", "f2"]}

    # -- derived constants -----------------------------------------------------------------------------------

    @property
    def size_limit(self) -> float:
        """Reference mass under which a path stops (river's ``0.1 * window_size``)."""
        return 0.1 * self.window_size

    @property
    def _max_score(self) -> int:
        return self.n_trees * self.window_size * (2 ** (self.height + 1) - 1)

    # -- state -----------------------------------------------------------------------------------------------

    def _build_from_pending(self) -> None:
        """Build the trees on the features of the first window's learned events, then learn those events as
        :meth:`learn_one` would have one by one (each scaled by the running min/max including itself)."""
        rows, self._pending = self._pending, []
        self._build(dict.fromkeys((k for x in rows for k in x), 0.0))  # only the keys matter
        x = np.array([[r.get(f, math.nan) for f in self._names] for r in rows], dtype=np.float64)  # type: ignore
        lo_in = np.fmin.accumulate(np.vstack([self._lo, x]), axis=0)[1:]
        hi_in = np.fmax.accumulate(np.vstack([self._hi, x]), axis=0)[1:]
        self._lo, self._hi = lo_in[-1].copy(), hi_in[-1].copy()
        self._learn_leaves(self._leaves(self._scale(x, lo_in, hi_in)))

    def _build(self, x: Features) -> None:
        names = sorted(set(self.features)) if self.features is not None else sorted(x)
        self._names = names
        self._feat, self._thr = build_trees(len(names), self.n_trees, self.height, self.seed)
        self._lo = np.full(len(names), np.inf)
        self._hi = np.full(len(names), -np.inf)
        self._getter = _make_getter(names)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_all"] = None
        state["_nonzero"] = None
        state["_mass_ok"] = False
        state["_getter"] = None
        if self.seed is not None:  # the trees are a function of the seed: rebuild them on loading
            state["_feat"] = state["_thr"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_pending", [])
        if self._names is not None:
            self._getter = _make_getter(self._names)
            if self._feat is None:
                self._feat, self._thr = build_trees(len(self._names), self.n_trees, self.height, self.seed)

    def _mass(self, d: int, ids: np.ndarray) -> np.ndarray:
        """Reference mass of the level-``d`` nodes at flat positions ``ids`` (``t * 2**d + k``)."""
        return self._masses()[self.n_trees * (2**d - 1) + ids]

    def _masses(self) -> np.ndarray:
        """Reference mass of every node of every tree, level after level (a cache rebuilt after each swap).

        A node's mass is the number of reference leaves below it. Sorting the keys ``t * 2**height + leaf``
        makes every level's node ids ``key >> (height - d)`` sorted too, so all levels' counts are run
        lengths of one sorted array; only the nodes that held mass before are cleared.
        """
        if self._mass_ok and self._all is not None:
            return self._all
        assert self._ref is not None
        h, n_trees = self.height, self.n_trees
        if self._all is None:
            self._all = np.zeros(n_trees * (2 ** (h + 1) - 1), dtype=np.int32)
            self._nonzero = None
        if self._nonzero is not None:
            self._all[self._nonzero] = 0
        keys = np.sort((self._ref + (np.arange(n_trees) << h)).ravel())
        d = np.arange(h + 1)
        ids = ((keys[None, :] >> (h - d)[:, None]) + (n_trees * (2**d - 1))[:, None]).ravel()  # sorted
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        uniq = ids[starts]
        self._all[uniq] = np.diff(np.r_[starts, len(ids)])
        self._nonzero = uniq
        self._mass_ok = True
        return self._all

    # -- vectorised core -------------------------------------------------------------------------------------

    def _matrix(self, xs: Sequence[Features]) -> np.ndarray:
        if isinstance(xs, Frame):
            return xs.columns(self._names)  # type: ignore[arg-type]
        get = self._getter
        rows = []
        for x in xs:
            try:
                rows.append(get(x))
            except KeyError:
                rows.append([x.get(f, math.nan) for f in self._names])  # type: ignore[union-attr]
        out = np.array(rows, dtype=np.float64).reshape(len(xs), len(self._names))  # type: ignore[arg-type]
        return out

    def _scale(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        d = hi - lo
        z = np.zeros(np.broadcast_shapes(x.shape, d.shape))  # 0.0 where max == min, as river's MinMaxScaler
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(x - lo, d, out=z, where=d != 0)
        z[np.isnan(x)] = np.nan
        return z

    def _leaves(self, z: np.ndarray) -> np.ndarray:
        """Leaf (index within its tree) each row of scaled ``z`` reaches in each tree, shape (m, n_trees)."""
        m, nf = z.shape
        n_trees = self.n_trees
        # node k of tree t at level d has the flat id g = t * 2**d + k; its children are 2g and 2g + 1
        g = np.broadcast_to(np.arange(n_trees, dtype=np.intp), (m, n_trees)).copy()
        flat = z.ravel()
        row_off = (np.arange(m, dtype=np.intp) * nf)[:, None]
        missing = bool(np.isnan(flat).any())
        for d in range(self.height):
            v = flat.take(self._feat[d].take(g) + row_off)
            if not missing:
                right = v >= self._thr[d].take(g)
            else:
                right = ~(v < self._thr[d].take(g))
                miss = np.isnan(v)
                if miss.any():
                    if self._ref is None:
                        right[miss] = False
                    else:
                        child = 2 * g[miss]  # level d+1 flat position of the left child
                        right[miss] = self._mass(d + 1, child) < self._mass(d + 1, child + 1)
            g <<= 1
            g += right
        return g - (np.arange(n_trees, dtype=np.intp) << self.height)

    def _score_leaves(self, leaves: np.ndarray) -> np.ndarray:
        m = leaves.shape[0]
        if self._ref is None:
            return np.zeros(m)
        h = self.height
        d = np.arange(h + 1)
        # reference mass of every node on every path at once, shape (m, n_trees, h + 1)
        base = (np.arange(self.n_trees)[:, None] << d) + (self.n_trees * ((1 << d) - 1))
        r = self._masses().take((leaves[:, :, None] >> (h - d)) + base)
        # a level counts while every level above it still held size_limit mass (river walks down until then)
        ok = r >= self.size_limit
        alive = np.ones(r.shape, dtype=bool)
        np.logical_and.accumulate(ok[:, :, :-1], axis=2, out=alive[:, :, 1:])
        total = (r * alive) @ (1 << d).astype(np.int64)
        return 1.0 - total.sum(axis=1) / self._max_score

    def _learn_leaves(self, leaves: np.ndarray) -> None:
        """Record learned events' leaves; swap windows when ``window_size`` of them are in (caller ensures no
        overshoot)."""
        if len(leaves) == 0:
            return
        self._latest.append(leaves)
        self._counter += len(leaves)
        if self._counter == self.window_size:
            self._ref = np.concatenate(self._latest)
            self._latest = []
            self._mass_ok = False
            self._counter = 0

    # -- Detector API ----------------------------------------------------------------------------------------

    def score_one(self, x: Features) -> float:
        if self._names is None or self._ref is None:
            return 0.0
        z = self._scale(self._matrix([x]), self._lo, self._hi)
        return float(self._score_leaves(self._leaves(z))[0])

    def learn_one(self, x: Features) -> None:
        if self._names is None:
            if self.features is None:
                if x:  # an empty event gives the trees nothing: it is not learned
                    self._pending.append(dict(x))
                    if len(self._pending) == self.window_size:
                        self._build_from_pending()
                return
            self._build(x)
        row = self._matrix([x])
        self._lo = np.fmin(self._lo, row[0])
        self._hi = np.fmax(self._hi, row[0])
        self._learn_leaves(self._leaves(self._scale(row, self._lo, self._hi)))

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        n = len(xs)
        out = np.zeros(n, dtype=np.float64)
        start = 0
        while self._names is None and start < n:  # cold: scores are 0 until the trees exist
            s = 0.0
            out[start] = s
            if gate is None or gate(s):
                self.learn_one(xs[start])
            start += 1
        if start == n:
            return out
        x_all = self._matrix(xs)[start:] if isinstance(xs, Frame) else self._matrix(xs[start:] if start else xs)
        pos = 0
        m_all = len(x_all)
        while pos < m_all:
            m = min(m_all - pos, self.window_size - self._counter, _MAX_CHUNK)
            pos += self._chunk(x_all[pos : pos + m], gate, out[start + pos : start + pos + m])
        return out

    def _chunk(self, x: np.ndarray, gate: Gate | None, out: np.ndarray) -> int:
        """Score/gate/learn rows of ``x`` (no window swap before its last row); returns how many rows it
        settled.

        Rows are scored as if every earlier row of the chunk were learned; the first refused row that would
        have moved the running min or max ends the chunk (later rows must be rescaled).
        """
        m = len(x)
        lo_seq = np.fmin.accumulate(np.vstack([self._lo, x]), axis=0)
        hi_seq = np.fmax.accumulate(np.vstack([self._hi, x]), axis=0)
        lo_ex, lo_in = lo_seq[:-1], lo_seq[1:]
        hi_ex, hi_in = hi_seq[:-1], hi_seq[1:]
        record = ((lo_in != lo_ex) | (hi_in != hi_ex)).any(axis=1)
        cold = self._ref is None
        rec_rows = np.flatnonzero(record)
        if cold:
            scores = np.zeros(m)
            leaves = None
        else:
            # one descent for the rows as scored (min/max before each) and, for the rows that move the min or
            # max, as they would be learned (min/max including themselves): half the per-level numpy calls
            if len(rec_rows):
                both = self._leaves(np.vstack([self._scale(x, lo_ex, hi_ex),
                                               self._scale(x[rec_rows], lo_in[rec_rows], hi_in[rec_rows])]))
                leaves, rec_leaves = both[:m], both[m:]
            else:
                leaves = self._leaves(self._scale(x, lo_ex, hi_ex))
            scores = self._score_leaves(leaves)
        out[:m] = scores
        learned: list[int] = []
        end = m
        refused_record = False
        if gate is None:
            learned = list(range(m))
        else:
            ok = ask_gate(gate, scores, record)
            learned = np.flatnonzero(ok).tolist()
            end = len(ok)  # the gate was asked up to the first refused row that moved the min or max, if any
            refused_record = bool(end and not ok[-1] and record[end - 1])
        if learned:
            li = np.asarray(learned)
            if cold:
                new = self._leaves(self._scale(x[li], lo_in[li], hi_in[li]))
            else:
                assert leaves is not None
                new = leaves[li]
                rec = record[li]
                if rec.any():  # learning sees the min/max updated with the event itself
                    new[rec] = rec_leaves[np.searchsorted(rec_rows, li[rec])]
        last = end - 1
        if refused_record:
            self._lo, self._hi = lo_ex[last].copy(), hi_ex[last].copy()
        else:
            self._lo, self._hi = lo_in[last].copy(), hi_in[last].copy()
        if learned:
            self._learn_leaves(new)
        return end

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        if self._names is None or self._ref is None:
            return []
        z = self._scale(self._matrix([x]), self._lo, self._hi)
        leaves = self._leaves(z)[0].astype(np.int64)
        h, n_trees = self.height, self.n_trees
        masses = self._masses()
        d = np.arange(h + 1)
        # node[t, d]: flat id of tree t's level-d node on the event's path; mass[t, d]: its reference mass
        node = np.arange(n_trees)[:, None] * (1 << d)[None, :] + (leaves[:, None] >> (h - d)[None, :])
        mass = masses[n_trees * ((1 << d) - 1)[None, :] + node].astype(np.int64)
        # a tree's path counts down to (and including) its last level whose node still has size_limit mass
        ok = np.cumprod(mass[:, :h] >= self.size_limit, axis=1).astype(bool)
        contrib = np.zeros(len(self._names))
        if ok.any():
            t_idx, d_idx = np.nonzero(ok)  # row-major: tree by tree, level by level, as a loop would add them
            nodes = node[t_idx, d_idx].tolist()
            feats = [int(self._feat[dd][nn]) for dd, nn in zip(d_idx.tolist(), nodes, strict=True)]
            ratios = ((mass[t_idx, d_idx] + 1) / (mass[t_idx, d_idx + 1] + 1)).tolist()
            for f, r in zip(feats, ratios, strict=True):
                contrib[f] += math.log(r)
        contrib /= self.n_trees
        order = np.argsort(-contrib, kind="stable")[:top]
        return [(self._names[i], float(contrib[i])) for i in order if contrib[i] > 0]

    def describe(self, x: Features, feature: str) -> str:
        """One line on ``feature``'s part in ``x``'s score (for alert reasons)."""
        if self._names is None or feature not in self._names:
            return f"{feature} is not tracked by the trees"
        i = self._names.index(feature)
        return describe_hst(feature, x.get(feature), float(self._lo[i]), float(self._hi[i]))


def describe_hst(feature: str, value: float | None, lo: float, hi: float) -> str:
    """:meth:`HalfSpaceTrees.describe` of a tracked feature from its learned range: shared by the Python detector
    and the compiled one's alerts (``stream.compiled``)."""
    shown = "missing" if value is None else number(value)
    return f"{feature}={shown} (isolated early by its splits; learned range [{number(lo)}, {number(hi)}])"


def _make_getter(names: list[str]) -> Any:
    if len(names) == 1:
        g = itemgetter(names[0])
        return lambda x: (g(x),)
    return itemgetter(*names)
