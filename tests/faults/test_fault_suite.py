"""The fault suite at a small size: every scenario of ``stream/bench/faults.py`` (SIGKILLs, a zombie, a member
joining, a broker restart, a PostgreSQL outage) with a live producer, each ending with the store and the
``read_committed`` alerts topic identical to ``replay --kafka --group`` of the same offsets: 0 missing, 0
duplicated, 0 differing, every event absorbed once into the saved state, and the fault actually injected.

``bench/faults/suite.py`` runs the same at full size (40,000 events at 700/s, 20 kills); its results are in
``bench/faults/README.md``. The broker-restart scenario starts a private broker and the pg-outage scenario a
private PostgreSQL server, so the shared services are never disturbed.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from stream.bench.faults import SCENARIOS, FaultConfig, run_scenario, summary_line
from stream.bench.harness import SERVICES, services_env

pytestmark = pytest.mark.kafka

# Small, but large enough that the engine raises alerts (it warms up first) and the faults land mid-stream.
EVENTS = 6_000
RATE = 800.0
KILLS = 4
MEMBERS = 2


@pytest.fixture(scope="module")
def shared_services() -> dict[str, str]:
    if os.environ.get("RISKSTREAM_KAFKA_BOOTSTRAP") and os.environ.get("RISKSTREAM_DATABASE_URL"):
        return {}
    subprocess.run([str(SERVICES), "up"], check=True, timeout=900)
    return services_env()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fault_scenario_equals_the_replay(scenario, shared_services, tmp_path):
    cfg = FaultConfig(scenario, events=EVENTS, rate=RATE, members=MEMBERS, kills=KILLS, seed=11,
                      workdir=tmp_path, zombie_stop_s=8.0,
                      bootstrap=shared_services.get("RISKSTREAM_KAFKA_BOOTSTRAP"),
                      database=shared_services.get("RISKSTREAM_DATABASE_URL"), pg_down_s=4.0, keep=True)
    r = run_scenario(cfg)
    detail = f"{summary_line(r)}\nlogs in {r.workdir}\n" + "\n".join(r.crashes[:3])
    assert not r.error, detail
    assert not r.crashes, detail
    assert r.reference > 0, "no alert at all: the scenario would prove nothing\n" + detail
    # The fault happened.
    if scenario == "kills":
        assert r.fault_count == KILLS, detail
    elif scenario == "zombie":
        assert r.fault_count == 1 and (r.log_events.get("zombie_fenced") or r.log_events.get("zombie_lost")
                                    or r.log_events.get("zombie_decision_fenced")), detail
    elif scenario == "pg-outage":
        # The members felt it: a checkpoint, a merge decision or a unit's state could not be written or read.
        felt = sum(r.log_events.get(k, 0) for k in ("checkpoint_failed", "decision_failed", "unit_open_failed"))
        assert r.fault_count == 1 and felt > 0, detail
    else:
        assert r.fault_count == 1, detail
    # Identical to the replay of the same offsets.
    assert (r.store_missing, r.store_duplicated, r.store_extra, r.store_differing) == (0, 0, 0, 0), detail
    assert (r.topic_missing, r.topic_duplicated, r.topic_extra, r.topic_differing) == (0, 0, 0, 0), detail
    assert r.store == r.topic == r.reference, detail
    assert r.state_events_delta == 0, detail
    assert all(code == 0 for code in r.exit_codes.values()), detail
    assert r.ok, detail


def test_an_in_process_restart_is_counted_not_reported_as_a_crash():
    from pathlib import Path
    from types import SimpleNamespace

    from stream.bench.faults import _crashes, _log_counts

    restart = ("2026-12-06 02:20:00,100 WARNING riskstream.runtime event=restart error=KafkaConnectionError "
               "retry_in_s=1 attempt=1\nTraceback (most recent call last):\n  File \"x.py\", line 1, in poll\n"
               "kafka.errors.KafkaConnectionError: 111 ECONNREFUSED\n"
               "2026-12-06 02:20:01,218 INFO riskstream.runtime event=transaction_ready unit=3\n")
    crash = ("2026-12-06 02:20:02,000 ERROR riskstream.runtime event=failed\nTraceback (most recent call last):\n"
             "  File \"y.py\", line 2, in score\nValueError: boom\n")
    proc = lambda text: SimpleNamespace(output=lambda: text, log=Path("m1.log"))  # noqa: E731
    assert _crashes([proc(restart)]) == []
    assert _log_counts([proc(restart)])["restart"] == 1
    found = _crashes([proc(restart + crash)])
    assert len(found) == 1 and "ValueError: boom" in found[0] and "ECONNREFUSED" not in found[0]
