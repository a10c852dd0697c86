"""``[engine] core``: the compiled engine and the Python one give the same alerts; the choice is checked, kept out
of the configuration hash, and a checkpoint continues only under the engine that wrote it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.compiled import CompiledEngine, new_engine
from stream.config import load_settings
from stream.errors import CheckpointError, ConfigError
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


def _settings(core: str, **more):
    return load_settings(overrides={"engine.core": core, "engine.budget": 0.02, "ensemble.min_history": 100,
                                    **more})


@pytest.fixture(scope="module")
def events():
    return list(simulate(SimConfig(events=8000, seed=5, label_delay_s=3 * 3600.0)))


def _run(engine, events, batch):
    alerts, risk = [], []
    for i in range(0, len(events), batch):
        out = engine.process(events[i : i + batch])
        alerts.extend(out.alerts)
        risk.extend(out.risk.tolist())
    return alerts, risk


@pytest.mark.parametrize("more", [{}, {"links.entity_risk": True, "links.flagged": True}])
def test_compiled_and_python_engines_raise_byte_identical_alerts(events, more) -> None:
    py = new_engine(_settings("python", **more))
    co = new_engine(_settings("compiled", **more))
    assert type(py) is Engine and isinstance(co, CompiledEngine)
    a_py, r_py = _run(py, events, 1000)
    a_co, r_co = _run(co, events, 1000)
    assert len(a_py) > 20
    assert r_py == r_co
    # reasons included: the same vectors reach the same Python detectors
    assert [a.to_json() for a in a_py] == [a.to_json() for a in a_co]
    assert co.events_seen == py.events_seen


def test_the_choice_is_not_part_of_the_configuration_hash_and_a_bad_value_is_one_line(tmp_path) -> None:
    assert _settings("python").config_hash == _settings("compiled").config_hash
    with pytest.raises(ConfigError, match="engine.core"):
        _settings("rust")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[engine]\ncore = "fast"\n')
    res = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "riskstream: error: config key 'engine.core' must be \"compiled\" or \"python\", not 'fast'"]


def test_a_checkpoint_continues_only_under_the_engine_that_wrote_it(events) -> None:
    py, co = new_engine(_settings("python")), new_engine(_settings("compiled"))
    py.process(events[:3000])
    co.process(events[:3000])
    with pytest.raises(CheckpointError, match="python engine"):
        new_engine(_settings("compiled")).restore(py.snapshot())
    with pytest.raises(CheckpointError, match="compiled engine"):
        new_engine(_settings("python")).restore(co.snapshot())
    # and under its own engine it continues exactly
    again = new_engine(_settings("compiled"))
    again.restore(co.snapshot())
    a1, r1 = _run(again, events[3000:], 700)
    a2, r2 = _run(co, events[3000:], 700)
    assert r1 == r2 and [a.to_json() for a in a1] == [a.to_json() for a in a2]


def test_a_damaged_compiled_state_is_a_checkpoint_error(events) -> None:
    import pickle

    co = new_engine(_settings("compiled"))
    co.process(events[:500])
    state = pickle.loads(co.snapshot())
    state["core"] = state["core"][: len(state["core"]) // 2]
    with pytest.raises(CheckpointError, match="does not load"):
        new_engine(_settings("compiled")).restore(pickle.dumps(state))
    state = pickle.loads(co.snapshot())
    state["core_state_version"] = 999
    with pytest.raises(CheckpointError, match="version 999"):
        new_engine(_settings("compiled")).restore(pickle.dumps(state))
