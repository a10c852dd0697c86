"""`[state] store = "postgres"` selects the HMAC-signed PostgreSQL store; the key never shows in the config."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.config import load_settings
from stream.errors import ConfigError
from stream.state import Checkpoint, open_state_store
from stream.state.postgres import PgStateStore

pytestmark = pytest.mark.postgres

KEY = "k" * 32


def test_postgres_store_is_selected_from_config_and_env(pg_url, tmp_path):
    cfg = tmp_path / "rs.toml"
    cfg.write_text('[state]\nstore = "postgres"\n')
    settings = load_settings(cfg, env={"RISKSTREAM_DATABASE_URL": pg_url, "RISKSTREAM_STATE_KEY": KEY})
    store = open_state_store(settings.state, key=settings.state_key, database=settings.sinks["database"])
    assert isinstance(store, PgStateStore)
    cp = Checkpoint(offsets={"orders": 5}, state=b"state-bytes", config_hash="abc", saved_at=1.0, events=5)
    store.save("g", 0, cp)
    assert store.load("g", 0).state == b"state-bytes"
    assert KEY not in settings.to_toml() and KEY not in repr(settings)


def test_postgres_store_without_key_or_url_is_a_config_error(pg_url):
    with pytest.raises(ConfigError, match="RISKSTREAM_STATE_KEY"):
        open_state_store({"store": "postgres", "key_env": "RISKSTREAM_STATE_KEY"}, key=None, database=pg_url)
    with pytest.raises(ConfigError, match="state.database"):
        open_state_store({"store": "postgres"}, key=KEY, database=None)
    with pytest.raises(ConfigError, match="at least"):
        open_state_store({"store": "postgres"}, key="short", database=pg_url)


def test_config_show_never_prints_the_state_key(monkeypatch):
    monkeypatch.setenv("RISKSTREAM_STATE_KEY", KEY)
    res = CliRunner().invoke(cli, ["config", "show"])
    assert res.exit_code == 0 and "key_env" in res.output and KEY not in res.output
