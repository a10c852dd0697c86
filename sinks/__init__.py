"""Outputs: the Alert record and the sinks that write it."""

from sinks.alert import ACTIONS, SCHEMA_VERSION, SEVERITIES, Alert, alert_id
from sinks.base import BatchSink, Sink
from sinks.errors import Backpressure, SinkError

__all__ = ["Alert", "alert_id", "SCHEMA_VERSION", "SEVERITIES", "ACTIONS", "Sink", "BatchSink", "SinkError", "Backpressure"]
