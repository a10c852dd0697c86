"""``riskstream rules test --kafka-topic``: a rule pack backtested on a bounded range of the real broker's topics."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.config import load_settings
from stream.rulepacks import configured_pack, pack_to_toml
from tests.kafka.conftest import produce_simulated, write_config

pytestmark = pytest.mark.kafka


def test_a_pack_backtests_on_a_kafka_range(kafka_bootstrap, topics, tmp_path: Path) -> None:
    produced = produce_simulated(kafka_bootstrap, topics, 6000, seed=31)
    config = write_config(tmp_path / "riskstream.toml", kafka_bootstrap, topics, state_dir=tmp_path / "state",
                          database="")
    pack = configured_pack(load_settings(config, env={}))
    pack["rules"].append({"name": "huge_order", "when": "order_amount > 400", "score": 5.0, "action": "block"})
    (tmp_path / "pack.toml").write_text(pack_to_toml(pack))
    res = CliRunner().invoke(cli, ["rules", "test", str(tmp_path / "pack.toml"), "-c", str(config),
                                   "--kafka-topic", topics.orders, "--kafka-topic", topics.logins,
                                   "--kafka-topic", topics.labels, "--report", str(tmp_path / "bt.json")],
                             catch_exceptions=False, env={"RISKSTREAM_DATABASE_URL": ""})  # no store: the
    # comparison is with the configured pack, and the shared PostgreSQL's public schema stays untouched
    assert res.exit_code == 0, res.output
    report = orjson.loads((tmp_path / "bt.json").read_bytes())
    assert report["against"] == "configured" and report["max_events"] is None
    assert report["current"]["events"] == report["candidate"]["events"] == produced.scored
    assert report["added"]["count"] > 0
    assert all("huge_order" in a["rules"] for a in report["added"]["alerts"])
    # files and Kafka do not mix
    res = CliRunner().invoke(cli, ["rules", "test", str(tmp_path / "pack.toml"), "events.jsonl",
                                   "--kafka-topic", topics.orders])
    assert res.exit_code == 2 and "give INPUT files or --kafka-topic" in res.output
