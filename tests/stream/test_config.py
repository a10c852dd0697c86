from __future__ import annotations

import tomllib

import pytest

from stream.config import default_settings, load_settings
from stream.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "rs.toml"
    p.write_text(text)
    return p


def test_file_overrides_defaults_key_by_key(tmp_path):
    s = load_settings(write(tmp_path, "[engine]\nbudget = 0.02\n[detectors.hst]\nn_trees = 10\n"), env={})
    assert s.budget == 0.02
    assert s.engine["batch_size"] == default_settings().engine["batch_size"]
    assert s.detectors["hst"]["n_trees"] == 10 and s.detectors["hst"]["height"] == 15


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[engine]\nbudgett = 0.1\n", "engine.budgett"),
        ("[engine]\nbudget = 'high'\n", "engine.budget"),
        ("[engine]\nbudget = 1.5\n", "engine.budget"),
        ("[kafka]\ngroup_id = 3\n", "kafka.group_id"),
        ("[nope]\nx = 1\n", "nope"),
        ("[engine\n", "invalid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    assert needle in str(e.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does-not-exist.toml"):
        load_settings(tmp_path / "does-not-exist.toml", env={})


def test_environment_overrides_file(tmp_path):
    env = {
        "RISKSTREAM_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/db",
        "RISKSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "RISKSTREAM__ENGINE__BUDGET": "0.03",
        "RISKSTREAM__KAFKA__GROUP_ID": "fraud",
    }
    s = load_settings(write(tmp_path, "[engine]\nbudget = 0.02\n"), env=env)
    assert s.sinks["database"].endswith("/db")
    assert s.kafka["bootstrap_servers"] == "127.0.0.1:19092"
    assert s.budget == 0.03
    assert s.kafka["group_id"] == "fraud"


def test_config_hash_tracks_detection_settings_only(tmp_path):
    base = default_settings()
    assert base.replace({"kafka.group_id": "other"}).config_hash == base.config_hash
    assert base.replace({"engine.batch_size": 7}).config_hash == base.config_hash
    assert base.replace({"engine.budget": 0.01}).config_hash != base.config_hash
    assert base.replace({"detectors.hst.seed": 1}).config_hash != base.config_hash


def test_disabled_detector_is_left_out(tmp_path):
    s = load_settings(write(tmp_path, "[detectors.hst]\nenabled = false\n"), env={})
    assert "hst" not in s.detectors and "zscore" in s.detectors


def test_toml_dump_round_trips():
    s = default_settings().replace({"engine.budget": 0.0125})
    assert tomllib.loads(s.to_toml()) == dict(s.data)
