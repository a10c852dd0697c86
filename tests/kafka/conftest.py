"""Fixtures of the Kafka integration tests: a real broker, unique co-partitioned topics, simulated input, an
alert store, ``riskstream run`` processes, and readers for what they leave behind (alerts topic, store,
offsets).

The broker comes from, in order: ``RISKSTREAM_KAFKA_BOOTSTRAP``; testcontainers' KafkaContainer when a Docker
engine answers (``docker info``); else ``scripts/services up``. Tests are never skipped for want of a broker.
The alert store is a private schema of the PostgreSQL in ``RISKSTREAM_DATABASE_URL`` when set, else SQLite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers are shared with the fault suite (stream/bench/faults.py); re-exported for the tests' imports.
from stream.bench.harness import *  # noqa: F401,F403
from stream.bench.harness import (
    SERVICES,
    Broker,
    RunProcess,
    Scenario,
    Topics,
    container_broker,
    delete_topics,
    docker_answers,
    make_topics,
    private_schema,
    private_services_broker,
    services_env,
)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """The session's broker (see the module docstring)."""
    if boot := os.environ.get("RISKSTREAM_KAFKA_BOOTSTRAP"):
        yield Broker(boot)
        return
    if docker_answers():
        broker = container_broker()
        try:
            yield broker
        finally:
            assert broker.stop is not None
            broker.stop()
        return
    subprocess.run([str(SERVICES), "up"], check=True, timeout=900)
    yield Broker(services_env()["RISKSTREAM_KAFKA_BOOTSTRAP"])


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture()
def restartable_broker(kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker this test may restart: the session's container, or a private one from ``scripts/services``."""
    if kafka_broker.restart is not None:
        yield kafka_broker
        return
    root = tmp_path_factory.mktemp("private-kafka")
    broker = private_services_broker(root)
    try:
        yield broker
    finally:
        assert broker.stop is not None
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    t = make_topics(kafka_bootstrap)
    yield t
    delete_topics(kafka_bootstrap, t)


@pytest.fixture()
def alert_db(tmp_path: Path) -> Iterator[str]:
    """A private alert store: a new schema of the PostgreSQL in RISKSTREAM_DATABASE_URL, else SQLite."""
    with private_schema(os.environ.get("RISKSTREAM_DATABASE_URL"), tmp_path) as url:
        yield url


@pytest.fixture()
def processes() -> Iterator[list[RunProcess]]:
    """Processes started by a test; any still running at the end are killed."""
    procs: list[RunProcess] = []
    yield procs
    for p in procs:
        if p.alive:
            assert p.proc is not None
            p.proc.kill()
            p.proc.wait()


@pytest.fixture()
def scenario(
    kafka_bootstrap: str, alert_db: str, tmp_path: Path, processes: list[RunProcess]
) -> Iterator[Callable[..., Scenario]]:
    """``scenario(events=..., seed=..., bootstrap=None, poison=(), **kafka_settings) -> Scenario``."""
    made: list[Scenario] = []

    def make(*, bootstrap: str | None = None, **kwargs: Any) -> Scenario:
        sc = Scenario(tmp_path, bootstrap or kafka_bootstrap, alert_db, processes, **kwargs)
        made.append(sc)
        return sc

    yield make
    for p in processes:
        if p.alive:
            assert p.proc is not None
            p.proc.kill()
            p.proc.wait()
    for sc in made:
        sc.close()
