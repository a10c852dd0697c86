"""Database URLs: ``config show`` masks passwords, and a URL riskstream cannot use is one line, exit 2, no secret."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sinks.errors import DatabaseURLError
from sinks.sql import check_database_url, create_sql_engine, hidden_url, mask_url_password
from stream.cli import cli
from stream.config import load_settings
from stream.errors import ConfigError

SECRET = "s3cr3t-Pw"
BAD_URLS = {
    f"postgresql+nodriver://u:{SECRET}@h/db": "unknown postgresql driver 'nodriver'",
    f"mysql://u:{SECRET}@h/db": "not 'mysql'",
    f"postgresql+psycopg://u:{SECRET}@h:notaport/db": "port 'notaport' is not a number",
    f"postgresql+psycopg://u:{SECRET}@h:70000/db": "port 70000 is out of range",
    f"postgresql+psycopg2://u:{SECRET}@h/db": "driver 'psycopg2' is not installed",
    "garbage": "is not a SQLAlchemy URL",
}


def test_config_show_masks_every_database_password_and_keeps_the_real_hash(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[state]\ndatabase = "postgresql+psycopg://st:{SECRET}-state@h:5432/db"\n')
    monkeypatch.setenv("RISKSTREAM_DATABASE_URL", f"postgresql+psycopg://u:{SECRET}@h:5432/db")
    res = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    assert 'database = "postgresql+psycopg://u:***@h:5432/db"' in res.output
    assert 'database = "postgresql+psycopg://st:***@h:5432/db"' in res.output
    s = load_settings(str(cfg))
    assert s.sinks["database"].endswith(f":{SECRET}@h:5432/db")  # the settings keep the real URL
    assert f"# config_hash: {s.config_hash}" in res.output


def test_masking_covers_urls_that_do_not_parse():
    assert mask_url_password(f"postgresql://u:{SECRET}@h:notaport/db") == "postgresql://u:***@h:notaport/db"
    assert mask_url_password(f"postgresql://u:p@{SECRET}@h/db") == "postgresql://u:***@h/db"
    assert mask_url_password("sqlite:///a.db") == "sqlite:///a.db"
    assert SECRET not in hidden_url(f"postgresql+psycopg://u:{SECRET}@h:notaport/db")


@pytest.mark.parametrize("url,needle", BAD_URLS.items())
def test_a_bad_url_is_one_clear_error_without_the_password(url, needle):
    with pytest.raises(DatabaseURLError) as e:
        create_sql_engine(url)
    assert needle in str(e.value) and SECRET not in str(e.value)
    with pytest.raises(DatabaseURLError):
        check_database_url(url)


@pytest.mark.parametrize("url,needle", BAD_URLS.items())
def test_a_bad_url_in_the_settings_is_a_config_error_naming_the_key(tmp_path, url, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[sinks]\ndatabase = "{url}"\n')
    with pytest.raises(ConfigError, match=r"config key 'sinks\.database'") as e:
        load_settings(str(cfg), env={})
    assert needle in str(e.value) and SECRET not in str(e.value)
    with pytest.raises(ConfigError, match=r"config key 'state\.database'"):
        load_settings(None, env={"RISKSTREAM__STATE__DATABASE": url})


def _one_line_exit_2(args, needle):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskstream: error: "), res.output
    assert needle in lines[0] and SECRET not in res.output
    return lines[0]


@pytest.mark.parametrize("url,needle", BAD_URLS.items())
def test_every_command_taking_a_database_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, url, needle):
    monkeypatch.delenv("RISKSTREAM_DATABASE_URL", raising=False)
    events = tmp_path / "e.jsonl"
    events.write_text("")
    for args in (["replay", str(events), "--db", url], ["alerts", "query", "--db", url],
                 ["db", "upgrade", "--db", url], ["db", "current", "--db", url],
                 ["label", "export", "--db", url, "--out", str(tmp_path / "l.jsonl")]):
        assert _one_line_exit_2(args, needle).startswith("riskstream: error: --db: ")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[sinks]\ndatabase = "{url}"\n')
    _one_line_exit_2(["run", "--config", str(cfg)], needle)
    _one_line_exit_2(["alerts", "query", "--config", str(cfg)], needle)
