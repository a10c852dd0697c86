"""Kafka plumbing for the runtime: client construction from settings and record decoding.

- :func:`consumer_config` / :func:`make_consumer` / :func:`make_producer` build kafka-python clients from the
  ``[kafka]`` settings section (manual commits, range assignment, idempotent producer with ``acks="all"``).
- :func:`decode_record` turns one consumed record into an :class:`~stream.events.Event` or a
  :class:`~sinks.deadletter.DeadLetter` carrying the reason and the original bytes.

The Kafka sinks live in :mod:`sinks.kafka`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from sinks.deadletter import DeadLetter
from sinks.kafka import MAX_DEAD_LETTER_BYTES
from stream.config import Settings
from stream.errors import ConfigError, InvalidEvent, SourceError
from stream.events import Event, Provenance, decode

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import; not our code
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.coordinator.assignors.range import RangePartitionAssignor

__all__ = [
    "input_topics",
    "consumer_config",
    "producer_config",
    "make_consumer",
    "make_producer",
    "decode_record",
    "partition_count",
    "release_parked_fetches",
    "rescue_lost_join",
    "prime_group_metadata",
    "TopicPartition",
    "KAFKA_ERRORS",
    "header_dict",
    "unreachable",
    "DEFAULT_BOOTSTRAP_TIMEOUT_MS",
]

log = logging.getLogger("riskstream.kafka")

#: Errors of the Kafka client library (connection, timeout, broker responses).
KAFKA_ERRORS: tuple[type[BaseException], ...] = (kerrors.KafkaError,)
#: How long a client waits for a first broker to answer before giving up (``kafka.bootstrap_timeout_ms``; the
#: client library's own default is 30 s). Where no settings are at hand (``label export --kafka``), this.
DEFAULT_BOOTSTRAP_TIMEOUT_MS = 10_000


def unreachable(servers: str | Sequence[str], error: BaseException, timeout_ms: int | None = None) -> SourceError:
    """The one-line error for a client that could not reach ``servers``: ``Kafka at HOST:PORT is unreachable:
    ...`` when no broker answered, else ``Kafka at HOST:PORT: <error>``. Retriable: a broker that is down now
    may be up later (a wrong address looks the same from here, so it is not called a configuration error)."""
    where = servers if isinstance(servers, str) else ",".join(servers)
    text = str(error).strip() or type(error).__name__
    unreachable_types = tuple(getattr(kerrors, n) for n in ("NoBrokersAvailable", "KafkaConnectionError")
                              if hasattr(kerrors, n))  # the first is gone from kafka-python 3
    if isinstance(error, unreachable_types) or (
            isinstance(error, kerrors.KafkaTimeoutError) and "bootstrap" in text.lower()):
        within = f" within {timeout_ms / 1000:g} s" if timeout_ms else ""
        return SourceError(f"Kafka at {where} is unreachable: no broker answered{within} ({type(error).__name__}; "
                           "check kafka.bootstrap_servers / --bootstrap, and that the broker runs)", retriable=True)
    return SourceError(f"Kafka at {where}: {type(error).__name__}: {text}", retriable=True)


def input_topics(settings: Settings) -> tuple[str, ...]:
    """The input topics in configuration order (orders, logins, labels); empty names are left out.

    The order is part of the merge rule: events with equal timestamps are processed in this topic order.
    """
    k = settings.kafka
    out: list[str] = []
    for key in ("orders_topic", "logins_topic", "labels_topic"):
        name = str(k.get(key) or "")
        if name and name not in out:
            out.append(name)
    if not out:
        raise ConfigError(
            "kafka: no input topic configured (kafka.orders_topic / logins_topic / labels_topic)"
        )
    return tuple(out)


#: kafka-python's own default is 100 ms; a first transactional commit waits twice for it while the producer looks
#: up the consumer group's coordinator (bench/README.md).
DEFAULT_RETRY_BACKOFF_MS = 20


def _common(settings: Settings, bootstrap: str | None) -> dict[str, Any]:
    k = settings.kafka
    servers = bootstrap or str(k["bootstrap_servers"])
    backoff = k.get("retry_backoff_ms", DEFAULT_RETRY_BACKOFF_MS)
    if isinstance(backoff, bool) or not isinstance(backoff, int) or not 1 <= backoff <= 60_000:
        raise ConfigError(f"kafka.retry_backoff_ms must be an integer from 1 to 60000, got {backoff!r}")
    return {
        "bootstrap_servers": [s.strip() for s in servers.split(",") if s.strip()],
        "client_id": str(k.get("client_id") or "riskstream"),
        "bootstrap_timeout_ms": int(k.get("bootstrap_timeout_ms") or DEFAULT_BOOTSTRAP_TIMEOUT_MS),
        "retry_backoff_ms": backoff,
    }


def consumer_config(
    settings: Settings, *, group_id: str | None, bootstrap: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """KafkaConsumer arguments: manual commits, range assignment (co-partitioned topics stay together)."""
    k = settings.kafka
    cfg = _common(settings, bootstrap)
    cfg.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=str(k.get("auto_offset_reset", "earliest")),
        max_poll_records=int(k["max_poll_records"]),
        allow_auto_create_topics=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    if group_id is not None:
        cfg.update(
            session_timeout_ms=int(k["session_timeout_ms"]),
            heartbeat_interval_ms=int(k["heartbeat_interval_ms"]),
            max_poll_interval_ms=int(k.get("max_poll_interval_ms", 300_000)),
        )
    cfg.update(overrides)
    return cfg


def producer_config(settings: Settings, *, bootstrap: str | None = None, **overrides: Any) -> dict[str, Any]:
    """KafkaProducer arguments: idempotent, ``acks="all"`` (delivery confirmed by every in-sync replica)."""
    cfg = _common(settings, bootstrap)
    cfg.update(
        acks="all", enable_idempotence=True, linger_ms=5, max_request_size=MAX_DEAD_LETTER_BYTES + 48_576
    )
    cfg.update(overrides)
    return cfg


def make_consumer(
    settings: Settings, *, group_id: str | None, bootstrap: str | None = None, core_parsing: bool = True,
    **overrides: Any
) -> KafkaConsumer:
    """A connected :class:`KafkaConsumer`; an unreachable broker is a retriable :class:`SourceError`. With
    ``core_parsing`` its fetched batches' records are parsed by the compiled core (:mod:`stream.kafka.fastparse`;
    kafka-python's own parsing when its fetcher is not the one that module knows); without, kafka-python's own
    (the baseline ``riskstream bench --kafka`` measures)."""
    consumer = _connect(KafkaConsumer, consumer_config(settings, group_id=group_id, bootstrap=bootstrap, **overrides))
    if core_parsing:
        from stream.kafka.fastparse import install

        install(consumer)
    return consumer


def make_producer(settings: Settings, *, bootstrap: str | None = None, **overrides: Any) -> KafkaProducer:
    """A connected idempotent :class:`KafkaProducer`."""
    return _connect(KafkaProducer, producer_config(settings, bootstrap=bootstrap, **overrides))


def _connect(client: Any, cfg: dict[str, Any]) -> Any:
    """``client(**cfg)``: a bad setting is a :class:`ConfigError`, an unreachable broker one line of
    :func:`unreachable`."""
    try:
        return client(**cfg)
    except kerrors.KafkaConfigurationError as e:
        raise ConfigError(f"kafka: {e}") from None
    except kerrors.KafkaError as e:  # kafka-python 3 raises KafkaTimeoutError("Unable to bootstrap ...")
        raise unreachable(cfg["bootstrap_servers"], e, cfg.get("bootstrap_timeout_ms")) from e


def release_parked_fetches(consumer: KafkaConsumer) -> None:
    """Work around a kafka-python 3.0 fetcher bug that starves a paused-then-resumed partition forever.

    When a partition is paused while its fetched records are being handed out, the fetcher parks them
    (``_paused_partition_records``, from KAFKA-7548) and excludes the partition from further fetches until
    they are restored; it restores them only when its in-line slot (``_next_partition_records``) is ``None``,
    but a
    fully consumed slot keeps a drained object instead of ``None``. So a resumed partition is never fetched
    again. Clearing a drained slot before each ``poll()`` lets the fetcher restore parked records (it then
    checks their offset against the position as usual). Does nothing on a client without these attributes.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    slot = getattr(fetcher, "_next_partition_records", None)
    if slot is not None and not slot and getattr(fetcher, "_paused_partition_records", None):
        fetcher._next_partition_records = None  # type: ignore[union-attr]


def prime_group_metadata(consumer: KafkaConsumer) -> None:
    """Give a just-subscribed consumer's group coordinator the topic metadata the client already holds.

    kafka-python 3.0 builds the coordinator's metadata snapshot when the consumer is created (nothing subscribed
    then) and refreshes it only on the next metadata response; the first join, in the first ``poll()``, records
    that empty snapshot as the one its assignment used, and the metadata response that follows starts a second
    rebalance at every start (a revoke, a checkpoint, every transaction opened again). Called after
    ``subscribe()`` once the topics' partitions are known (:func:`check_copartitioned` fetched them), the first
    join uses the real snapshot. Does nothing on a client without these attributes."""
    coord = getattr(consumer, "_coordinator", None)
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    update = getattr(coord, "_handle_metadata_update", None)
    if cluster is not None and callable(update):
        update(cluster)


def rescue_lost_join(consumer: KafkaConsumer) -> bool:
    """Work around a kafka-python 3.0 coordinator bug that leaves a member without partitions for good.

    A rebalance that the group leader starts because its metadata snapshot changed (``need_rejoin()`` is true
    while ``rejoin_needed`` is false) loses its own result when a ``poll()`` times out while the JoinGroup /
    SyncGroup round trip is in flight: computing the assignment makes the snapshots equal again, so the next
    ``poll()`` sees ``need_rejoin()`` false and never awaits the finished join; the assignment is never applied,
    the assign listener never runs, heartbeats stay disabled and the broker evicts the member a session later,
    unnoticed. Seen under CPU load on the second (metadata) rebalance after a start, with nothing assigned for
    minutes. The state it leaves is exact: REBALANCING, no join in flight, no rejoin wanted. Asking to rejoin
    makes the next ``poll()`` join again (from scratch, with a new JoinGroup). Returns True if it did.
    Does nothing on a client without these attributes."""
    coord = getattr(consumer, "_coordinator", None)
    if coord is None or getattr(coord, "state", None) != "<rebalancing>":
        return False
    task = getattr(coord, "_join_task", False)
    if task is False or (task is not None and not task.is_done):
        return False  # a join in flight: poll() awaits it
    if not hasattr(coord, "request_rejoin") or coord.need_rejoin():
        return False
    coord.request_rejoin()
    return True


def partition_count(consumer: KafkaConsumer, topic: str) -> int:
    """Number of partitions of ``topic`` (0 if it does not exist)."""
    return len(consumer.partitions_for_topic(topic) or ())


def decode_record(topic: str, partition: int, offset: int, value: bytes | None) -> Event | DeadLetter:
    """The event a record holds, or a dead letter saying why it holds none (source ``kafka:<topic>/<p>``)."""
    if value is None:
        return DeadLetter("$: record has no value (tombstone)", b"", f"kafka:{topic}/{partition}", offset)
    try:
        return decode(value, Provenance(topic, partition, offset))
    except InvalidEvent as e:
        return DeadLetter(str(e), value, f"kafka:{topic}/{partition}", offset)


def header_dict(headers: Sequence[tuple[str, bytes]] | None) -> Mapping[str, bytes]:
    """Record headers as a dict (the last value of a repeated key wins)."""
    return {k: v for k, v in (headers or ())}
