"""Kafka sinks: alerts to the alerts topic and refused records to the dead-letter topic.

:class:`KafkaAlertSink` publishes alerts (key = entity, value = the alert JSON, headers ``schema_version`` and
``alert_id``); :class:`KafkaDeadLetterSink` publishes refused records (value = the original bytes, headers
``reason`` and the source topic/partition/offset). Both buffer in ``add``; ``flush`` sends everything, calls
``producer.flush()`` and checks every delivery; a failed delivery raises :class:`~sinks.errors.SinkError` and
keeps the buffer, so the checkpoint that asked for the flush is aborted and retried.

Delivery is at least once: a retried flush or a replay after a crash may publish an alert again (same
``alert_id`` header); subscribers de-duplicate on it. The producer is built by the caller (riskstream's
``stream.kafka.client.make_producer`` makes an idempotent one with ``acks="all"``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sinks.alert import SCHEMA_VERSION, Alert
from sinks.base import BatchSink
from sinks.deadletter import DeadLetter
from sinks.errors import SinkError

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import; not our code
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaProducer

__all__ = ["KafkaAlertSink", "KafkaDeadLetterSink", "MAX_DEAD_LETTER_BYTES"]

log = logging.getLogger("riskstream.sinks.kafka")
T = TypeVar("T")

#: Largest value a dead-letter record may carry; a larger original is truncated (header ``truncated_from``).
MAX_DEAD_LETTER_BYTES = 1_000_000


def _deliver(
    producer: KafkaProducer,
    topic: str,
    items: Sequence[Any],
    send: Callable[[Any], Any],
    timeout_s: float,
    fallback: Callable[[Any, BaseException], Any | None] | None = None,
) -> None:
    """Send every item, flush the producer, and check that every delivery was confirmed.

    An unconfirmed delivery raises :class:`SinkError` (retriable when the cause is), unless ``fallback`` turns
    the item into a replacement to deliver instead.
    """
    futures = []
    try:
        for item in items:
            futures.append((item, send(item)))
        producer.flush(timeout=timeout_s)
    except kerrors.KafkaError as e:
        raise SinkError(f"kafka topic {topic}: {type(e).__name__}: {e}", retriable=_retriable(e)) from e
    except (ValueError, TypeError) as e:  # kafka-python checks topic names and value types in send()
        raise SinkError(f"kafka topic {topic}: {e}") from e
    again = []
    for item, fut in futures:
        if fut.succeeded():
            continue
        exc = fut.exception if fut.is_done else kerrors.KafkaTimeoutError("delivery not confirmed")
        replacement = fallback(item, exc) if fallback is not None else None
        if replacement is None:
            raise SinkError(
                f"kafka topic {topic}: delivery failed: {type(exc).__name__}: {exc}",
                retriable=_retriable(exc),
            )
        again.append(replacement)
    if again:
        _deliver(producer, topic, again, send, timeout_s)


def _retriable(e: BaseException) -> bool:
    return isinstance(e, kerrors.RetriableError | kerrors.KafkaConnectionError) or bool(
        getattr(e, "retriable", False)
    )


class _ProducerSink(BatchSink[T]):
    """What both Kafka sinks share: a producer and a topic; closing flushes, then closes the producer if the
    sink owns it. Parameters are those of :class:`KafkaAlertSink`."""

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        *,
        flush_timeout_s: float = 30.0,
        owns_producer: bool = False,
    ) -> None:
        if not topic:
            raise ValueError("topic must not be empty")
        super().__init__()
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = float(flush_timeout_s)
        self.owns_producer = owns_producer
        self._closed = False

    def close(self) -> None:
        """Flush, then close the producer if the sink owns it; a second close does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self.owns_producer:
                self.producer.close(timeout=self.flush_timeout_s)


class KafkaAlertSink(_ProducerSink[Alert]):
    """Publish alerts to a Kafka topic: key = :attr:`Alert.entity_key`, value = :meth:`Alert.to_json`, headers
    ``schema_version`` and ``alert_id``.

    Parameters
    ----------
    producer
        An idempotent producer (see :func:`make_producer`).
    topic
        The alerts topic.
    flush_timeout_s
        Longest wait for delivery confirmations in :meth:`flush`; unconfirmed deliveries raise a retriable
        :class:`SinkError` and keep the buffer.
    owns_producer
        Close ``producer`` when the sink is closed.
    """

    def _send(self, alert: Alert) -> Any:
        return self.producer.send(
            self.topic,
            key=alert.entity_key.encode(),
            value=alert.to_json(),
            headers=[("schema_version", str(SCHEMA_VERSION).encode()), ("alert_id", alert.alert_id.encode())],
        )

    def write_batch(self, alerts: Sequence[Alert]) -> None:
        _deliver(self.producer, self.topic, alerts, self._send, self.flush_timeout_s)

    def __repr__(self) -> str:
        return f"KafkaAlertSink(topic={self.topic!r}, pending={self.pending})"


class KafkaDeadLetterSink(_ProducerSink[DeadLetter]):
    """Publish refused records to a dead-letter topic: value = the original bytes, key = the source
    (``kafka:<topic>/<partition>``), headers ``reason``, ``source``, ``source_topic``, ``source_partition``
    and ``source_offset``.

    A record the broker refuses as too large is re-sent cut to 64 KiB with a ``truncated_from`` header, so one
    giant poison record cannot block checkpoints forever. Parameters are those of :class:`KafkaAlertSink`.
    """

    def write_batch(self, records: Sequence[DeadLetter]) -> None:
        _deliver(self.producer, self.topic, records, self._send, self.flush_timeout_s, self._fallback)

    @staticmethod
    def headers(record: DeadLetter) -> list[tuple[str, bytes]]:
        """The headers a dead letter is published with."""
        topic, partition = _split_source(record.source)
        out = [
            ("reason", record.reason.encode("utf-8", "backslashreplace")),
            ("source", record.source.encode("utf-8", "backslashreplace")),
        ]
        if topic is not None:
            out.append(("source_topic", topic.encode("utf-8", "backslashreplace")))
            out.append(("source_partition", str(partition).encode()))
        if record.position is not None:
            out.append(("source_offset", str(record.position).encode()))
        return out

    def _send(self, item: DeadLetter | tuple[DeadLetter, int]) -> Any:
        record, cut = item if isinstance(item, tuple) else (item, 0)
        headers = self.headers(record)
        value = record.raw
        if cut or len(value) > MAX_DEAD_LETTER_BYTES:
            cut = cut or MAX_DEAD_LETTER_BYTES
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:cut]
        return self.producer.send(
            self.topic, key=record.source.encode("utf-8", "backslashreplace"), value=value, headers=headers
        )

    @staticmethod
    def _fallback(
        item: DeadLetter | tuple[DeadLetter, int], exc: BaseException
    ) -> tuple[DeadLetter, int] | None:
        if isinstance(item, DeadLetter) and isinstance(
            exc, kerrors.MessageSizeTooLargeError | kerrors.RecordListTooLargeError
        ):
            log.warning(
                "dead letter from %s offset %s is too large for the broker; sending its first 64 KiB",
                item.source,
                item.position,
            )
            return (item, 64 * 1024)
        return None

    def __repr__(self) -> str:
        return f"KafkaDeadLetterSink(topic={self.topic!r}, pending={self.pending})"


def _split_source(source: str) -> tuple[str | None, int | None]:
    """``kafka:orders/3`` -> (``orders``, 3); anything else -> (None, None)."""
    if not source.startswith("kafka:"):
        return None, None
    topic, _, part = source[len("kafka:") :].rpartition("/")
    try:
        return topic, int(part)
    except ValueError:
        return None, None
