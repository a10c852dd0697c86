"""Delayed labels for replays of labelled data: each labelled order or login gets its ``Label`` event later.

Recorded datasets carry the ground truth on the event itself (``label``). A live system learns it only when a
chargeback or a review outcome arrives, days later. :class:`DelayedLabels` wraps a bounded source and injects,
for every order or login with a ``label``, a :class:`~stream.events.Label` event at ``ts + delay``, merged into
the stream in event-time order (a label is emitted just before the first event later than its time). Nothing
else changes: events pass through untouched and in order (detectors never read an event's own ``label``), dead
letters stay in their batch, and labels still pending when the source ends are emitted at the end.

Pending labels are held in a heap: memory is bounded by the number of events within ``delay`` of the head.

>>> from stream.events import Order
>>> from stream.sources import ListSource
>>> evs = [Order(event_id=f"e{i}", ts=float(i), user_id="u", order_id=f"o{i}", amount=1.0, currency="EUR",
...              merchant_id="m", label=i % 2) for i in range(4)]
>>> out = [e for b in DelayedLabels(ListSource(evs, batch_size=2), delay=1.5) for e in b.events]
>>> [(e.type, e.event_id, e.ts) for e in out][:5]  # doctest: +NORMALIZE_WHITESPACE
[('order', 'e0', 0.0), ('order', 'e1', 1.0), ('label', 'e0#label', 1.5), ('order', 'e2', 2.0),
 ('label', 'e1#label', 2.5)]
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator
from typing import Any

from stream.errors import ConfigError
from stream.events import Event, Label
from stream.sources import Batch, Source

__all__ = ["DelayedLabels", "parse_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` or ``"2w"``; else :class:`ConfigError`.

    >>> parse_duration("7d"), parse_duration("1h"), parse_duration("30")
    (604800.0, 3600.0, 30.0)
    """
    m = _DURATION.match(text or "")
    if not m:
        raise ConfigError(f"duration must be a number with an optional unit s/m/h/d/w (e.g. 7d, 1h), not {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


class DelayedLabels:
    """Wrap a :class:`~stream.sources.Source` and add each labelled event's label ``delay`` s later; a source
    itself.

    Parameters
    ----------
    source
        The bounded source (a file or list source), in event-time order; :meth:`close` closes it.
    delay
        Seconds between an event and the arrival of its label (>= 0).
    every
        Labels arrive in drops every this many seconds (0: each at exactly ``ts + delay``). Real chargeback and
        review feeds come in files or batches; a drop also lets the engine score the events between two drops
        as one batch, which is much faster than one label at a time.
    source_name
        The ``source`` field of the injected labels.
    """

    def __init__(self, source: Source, delay: float, every: float = 0.0,
                 source_name: str = "replay-delay") -> None:
        if not delay >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
        if not every >= 0:
            raise ValueError(f"every must be >= 0 seconds, got {every!r}")
        self.source = source
        self.delay = float(delay)
        self.every = float(every)
        self.source_name = source_name
        self.injected = 0

    def __getattr__(self, name: str) -> Any:  # what the wrapped source says of its progress, its paths...
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def __iter__(self) -> Iterator[Batch]:
        pending: list[tuple[float, int, Label]] = []
        seq = 0
        for batch in self.source:
            out: list[Event] = []
            for e in batch.events:
                while pending and pending[0][0] < e.ts:
                    out.append(heapq.heappop(pending)[2])
                out.append(e)
                if e.type != "label" and e.label is not None:
                    t = e.ts + self.delay
                    if self.every:
                        t = math.ceil(t / self.every) * self.every
                    heapq.heappush(pending, (t, seq, Label(event_id=f"{e.event_id}#label", ts=t,
                                                             ref_event_id=e.event_id, label=e.label,
                                                             source=self.source_name)))
                    seq += 1
                    self.injected += 1
            yield Batch(out, batch.invalid)
        if pending:
            tail: list[Event] = [heapq.heappop(pending)[2] for _ in range(len(pending))]
            yield Batch(tail, [])

    def close(self) -> None:
        self.source.close()
