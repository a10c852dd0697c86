from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from stream.config import _check_feature_names, default_settings, load_settings
from stream.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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
        ("[links]\nprior_strength = 0\n", "links.prior_strength"),
        ("[links]\nprior_strength = -3.0\n", "links.prior_strength"),
        ("[links]\nprior_strength = nan\n", "links.prior_strength"),
        ("[links]\nprior_strength = inf\n", "links.prior_strength"),
        ("[links]\nprior_strength = '10'\n", "links.prior_strength"),
        ("[links]\nrisk_prior = 1\n", "links.risk_prior"),
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
    # the cohort prior (added later): off, its strength changes nothing, and the hash is the one from before it
    assert base.replace({"links.prior_strength": 3.0}).config_hash == base.config_hash
    assert base.replace({"links.risk_prior": True}).config_hash != base.config_hash
    on = base.replace({"links.risk_prior": True})
    assert on.replace({"links.prior_strength": 3.0}).config_hash != on.config_hash


def test_disabled_detector_is_left_out(tmp_path):
    s = load_settings(write(tmp_path, "[detectors.hst]\nenabled = false\n"), env={})
    assert "hst" not in s.detectors and "zscore" in s.detectors


def test_toml_dump_round_trips():
    s = default_settings().replace({"engine.budget": 0.0125})
    assert tomllib.loads(s.to_toml()) == dict(s.data)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[ensemble.weights]\nhst = "high"\n', "config key 'ensemble.weights.hst' must be a number >= 0, not 'high'"),
        ("[ensemble.weights]\nzscore = -1\n", "config key 'ensemble.weights.zscore' must be a number >= 0, not -1"),
        ("[ensemble.weights]\nhts = 1.0\n",
         "config key 'ensemble.weights.hts' weighs detector 'hts', which is not configured (did you mean 'hst'?)"),
        ("[ensemble.weights]\nforest = 1.0\n",
         "config key 'ensemble.weights.forest' weighs detector 'forest', which is not configured "
         "(configured: coldstart, hst, priors, rules, zscore)"),
        ('[ensemble.calibration]\nzscore = "normal"\n',
         "config key 'ensemble.calibration.zscore' must be \"rank\" or \"gaussian\", not 'normal'"),
        ('[ensemble.calibration]\nzscor = "gaussian"\n',
         "config key 'ensemble.calibration.zscor' calibrates detector 'zscor', which is not configured "
         "(did you mean 'zscore'?)"),
        ('[[detectors.rules.rules]]\nname = "mine"\nwhen = "devce_users_24h >= 3"\n',
         "detectors.rules: rule 'mine' names unknown feature 'devce_users_24h' (did you mean 'device_users_24h'?)"),
        ('[[detectors.rules.rules]]\nname = "mine"\nwhen = "order_amount > 5 and V14 < -5"\n',
         "detectors.rules: rule 'mine' names unknown feature 'V14'; list features your events carry in "
         "features.upstream"),
        ('[[detectors.rules.rules]]\nname = "mine"\nwhen = "user_orders_5m >= 3"\n',  # not one of the windows
         "detectors.rules: rule 'mine' names unknown feature 'user_orders_5m' (did you mean 'user_orders_1m'?)"),
        ('[[detectors.rules.rules]]\nname = "mine"\nwhen = "order_amount >"\n',
         "detectors.rules: rule 'mine': cannot parse"),
    ],
)
def test_weights_and_rule_features_are_checked_when_loading(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    assert str(e.value).startswith(message)


def test_rule_names_listed_upstream_features_and_any_feature_family(tmp_path):
    rule = '[[detectors.rules.rules]]\nname = "mine"\nwhen = "V14 < -5 and link_flagged >= 1 and risk_ip_rate_7d > 0"\n'
    s = load_settings(write(tmp_path, '[features]\nupstream = ["V14"]\n' + rule), env={})
    assert s.detectors["rules"]["rules"][0]["name"] == "mine"
    # naming pass-through features changes no score: the detection hash and the extractor's parameters ignore it
    assert s.config_hash == s.replace({"features.upstream": ["V14", "V15"]}).config_hash
    assert "upstream" not in s.features
    # with pass-through off the upstream name never reaches the rules
    with pytest.raises(ConfigError, match="unknown feature 'V14'; features.passthrough is false"):
        s.replace({"features.passthrough": False})
    # an upstream name equal to one of the engine's arrives as in_<name>
    clash = rule.replace("V14", "in_order_amount")
    load_settings(write(tmp_path, '[features]\nupstream = ["order_amount"]\n' + clash), env={})


def test_weight_of_a_disabled_detector_is_no_error(tmp_path):
    s = load_settings(write(tmp_path, "[detectors.hst]\nenabled = false\n[ensemble.weights]\nhst = 0.5\n"), env={})
    assert "hst" not in s.detectors


def test_a_z_score_calibration_is_in_the_hash_only_when_it_is_not_the_rank(tmp_path):
    from stream.pipeline import build_ensemble

    s = load_settings(env={})
    gauss = load_settings(write(tmp_path, '[ensemble.calibration]\nzscore = "gaussian"\n'), env={})
    assert s.config_hash == s.replace({"ensemble.calibration.zscore": "rank"}).config_hash
    assert gauss.config_hash != s.config_hash
    assert build_ensemble(gauss).calibration == {"zscore": "gaussian"}
    with pytest.raises(ConfigError, match="calibration of 'hst' cannot be \"gaussian\""):
        build_ensemble(s.replace({"ensemble.calibration.hst": "gaussian"}))


def test_a_disabled_rules_pack_is_not_checked(tmp_path):
    text = '[detectors.rules]\nenabled = false\n[[detectors.rules.rules]]\nname = "x"\nwhen = "nope > 1"\n'
    assert "rules" not in load_settings(write(tmp_path, text), env={}).detectors


@pytest.mark.parametrize("path", ["stream/defaults/riskstream.toml", "docker/riskstream.toml",
                                  *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").rglob("*.toml")
                                          # the panel's registries and NAB's candidate grid are not configurations
                                          if p.name not in ("streams.toml", "tuning.toml", "grid.toml"))])
def test_shipped_configurations_name_only_known_features(path):
    s = load_settings(ROOT / path, env={})
    _check_feature_names(s.data, force=True)  # the defaults are skipped when loading: checked here


def test_the_entity_caps_are_detection_settings_that_keep_the_default_hash():
    default = default_settings()
    # the caps came later: at their defaults they leave the hash (and so every alert id and checkpoint) as it was
    assert "max_entities" not in default.detection_dict()["features"]
    assert "max_entities" not in default.detection_dict()["links"]
    capped = default.replace({"features.max_entities": 5000})
    assert capped.config_hash != default.config_hash
    assert default.replace({"links.max_entities": 5000}).config_hash != default.config_hash
    from stream.pipeline import Engine

    engine = Engine(capped)
    assert engine.features.max_entities == 5000
    with pytest.raises(ConfigError, match="max_entities"):
        Engine(default.replace({"features.max_entities": 0}))


def test_a_rules_pack_under_another_section_name_is_checked_too(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.rules2]\nclass = "rules"\n'
                   'rules = [{ name = "x", when = "device_paymnts_24h >= 5", score = 0.9, action = "review" }]\n')
    with pytest.raises(ConfigError, match="detectors.rules2: rule 'x' names unknown feature 'device_paymnts_24h'"):
        load_settings(cfg, env={})


def test_a_tuned_default_stated_at_its_old_value_hashes_as_before():
    """The z-score's window entered the defaults at 4096 where the detector's 2048 had applied unstated: stated at
    2048 the configuration is the one of before, with its hash (the defaults' before the change, and every
    config pinned "as measured"); any other value is a new configuration."""
    base = default_settings()
    assert base.data["detectors"]["zscore"]["window"] == 4096
    old = base.replace({"detectors.zscore.window": 2048, "ensemble.weights.hst": 0.0625,  # the defaults before
                        "ensemble.adaptive.measure": "precision"})
    assert old.config_hash == "1817d66d99b852a3" != base.config_hash
    assert "window" not in old.detection_dict()["detectors"]["zscore"]
    assert base.replace({"detectors.zscore.window": 8192}).config_hash not in {old.config_hash, base.config_hash}
    assert old.replace({"engine.budget": 0.01}).config_hash == "be39b5b56329a274"
    # the adaptive weights' measure became "stream_precision"; stated at "precision" the defaults hash as before it
    assert base.replace({"ensemble.adaptive.measure": "precision"}).config_hash == "1578152fba9a6d46"


def test_options_added_later_leave_the_hash_alone_while_off():
    """Every option added after alert ids were first issued stays out of the hash at its off/default value (so old
    alert ids keep matching a replay) and changes it once set."""
    base = default_settings()
    pinned = base.config_hash
    for change in ({"ensemble.risk": "rank"}, {"ensemble.bandit.enabled": True}, {"detectors.priors.enabled": False},
                   {"ensemble.adaptive.measure": "auc"}, {"ensemble.adaptive.measure": "precision"},
                   {"ensemble.adaptive.enabled": False}, {"ensemble.adaptive.window": 77}, {"links.risk_prior": True},
                   {"features.max_entities": 999}, {"links.max_entities": 999}):
        assert base.replace(change).config_hash != pinned, change
    for same in ({"ensemble.bandit.seed": 7}, {"links.prior_strength": 9.0}):
        assert base.replace(same).config_hash == pinned, same
    # the evidence risk and the priors joined the defaults later, with a change of the adaptive weights' rules
    # (a blind detector keeps its weight) that decides differently once labels arrive: the previous defaults
    # (bench/panel/before-priors.toml) therefore have a new hash, not 7f93a8a49d93b52b; without adaptive weights
    # nothing of that applies, and the hash (and every alert id) is the one before adaptive weights
    # (and HST weighs 1/16 and the z-score's window is 4096 since the panel tuned them: settings like any, in the
    # hash)
    before = base.replace({"ensemble.risk": "rank", "detectors.priors.enabled": False,
                           "ensemble.adaptive.measure": "auc", "ensemble.weights.hst": 1.0,
                           "detectors.zscore.window": 2048})
    assert before.config_hash == "fbe896e76dc535c7" != "7f93a8a49d93b52b"
    assert load_settings(Path(__file__).parents[2] / "bench/panel/before-priors.toml").config_hash == before.config_hash
    fixed = before.replace({"ensemble.adaptive.enabled": False})
    assert fixed.config_hash == "7172ee3f28d85cfe"
    assert fixed.replace({"ensemble.adaptive.window": 77}).config_hash == fixed.config_hash
