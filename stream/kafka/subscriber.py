"""Read the alerts topic: :class:`AlertSubscriber`, an iterator of :class:`~sinks.alert.Alert` for tools.

The subscriber reads with ``isolation_level="read_committed"`` by default: with ``kafka.exactly_once`` (the
default) ``riskstream run`` publishes each checkpoint's alerts in one Kafka transaction, so a committed reader
sees every alert exactly once and never those of a transaction aborted by a crash or a fenced zombie.
``read_committed=False`` also shows records of open and aborted transactions (for debugging). With
``exactly_once = false`` the topic is at least once: a checkpoint retried after a failed flush, or a restart
after a crash, publishes some alerts again (same ``alert_id``). Either way the subscriber drops repeats it has
seen within a bounded window of recent ids, without unbounded memory.

Without ``group_id`` the subscriber reads every partition on its own (no offsets are stored): from the end of
the topic, or from its beginning with ``from_beginning=True``. With ``group_id`` it joins that consumer group
(partitions are shared with the other members) and commits the offsets of the alerts it has handed out; a
group that has committed offsets resumes there, and ``from_beginning`` only decides where a group without them
starts.

Example (needs a broker)::

    with AlertSubscriber("127.0.0.1:9092", "risk-alerts", severity="high") as sub:
        for alert in sub:
            print(alert.severity, alert.entity_key, alert.score)
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from sinks.alert import SEVERITIES, Alert
from stream.errors import SourceError

with warnings.catch_warnings():  # kafka-python 3.0 deprecates parts of itself on import; not our code
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kerrors
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from stream.kafka.client import (
    DEFAULT_BOOTSTRAP_TIMEOUT_MS,
    prime_group_metadata,
    rescue_lost_join,
    unreachable,
)

__all__ = ["AlertSubscriber", "AlertFilter", "RecentIds"]

log = logging.getLogger("riskstream.subscriber")


class RecentIds:
    """A set of the ``capacity`` most recently added ids (the oldest is forgotten first).

    >>> seen = RecentIds(2)
    >>> seen.add("a"), seen.add("b"), seen.add("a"), seen.add("c"), seen.add("a")
    (True, True, False, True, False)
    >>> len(seen), "b" in seen
    (2, False)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already among the recent ids (then it becomes the newest)."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class AlertFilter:
    """Which alerts a reader wants: a minimum severity and/or one entity.

    Parameters
    ----------
    severity
        Minimum severity (``low`` < ``medium`` < ``high`` < ``critical``); None keeps every alert.
    entity
        ``KIND:ID`` (``user:u42``, ``device:d9``, ...): keep alerts that involve this entity, whether it is
        the alert's owning entity (:attr:`Alert.entity_key`, the message key) or any other of its entities.

    >>> from sinks.alert import Alert
    >>> a = Alert(alert_id="a", event_id="e", event_type="order", entities={"user": "u1", "device": "d9"},
    ...           event_ts=0.0, detected_at=0.0, score=0.9, severity="high", action="review", reasons=(),
    ...           detector_scores={}, config_hash="c")
    >>> AlertFilter("medium")(a), AlertFilter("critical")(a), AlertFilter(entity="device:d9")(a)
    (True, False, True)
    """

    def __init__(self, severity: str | None = None, entity: str | None = None) -> None:
        if severity is not None and severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        if entity is not None:
            kind, sep, ident = entity.partition(":")
            if not sep or not kind or not ident:
                raise ValueError(f"entity must be KIND:ID such as user:u42, not {entity!r}")
        self.severity = severity
        self.entity = entity
        self._min_rank = SEVERITIES.index(severity) if severity is not None else 0

    def __call__(self, alert: Alert) -> bool:
        if self.severity is not None:
            try:
                if SEVERITIES.index(alert.severity) < self._min_rank:
                    return False
            except ValueError:
                return False  # an unknown severity is not known to be at least the minimum
        if self.entity is not None and alert.entity_key != self.entity:
            kind, _, ident = self.entity.partition(":")
            if alert.entities.get(kind) != ident:
                return False
        return True


class AlertSubscriber:
    """Iterate over the alerts published to a Kafka alerts topic, de-duplicated and filtered.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers, ``host:port[,host:port...]``.
    topic
        The alerts topic (``kafka.alerts_topic``).
    group_id
        Join this consumer group and commit the offsets of alerts handed out (before the next fetch and on
        :meth:`close`); None reads every partition without storing offsets.
    from_beginning
        Start at the beginning of the topic instead of its end (with a group: only where the group has no
        committed offset).
    severity, entity
        Filters, see :class:`AlertFilter`.
    poll_timeout_ms
        Longest wait of one fetch; iteration blocks in steps of this length.
    idle_timeout_s
        Stop iterating after this many seconds without a new alert (None: iterate until :meth:`close`).
    dedup_window
        How many recent alert ids are remembered to drop repeats.
    read_committed
        Read only records of committed transactions (``isolation_level="read_committed"``, the default); False
        also returns those of open and aborted transactions.
    consumer_config
        Extra :class:`kafka.KafkaConsumer` arguments (timeouts, security settings).

    Attributes
    ----------
    received, duplicates, filtered, invalid
        Records read from the topic, repeats dropped, alerts left out by the filters, records that are not an
        alert (logged and skipped).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        group_id: str | None = None,
        from_beginning: bool = False,
        severity: str | None = None,
        entity: str | None = None,
        poll_timeout_ms: int = 500,
        idle_timeout_s: float | None = None,
        dedup_window: int = 100_000,
        read_committed: bool = True,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not topic:
            raise ValueError("topic must not be empty")
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.from_beginning = from_beginning
        self.filter = AlertFilter(severity, entity)
        self.poll_timeout_ms = int(poll_timeout_ms)
        self.idle_timeout_s = idle_timeout_s
        self.received = 0
        self.duplicates = 0
        self.filtered = 0
        self.invalid = 0
        self._seen = RecentIds(dedup_window)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._assigned = False
        self._topic_was_missing = False
        self._closed = False
        cfg: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in bootstrap.split(",") if s.strip()],
            "client_id": "riskstream-subscriber",
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest" if from_beginning else "latest",
            "bootstrap_timeout_ms": DEFAULT_BOOTSTRAP_TIMEOUT_MS,
            "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        }
        cfg.update(consumer_config or {})
        try:
            self._consumer = KafkaConsumer(**cfg)
        except kerrors.KafkaError as e:
            raise unreachable(bootstrap, e, cfg["bootstrap_timeout_ms"]) from e
        try:
            if group_id is not None:
                # the topic's metadata first, so that the group's first join uses it (prime_group_metadata): no
                # second rebalance right after the start, the one whose result kafka-python drops most often
                self._consumer.partitions_for_topic(topic)
                self._consumer.subscribe([topic])
                prime_group_metadata(self._consumer)
                self._assigned = True
            else:
                self._assign_all()
        except BaseException:
            self._consumer.close()
            raise

    # -- reading --------------------------------------------------------------------------------------------

    def _assign_all(self) -> None:
        """Assign every partition of the topic (once it exists) and seek to its start position."""
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            # Not created yet: all it will hold is newer than this subscriber, so read it from the start.
            self._topic_was_missing = True
            return
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        if self.from_beginning or self._topic_was_missing:
            self._consumer.seek_to_beginning(*tps)
        else:
            self._consumer.seek_to_end(*tps)
        for tp in tps:
            self._consumer.position(tp)  # resolve the start now: alerts published from here on are all seen
        self._assigned = True

    def _fetch(self, timeout_ms: int) -> list[tuple[TopicPartition, int, Alert | None]]:
        """One fetch: every record as ``(partition, next offset, alert or None when dropped)``."""
        if self._closed:
            raise SourceError("the subscriber is closed")
        if not self._assigned:
            self._assign_all()
            if not self._assigned:
                time.sleep(timeout_ms / 1000.0)
                return []
        self._commit()
        if self.group_id is not None and rescue_lost_join(self._consumer):
            # the kafka-python coordinator bug the runtime works around too: a group member whose join result
            # was lost would read nothing until restarted
            log.warning("kafka-python dropped the result of a rebalance; joining the group again")
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except kerrors.KafkaError as e:
            raise SourceError(f"Kafka topic {self.topic}: {type(e).__name__}: {e}",
                              retriable=isinstance(e, kerrors.RetriableError)) from e
        out: list[tuple[TopicPartition, int, Alert | None]] = []
        for tp in sorted(batches, key=lambda t: t.partition):
            for rec in batches[tp]:
                self.received += 1
                alert = self._decode(tp, rec)
                if alert is not None and not self._seen.add(alert.alert_id):
                    self.duplicates += 1
                    alert = None
                elif alert is not None and not self.filter(alert):
                    self.filtered += 1
                    alert = None
                out.append((tp, rec.offset + 1, alert))
        return out

    def _decode(self, tp: TopicPartition, rec: Any) -> Alert | None:
        try:
            return Alert.from_json(rec.value)
        except Exception as e:  # noqa: BLE001 - a malformed record is skipped with a reason, never a crash
            self.invalid += 1
            log.warning("skipping record %s/%s@%s: not an alert: %s: %s", tp.topic, tp.partition, rec.offset,
                        type(e).__name__, str(e)[:200])
            return None

    def _handed_out(self, tp: TopicPartition, next_offset: int) -> None:
        if self.group_id is not None:
            self._uncommitted[tp] = next_offset

    def poll(self, timeout_ms: int | None = None) -> list[Alert]:
        """Fetch once (waiting up to ``timeout_ms``, default ``poll_timeout_ms``) and return the new alerts
        that pass the filters, in partition then offset order; they count as handed out."""
        out: list[Alert] = []
        for tp, nxt, alert in self._fetch(self.poll_timeout_ms if timeout_ms is None else int(timeout_ms)):
            self._handed_out(tp, nxt)
            if alert is not None:
                out.append(alert)
        return out

    def __iter__(self) -> Iterator[Alert]:
        """Alerts as they arrive; ends on :meth:`close` or after ``idle_timeout_s`` without a new alert."""
        last_new = time.monotonic()
        while not self._closed:
            got = False
            for tp, nxt, alert in self._fetch(self.poll_timeout_ms):
                self._handed_out(tp, nxt)
                if alert is not None:
                    got = True
                    yield alert
                    if self._closed:
                        return
            if got:
                last_new = time.monotonic()
            elif self.idle_timeout_s is not None and time.monotonic() - last_new >= self.idle_timeout_s:
                return

    # -- offsets and shutdown -------------------------------------------------------------------------------

    def _commit(self) -> None:
        if not self._uncommitted:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._uncommitted.items()}
        try:
            self._consumer.commit(offsets)
            self._uncommitted.clear()
        except kerrors.KafkaError as e:  # CommitFailedError in a rebalance: the alerts come again, deduped
            self._uncommitted.clear()
            log.info("offset commit failed (%s: %s); the next owner re-reads from the last commit",
                     type(e).__name__, e)

    def committed(self) -> dict[int, int]:
        """The group's committed offset per partition (only with ``group_id``)."""
        if self.group_id is None:
            return {}
        out = {}
        for p in sorted(self._consumer.partitions_for_topic(self.topic) or ()):
            off = self._consumer.committed(TopicPartition(self.topic, p))
            if off is not None:
                out[p] = off
        return out

    def close(self) -> None:
        """Commit what was handed out (with a group), leave the group and close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit()
        finally:
            self._consumer.close()

    def __enter__(self) -> AlertSubscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"AlertSubscriber(topic={self.topic!r}, group_id={self.group_id!r}, "
                f"isolation_level={self._consumer.config.get('isolation_level')!r}, "
                f"received={self.received}, duplicates={self.duplicates})")

