"""The partition unit: the per-topic queues of one partition number and the deterministic merge over them.

See :mod:`stream.kafka.consumer` for the merge rule and why it makes a live run equal a replay.
"""


from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence

from sinks.deadletter import DeadLetter
from stream.events import Event

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import
    warnings.simplefilter("ignore", DeprecationWarning)


__all__ = ["PartitionUnit", "Item", "Released"]

Item = tuple[int, "Event | DeadLetter", int]
#: A released record: (offset, event, Kafka record timestamp in ms or -1).
Released = tuple[int, Event, int]


class PartitionUnit:
    """The per-topic queues of one partition number and the deterministic merge over them.

    ``positions[topic]`` is the offset just after the last record received (or the seek position), None until
    known. No Kafka client here: the caller feeds records with :meth:`add` and says in :meth:`release` which
    empty topics have been consumed up to their end.

    >>> from stream.events import Login
    >>> u = PartitionUnit(0, ["orders", "logins"])
    >>> u.add("logins", 7, Login(event_id="a", ts=2.0, user_id="u", success=True))
    >>> u.release(lambda topic: False)   # orders might still hold an earlier event: wait
    ([], [])
    >>> u.set_position("orders", 0)
    >>> [item[1].event_id for item in u.release(lambda topic: topic == "orders")[0]]
    ['a']
    >>> u.next_offsets()
    {'orders': 0, 'logins': 8}
    """

    def __init__(self, partition: int, topics: Sequence[str]) -> None:
        if not topics:
            raise ValueError("a unit needs at least one topic")
        self.partition = partition
        self.topics = tuple(topics)
        self.queues: dict[str, deque[Item]] = {t: deque() for t in self.topics}
        self.positions: dict[str, int | None] = {t: None for t in self.topics}
        self.buffered = 0

    def set_position(self, topic: str, offset: int) -> None:
        """The next record of ``topic`` to arrive will be at ``offset`` (a seek); keeps the later of the two
        when records were already received (a fetch position past a gap of control records)."""
        cur = self.positions[topic]
        self.positions[topic] = offset if cur is None else max(cur, offset)

    def add(self, topic: str, offset: int, item: Event | DeadLetter, timestamp_ms: int = -1) -> None:
        """Buffer one record (records of a topic arrive in offset order)."""
        self.queues[topic].append((offset, item, timestamp_ms))
        self.positions[topic] = offset + 1
        self.buffered += 1

    def next_offsets(self) -> dict[str, int] | None:
        """Per topic, the offset of the first record not yet released; None while a position is unknown."""
        out: dict[str, int] = {}
        for t in self.topics:
            q = self.queues[t]
            if q:
                out[t] = q[0][0]
            else:
                pos = self.positions[t]
                if pos is None:
                    return None
                out[t] = pos
        return out

    def release(self, at_end: Callable[[str], bool]) -> tuple[list[Released], list[DeadLetter]]:
        """Pop every record that may be processed now, in merge order, and every dead letter at a queue head.

        ``at_end(topic)`` says whether an empty ``topic`` queue has been consumed up to its end offset (so no
        earlier-timestamped record can still arrive on it). It is asked at most once per topic per call.
        """
        queues = [self.queues[t] for t in self.topics]
        out: list[Released] = []
        dead: list[DeadLetter] = []
        ended: dict[int, bool] = {}
        while True:
            best_i = -1
            best_key: tuple[float, int, int] | None = None
            blocked = False
            for i, q in enumerate(queues):
                while q and isinstance(q[0][1], DeadLetter):
                    dead.append(q.popleft()[1])  # type: ignore[arg-type]
                if q:
                    offset, ev, _ = q[0]
                    key = (ev.ts, i, offset)  # type: ignore[union-attr]
                    if best_key is None or key < best_key:
                        best_key, best_i = key, i
                else:
                    done = ended.get(i)
                    if done is None:
                        done = ended[i] = at_end(self.topics[i])
                    if not done:
                        blocked = True
                        break
            if blocked or best_i < 0:
                break
            out.append(queues[best_i].popleft())  # type: ignore[arg-type]  # a valid event (dead letters left)
        self.buffered -= len(out) + len(dead)
        return out, dead
