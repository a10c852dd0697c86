"""Faults around ``riskstream run`` on a real broker: a graceful SIGTERM, poison records, a broker restart."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka


def test_sigterm_checkpoints_commits_and_a_restart_continues_exactly(scenario):
    # Enough input that one process is still busy after its first checkpoints (one a second): an idle machine
    # consumed 16k events before the signal could land, leaving nothing to continue.
    sc = scenario(events=40_000, seed=14, max_poll_records=200)
    p1 = sc.start("p1")
    sc.wait_progress(0.1)  # ~4000 events in: every unit has state to save
    assert p1.terminate() == 0, p1.output()[-3000:]
    out = p1.output()
    assert "event=signal signal=SIGTERM" in out and "event=stopped" in out

    # Nobody else runs: what was committed is exactly what was saved, and it is not the whole input.
    committed = sc.committed()
    saved = sc.checkpoints()
    # A unit whose records the process had not reached yet has nothing to save (and nothing committed).
    assert saved and set(saved) <= {0, 1, 2, 3}
    for tp, off in committed.items():
        assert tp.partition in saved or off == 0, f"{tp} committed {off} without saved state"
    for unit, ck in saved.items():
        for topic, off in ck.offsets.items():
            assert committed[next(tp for tp in sc.end if tp.topic == topic and tp.partition == unit)] == off
    assert 0 < sum(committed.values()) < sc.total

    p1.start()
    sc.wait_done()
    sc.stop_all()
    assert p1.output().count("event=stopped") == 2
    sc.assert_exact(sc.reference())


def test_poison_records_go_to_the_dead_letter_topic_and_processing_continues(scenario):
    garbage = bytes(range(256)) * 3906  # ~1 MB, not UTF-8, not JSON
    poison = [b'{"type": "order", "event_id": ', garbage, b'{"type":"order","event_id":"x1"}', b"[1, 2, 3]"]
    sc = scenario(events=6_000, seed=15, poison=poison)
    sc.start("p1")
    sc.wait_done()
    sc.stop_all()
    sc.assert_exact(sc.reference())

    dead = {}
    for r in sc.read(sc.topics.dead_letters):
        h = dict(r.headers)
        dead[(h["source_topic"].decode(), int(h["source_partition"]), int(h["source_offset"]))] = (r, h)
    expected = {
        (sc.topics.orders, part, off): value for (part, off), value in zip(sc.poison_at, poison, strict=True)
    }
    assert set(dead) == set(expected)  # each poison record once (a single clean run) and nothing else
    reasons = []
    for key, value in expected.items():
        record, headers = dead[key]
        assert record.value == value  # the original bytes, whole
        reasons.append(headers["reason"].decode())
    assert "not valid JSON" in reasons[0]
    assert "larger than" in reasons[1]
    assert reasons[2] == "ts: is missing"
    assert "must be a JSON object" in reasons[3]


def test_broker_restart_while_consuming(scenario, restartable_broker):
    # Enough input that the consumers are still busy when the first checkpoint lands (the engine does ~10k events/s
    # per process here, and checkpoints come every second), so the restart falls mid-stream.
    sc = scenario(bootstrap=restartable_broker.bootstrap, events=40_000, seed=16, max_poll_records=200)
    sc.start("p1")
    sc.start("p2")
    at_restart = sc.wait_progress(0.02)
    assert restartable_broker.restart is not None
    restartable_broker.restart()
    sc.wait_done(timeout=240)
    sc.stop_all()
    assert at_restart < 1.0, "the broker restarted after the input was consumed"
    sc.assert_exact(sc.reference())


def test_fuzzed_records_through_run_are_dead_lettered_with_their_bytes_and_the_alerts_equal_replay(scenario):
    # Junk of every kind (truncated, wrong types, deep nesting, huge strings, invalid UTF-8, NaN tokens, numbers
    # out of range, binary garbage...) on the orders topic, then the simulated input: `riskstream run` neither
    # crashes nor loses one, and its alerts are the replay's. bench/faults/fuzz.py does this at 100,000.
    from stream.sim import SimConfig, simulate
    from stream.sim.junk import junk_records, split_refused

    refused, _ = split_refused(junk_records(simulate(SimConfig(events=500, seed=4)), n=1_500, seed=9))
    sc = scenario(events=12_000, seed=17, poison=refused)
    sc.start("p1")
    sc.wait_done()
    sc.stop_all()
    sc.assert_exact(sc.reference())
    dead = {}
    for r in sc.read(sc.topics.dead_letters):
        h = dict(r.headers)
        dead[(int(h["source_partition"]), int(h["source_offset"]))] = (r.value, h["reason"])
    assert len(dead) == len(refused)
    for (part, off), value in zip(sc.poison_at, refused, strict=True):
        got, reason = dead[(part, off)]
        assert got == value and reason
