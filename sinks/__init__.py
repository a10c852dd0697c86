"""Outputs: the Alert record and the sinks that write it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sinks.alert import ACTIONS, SCHEMA_VERSION, SEVERITIES, Alert, alert_id
from sinks.base import BatchSink, Sink
from sinks.deadletter import (
    DeadLetter,
    DeadLetterSink,
    JsonlDeadLetterSink,
    MemoryDeadLetterSink,
    read_dead_letters,
)
from sinks.errors import Backpressure, SinkError
from sinks.jsonl import JsonlSink, read_alerts
from sinks.memory import MemorySink

if TYPE_CHECKING:
    from sinks.kafka import KafkaAlertSink, KafkaDeadLetterSink
    from sinks.sql import SqlSink

__all__ = [
    "Alert", "alert_id", "SCHEMA_VERSION", "SEVERITIES", "ACTIONS",
    "Sink", "BatchSink", "SinkError", "Backpressure",
    "MemorySink", "JsonlSink", "read_alerts", "SqlSink", "KafkaAlertSink", "KafkaDeadLetterSink",
    "DeadLetter", "DeadLetterSink", "JsonlDeadLetterSink", "MemoryDeadLetterSink", "read_dead_letters",
]


def __getattr__(name: str) -> Any:
    # SqlSink imports SQLAlchemy (~0.2 s), the Kafka sinks kafka-python: load them only when asked for, so
    # `import sinks` stays light.
    if name == "SqlSink":
        from sinks.sql import SqlSink

        return SqlSink
    if name in ("KafkaAlertSink", "KafkaDeadLetterSink"):
        from sinks import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
