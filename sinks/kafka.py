"""Kafka sinks: alerts to the alerts topic and refused records to the dead-letter topic.

:class:`KafkaAlertSink` publishes alerts (key = entity, value = the alert JSON, headers ``schema_version`` and
``alert_id``); :class:`KafkaDeadLetterSink` publishes refused records (value = the original bytes, headers
``reason`` and the source topic/partition/offset). Both buffer in ``add``; ``flush`` sends everything, calls
``producer.flush()`` and checks every delivery; a failed delivery raises :class:`~sinks.errors.SinkError` and
keeps the buffer, so the checkpoint that asked for the flush is aborted and retried.

Delivery through these two sinks is at least once: a retried flush or a replay after a crash may publish an
alert again (same ``alert_id`` header); subscribers de-duplicate on it. The producer is built by the caller
(riskstream's ``stream.kafka.client.make_producer`` makes an idempotent one with ``acks="all"``).

:class:`KafkaTransaction` is the exactly-once path (``kafka.exactly_once``): one transactional producer per
partition unit sends the unit's alerts and dead letters, and :meth:`KafkaTransaction.commit` adds the input
offsets they answer for and commits the lot in one Kafka transaction. ``read_committed`` readers see a
checkpoint's records all or none, and never those of an aborted or fenced transaction.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sinks.alert import SCHEMA_VERSION, Alert
from sinks.base import BatchSink
from sinks.deadletter import DeadLetter
from sinks.errors import Fenced, SinkError

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import; not our code
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaProducer

__all__ = ["KafkaAlertSink", "KafkaDeadLetterSink", "KafkaTransaction", "MAX_DEAD_LETTER_BYTES", "alert_record",
           "dead_letter_record", "dead_letter_headers", "split_source"]

log = logging.getLogger("riskstream.sinks.kafka")
T = TypeVar("T")

#: Largest value a dead-letter record may carry; a larger original is truncated (header ``truncated_from``).
MAX_DEAD_LETTER_BYTES = 1_000_000
#: What a dead letter the broker refuses as too large is cut to.
CUT_DEAD_LETTER_BYTES = 64 * 1024


def alert_record(alert: Alert) -> dict[str, Any]:
    """The ``send`` arguments of an alert: key = :attr:`Alert.entity_key`, value = :meth:`Alert.to_json`, headers
    ``schema_version`` and ``alert_id``."""
    return {"key": alert.entity_key.encode(), "value": alert.to_json(),
            "headers": [("schema_version", str(SCHEMA_VERSION).encode()), ("alert_id", alert.alert_id.encode())]}


def dead_letter_headers(record: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers a dead letter is published with: ``reason``, ``source``, and ``source_topic``,
    ``source_partition``, ``source_offset`` when known."""
    topic, partition = split_source(record.source)
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


def dead_letter_record(record: DeadLetter, cut: int = 0) -> dict[str, Any]:
    """The ``send`` arguments of a dead letter: value = the original bytes (over :data:`MAX_DEAD_LETTER_BYTES`, or
    ``cut`` when given, truncated with a ``truncated_from`` header), key = its source."""
    headers = dead_letter_headers(record)
    value = record.raw
    if cut or len(value) > MAX_DEAD_LETTER_BYTES:
        cut = cut or MAX_DEAD_LETTER_BYTES
        headers.append(("truncated_from", str(len(value)).encode()))
        value = value[:cut]
    return {"key": record.source.encode("utf-8", "backslashreplace"), "value": value, "headers": headers}


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
        return self.producer.send(self.topic, **alert_record(alert))

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

    headers = staticmethod(dead_letter_headers)

    def _send(self, item: DeadLetter | tuple[DeadLetter, int]) -> Any:
        record, cut = item if isinstance(item, tuple) else (item, 0)
        return self.producer.send(self.topic, **dead_letter_record(record, cut))

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
            return (item, CUT_DEAD_LETTER_BYTES)
        return None

    def __repr__(self) -> str:
        return f"KafkaDeadLetterSink(topic={self.topic!r}, pending={self.pending})"


def split_source(source: str) -> tuple[str | None, int | None]:
    """``kafka:orders/3`` -> (``orders``, 3); anything else -> (None, None).

    >>> split_source("kafka:orders/3"), split_source("events.jsonl")
    (('orders', 3), (None, None))
    """
    if not source.startswith("kafka:"):
        return None, None
    topic, _, part = source[len("kafka:") :].rpartition("/")
    try:
        return topic, int(part)
    except ValueError:
        return None, None


# --- exactly once: one transaction per checkpoint -----------------------------------------------------------


def _bounded(call: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Run ``call`` (a kafka-python transactional call, which waits for the broker without a time limit) for at
    most ``timeout_s``; past it, a retriable :class:`SinkError` (the call goes on in its daemon thread, and the
    outcome is unknown until a new producer with the same transactional id is initialised)."""
    done = threading.Event()
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            raised.append(e)
        finally:
            done.set()

    threading.Thread(target=target, name=f"riskstream-txn-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise SinkError(f"kafka transaction: {what} not confirmed within {timeout_s:g} s", retriable=True)
    if raised:
        raise raised[0]


#: kafka-python errors that mean "another producer holds this transactional id now" (the broker's answer to
#: a zombie, and to a transaction it aborted after ``transaction_timeout_ms``).
_FENCED = tuple(getattr(kerrors, n) for n in ("ProducerFencedError", "InvalidProducerEpochError")
                if hasattr(kerrors, n))
#: Errors no new producer will get past (permissions, an old broker): the process stops.
_FATAL = tuple(getattr(kerrors, n) for n in ("TransactionalIdAuthorizationFailedError",
                                              "ClusterAuthorizationFailedError", "UnsupportedVersionError",
                                              "TopicAuthorizationFailedError") if hasattr(kerrors, n))


#: The group coordinator's answer to offsets sent with a member id or generation the group no longer has
#: (KIP-447): this member was evicted (a stall past the session timeout) or the group rebalanced since the
#: unit was claimed. kafka-python reports it as a ``CommitFailedError`` naming the broker's error. Retrying
#: would re-open the unit's transactional id and fence its new owner, so it is treated as fenced: the unit is
#: dropped and the next rebalance says who owns it.
_GROUP_MOVED_ON = ("UnknownMemberIdError", "IllegalGenerationError", "FencedInstanceIdError")


def _transaction_error(e: BaseException, what: str) -> SinkError:
    if isinstance(e, SinkError):
        return e
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, _FENCED) or any(n.__name__ in text for n in _FENCED):
        return Fenced(f"kafka transaction {what}: fenced ({text})")
    if isinstance(e, kerrors.KafkaError) and any(n in text for n in _GROUP_MOVED_ON):
        return Fenced(f"kafka transaction {what}: the consumer group moved on without this member ({text})")
    return SinkError(f"kafka transaction {what}: {text}", retriable=not isinstance(e, _FATAL))


class KafkaTransaction:
    """A partition unit's alerts and dead letters, and the input offsets they answer for, committed in one
    Kafka transaction per checkpoint.

    :meth:`add` and :meth:`add_dead_letter` send at once (a transaction is begun on the first record); each
    checkpoint calls :meth:`commit` with the unit's next input offsets, which flushes, checks every delivery,
    adds the offsets to the transaction (``send_offsets_to_transaction``) and commits it. Either everything of
    the checkpoint becomes visible to ``read_committed`` readers together with the offsets, or nothing does.

    After a failed :meth:`commit` the producer is not used again: :meth:`close` it and open a new one with the
    same transactional id, whose :meth:`init` aborts whatever the old one left open (or waits for a commit it
    had begun) and fences it. :class:`~sinks.errors.Fenced` says another producer took the id first.

    Parameters
    ----------
    producer
        A :class:`KafkaProducer` with ``transactional_id`` set (see ``stream.outputs.TransactionalOutputs``).
    alerts_topic, dead_letter_topic
        Where alerts and dead letters go (``""``: not published).
    timeout_s
        Longest wait for the flush and for each transactional call of :meth:`commit`.
    cut_dead_letters
        ``(source, position)`` of dead letters the broker refused as too large; shared between the transactions
        of one process so that a dead letter that made a transaction fail is sent cut to 64 KiB when its unit is
        processed again (a refused record aborts the whole transaction).
    """

    def __init__(self, producer: KafkaProducer, *, alerts_topic: str = "", dead_letter_topic: str = "",
                 timeout_s: float = 30.0, cut_dead_letters: set[tuple[str, int | None]] | None = None) -> None:
        self.producer = producer
        self.transactional_id = str(producer.config.get("transactional_id"))
        self.alerts_topic = alerts_topic
        self.dead_letter_topic = dead_letter_topic
        self.timeout_s = float(timeout_s)
        self.cut = cut_dead_letters if cut_dead_letters is not None else set()
        #: A transaction is open (records were sent since the last commit).
        self.open = False
        self._futures: list[tuple[DeadLetter | None, Any]] = []
        self._failed: BaseException | None = None
        self._closed = False

    def init(self) -> None:
        """``init_transactions``: fence every older producer with this transactional id and abort (or finish)
        the transaction it left open. Raises :class:`SinkError`."""
        try:
            self.producer.init_transactions()  # bounded by the producer's max_block_ms
        except (kerrors.KafkaError, SinkError) as e:
            raise _transaction_error(e, "init") from e

    def _send(self, topic: str, item: DeadLetter | None, record: dict[str, Any]) -> None:
        if self._failed is not None:
            return  # the commit reports it; nothing sent now could be committed anyway
        try:
            if not self.open:
                self.producer.begin_transaction()
                self.open = True
            self._futures.append((item, self.producer.send(topic, **record)))
        except (kerrors.KafkaError, ValueError, TypeError) as e:
            self._failed = e

    def add(self, alert: Alert) -> None:
        """Send an alert in the open transaction (begun if needed)."""
        if self.alerts_topic:
            self._send(self.alerts_topic, None, alert_record(alert))

    def add_dead_letter(self, record: DeadLetter) -> None:
        """Send a dead letter in the open transaction (cut to 64 KiB if it once made a transaction fail)."""
        if self.dead_letter_topic:
            cut = CUT_DEAD_LETTER_BYTES if (record.source, record.position) in self.cut else 0
            self._send(self.dead_letter_topic, record, dead_letter_record(record, cut))

    def commit(self, offsets: Mapping[Any, Any], group_metadata: Any) -> None:
        """Flush, check every delivery, add ``offsets`` ({TopicPartition: OffsetAndMetadata}) for the consumer
        group ``group_metadata`` (``KafkaConsumer.group_metadata()``, or the group id) and commit.

        Raises :class:`~sinks.errors.Fenced` when another producer holds the transactional id, else
        :class:`SinkError`; either way nothing of this transaction is committed, unless the commit itself timed
        out (then the outcome is settled by the next producer's :meth:`init`).
        """
        try:
            if self._failed is not None:
                raise self._failed
            if not self.open:
                if not offsets:
                    return
                self.producer.begin_transaction()
                self.open = True
            self.producer.flush(timeout=self.timeout_s)
            for _, fut in self._futures:
                if not fut.succeeded():
                    raise fut.exception if fut.is_done else kerrors.KafkaTimeoutError("delivery not confirmed")
            if offsets:
                _bounded(lambda: self.producer.send_offsets_to_transaction(dict(offsets), group_metadata),
                         self.timeout_s, "send_offsets_to_transaction")
            _bounded(self.producer.commit_transaction, self.timeout_s, "commit_transaction")
        except (kerrors.KafkaError, SinkError, ValueError, TypeError) as e:
            self._failed = self._failed or e
            self._note_too_large()
            raise _transaction_error(e, "commit") from e
        self.open = False
        self._futures.clear()

    def _note_too_large(self) -> None:
        """Remember the dead letters the broker refused as too large (sent cut next time)."""
        for item, fut in self._futures:
            if item is not None and fut.is_done and isinstance(
                    fut.exception, kerrors.MessageSizeTooLargeError | kerrors.RecordListTooLargeError):
                log.warning("dead letter from %s offset %s is too large for the broker; the transaction is aborted "
                            "and the record will be sent cut to 64 KiB", item.source, item.position)
                self.cut.add((item.source, item.position))

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the producer without committing; an open transaction is aborted by the broker (after
        ``transaction_timeout_ms``) or at once by the next producer's :meth:`init`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.producer.close(timeout=timeout_s)
        except Exception as e:  # noqa: BLE001 - best effort; the broker settles the transaction
            log.info("closing transactional producer %s: %s: %s", self.transactional_id, type(e).__name__, e)

    def __repr__(self) -> str:
        return f"KafkaTransaction(id={self.transactional_id!r}, open={self.open}, pending={len(self._futures)})"
