"""Rule packs: validation, versions in the store, rollback, backtests, and `riskstream rules` (SQLite stores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from sinks.migrations import upgrade
from sinks.sql import create_sql_engine
from stream.cli import cli
from stream.config import default_settings, load_settings
from stream.console.store import audit_table
from stream.errors import ConfigError
from stream.rulepacks import (
    RulePackStore,
    backtest,
    configured_pack,
    file_source_factory,
    pack_to_toml,
    parse_pack,
    validate_pack,
)
from stream.sim import SimConfig, simulate, write_jsonl

#: A rule the default pack lacks: it blocks large orders, so each event it fires on is an alert it explains.
EXTRA = {"name": "huge_order", "when": "order_amount > 600", "score": 5.0, "action": "block"}


def _with_extra(settings=None) -> dict:
    pack = configured_pack(settings or default_settings())
    pack["rules"].append(dict(EXTRA))
    return pack


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rulepacks") / "events.jsonl"
    write_jsonl(simulate(SimConfig(events=20000, seed=7)), path)
    return path


@pytest.fixture()
def store(tmp_path: Path) -> RulePackStore:
    engine = create_sql_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    upgrade(engine)
    yield RulePackStore(engine, default_settings())
    engine.dispose()


# ---- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "reason"), [
    ("order_amout > 600", "rule 'huge_order' names unknown feature 'order_amout' (did you mean 'order_amount'?)"),
    ("order_amount => 600", "rule 'huge_order': cannot parse clause 'order_amount => 600'"),
    ("order_amount > 600 and", "rule 'huge_order': cannot parse clause"),
    ("order_amount > big", "rule 'huge_order': cannot parse clause 'order_amount > big'"),
    ("order_amount > 600 or amount < 1", "rule 'huge_order': cannot parse clause"),
])
def test_a_bad_rule_is_refused_with_a_one_line_reason(when: str, reason: str) -> None:
    pack = _with_extra()
    pack["rules"][-1]["when"] = when
    with pytest.raises(ConfigError) as e:
        validate_pack(default_settings(), pack)
    assert reason in str(e.value) and "\n" not in str(e.value)
    # the same pack as TOML text: the same reason
    with pytest.raises(ConfigError, match="rule 'huge_order'"):
        validate_pack(default_settings(), pack_to_toml(pack))


def test_pack_text_round_trips_and_bad_text_is_one_line() -> None:
    pack = _with_extra()
    assert parse_pack(pack_to_toml(pack)) == pack
    for text, reason in (("rules = [", "rule pack: invalid TOML"), ("colour = 1", "unknown key(s) colour"),
                         ("rules = 3", "'rules' must be a list")):
        with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")) as e:
            parse_pack(text)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="'action' must be one of review, block"):
        validate_pack(default_settings(), '[[rules]]\nname = "x"\nwhen = "order_amount > 1"\naction = "ban"\n')
    with pytest.raises(ConfigError, match="rule name\\(s\\) used twice: x"):
        validate_pack(default_settings(), '[[rules]]\nname = "x"\nwhen = "order_amount > 1"\n'
                                          '[[rules]]\nname = "x"\nwhen = "order_amount > 2"\n')


def test_config_loading_refuses_a_misspelt_feature_too(tmp_path: Path) -> None:
    """The issue's "silently accepted" path: a config file's rule with a misspelt feature is a config error."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[detectors.rules]\n[[detectors.rules.rules]]\nname = "x"\nwhen = "order_amout > 5"\n')
    with pytest.raises(ConfigError, match="rule 'x' names unknown feature 'order_amout'"):
        load_settings(cfg, env={})


# ---- the store -------------------------------------------------------------------------------------------------


def test_version_1_is_the_configured_pack(store: RulePackStore) -> None:
    assert store.active_version() is None
    (v1,) = store.versions()
    assert (v1.version, v1.active, v1.author, v1.parent_version) == (1, True, "(config)", None)
    assert v1.pack == configured_pack(default_settings())
    store.ensure_seeded()
    assert len(store.versions()) == 1


def test_deploy_and_rollback_are_versions_and_audit_rows(store: RulePackStore) -> None:
    v2 = store.deploy(_with_extra(), author="ada", comment="block big orders")
    assert (v2.version, v2.parent_version, v2.active, v2.comment) == (2, 1, True, "block big orders")
    assert store.active_version() == 2 and store.get().pack["rules"][-1] == EXTRA
    with pytest.raises(ConfigError, match="unknown feature 'order_amout'"):
        bad = _with_extra()
        bad["rules"][-1]["when"] = "order_amout > 1"
        store.deploy(bad, author="ada")
    assert store.active_version() == 2 and len(store.versions()) == 2  # nothing stored
    v1 = store.rollback(author="ada", comment="too many alerts")
    assert v1.version == 1 and store.active_version() == 1
    assert [v.version for v in store.versions()] == [2, 1]  # a rollback stores no new version
    with pytest.raises(LookupError, match="nothing to roll back to"):
        store.rollback(author="ada")
    v3 = store.deploy(pack_to_toml(_with_extra()), author="bob")
    assert (v3.version, v3.parent_version) == (3, 1)
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_table.c.username, audit_table.c.action, audit_table.c.target)
                            .order_by(audit_table.c.id)).all()
    assert [tuple(r) for r in rows] == [("(config)", "rules.seed", "v1"), ("ada", "rules.deploy", "v2"),
                                        ("ada", "rules.rollback", "v1"), ("bob", "rules.deploy", "v3")]


# ---- backtests -------------------------------------------------------------------------------------------------


def test_a_backtest_with_an_extra_rule_adds_the_alerts_that_rule_explains(stream_file: Path) -> None:
    settings = default_settings()
    current, candidate = configured_pack(settings), _with_extra(settings)
    r = backtest(settings, current, candidate, file_source_factory([str(stream_file)], settings),
                 max_events=20000, show=1000)
    assert r["current"]["events"] == r["candidate"]["events"] > 19000
    assert r["current"]["labelled_events"] > 0 and r["current"]["precision_at_budget"] is not None
    assert r["current"]["recall_at_budget"] is not None
    assert r["new_rules"] == ["huge_order"]
    assert "huge_order" not in r["current"]["rule_alerts"]
    assert r["candidate"]["rule_alerts"]["huge_order"] >= r["added"]["count"] > 0
    assert all("huge_order" in a["rules"] for a in r["added"]["alerts"])  # each added alert is the rule's
    assert r["candidate"]["alerts"] == r["current"]["alerts"] + r["added"]["count"] - r["removed"]["count"]
    # the same pack on both sides changes nothing
    same = backtest(settings, current, current, file_source_factory([str(stream_file)], settings), max_events=5000)
    assert same["added"]["count"] == same["removed"]["count"] == 0
    assert same["current"]["events"] == 5000  # bounded by max_events


def test_a_backtest_refuses_a_bad_candidate_before_running(stream_file: Path) -> None:
    settings = default_settings()
    with pytest.raises(ConfigError, match="unknown feature"):
        backtest(settings, configured_pack(settings), 'rules = [{name = "x", when = "nope > 1"}]',
                 file_source_factory([str(stream_file)], settings))
    with pytest.raises(ConfigError, match="no such event file"):
        file_source_factory(["/nonexistent/events.jsonl"], settings)


# ---- the CLI ---------------------------------------------------------------------------------------------------


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_rules_cli(tmp_path: Path, stream_file: Path) -> None:
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    r = _run("rules", "list", "--db", db)
    assert r.exit_code == 0 and r.output.startswith("* v1 ") and "(config)" in r.output
    r = _run("rules", "show", "--db", db)
    assert r.exit_code == 0 and parse_pack(r.output) == configured_pack(default_settings())
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(pack_to_toml(_with_extra()))
    bad.write_text(pack_to_toml(_with_extra()).replace("order_amount > 600", "order_amout > 600"))
    for cmd in (("deploy", str(bad)), ("test", str(bad), str(stream_file))):
        r = _run("rules", *cmd, "--db", db)
        assert r.exit_code == 2, r.output
        assert r.output == ("riskstream: error: detectors.rules: rule 'huge_order' names unknown feature "
                            "'order_amout' (did you mean 'order_amount'?)\n")
    r = _run("rules", "test", str(good), str(stream_file), "--db", db, "--max-events", "20000",
             "--report", str(tmp_path / "bt.json"))
    assert r.exit_code == 0, r.output
    assert "huge_order" in r.output and "added alerts: " in r.output and "+ " in r.output
    assert (tmp_path / "bt.json").is_file()
    r = _run("rules", "deploy", str(good), "--db", db, "--author", "ada", "-m", "big orders")
    assert r.exit_code == 0 and "deployed rule pack v2 (was v1)" in r.output
    r = _run("rules", "list", "--db", db)
    assert r.output.splitlines()[0].startswith("* v2 ") and "ada" in r.output and "big orders" in r.output
    r = _run("rules", "rollback", "--db", db, "--author", "ada")
    assert r.exit_code == 0 and "v1 is active (was v2)" in r.output
    r = _run("rules", "rollback", "--db", db)
    assert r.exit_code == 2 and "nothing to roll back to" in r.output
    r = _run("rules", "show", "7", "--db", db)
    assert r.exit_code == 2 and r.output == "riskstream: error: no rule pack version 7\n"
    r = _run("rules", "deploy", str(tmp_path / "missing.toml"), "--db", db)
    assert r.exit_code == 2 and "missing.toml" in r.output


def test_live_stats_count_the_stored_alerts_naming_each_rule_on_sqlite(tmp_path: Path, stream_file: Path) -> None:
    """The JSONB containment is PostgreSQL's (tests/console); on SQLite the count is a text search of the reasons."""
    from sinks.feedback import Feedback, FeedbackStore
    from sinks.sql import SqlSink
    from stream.replay import replay
    from stream.sources import FileSource

    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    sink = SqlSink(url)
    alerts: list = []
    settings = default_settings()
    replay(FileSource([stream_file], batch_size=2000), settings, sinks=[sink],
           on_batch=lambda _b, o: alerts.extend(o.alerts))
    sink.close()
    named: dict[str, list] = {}
    for a in alerts:
        for r in a.reasons:
            if r["detector"] == "rules":
                named.setdefault(r["feature"], []).append(a)
    assert len(named) >= 3
    engine = create_sql_engine(url)
    upgrade(engine)
    try:
        rule, hits = max(named.items(), key=lambda kv: len(kv[1]))
        FeedbackStore(engine, create=False).add([
            Feedback(event_id=hits[0].event_id, alert_id=hits[0].alert_id, outcome="fraud", source="review", ts=1.0),
            Feedback(event_id=hits[1].event_id, alert_id=hits[1].alert_id, outcome="legit", source="review", ts=1.0)])
        stats = RulePackStore(engine, settings).live_stats(sorted(named) + ["never_fires"])
    finally:
        engine.dispose()
    assert {n: s["alerts"] for n, s in stats.items()} == {**{n: len({a.alert_id for a in v})
                                                             for n, v in named.items()}, "never_fires": 0}
    assert (stats[rule]["fraud"], stats[rule]["legit"], stats[rule]["precision"]) == (1, 1, 0.5)
