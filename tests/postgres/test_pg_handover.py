"""A partition's state moves to another process through PgStateStore, and scoring continues exactly as an
uninterrupted run would: the same risk scores and the same alerts on the same input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.config import default_settings
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate
from stream.state import Checkpoint
from stream.state.postgres import PgStateStore

pytestmark = pytest.mark.postgres

EVENTS, SEED, BATCH, HANDOVER = 6000, 3, 500, 3500
KEY = "handover-test-key-0123456789abcdef"

# The process that takes the partition over after a rebalance: it knows only the store, the key and the input.
TAKEOVER = textwrap.dedent("""
    import sys, orjson
    from stream.config import default_settings
    from stream.state.postgres import PgStateStore
    from stream.pipeline import Engine
    from stream.sim import SimConfig, simulate

    url, key, out = sys.argv[1:4]
    events, seed, batch = (int(v) for v in sys.argv[4:7])
    store = PgStateStore(url, key=key, create=False)
    ck = store.load("riskstream", 5)
    engine = Engine(default_settings())
    engine.restore(ck.state)
    todo = list(simulate(SimConfig(events=events, seed=seed)))[ck.offsets["sim"]:]
    risk, alerts = [], []
    for i in range(0, len(todo), batch):
        o = engine.process(todo[i:i + batch])
        risk += o.risk.tolist()
        alerts += [a.to_json().decode() for a in o.alerts]
    open(out, "wb").write(orjson.dumps({"risk": risk, "alerts": alerts, "seen": engine.events_seen}))
""")


def _run(engine: Engine, events: list) -> tuple[np.ndarray, list[str]]:
    risk, alerts = [], []
    for i in range(0, len(events), BATCH):
        o = engine.process(events[i : i + BATCH])
        risk.append(o.risk)
        alerts += [a.to_json().decode() for a in o.alerts]
    return np.concatenate(risk), alerts


def test_state_moved_through_the_store_to_another_process_scores_like_an_uninterrupted_run(
    pg_url: str, tmp_path: Path
) -> None:
    events = list(simulate(SimConfig(events=EVENTS, seed=SEED)))
    settings = default_settings()
    whole_risk, whole_alerts = _run(Engine(settings), events)

    first = Engine(settings)
    first_risk, first_alerts = _run(first, events[:HANDOVER])
    store = PgStateStore(pg_url, key=KEY)
    store.save("riskstream", 5, Checkpoint(offsets={"sim": HANDOVER}, state=first.snapshot(),
                                           config_hash=first.config_hash, events=first.events_seen))
    store.close()

    out = tmp_path / "takeover.json"
    done = subprocess.run([sys.executable, "-c", TAKEOVER, pg_url, KEY, str(out), str(EVENTS), str(SEED),
                           str(BATCH)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    second = orjson.loads(out.read_bytes())

    resumed_risk = np.concatenate([first_risk, np.asarray(second["risk"])])
    assert resumed_risk.shape == whole_risk.shape
    np.testing.assert_array_equal(resumed_risk, whole_risk)
    assert first_alerts + second["alerts"] == whole_alerts
    assert second["seen"] == sum(1 for e in events if e.type != "label")  # the restored count went on
    assert whole_alerts[len(first_alerts):]  # the handed-over half does alert

    # The state is what made the difference: a fresh engine on the second half scores otherwise.
    fresh_risk, _ = _run(Engine(settings), events[HANDOVER:])
    assert not np.array_equal(fresh_risk, whole_risk[len(first_risk):])
