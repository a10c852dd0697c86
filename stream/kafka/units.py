"""The partition unit: the per-topic queues of one partition number and the deterministic merge over them.

See :mod:`stream.kafka.consumer` for the merge rule and why it makes a live run equal a replay.
"""


from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from heapq import heapify, heappop, heapreplace

from sinks.deadletter import DeadLetter
from stream.events import Event

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import
    warnings.simplefilter("ignore", DeprecationWarning)


__all__ = ["PartitionUnit", "Item", "Released", "RULES_KEY", "is_switch"]

#: The key that marks a recorded *rule pack switch* in a unit's decision log: ``{topic: offset, ..., RULES_KEY:
#: version}`` says the unit switched to rule pack ``version`` after processing every record below those offsets
#: and before any at or beyond them. No Kafka topic name can contain ``~``.
RULES_KEY = "~rules_version"


def is_switch(cut: Mapping[str, int]) -> bool:
    """Whether a recorded decision is a rule pack switch (see :data:`RULES_KEY`)."""
    return RULES_KEY in cut

#: A buffered record: (offset, event, dead letter or raw JSON bytes, Kafka record timestamp in ms or -1, event time
#: in seconds (None for a dead letter), topic).
Item = tuple[int, "Event | DeadLetter | bytes", int, "float | None", str]
#: A released record: (offset, event or its raw JSON bytes, Kafka record timestamp in ms or -1, event time, topic).
Released = tuple[int, "Event | bytes", int, float, str]


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
        #: Recorded decisions still to apply, oldest first (see :meth:`add_cut`).
        self.cuts: deque[dict[str, int]] = deque()
        #: Set by :meth:`release` when it stopped at a recorded rule pack switch: the version to switch to before
        #: the next release (the caller applies it and sets this back to None).
        self.reached: int | None = None

    def set_position(self, topic: str, offset: int) -> None:
        """The next record of ``topic`` to arrive will be at ``offset`` (a seek); keeps the later of the two
        when records were already received (a fetch position past a gap of control records)."""
        cur = self.positions[topic]
        self.positions[topic] = offset if cur is None else max(cur, offset)

    def add(self, topic: str, offset: int, item: Event | DeadLetter | bytes, timestamp_ms: int = -1,
            ts: float | None = None) -> None:
        """Buffer one record (records of a topic arrive in offset order): an event, a dead letter, or a valid
        record's raw JSON bytes with its event time ``ts`` (which an event carries itself)."""
        if ts is None and not isinstance(item, DeadLetter):
            ts = item.ts  # type: ignore[union-attr]
        self.queues[topic].append((offset, item, timestamp_ms, ts, topic))
        self.positions[topic] = offset + 1
        self.buffered += 1

    def add_many(self, topic: str, items: Sequence[Item]) -> None:
        """Buffer records of ``topic`` already in :data:`Item` form, in offset order (the raw Kafka path)."""
        if items:
            self.queues[topic].extend(items)
            self.positions[topic] = items[-1][0] + 1
            self.buffered += len(items)

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

    # -- recorded merge decisions ---------------------------------------------------------------------------

    def add_cut(self, cut: Mapping[str, int]) -> None:
        """Queue a recorded decision: every record below ``cut[topic]`` (of every topic) is processed, in merge
        order with each topic ending at its cut offset, before any record at or beyond it.

        Cuts are applied in the order given (a unit's decisions are recorded in increasing order); a cut the
        unit has already passed is dropped when :meth:`release` reaches it. Topics the cut does not name are
        not bounded by it.

        A rule pack switch (a cut with :data:`RULES_KEY`) is a cut at which :meth:`release` *stops*: once every
        record below it is released it returns, with :attr:`reached` set to the version, so that the caller
        processes what was released with the old rules, switches, and releases on.
        """
        c = {t: int(o) for t, o in cut.items() if t in self.queues}
        if RULES_KEY in cut:
            c[RULES_KEY] = int(cut[RULES_KEY])
        self.cuts.append(c)

    def _cut_done(self, cut: Mapping[str, int]) -> bool:
        for t, bound in cut.items():
            if t == RULES_KEY:
                continue
            pos = self.positions[t]
            q = self.queues[t]
            if pos is None or pos < bound or (q and q[0][0] < bound):
                return False
        return True

    def release(
        self, at_end: Callable[[str], bool] | None = None
    ) -> tuple[list[Released], list[DeadLetter]]:
        """Pop every record that may be processed now, in merge order, and every dead letter at a queue head.

        The head ``(ts, i, offset)`` of topic ``i`` goes when it is the smallest head and every other topic
        either has a buffered record (so nothing earlier can still arrive on it) or has *ended*. A topic
        has ended when its queue is empty and ``at_end(topic)`` says so (a bounded replay: its stop offset is
        reached; a live runtime: a recorded idle decision), or when the pending cut (see :meth:`add_cut`) bounds
        it: records at or beyond a cut are invisible until the cut is done. ``at_end`` is asked at most once
        per topic per call; None means "no topic ends" (live, without a decision).
        """
        queues = [self.queues[t] for t in self.topics]
        out: list[Released] = []
        dead: list[DeadLetter] = []
        ended: dict[int, bool] = {}
        if self.reached is not None:
            return out, dead  # a switch reached is not applied yet
        if not self.cuts:
            self._release_heads(queues, at_end, out, dead)
            self.buffered -= len(out) + len(dead)
            return out, dead
        while True:
            while self.cuts and self._cut_done(self.cuts[0]):
                finished = self.cuts.popleft()
                if RULES_KEY in finished:
                    self.reached = finished[RULES_KEY]
                    break
            if self.reached is not None:
                break
            cut = self.cuts[0] if self.cuts else None
            best_i = -1
            best_key: tuple[float, int, int] | None = None
            blocked = False
            for i, q in enumerate(queues):
                bound = cut.get(self.topics[i]) if cut is not None else None
                while q and isinstance(q[0][1], DeadLetter) and (bound is None or q[0][0] < bound):
                    dead.append(q.popleft()[1])  # type: ignore[arg-type]
                if q and (bound is None or q[0][0] < bound):
                    head = q[0]
                    key = (head[3], i, head[0])
                    if best_key is None or key < best_key:
                        best_key, best_i = key, i
                    continue
                pos = self.positions[self.topics[i]]
                if bound is not None and pos is not None and pos >= bound:
                    continue  # everything of this topic below the cut has been released
                done = ended.get(i)
                if done is None:
                    done = ended[i] = bool(q) is False and at_end is not None and at_end(self.topics[i])
                if not done:
                    blocked = True
                    break
            if best_i < 0 and not blocked and cut is not None and self._cut_done(cut):
                continue  # the cut is complete: on to the next one (or to the data-driven merge)
            if blocked or best_i < 0:
                break
            out.append(queues[best_i].popleft())  # type: ignore[arg-type]  # a valid event (dead letters left)
        self.buffered -= len(out) + len(dead)
        return out, dead

    def _release_heads(self, queues: Sequence[deque[Item]], at_end: Callable[[str], bool] | None,
                       out: list[Released], dead: list[DeadLetter]) -> None:
        """:meth:`release` with no recorded cut pending, the common case: the same records in the same order
        (and the same dead letters, and ``at_end`` asked of the same topics), with the topics' heads in a heap.
        Each step pops the smallest head ``(ts, i, offset)``; only that topic's head changes, so only it is looked
        at again: its dead letters go, and once empty it either has ended (it leaves the heap) or blocks the
        merge (the release stops)."""
        heap: list[tuple[float, int, int]] = []
        for i, q in enumerate(queues):
            while q and isinstance(q[0][1], DeadLetter):
                dead.append(q.popleft()[1])  # type: ignore[arg-type]
            if q:
                heap.append((q[0][3], i, q[0][0]))  # type: ignore[arg-type]
            elif at_end is None or not at_end(self.topics[i]):
                return  # an empty topic that may still bring an earlier record: nothing goes
        heapify(heap)
        while heap:
            i = heap[0][1]
            q = queues[i]
            out.append(q.popleft())  # type: ignore[arg-type]
            while q and isinstance(q[0][1], DeadLetter):
                dead.append(q.popleft()[1])  # type: ignore[arg-type]
            if q:
                head = q[0]
                heapreplace(heap, (head[3], i, head[0]))  # type: ignore[arg-type]
            elif at_end is not None and at_end(self.topics[i]):
                heappop(heap)
            else:
                return

    def waiting(self) -> list[str]:
        """Topics the merge is waiting for: empty queues while another topic holds a releasable record (and no
        recorded cut is pending). Empty when nothing is buffered or a cut is being applied."""
        if self.cuts or not any(self.queues[t] for t in self.topics):
            return []
        return [t for t in self.topics if not self.queues[t]]

    def plan_cut(self, ended: Sequence[str]) -> dict[str, int] | None:
        """The cut an idle decision "topics ``ended`` have ended where they stand" would make, without changing
        the unit: the next offsets after releasing with those topics ended, or None if it releases nothing.

        The runtime records the cut durably, then :meth:`add_cut` s it and releases: the records below it go
        out exactly as a replay that reads the recorded cut releases them.
        """
        if self.cuts:
            return None
        before = self.next_offsets()
        if before is None:
            return None
        dry = PartitionUnit(self.partition, self.topics)
        dry.queues = {t: deque(q) for t, q in self.queues.items()}
        dry.positions = dict(self.positions)
        dry.buffered = self.buffered
        gone = frozenset(ended)
        items, dead = dry.release(lambda t: t in gone)
        if not items and not dead:
            return None
        return dry.next_offsets()
