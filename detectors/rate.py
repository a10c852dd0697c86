"""Rate detector: breakouts of an aggregate series (a value per time step, or events counted per bucket).

What it watches
---------------
One univariate series: either one feature of each event taken as a time step (``feature="value"`` on a metric
stream, or an engine window feature such as ``merchant_orders_1m``), or events counted into fixed time buckets
(``bucket=60`` with ``time_feature="ts"``: events per minute; with ``feature="amount"``, money per minute).
It flags the moments a series *breaks out* of everything it did recently, the bursts that no single event
reveals: a login-failure rate above any rate of the past week, a merchant's order rate drifting to a level it
never held, the nightly lull that did not come.

How it scores
-------------
Each step ``t`` gives a few *channels*:

* the value ``v_t`` itself (spikes and dips);
* its trailing means over ``levels`` windows (by default 10 and 30 steps: level shifts, bursts that stay within
  the value's range point by point but not on average);
* the mean over ``season_window`` steps of ``|v_t - v_{t-L}|``, the change from the same time one ``season``
  earlier (``L = season / step interval``; a daily pattern that breaks).

For each channel the *breakout* ``e = (y - max) / (max - min)`` (or ``(min - y) / (max - min)`` below) is how far
its value leaves the range ``[min, max]`` the channel held over the last ``history`` steps, as a fraction of
that range (0 inside it). The step's raw score is ``s = max_c(w_c * e_c)`` with the channel weights
(``1`` for the value, ``level_weights``, ``season_weight``), so a spike wins over a drift of the same size.
A score that does not exceed every raw score of the previous ``rest`` steps is multiplied by ``rest_factor``:
one burst alerts once, at its start, not at each of its steps. The output is ``s / (s + half)`` in ``[0, 1)``
(``half`` is the breakout that scores 0.5), and 0 during the first ``warmup`` steps of the series (and of each
channel).

Sliding minima and maxima are monotone deques (amortised O(1) per step, and only the candidate extremes are
kept, which is what a checkpoint pickles): river's ``stats.RollingMax``/``RollingMin`` keep a sorted copy of the
whole window beside the window itself, 16,000 floats per channel at the default ``history``.

On the Numenta Anomaly Benchmark (58 real and artificial series, ``bench/nab/``) the defaults score 66-68 on
the standard profile; the defaults were chosen there, as NAB's own detectors' were.

Bucket mode
-----------
With ``bucket`` set, every event carries its time in ``time_feature`` (epoch seconds) and adds 1 (or
``x[feature]``) to its bucket. An event is scored with its bucket's running total so far (the bucket is the
step ``t``), against the completed buckets before it; empty buckets count as zeros. A running total only
grows, so in bucket mode only breakouts *above* a range count (``upward``), and the seasonal channel measures
rises over the same bucket one season earlier: the first events of an ordinary bucket never look like a drop. (An
empty bucket has no event to alert on.) An event older than the open bucket is counted in the open bucket;
an event without a time scores 0 and is not learned.

>>> det = RateDetector(feature="logins_failed", warmup=16, history=500)
>>> for i in range(300):
...     det.learn_one({"logins_failed": 5.0 + (i % 7)})
>>> det.score_one({"logins_failed": 9.0})
0.0
>>> round(det.score_one({"logins_failed": 60.0}), 3)
0.998
>>> det.explain({"logins_failed": 60.0})[0][0]
'logins_failed'
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.base import Detector, Features, Gate
from detectors.registry import register
from detectors.text import number

__all__ = ["RateDetector"]

#: Gaps (in steps) the series-mode time interval is estimated from, for the seasonal lag.
_INTERVAL_SAMPLES = 16


class _Extremes:
    """Minimum and maximum of the last ``size`` values (monotone deques of ``(step, value)``)."""

    __slots__ = ("size", "hi", "lo", "count")

    def __init__(self, size: int) -> None:
        self.size = size
        self.hi: deque[tuple[int, float]] = deque()
        self.lo: deque[tuple[int, float]] = deque()
        self.count = 0  # values ever pushed

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.size, self.hi, self.lo, self.count)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.size, self.hi, self.lo, self.count = state

    def push(self, step: int, y: float) -> None:
        hi, lo = self.hi, self.lo
        while hi and hi[-1][1] <= y:
            hi.pop()
        hi.append((step, y))
        while lo and lo[-1][1] >= y:
            lo.pop()
        lo.append((step, y))
        first = step - self.size + 1  # the window after this push is [step - size + 1, step]
        while hi[0][0] < first:
            hi.popleft()
        while lo[0][0] < first:
            lo.popleft()
        self.count += 1

    def breakout(self, y: float, upward: bool) -> float:
        """How far ``y`` leaves ``[min, max]`` of the window (only above it if ``upward``), as a fraction of
        ``max - min``."""
        hi, lo = self.hi[0][1], self.lo[0][1]
        if y <= hi and (upward or y >= lo):
            return 0.0
        span = hi - lo
        if span <= 0.0:
            span = 1e-9 * max(1.0, abs(hi), abs(lo))  # a channel that never moved: any move is extreme
        e = (y - hi) / span if y > hi else (lo - y) / span
        return e if e == e else math.inf  # inf / inf, past the float range: as extreme as it gets


@register("rate")
class RateDetector(Detector):
    """Breakout detector for one aggregate series: value, trailing means and seasonal change channels.

    Parameters
    ----------
    feature
        The watched feature (series mode), or the feature summed per bucket (bucket mode; ``None`` counts
        events).
    time_feature
        Feature holding the event time in epoch seconds. Needed by bucket mode, and by the seasonal channel in
        series mode (to learn the step interval).
    bucket
        Bucket width in seconds (bucket mode), or ``None``: each learned event is one step of the series.
    history
        Steps over which each channel's range is taken.
    levels
        Trailing-mean windows (steps) of the level channels.
    level_weights
        Weight of each level channel's breakout (same length as ``levels``).
    season
        Seasonal period in seconds (``None``: no seasonal channel).
    season_window
        Steps the seasonal change is averaged over.
    season_weight
        Weight of the seasonal channel's breakout.
    rest
        Steps during which a new raw score must beat all earlier ones to keep its full value.
    rest_factor
        What a score that does not beat them is multiplied by.
    half
        Breakout (weighted, as a fraction of the range) that scores 0.5.
    warmup
        Steps a channel learns before it scores.
    upward
        Count only breakouts above a channel's range (bursts), and only rises over the season before. Default
        (``None``): in bucket mode, which requires it, and not in series mode.
    """

    def __init__(
        self,
        feature: str | None = "value",
        time_feature: str | None = None,
        bucket: float | None = None,
        history: int = 8000,
        levels: Sequence[int] = (10, 30),
        level_weights: Sequence[float] = (0.12, 0.25),
        season: float | None = 86400.0,
        season_window: int = 30,
        season_weight: float = 0.12,
        rest: int = 100,
        rest_factor: float = 0.1,
        half: float = 0.02,
        warmup: int = 64,
        upward: bool | None = None,
    ) -> None:
        for name, v in (("history", history), ("season_window", season_window), ("rest", rest),
                        ("warmup", warmup)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(levels, str) or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in levels):
            raise ValueError(f"levels must be integers >= 2, got {levels!r}")
        if len(level_weights) != len(levels):
            raise ValueError(f"level_weights must have one weight per level ({len(levels)}), got {level_weights!r}")
        for name, w in [("season_weight", season_weight), ("rest_factor", rest_factor)] + [
            ("level_weights", w) for w in level_weights
        ]:
            if not (isinstance(w, int | float) and 0.0 <= w and math.isfinite(w)):
                raise ValueError(f"{name} must be finite and >= 0, got {w!r}")
        if rest_factor > 1.0:
            raise ValueError(f"rest_factor must be <= 1, got {rest_factor!r}")
        if not (isinstance(half, int | float) and half > 0 and math.isfinite(half)):
            raise ValueError(f"half must be a positive finite number, got {half!r}")
        if bucket is not None:
            if not (isinstance(bucket, int | float) and bucket > 0 and math.isfinite(bucket)):
                raise ValueError(f"bucket must be a positive number of seconds, got {bucket!r}")
            if time_feature is None:
                raise ValueError("bucket mode needs time_feature (the event time in epoch seconds)")
        elif feature is None:
            raise ValueError("feature is required unless bucket is set (then None counts events)")
        if bucket is not None and upward is False:
            raise ValueError("bucket mode scores buckets while they fill, so only upward breakouts (upward=True)")
        if season is not None and not (isinstance(season, int | float) and season > 0 and math.isfinite(season)):
            raise ValueError(f"season must be a positive number of seconds or None, got {season!r}")
        self.feature = feature
        self.time_feature = time_feature
        self.bucket = bucket
        self.history = history
        self.levels = tuple(levels)
        self.level_weights = tuple(float(w) for w in level_weights)
        self.season = season
        self.season_window = season_window
        self.season_weight = float(season_weight)
        self.rest = rest
        self.rest_factor = float(rest_factor)
        self.half = float(half)
        self.warmup = warmup
        self.upward = upward

        self._n = 0  # steps learned
        self._tail: deque[float] = deque(maxlen=max(self.levels, default=1))
        self._channels = [_Extremes(history) for _ in range(1 + len(self.levels) + 1)]
        self._weights = (1.0, *self.level_weights, self.season_weight)
        self._lag = 0  # seasonal lag in steps; 0 = not known (yet), -1 = off
        self._season_tail: deque[float] = deque()
        self._season_diffs: deque[float] = deque(maxlen=season_window)
        self._gaps: list[float] = []  # series mode: first time gaps, to estimate the step interval
        self._last_ts: float | None = None
        self._recent = _Extremes(rest)  # raw scores of the last `rest` steps (only the maximum is used)
        self._open: int | None = None  # bucket mode: the open bucket's number and running total
        self._total = 0.0
        # A bucket is scored while it fills, so only a total above the range is evidence (it can only grow).
        self._upward = bucket is not None if upward is None else upward
        if season is None:
            self._lag = -1
        elif bucket is not None:
            self._set_lag(season / bucket)

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"feature": "f0", "history": 200, "warmup": 16, "rest": 10}
        yield {"feature": "f1", "history": 50, "levels": (3,), "level_weights": (0.5,), "warmup": 8,
               "season": None, "rest": 5, "rest_factor": 0.0}

    # -- steps ----------------------------------------------------------------------------------------------

    def _set_lag(self, steps: float) -> None:
        lag = int(round(steps))
        if lag < 2 or lag > 4 * self.history:
            self._lag = -1
            return
        self._lag = lag
        self._season_tail = deque(maxlen=lag)

    def _values(self, v: float) -> list[float | None]:
        """Each channel's value if step ``v`` came next (``None``: the channel has no value yet)."""
        tail = self._tail
        out: list[float | None] = [v]
        n_prev = len(tail)
        for k in self.levels:
            if n_prev >= k - 1:
                s = v
                for i in range(1, k):
                    s += tail[-i]
                out.append(s / k)
            else:
                out.append((v + sum(tail)) / (n_prev + 1))
        lag = self._lag
        if lag > 0 and len(self._season_tail) == lag:
            d = self._change(v, self._season_tail[0])
            diffs = self._season_diffs
            if len(diffs) >= self.season_window - 1:
                total = d
                for i in range(1, self.season_window):
                    total += diffs[-i]
                out.append(total / self.season_window)
            else:
                out.append(None)
        else:
            out.append(None)
        return out

    def _change(self, v: float, before: float) -> float:
        """Change from one season earlier: its size, or with ``upward`` only a rise (in bucket mode a bucket
        still filling is below its final total)."""
        return max(v - before, 0.0) if self._upward else abs(v - before)

    def _raw(self, ys: list[float | None]) -> tuple[float, list[float]]:
        """Weighted breakouts of the channels and their maximum."""
        parts = [0.0] * len(ys)
        best = 0.0
        warm = self.warmup
        for i, (y, ch, w) in enumerate(zip(ys, self._channels, self._weights, strict=True)):
            if y is None or ch.count < warm or w == 0.0:
                continue
            e = w * ch.breakout(y, self._upward)
            parts[i] = e
            if e > best:
                best = e
        return best, parts

    def _output(self, raw: float) -> float:
        if self._n < self.warmup or raw <= 0.0:
            return 0.0
        if raw == math.inf:
            return 1.0
        rec = self._recent
        if rec.count and raw <= rec.hi[0][1]:
            raw *= self.rest_factor
        return raw / (raw + self.half)

    def _push(self, v: float, ys: list[float | None], raw: float) -> None:
        step = self._n
        for y, ch in zip(ys, self._channels, strict=True):
            if y is not None:
                ch.push(step, y)
        self._recent.push(step, raw if self._n >= self.warmup else 0.0)
        if self._lag > 0:
            if len(self._season_tail) == self._lag:
                self._season_diffs.append(self._change(v, self._season_tail[0]))
            self._season_tail.append(v)
        self._tail.append(v)
        self._n += 1

    def _step(self, v: float) -> None:
        ys = self._values(v)
        raw, _ = self._raw(ys)
        self._push(v, ys, raw)

    # -- reading events -------------------------------------------------------------------------------------

    def _get(self, x: Features, name: str | None) -> float | None:
        if name is None:
            return 1.0
        v = x.get(name)
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    def _ts(self, x: Features) -> float | None:
        if self.time_feature is None:
            return None
        return self._get(x, self.time_feature)

    def _state_for(self, x: Features) -> tuple[RateDetector, float] | None:
        """The detector whose next step ``x`` falls in, and the value of that step; ``None`` if unusable.

        Series mode: ``self`` and the value. Bucket mode: ``self`` while ``x`` is in the open bucket, else a
        copy with the open bucket (and the empty ones after it) closed; the value is the bucket's running total
        with ``x``.
        """
        v = self._get(x, self.feature)
        if v is None:
            return None
        if self.bucket is None:
            return self, v
        ts = self._ts(x)
        if ts is None:
            return None
        b = math.floor(ts / self.bucket)
        if self._open is None:
            return self, v
        if b <= self._open:
            return self, self._total + v
        state = copy.deepcopy(self)
        state._close_until(b)
        return state, v

    def _close_until(self, b: int) -> None:
        """Bucket mode: close the open bucket and the empty ones before bucket ``b``, which becomes the open one."""
        assert self._open is not None
        self._step(self._total)
        # After a long silence, enough zeros to fill every window; more would change no state but the counter.
        enough = self.history + max(self._lag, 0) + max(self.levels, default=0) + self.season_window + self.rest
        for _ in range(min(b - self._open - 1, enough)):
            self._step(0.0)
        self._open, self._total = b, 0.0

    def _note_time(self, x: Features) -> None:
        """Series mode: learn the step interval from the first gaps, to set the seasonal lag."""
        if self._lag != 0 or self.season is None:
            return
        ts = self._ts(x)
        if ts is None:
            return
        if self._last_ts is not None and ts > self._last_ts:
            self._gaps.append(ts - self._last_ts)
            if len(self._gaps) >= _INTERVAL_SAMPLES:
                self._set_lag(self.season / float(np.median(self._gaps)))
                self._gaps = []
        self._last_ts = ts

    # -- Detector API ---------------------------------------------------------------------------------------

    def score_one(self, x: Features) -> float:
        found = self._state_for(x)
        if found is None:
            return 0.0
        state, v = found
        raw, _ = state._raw(state._values(v))
        return state._output(raw)

    def learn_one(self, x: Features) -> None:
        v = self._get(x, self.feature)
        if v is None:
            return
        if self.bucket is None:
            ys = self._values(v)
            raw, _ = self._raw(ys)
            self._note_time(x)
            self._push(v, ys, raw)
            return
        ts = self._ts(x)
        if ts is None:
            return
        b = math.floor(ts / self.bucket)
        if self._open is None:
            self._open = b
        elif b > self._open:
            self._close_until(b)
        self._total += v

    def process_many(self, xs: Sequence[Features], gate: Gate | None = None) -> np.ndarray:
        out = np.empty(len(xs), dtype=np.float64)
        if self.bucket is not None:
            return super().process_many(xs, gate)
        feature = self.feature
        for i, x in enumerate(xs):
            raw_v = x.get(feature) if feature is not None else None
            v = float(raw_v) if raw_v is not None else math.nan
            if not math.isfinite(v):
                out[i] = 0.0
                if gate is not None:
                    gate(0.0)
                continue
            ys = self._values(v)
            raw, _ = self._raw(ys)
            s = self._output(raw)
            out[i] = s
            if gate is None or gate(s):
                self._note_time(x)
                self._push(v, ys, raw)
        return out

    def explain(self, x: Features, top: int = 3) -> list[tuple[str, float]]:
        s = self.score_one(x)
        if s <= 0.0 or top < 1:
            return []
        return [(self.feature if self.feature is not None else "events", s)]

    def describe(self, x: Features, feature: str) -> str:
        """One line on the channel that drives ``x``'s score (for alert reasons)."""
        found = self._state_for(x)
        what = f"{self.feature or 'events'} per {self.bucket:g} s" if self.bucket else str(self.feature)
        if found is None:
            return f"{what}: no usable value"
        state, v = found
        ys = state._values(v)
        raw, parts = state._raw(ys)
        if raw <= 0.0:
            return f"{what}={number(v)}: within its range of the last {self.history} steps"
        i = int(np.argmax(parts))
        ch = state._channels[i]
        lo, hi = ch.lo[0][1], ch.hi[0][1]
        if i == 0:
            name = f"{what}={number(v)}"
        elif i <= len(self.levels):
            name = f"mean of {what} over {self.levels[i - 1]} steps={number(ys[i])}"
        else:
            name = f"change of {what} from one season ago (mean over {self.season_window} steps)={number(ys[i])}"
        side = "above" if (ys[i] or 0.0) > hi else "below"
        return (f"{name} breaks {side} its range [{number(lo)}, {number(hi)}] of the last {self.history} steps "
                f"by {raw / self._weights[i]:.0%} of it")
