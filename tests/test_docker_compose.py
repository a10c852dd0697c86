"""docker/compose.yaml runs real riskstream commands: every command line parses with the real CLI, every
RISKSTREAM_* variable is one the configuration understands, and the mounted config file loads.

There is no Docker engine in CI, so the file is checked against the code it drives instead of being run.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

# pytest's default import mode puts tests/ itself on sys.path for a test file at the top of tests/, and then
# the folder tests/stream is found as a namespace package before the editable install's finder offers the real
# `stream` (when this file runs alone). Take tests/ off the path before importing stream.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


from stream.cli import cli  # noqa: E402
from stream.config import load_settings  # noqa: E402

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _riskstream_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the image built from docker/Dockerfile."""
    out = {}
    for name, svc in compose["services"].items():
        build = svc.get("build") or {}
        if isinstance(build, dict) and build.get("dockerfile") == "docker/Dockerfile":
            out[name] = svc
    return out


def _mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (relative to docker/)."""
    out = {}
    for spec in svc.get("volumes", []):
        parts = spec.split(":")
        if parts[0].startswith("."):
            out[parts[1]] = (DOCKER / parts[0]).resolve()
    return out


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]


def _parse(args: list[str]) -> list[str]:
    """Parse ``riskstream <args>`` down to the leaf command as click does when it runs; return its path.
    Raises :class:`click.UsageError` on an unknown command or option or a bad value."""
    ctx = cli.make_context("riskstream", list(args))
    path = []
    group: click.Command = cli
    while isinstance(group, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, cmd, rest = group.resolve_command(ctx, rest)
        assert cmd is not None, f"no command in {args}"
        path.append(name)
        ctx = cmd.make_context(name, rest, parent=ctx)
        group = cmd
    return path


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_dockerfile_runs_the_cli_on_python_311():
    text = DOCKERFILE.read_text()
    assert "FROM python:3.11-slim" in text
    assert 'ENTRYPOINT ["riskstream"]' in text
    for package in ("stream", "detectors", "sinks"):
        assert f"COPY {package} ./{package}" in text, f"the image must contain the {package} package"
    assert "pip install ." in text


def test_every_riskstream_command_line_parses_with_the_real_cli(compose):
    services = _riskstream_services(compose)
    seen = {}
    for name, svc in services.items():
        mounts = _mounts(svc)
        args = [str(mounts.get(a, a)) for a in _command(svc)]  # container paths -> the files mounted there
        try:
            seen[name] = _parse(args)
        except click.UsageError as e:
            pytest.fail(f"service {name}: `riskstream {' '.join(_command(svc))}`: {e.format_message()}")
    assert sorted(map(tuple, seen.values())) == [("alerts", "tail"), ("run",), ("simulate",)]
    sim = _command(services[next(n for n, p in seen.items() if p == ["simulate"])])
    assert "--to-kafka" in sim and sim[sim.index("--rate") + 1] == "200"


def test_a_broken_command_line_would_be_caught():
    with pytest.raises(click.UsageError):
        _parse(["run", "--no-such-option"])
    with pytest.raises(click.UsageError):
        _parse(["alerts", "tail", "--severity", "urgent"])
    with pytest.raises(click.UsageError):
        _parse(["run", "--config", "/etc/riskstream/absent.toml"])  # the file must exist (is mounted)


def test_riskstream_environment_names_are_understood_by_the_config(compose):
    config = DOCKER / "riskstream.toml"
    base = load_settings(config, env={})
    names = set()
    for name, svc in _riskstream_services(compose).items():
        env = _env(svc)
        for key, value in env.items():
            if not key.startswith("RISKSTREAM"):
                continue
            names.add(key)
            if load_settings(config, env={key: value}).data == base.data:
                pytest.fail(f"service {name}: {key} is not a variable riskstream reads (it changes nothing)")
        load_settings(config, env=env)  # all together: valid values
    assert {"RISKSTREAM_KAFKA_BOOTSTRAP", "RISKSTREAM_DATABASE_URL"} <= names
    # The check notices a misspelt name: it changes nothing.
    assert load_settings(config, env={"RISKSTREAM_KAFKA_BOOTSTRAPS": "x:1"}).data == base.data


def test_mounted_config_loads_and_matches_the_topics_kafka_init_creates(compose):
    engine = compose["services"]["engine"]
    mounted = _mounts(engine)["/etc/riskstream/riskstream.toml"]
    assert mounted == (DOCKER / "riskstream.toml").resolve()
    settings = load_settings(mounted, env=_env(engine))
    k = settings.kafka
    init = "\n".join(_command(compose["services"]["kafka-init"]))
    for key in ("orders_topic", "logins_topic", "labels_topic", "alerts_topic", "dead_letter_topic"):
        assert f" {k[key]} " in f" {init.replace(';', ' ')} ", f"kafka-init does not create {k[key]} ({key})"
    assert settings.metrics["port"] > 0
    assert f":{settings.metrics['port']}/healthz" in " ".join(engine["healthcheck"]["test"])
    # The state directory is a volume shared by the replicas, so a partition that moves keeps its checkpoint.
    assert f"engine-state:{settings.state['dir']}" in engine["volumes"]


def test_two_engine_replicas_in_one_group_next_to_kraft_kafka_and_postgres(compose):
    services = compose["services"]
    engine = services["engine"]
    assert engine["deploy"]["replicas"] == 2
    assert "--group-id" not in _command(engine), "both replicas must use the one group of the config"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = _env(kafka)
    assert set(kenv["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft, combined node
    advertised = kenv["KAFKA_ADVERTISED_LISTENERS"].split(",")
    bootstrap = _env(engine)["RISKSTREAM_KAFKA_BOOTSTRAP"]
    assert any(a.split("://", 1)[1] == bootstrap for a in advertised), "engines must use an advertised one"
    assert services["postgres"]["image"].startswith("postgres:")
    penv = _env(services["postgres"])
    url = _env(engine)["RISKSTREAM_DATABASE_URL"]
    assert url == (f"postgresql+psycopg://{penv['POSTGRES_USER']}:{penv['POSTGRES_PASSWORD']}@postgres:5432/"
                   f"{penv['POSTGRES_DB']}")
    for name in ("engine", "subscriber", "simulator"):
        assert services[name].get("init") is True, f"{name}: SIGTERM must reach the CLI (init: true)"
        assert "kafka-init" in services[name]["depends_on"]
