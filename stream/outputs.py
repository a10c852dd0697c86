"""The outputs a run writes to, built from the settings in one place.

``replay``, ``demo``, ``replay --kafka`` and ``run`` all open their sinks through :func:`open_outputs`: alerts
go to the JSONL file, the SQL database and (for ``run``) the Kafka alerts topic the settings name; refused
records go to the dead-letter file and (for ``run``) the dead-letter topic. Command-line paths override the
settings' ones. The returned :class:`Outputs` closes everything it opened, sinks first, then the shared Kafka
producer.

>>> from stream.config import load_settings
>>> with open_outputs(load_settings(None)) as out:    # the embedded defaults write nowhere
...     (out.alerts, out.dead_letters)
([], [])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sinks.base import Sink
from sinks.deadletter import DeadLetter, DeadLetterSink
from stream.config import Settings

__all__ = ["Outputs", "open_outputs", "TeeDeadLetterSink", "TransactionalOutputs", "transactional_id"]

log = logging.getLogger("riskstream.outputs")


class TeeDeadLetterSink:
    """One dead-letter sink that writes to several (the topic and the file, say)."""

    def __init__(self, sinks: Iterable[DeadLetterSink]) -> None:
        self.sinks = list(sinks)

    def add(self, record: DeadLetter) -> None:
        for s in self.sinks:
            s.add(record)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()

    def __repr__(self) -> str:
        return f"TeeDeadLetterSink({self.sinks!r})"


def transactional_id(group: str, unit: int) -> str:
    """The transactional id of partition unit ``unit`` of consumer group ``group``: the same in every member, so
    a new owner of the unit fences the old one (see docs/runtime.md, "Exactly once").

    >>> transactional_id("riskstream", 3)
    'riskstream-riskstream-unit-3'
    """
    return f"riskstream-{group}-unit-{unit}"


@dataclass
class TransactionalOutputs:
    """The alerts and dead-letter topics written exactly once (``kafka.exactly_once``): :meth:`open` makes the
    :class:`~sinks.kafka.KafkaTransaction` of one partition unit, a transactional producer of its own."""

    settings: Settings
    bootstrap: str | None
    alerts_topic: str
    dead_letter_topic: str
    timeout_s: float = 30.0
    #: Dead letters the broker refused as too large, shared by every unit's transaction.
    cut_dead_letters: set[tuple[str, int | None]] = field(default_factory=set)

    def open(self, transactional_id: str) -> Any:
        """A new, initialised transaction for ``transactional_id`` (which fences any older holder of the id)."""
        from sinks.kafka import KafkaTransaction
        from stream.kafka.client import make_producer

        k = self.settings.kafka
        producer = make_producer(self.settings, bootstrap=self.bootstrap, transactional_id=transactional_id,
                                 transaction_timeout_ms=int(k.get("transaction_timeout_ms", 60_000)),
                                 max_block_ms=int(self.timeout_s * 1000))
        txn = KafkaTransaction(producer, alerts_topic=self.alerts_topic, dead_letter_topic=self.dead_letter_topic,
                               timeout_s=self.timeout_s, cut_dead_letters=self.cut_dead_letters)
        try:
            txn.init()
        except BaseException:
            txn.close(0.0)
            raise
        return txn


@dataclass
class Outputs:
    """The sinks of one run, and what to close when it ends.

    ``alerts`` and ``dead_letters`` are the sinks; ``resources`` what they share (the Kafka producer);
    ``jsonl``, ``database`` and ``dead_letter_file`` the places written to, for the summary. With
    ``kafka.exactly_once``, the alerts and dead-letter topics are not among the sinks: ``transactional`` opens
    a transaction per partition unit instead.
    """

    alerts: list[Sink] = field(default_factory=list)
    transactional: TransactionalOutputs | None = None
    dead_letters: list[DeadLetterSink] = field(default_factory=list)
    resources: list[Any] = field(default_factory=list)
    jsonl: str | None = None
    database: str | None = None
    dead_letter_file: str | None = None

    @property
    def dead_letter(self) -> DeadLetterSink | None:
        """The dead-letter sinks as one (None when there is none)."""
        if not self.dead_letters:
            return None
        if len(self.dead_letters) == 1:
            return self.dead_letters[0]
        return TeeDeadLetterSink(self.dead_letters)

    def places(self) -> dict[str, str | None]:
        """Where alerts and dead letters go, for a summary (database URLs without their password)."""
        db = self.database
        if db:
            from sinks.sql import hidden_url

            db = hidden_url(db)
        return {"alerts": self.jsonl, "database": db, "dead letters": self.dead_letter_file}

    def close(self) -> None:
        """Close every sink (each flushes first), then the shared resources; best effort, logged."""
        close_all([*self.alerts, *self.dead_letters], self.resources)
        self.alerts, self.dead_letters, self.resources = [], [], []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_outputs(
    settings: Settings,
    *,
    alerts_out: str | None = None,
    database: str | None = None,
    dead_letters: str | None = None,
    kafka: bool = False,
    bootstrap: str | None = None,
    alerts: bool = True,
    refused: bool = True,
) -> Outputs:
    """Open the sinks the settings name, with ``alerts_out``/``database``/``dead_letters`` taking precedence.

    Parameters
    ----------
    kafka
        Also publish to ``kafka.alerts_topic`` and ``kafka.dead_letter_topic`` when set (the production
        runtime); a replay writes only to files and the database. With ``kafka.exactly_once`` these two go to
        ``Outputs.transactional`` (one transaction per partition unit and checkpoint), not to sinks.
    bootstrap
        Kafka bootstrap servers, overriding ``kafka.bootstrap_servers``.
    alerts, refused
        Open the alert sinks, the dead-letter sinks (a caller that brings its own leaves one out).
    """
    from sinks.deadletter import JsonlDeadLetterSink
    from sinks.jsonl import JsonlSink

    s = settings.sinks
    k = settings.kafka
    out = Outputs(
        jsonl=(alerts_out or s.get("jsonl") or None) if alerts else None,
        database=(database or s.get("database") or None) if alerts else None,
        dead_letter_file=(dead_letters or s.get("dead_letter") or None) if refused else None,
    )
    try:
        alerts_topic = str(k.get("alerts_topic") or "") if kafka and alerts else ""
        dl_topic = str(k.get("dead_letter_topic") or "") if kafka and refused else ""
        timeout = float(k.get("flush_timeout_s", 30.0))
        if k.get("exactly_once") and (alerts_topic or dl_topic):
            out.transactional = TransactionalOutputs(settings, bootstrap, alerts_topic, dl_topic, timeout)
            alerts_topic = dl_topic = ""
        if alerts_topic:
            from sinks.kafka import KafkaAlertSink
            from stream.kafka.client import make_producer

            producer = make_producer(settings, bootstrap=bootstrap)
            out.resources.append(producer)
            out.alerts.append(KafkaAlertSink(producer, alerts_topic, flush_timeout_s=timeout))
        if dl_topic:
            from sinks.kafka import KafkaDeadLetterSink
            from stream.kafka.client import make_producer

            # Dead letters get a producer of their own, not idempotent: kafka-python 3 takes a broker's "message
            # too large" as fatal for an idempotent producer, so one oversized poison record would kill the
            # producer (the alerts' too, if shared) before the sink could send its 64 KiB cut. A retried dead
            # letter may land twice on its topic; alerts stay idempotent.
            dl_producer = make_producer(settings, bootstrap=bootstrap, enable_idempotence=False)
            out.resources.append(dl_producer)
            out.dead_letters.append(KafkaDeadLetterSink(dl_producer, dl_topic, flush_timeout_s=timeout))
        if out.database:
            from sinks.sql import SqlSink

            out.alerts.append(SqlSink(str(out.database)))
        if out.jsonl:
            Path(out.jsonl).parent.mkdir(parents=True, exist_ok=True)
            out.alerts.append(JsonlSink(str(out.jsonl)))
        if out.dead_letter_file:
            Path(out.dead_letter_file).parent.mkdir(parents=True, exist_ok=True)
            out.dead_letters.append(JsonlDeadLetterSink(str(out.dead_letter_file)))
    except BaseException:
        out.close()
        raise
    return out


def close_all(sinks: Iterable[Any], resources: Iterable[Any]) -> None:
    """Close sinks, then resources (producers), logging what fails: closing is best effort once the last
    checkpoint has decided what is durable."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as e:  # noqa: BLE001
            log.warning("closing %r failed: %s: %s", sink, type(e).__name__, e)
    for r in resources:
        try:
            r.close(timeout=10)
        except Exception as e:  # noqa: BLE001
            log.warning("closing %s failed: %s: %s", type(r).__name__, type(e).__name__, e)
