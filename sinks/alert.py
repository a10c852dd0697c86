"""The :class:`Alert` record: what every sink writes and every subscriber reads."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["Alert", "alert_id", "SCHEMA_VERSION", "SEVERITIES", "ACTIONS"]

#: Version of the alert's JSON form; carried in a Kafka header and the SQL table.
SCHEMA_VERSION = 1
SEVERITIES = ("low", "medium", "high", "critical")
ACTIONS = ("allow", "review", "block")


def alert_id(event_id: str, config_hash: str) -> str:
    """Deterministic id: the same event scored under the same configuration always gives the same alert id.

    >>> alert_id("e1", "abc") == alert_id("e1", "abc") != alert_id("e1", "abd")
    True
    """
    return hashlib.sha256(f"{event_id}\x1f{config_hash}".encode()).hexdigest()[:32]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An event that scored into the alert budget, with why.

    ``entities`` maps entity kinds to ids (``{"user": "u1", "device": "d9", ...}``); ``reasons`` is a list of
    ``{"detector", "feature", "value", "detail"}`` objects, most important first; ``detector_scores`` maps each
    detector to its calibrated tail probability. Times are float epoch seconds (UTC).
    """

    alert_id: str
    event_id: str
    event_type: str
    entities: Mapping[str, str]
    event_ts: float
    detected_at: float
    score: float
    severity: str
    action: str
    reasons: tuple[Mapping[str, Any], ...]
    detector_scores: Mapping[str, float]
    config_hash: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    #: The stored rule pack version (``rule_packs.version``) the rules detector ran when the event was scored;
    #: None when it ran the configuration's own rules (no stored pack applied: a replay, or before a consumer's
    #: first switch).
    rules_version: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def entity_key(self) -> str:
        """The key of the entity that owns the event's state (``user:u1``); the Kafka message key."""
        for kind in ("user", "ref"):
            if kind in self.entities:
                return f"{kind}:{self.entities[kind]}"
        return f"event:{self.event_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "alert_id": self.alert_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "entities": dict(self.entities),
            "event_time": _iso(self.event_ts),
            "detected_at": _iso(self.detected_at),
            "score": round(self.score, 6),
            "severity": self.severity,
            "action": self.action,
            "reasons": [dict(r) for r in self.reasons],
            "detector_scores": {k: round(v, 6) for k, v in self.detector_scores.items()},
            "config_hash": self.config_hash,
            "rules_version": self.rules_version,
            "provenance": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys): identical alerts serialize identically."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        prov = d.get("provenance") or {}
        return cls(
            alert_id=d["alert_id"],
            event_id=d["event_id"],
            event_type=d["event_type"],
            entities=dict(d["entities"]),
            event_ts=_parse_iso(d["event_time"]),
            detected_at=_parse_iso(d["detected_at"]),
            score=float(d["score"]),
            severity=d["severity"],
            action=d["action"],
            reasons=tuple(d.get("reasons", ())),
            detector_scores=dict(d.get("detector_scores", {})),
            config_hash=d["config_hash"],
            topic=prov.get("topic"),
            partition=prov.get("partition"),
            offset=prov.get("offset"),
            rules_version=None if d.get("rules_version") is None else int(d["rules_version"]),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        return cls.from_dict(orjson.loads(raw))


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
