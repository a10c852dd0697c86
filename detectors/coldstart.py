"""Cold-start evidence: how rare an event's account age and device / IP sharing are, without any history of the
account itself.

When each account orders once (first purchases, sign-up abuse), detectors that compare an account with its own
past see nothing. What is left is the event's context: how old the account is at this event, how many accounts
this device or IP served today, how many fresh accounts appeared on the device. Each such *signal* is a feature
the engine already computes; this detector asks, per signal, how extreme the event's value is among the last
``window`` learned values of that signal (events that carried it), one-sided:

* ``low`` signals (default ``account_age_days``): ``p = (#{w <= x} + 1) / (n + 1)``;
* ``high`` signals (default ``device_users_24h``, ``ip_users_24h``, ``device_new_accounts_24h``,
  ``user_first_seen``): ``p = (#{w >= x} + 1) / (n + 1)``;

over the ``n`` values of the window, ties counted on the event's side (conservatively): a value that most of the
window shares gets ``p`` near 1, so a signal that is constant or absent in a stream contributes nothing, and an
event never looks rarer than the window says. The raw score is Fisher's sum ``sum(-ln p)`` over the signals the
event carries (absent or ``NaN`` ones contribute 0).

The per-signal windows are sorted into a snapshot every ``refresh_every`` learned events, at fixed counts of
learned events (as :class:`~detectors.zscore.RobustZScore` does), so scores do not depend on how the stream is
cut into batches; :meth:`ColdStart.process_many` ranks every event between two refresh points with one
``searchsorted`` per signal. A signal enters scoring once it has ``min_count`` learned values at a refresh.

Measured on the real-data panel (``bench/panel/``): see ``docs/detectors.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Frame, Gate, ask_gate
from detectors.registry import register
from detectors.text import number

__all__ = ["ColdStart", "describe_tail", "DEFAULT_LOW", "DEFAULT_HIGH"]

#: Signals whose *low* values are cold-start evidence: a brand-new account.
DEFAULT_LOW = ("account_age_days",)
#: Signals whose *high* values are cold-start evidence: devices / IPs shared by many (new) accounts, a first-seen
#: account.
DEFAULT_HIGH = ("device_users_24h", "ip_users_24h", "device_new_accounts_24h", "user_first_seen")


def _names(what: str, v: Any) -> list[str]:
    if isinstance(v, str) or not isinstance(v, Sequence) or not all(isinstance(f, str) and f for f in v):
        raise ValueError(f"{what} must be a list of feature names, got {v!r}")
    return list(dict.fromkeys(v))


@register("coldstart")
class ColdStart(Detector):
    """Fisher sum of one-sided empirical tail probabilities of cold-start signals (account age, device / IP
    sharing) against sliding windows of their learned values.

    Parameters
    ----------
    low
        Signals whose low tail is evidence (``account_age_days``).
    high
        Signals whose high tail is evidence (accounts per device / IP, fresh accounts per device, first seen).
    window
        Learned values per signal each tail is measured against.
    refresh_every
        The sorted snapshot of the windows is rebuilt every this many learned events (``<= window``).
    min_count
        A signal enters scoring once it has this many learned values (at a refresh).

    Notes
    -----
    Missing or ``NaN`` signals contribute 0 and are not learned; ``±inf`` is scored but not learned.
    :meth:`explain` returns the signals by ``-ln p``; :meth:`describe` says the value, the tail and its ``p``.

    Examples
    --------
    >>> det = ColdStart(low=["age"], high=["shared"], window=100, refresh_every=50, min_count=10)
    >>> for i in range(100):
    ...     det.learn_one({"age": 10.0 + i, "shared": 1.0})
    >>> round(det.score_one({"age": 60.0, "shared": 1.0}), 2)   # a middling age (p=0.51), the usual sharing (p=1)
    0.66
    >>> round(det.score_one({"age": 0.0, "shared": 3.0}), 2)   # younger and more shared than anything learned
    9.23
    >>> det.describe({"age": 0.0, "shared": 3.0}, "age")
    'age=0 is in the low tail: 0 of 100 learned values are <= it (p=0.009901)'
    """

    def __init__(
        self,
        low: Sequence[str] = DEFAULT_LOW,
        high: Sequence[str] = DEFAULT_HIGH,
        window: int = 2048,
        refresh_every: int = 256,
        min_count: int = 64,
    ) -> None:
        for name, v in (("window", window), ("refresh_every", refresh_every), ("min_count", min_count)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if refresh_every > window:
            raise ValueError(f"refresh_every ({refresh_every}) must not exceed window ({window})")
        lo, hi = _names("low", low), _names("high", high)
        both = set(lo) & set(hi)
        if both:
            raise ValueError(f"signal {sorted(both)[0]!r} is both in low and in high")
        if not lo and not hi:
            raise ValueError("coldstart needs at least one signal in low or high")
        self.low = lo
        self.high = hi
        self.window = window
        self.refresh_every = refresh_every
        self.min_count = min_count
        self._names = lo + hi
        self._is_low = np.array([True] * len(lo) + [False] * len(hi), dtype=bool)
        k = len(self._names)
        self._ring = np.zeros((k, window))
        self._fill = np.zeros(k, dtype=np.int64)
        self._learned = 0
        # the snapshot: per signal, its window sorted (None: not scored yet)
        self._sorted: list[np.ndarray | None] = [None] * k

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"low": ["f0"], "high": ["f1", "f2"], "window": 64, "refresh_every": 16, "min_count": 8}
        yield {"low": [], "high": ["f0"], "window": 32, "refresh_every": 32, "min_count": 4}

    # -- state -----------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        w = self.window
        for f in range(len(self._names)):
            n = int(self._fill[f])
            if n >= self.min_count:
                self._sorted[f] = np.sort(self._ring[f, : min(n, w)])

    def _learn_rows(self, xl: np.ndarray) -> None:
        mask = np.isfinite(xl)
        cols = np.nonzero(mask)[1]
        pos = (np.cumsum(mask, axis=0) - 1 + self._fill)[mask] % self.window
        self._ring[cols, pos] = xl[mask]
        self._fill += mask.sum(axis=0)

    def _matrix(self, xs: Sequence[Features]) -> np.ndarray:
        if isinstance(xs, Frame):
            return xs.columns(self._names)
        nan = math.nan
        return np.array([[x.get(f, nan) for f in self._names] for x in xs], dtype=np.float64).reshape(
            len(xs), len(self._names))

    # -- scoring ---------------------------------------------------------------------------------------------

    def _counts(self, x: np.ndarray) -> list[tuple[np.ndarray, int] | None]:
        """Per signal: for each row, how many window values are at least as extreme (ties included), and the
        window's size; ``None`` for a signal not scored yet."""
        out: list[tuple[np.ndarray, int] | None] = []
        for f, s in enumerate(self._sorted):
            if s is None:
                out.append(None)
                continue
            col = x[:, f]
            n = len(s)
            if self._is_low[f]:
                c = np.searchsorted(s, col, side="right")  # #{w <= x}
            else:
                c = n - np.searchsorted(s, col, side="left")  # #{w >= x}
            out.append((c, n))
        return out

    def _score(self, x: np.ndarray) -> np.ndarray:
        counts = self._counts(x)
        live = [(f, cn) for f, cn in enumerate(counts) if cn is not None]
        out = np.zeros(len(x))
        if not live:
            return out
        log = math.log
        isnan = math.isnan
        cols = [(x[:, f].tolist(), c.tolist(), n + 1) for f, (c, n) in live]
        for i in range(len(x)):
            s = 0.0
            for vals, c, n1 in cols:
                if not isnan(vals[i]):
                    s += -log((c[i] + 1) / n1)  # the same expression, in the same order, as the Rust core
            out[i] = s
        return out

    def score_one(self, x: Features) -> float:
        return float(self._score(self._matrix([x]))[0])

    def learn_one(self, x: Features) -> None:
        self._learn_rows(self._matrix([x]))
        self._learned += 1
        if self._learned % self.refresh_every == 0:
            self._refresh()

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        n = len(xs)
        out = np.empty(n, dtype=np.float64)
        x_all = self._matrix(xs)
        pos = 0
        while pos < n:
            m = min(n - pos, self.refresh_every - self._learned % self.refresh_every)
            x = x_all[pos : pos + m]
            scores = self._score(x)
            out[pos : pos + m] = scores
            if gate is None:
                xl = x
            else:
                xl = x[np.flatnonzero(ask_gate(gate, scores))]
            if len(xl):
                self._learn_rows(xl)
                self._learned += len(xl)
                if self._learned % self.refresh_every == 0:
                    self._refresh()
            pos += m
        return out

    # -- reasons ---------------------------------------------------------------------------------------------

    def tails(self, x: Features) -> list[tuple[str, float, int, int, bool]]:
        """Per scored signal ``x`` carries: ``(name, -ln p, count at least as extreme, window size, low tail)``."""
        row = self._matrix([x])
        out = []
        for f, cn in enumerate(self._counts(row)):
            if cn is None or math.isnan(row[0, f]):
                continue
            c, n = int(cn[0][0]), cn[1]
            out.append((self._names[f], -math.log((c + 1) / (n + 1)), c, n, bool(self._is_low[f])))
        return out

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        t = sorted(self.tails(x), key=lambda r: -r[1])  # stable: ties keep the configuration order
        return [(f, e) for f, e, _, _, _ in t[:top] if e > 0]

    def describe(self, x: Features, feature: str) -> str:
        """One line on ``feature``'s tail in ``x`` (for alert reasons):
        ``account_age_days=0 is in the low tail: 12 of 2048 learned values are <= it (p=0.006345)``."""
        for f, _, c, n, low in self.tails(x):
            if f == feature:
                return describe_tail(feature, float(x.get(feature, math.nan)), c, n, low)
        return f"{feature} has too few learned values to score"


def describe_tail(feature: str, value: float, count: int, n: int, low: bool) -> str:
    """The reason line for a cold-start signal: its value, which tail, how many of the ``n`` learned values are at
    least as extreme, and ``p = (count + 1) / (n + 1)``.

    >>> describe_tail("device_users_24h", 4.0, 3, 2048, False)
    'device_users_24h=4 is in the high tail: 3 of 2048 learned values are >= it (p=0.001952)'
    """
    side, op = ("low", "<=") if low else ("high", ">=")
    return (f"{feature}={number(value)} is in the {side} tail: {count} of {n} learned values are {op} it "
            f"(p={number((count + 1) / (n + 1))})")
