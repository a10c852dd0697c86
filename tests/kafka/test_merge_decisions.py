"""Recorded merge decisions (cuts): a live unit that cannot wait for an idle topic records where it decided, and
any other arrival of the same records that applies the recorded cuts releases them in the same order: a
replay, a member taking the unit over from a checkpoint, a live run with another fetch timing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_runtime_units import TOPICS, _event

from stream.kafka import PartitionUnit

streams = st.fixed_dictionaries(
    {t: st.lists(st.integers(min_value=-1, max_value=20), max_size=25) for t in TOPICS}
)
# A live schedule: deliver n records of a topic, or "the merge waited long enough": decide.
steps = st.lists(
    st.one_of(st.tuples(st.sampled_from(TOPICS), st.integers(1, 6)), st.just(("idle", 0))), max_size=60
)


class Feed:
    """Delivers a unit its records chunk by chunk and collects what it releases."""

    def __init__(self, data: dict[str, list[int]], start: dict[str, int] | None = None) -> None:
        self.data = data
        self.unit = PartitionUnit(0, TOPICS)
        self.sent = dict(start or dict.fromkeys(TOPICS, 0))
        for t in TOPICS:
            self.unit.set_position(t, self.sent[t])
        self.out: list[str] = []
        self.marks: list[tuple[dict[str, int], int]] = []  # (next offsets, records released so far)

    def deliver(self, topic: str, n: int) -> None:
        stop = min(self.sent[topic] + n, len(self.data[topic]))
        for off in range(self.sent[topic], stop):
            self.unit.add(topic, off, _event(topic, off, float(self.data[topic][off])))
        self.sent[topic] = stop

    def release(self, *, bounded: bool) -> None:
        """``bounded``: a replay, where a topic delivered to its last record has ended; else live (only
        recorded decisions end a topic)."""
        at_end = (lambda t: self.sent[t] == len(self.data[t])) if bounded else None
        items, dead = self.unit.release(at_end)
        self.out.extend(it[1].event_id for it in items)
        self.marks.append((self.unit.next_offsets(), len(self.out)))

    def decide(self) -> dict[str, int] | None:
        """What the runtime does after ``idle_timeout_s``: the waiting topics end where they stand."""
        cut = self.unit.plan_cut(self.unit.waiting())
        if cut is not None:
            self.unit.add_cut(cut)
            self.release(bounded=False)
        return cut


def _live(data: dict[str, list[int]], schedule: list[tuple[str, int]]) -> tuple[list[str], list[dict], Feed]:
    f = Feed(data)
    cuts: list[dict[str, int]] = []
    for topic, n in schedule:
        if topic == "idle":
            if (cut := f.decide()) is not None:
                cuts.append(cut)
        else:
            f.deliver(topic, n)
        f.release(bounded=False)
    for t in TOPICS:
        f.deliver(t, len(data[t]))
    f.release(bounded=False)
    while f.unit.buffered:  # the end of the traffic: the topics go idle, one decision after the other
        cut = f.decide()
        assert cut is not None
        cuts.append(cut)
    return f.out, cuts, f


@settings(max_examples=200, deadline=None)
@given(data=streams, schedule=steps, other=steps)
def test_recorded_cuts_give_the_same_order_in_any_arrival(data, schedule, other):
    live, cuts, f = _live(data, schedule)

    # A replay: every record there at once, the recorded cuts applied, a topic at its stop offset has ended.
    replay = Feed(data)
    for t in TOPICS:
        replay.deliver(t, len(data[t]))
    for c in cuts:
        replay.unit.add_cut(c)
    replay.release(bounded=True)
    assert replay.out == live
    assert replay.unit.buffered == 0

    # Another live arrival of the same records (another fetch timing) that knows the cuts (a successor).
    again = Feed(data)
    for c in cuts:
        again.unit.add_cut(c)
    for topic, n in other:
        if topic != "idle":
            again.deliver(topic, n)
        again.release(bounded=False)
    for t in TOPICS:
        again.deliver(t, len(data[t]))
    again.release(bounded=True)
    assert again.out == live

    # A member taking over from any checkpoint of the live run: seek to its next offsets, apply the cuts that
    # are not behind it (what the runtime does), and the rest comes out as the live run released it.
    for nxt, n_out in f.marks:
        if nxt is None:
            continue
        succ = Feed(data, start=nxt)
        for c in cuts:
            if any(o > nxt.get(t, o) for t, o in c.items()):
                succ.unit.add_cut(c)
        for t in TOPICS:
            succ.deliver(t, len(data[t]))
        succ.release(bounded=True)
        assert succ.out == live[n_out:]


def test_a_topic_momentarily_at_its_high_watermark_does_not_release_later_events():
    """The issue-16 race: logins at their high watermark while an order waits; an earlier login arrives later.
    Without a decision the order waits, so live = replay = login first."""
    data = {"orders": [10], "logins": [5], "labels": []}
    f = Feed(data)
    f.deliver("orders", 1)
    f.release(bounded=False)
    assert f.out == []  # labels and logins are silent (at their end, for now): the order waits
    f.deliver("logins", 1)
    f.deliver("labels", 0)
    f.release(bounded=False)
    assert f.out == []  # labels still silent
    assert f.unit.waiting() == ["labels"]
    # After the idle timeout labels end where they stand; logins goes (ts 5), then the order waits for logins.
    assert f.decide() == {"orders": 0, "logins": 1, "labels": 0}
    assert f.out == ["logins-0"]
    assert f.decide() == {"orders": 1, "logins": 1, "labels": 0}
    assert f.out == ["logins-0", "orders-0"]


def test_a_decision_that_did_not_wait_is_replayed_as_it_was_made():
    """The idle timeout passed before the earlier login arrived: the live order went first; the recorded cut
    makes the replay (which has the login at once) do the same, where the data alone would put it second."""
    data = {"orders": [10], "logins": [5], "labels": []}
    live, cuts, _ = _live(data, [("orders", 1), ("idle", 0), ("logins", 1)])
    assert live == ["orders-0", "logins-0"]
    assert cuts[0] == {"orders": 1, "logins": 0, "labels": 0}

    def replay(with_cuts: bool) -> list[str]:
        r = Feed(data)
        for t in TOPICS:
            r.deliver(t, len(data[t]))
        for c in cuts if with_cuts else ():
            r.unit.add_cut(c)
        r.release(bounded=True)
        return r.out

    assert replay(with_cuts=True) == live
    assert replay(with_cuts=False) == ["logins-0", "orders-0"]
