"""The label join: the feature vector each event was scored with, kept until its label arrives (or expires).

Labels (chargebacks, review outcomes) arrive hours to weeks after their event. To learn from one, a supervised
detector needs the vector the event was *scored with* then, not features recomputed now. :class:`LabelStore`
keeps those vectors keyed by event id, bounded two ways:

- ``ttl`` seconds of event time: a vector older than the newest event seen minus ``ttl`` is dropped (a label
  arriving later than that is not learned from);
- ``max_size`` vectors: beyond it the oldest are dropped first.

Insertion order is event-time order in a replay, and near enough in a live stream (the watermark is the newest
``ts`` seen), so expiry pops from the front of an insertion-ordered dict: O(1) amortised per event.

>>> store = LabelStore(max_size=3, ttl=100.0)
>>> store.put("e1", 0.0, {"amount": 10.0}, kind="order", entities={"user": "u1"})
>>> store.put("e2", 50.0, {"amount": 20.0}, kind="order")
>>> store.join("e1", 1).y, store.join("e1", 1)  # a second label for the same event finds nothing
(1, None)
>>> store.put("e3", 200.0, {"amount": 30.0}, kind="order")  # e2 is older than 200 - 100: expired
>>> store.join("e2", 0) is None, len(store)
(True, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["LabelStore", "Joined"]


@dataclass(frozen=True, slots=True)
class Joined:
    """A label joined to its event: the vector ``x`` it was scored with, the label ``y`` and the event's facts."""

    event_id: str
    x: dict[str, float]
    y: int
    kind: str
    ts: float
    entities: dict[str, str] = field(default_factory=dict)


class LabelStore:
    """Bounded, expiring map ``event id -> (ts, kind, x, entities)``.

    Parameters
    ----------
    max_size
        Most vectors held; the oldest go first.
    ttl
        Seconds of event time a vector is held (labels later than this are not learned from).
    """

    def __init__(self, max_size: int = 2_000_000, ttl: float = 45 * 86400.0) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an integer >= 1, got {max_size!r}")
        if not (isinstance(ttl, int | float) and ttl > 0):
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        self.max_size = max_size
        self.ttl = float(ttl)
        # Oldest first. An OrderedDict, not a dict: a full store evicts its first item at every put, and a plain
        # dict's first key is found by scanning the holes its earlier deletions left (166 us a put at 100k items).
        self._items: OrderedDict[str, tuple[float, str, dict[str, float], dict[str, str]]] = OrderedDict()
        self.watermark = float("-inf")
        self.joined = 0
        self.missed = 0
        self.expired = 0

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if not isinstance(self._items, OrderedDict):  # a checkpoint from before: same order, same items
            self._items = OrderedDict(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event_id: str, ts: float, x: dict[str, float], *, kind: str = "order",
            entities: dict[str, str] | None = None) -> None:
        """Keep ``x`` (the vector event ``event_id`` was scored with) for its label."""
        if ts > self.watermark:
            self.watermark = ts
        items = self._items
        items[event_id] = (ts, kind, x, entities or {})
        items.move_to_end(event_id)  # a replayed id moves to the back
        self._expire()

    def _expire(self) -> None:
        items = self._items
        cut = self.watermark - self.ttl
        while items:
            key, item = next(iter(items.items()))
            if len(items) > self.max_size or item[0] < cut:
                items.popitem(last=False)
                self.expired += 1
            else:
                break

    def advance(self, ts: float) -> None:
        """Move the watermark (a label event's time counts too) and expire what fell out of ``ttl``."""
        if ts > self.watermark:
            self.watermark = ts
            self._expire()

    def join(self, event_id: str, y: int) -> Joined | None:
        """The stored vector of ``event_id`` with label ``y``, removed from the store; None if unknown/expired."""
        item = self._items.pop(event_id, None)
        if item is None:
            self.missed += 1
            return None
        self.joined += 1
        ts, kind, x, ents = item
        return Joined(event_id, x, 1 if y else 0, kind, ts, ents)

    def stats(self) -> dict[str, int]:
        return {"held": len(self._items), "joined": self.joined, "missed": self.missed, "expired": self.expired}
