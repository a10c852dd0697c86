"""The Kafka side of riskstream: the consumer-group runtime, bounded replay of topics, and the alert subscriber.

- :mod:`stream.kafka.client`: clients built from the ``[kafka]`` settings, record decoding.
- :mod:`stream.kafka.units`: a partition unit and the deterministic merge of its co-partitioned topics.
- :mod:`stream.kafka.consumer`: :func:`run_consumer`, one member of the consumer group (``riskstream run``).
- :mod:`stream.kafka.replay`: :func:`replay_kafka`, a bounded offset range through the same units and merge.
- :mod:`stream.kafka.stats` and :mod:`stream.kafka.observability`: counters, ``/metrics`` and ``/healthz``.
- :mod:`stream.kafka.subscriber`: :class:`AlertSubscriber`, for tools that consume the alerts topic.

The Kafka sinks (alerts topic, dead-letter topic) live with the other sinks, in :mod:`sinks.kafka`.
"""

from __future__ import annotations

from stream.kafka.consumer import check_copartitioned, run_consumer
from stream.kafka.replay import KafkaReplayResult, replay_kafka
from stream.kafka.stats import LATENCY_BUCKETS, RuntimeStats
from stream.kafka.units import PartitionUnit

__all__ = ["run_consumer", "check_copartitioned", "replay_kafka", "KafkaReplayResult", "RuntimeStats",
           "LATENCY_BUCKETS", "PartitionUnit"]
