"""Verdicts to the labels topic: the console's side of "verdicts teach the engine" in the Kafka runtime.

:class:`LabelPublisher` produces each verdict's ``label`` events (``sinks.feedback.to_label``: ``ref_event_id`` the
judged event, ``label`` 1 for fraud and 0 for legitimate) to the runtime's labels topic (``kafka.labels_topic``),
keyed by the alert's user like the input topics, so a label lands in the partition whose unit scored the event
and holds its vector (``stream/labels.py``). One producer (``acks=all``, idempotent retries) lives as long as the
console; a send waits for the broker's acknowledgement, so a verdict the page reports as published is on the topic.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson

from sinks.errors import SinkError
from stream.events import from_dict

__all__ = ["LabelPublisher"]


class LabelPublisher:
    """Produce ``(key, label event)`` pairs to ``topic`` at ``bootstrap``; :meth:`publish` returns how many."""

    def __init__(self, bootstrap: str, topic: str, *, timeout_s: float = 15.0,
                 bootstrap_timeout_ms: int | None = None, client_id: str = "riskstream-console") -> None:
        if not topic:
            raise ValueError("the labels topic is empty (kafka.labels_topic)")
        self.bootstrap, self.topic = bootstrap, topic
        self.timeout_s = timeout_s
        self.bootstrap_timeout_ms = bootstrap_timeout_ms
        self.client_id = client_id
        self._producer: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from stream.kafka.client import DEFAULT_BOOTSTRAP_TIMEOUT_MS, unreachable

        boot_ms = self.bootstrap_timeout_ms or DEFAULT_BOOTSTRAP_TIMEOUT_MS
        try:
            return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", client_id=self.client_id,
                                 max_block_ms=int(self.timeout_s * 1000), bootstrap_timeout_ms=boot_ms)
        except KafkaError as e:
            raise unreachable(self.bootstrap, e, boot_ms) from e

    def connect(self) -> None:
        """Reach the broker now (a console started to publish fails at start, not at its first verdict)."""
        with self._lock:
            if self._producer is None:
                self._producer = self._connect()

    def publish(self, keyed: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Send and wait for every acknowledgement; a failure is a :class:`~sinks.errors.SinkError` (retriable)
        and the next call connects afresh."""
        if not keyed:
            return 0
        for _, event in keyed:
            from_dict(event)  # what the runtime will decode, checked before it leaves
        from kafka.errors import KafkaError

        with self._lock:
            if self._producer is None:
                self._producer = self._connect()
            try:
                futures = [self._producer.send(self.topic, key=k.encode(), value=orjson.dumps(e)) for k, e in keyed]
                self._producer.flush(timeout=self.timeout_s)
                for f in futures:
                    f.get(timeout=self.timeout_s)
            except KafkaError as e:
                self._drop()
                raise SinkError(f"cannot send label events to {self.topic} at {self.bootstrap}: {e}",
                                retriable=True) from e
        return len(keyed)

    def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=self.timeout_s)
            except Exception:  # noqa: BLE001 - already failing; the error raised says why
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"LabelPublisher({self.bootstrap!r}, {self.topic!r})"
