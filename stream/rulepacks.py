"""Versioned rule packs: validation, storage in the alert store, and backtests.

A *rule pack* is the ``detectors.rules`` table of the configuration (``combine``, ``blocklists`` and the
``[[rules]]`` list), written as TOML text::

    combine = "sum"
    blocklists = {}

    [[rules]]
    name = "card_burst_device"
    when = "device_payments_24h >= 4 and order_amount < 10"
    score = 0.9

:func:`validate_pack` checks a pack exactly as loading a configuration does (the rules grammar, the actions, and
every feature name against those the engine computes); a bad pack is a :class:`~stream.errors.ConfigError` with
a one-line message.

:class:`RulePackStore` keeps every version in the ``rule_packs`` table (migration 0008) and the active version
in the one-row ``rule_pack_active`` table; each change writes a ``console_audit`` row. When no pack is stored
yet, version 1 is the configured pack.

:func:`backtest` runs the same engine over the same recorded events twice, once with each pack (the
configuration with ``detectors.rules`` replaced), and reports the two side by side.
"""

from __future__ import annotations

import copy
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import CheckConstraint, Column, Engine, Integer, String, Table, Text, func, insert, select, update

from sinks.sql import UtcDateTime, metadata
from stream.config import Settings, _toml_value
from stream.errors import ConfigError

__all__ = ["RulePackStore", "PackVersion", "validate_pack", "parse_pack", "pack_to_toml", "configured_pack",
           "settings_with_pack", "backtest", "rule_names_in", "PACK_KEYS", "file_source_factory", "kafka_runner"]

#: The keys of a pack (those of the ``detectors.rules`` table a pack replaces).
PACK_KEYS = ("combine", "blocklists", "rules")
_RULE_KEY_ORDER = ("name", "when", "score", "action")

#: In :data:`sinks.sql.metadata`, created by migration 0008.
rule_packs_table = Table(
    "rule_packs", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("pack", Text, nullable=False),
    Column("author", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("comment", Text, nullable=False),
    Column("parent_version", Integer, nullable=True),
)
rule_pack_active_table = Table(
    "rule_pack_active", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("changed_by", String(64), nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)


# ---- packs as text ---------------------------------------------------------------------------------------------


def configured_pack(settings: Settings) -> dict[str, Any]:
    """The pack the configuration holds (``detectors.rules``; an absent key takes the detector's default)."""
    section = dict(settings.data.get("detectors", {}).get("rules") or {})
    return {"combine": section.get("combine", "max"), "blocklists": copy.deepcopy(section.get("blocklists") or {}),
            "rules": copy.deepcopy(list(section.get("rules") or []))}


def parse_pack(text: str) -> dict[str, Any]:
    """A pack from its TOML text; a :class:`ConfigError` (one line) if it is not TOML or has other keys."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"rule pack: invalid TOML: {_one_line(str(e))}") from None
    unknown = sorted(set(data) - set(PACK_KEYS))
    if unknown:
        raise ConfigError(f"rule pack: unknown key(s) {', '.join(unknown)}; a pack holds {', '.join(PACK_KEYS)}")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError("rule pack: 'rules' must be a list of [[rules]] tables")
    return {"combine": data.get("combine", "max"), "blocklists": data.get("blocklists", {}), "rules": rules}


def pack_to_toml(pack: Mapping[str, Any]) -> str:
    """The pack as TOML text that :func:`parse_pack` reads back to the same pack."""
    try:
        return _pack_toml(pack)
    except TypeError as e:
        raise ConfigError(f"rule pack: cannot write a value of type {e.args[0].__name__}") from None


def _pack_toml(pack: Mapping[str, Any]) -> str:
    lines = [f"combine = {_toml_value(pack.get('combine', 'max'))}",
             f"blocklists = {_toml_value(pack.get('blocklists') or {})}"]
    for rule in pack.get("rules") or []:
        lines.append("")
        lines.append("[[rules]]")
        keys = [k for k in _RULE_KEY_ORDER if k in rule] + [k for k in rule if k not in _RULE_KEY_ORDER]
        lines.extend(f"{k} = {_toml_value(rule[k])}" for k in keys)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def settings_with_pack(settings: Settings, pack: Mapping[str, Any]) -> Settings:
    """``settings`` with ``detectors.rules`` replaced by ``pack``, validated like a loaded configuration."""
    overrides = {f"detectors.rules.{k}": copy.deepcopy(pack[k]) for k in PACK_KEYS if k in pack}
    if settings.data.get("detectors", {}).get("rules", {}).get("enabled") is False:
        overrides["detectors.rules.enabled"] = True
    try:
        return settings.replace(overrides)
    except ConfigError as e:
        raise ConfigError(_one_line(str(e))) from None


def validate_pack(settings: Settings, pack: Mapping[str, Any] | str) -> dict[str, Any]:
    """The pack (parsed if text), checked against ``settings`` as config loading checks it: an unknown feature
    name, a bad operator, a malformed condition, a bad score or action, a duplicated name is a
    :class:`ConfigError` with a one-line reason."""
    parsed = parse_pack(pack) if isinstance(pack, str) else dict(pack)
    settings_with_pack(settings, parsed)
    return parsed


def rule_names_in(pack: Mapping[str, Any]) -> list[str]:
    return [str(r.get("name")) for r in pack.get("rules") or [] if isinstance(r, Mapping)]


# ---- the store -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackVersion:
    version: int
    pack_text: str
    author: str
    created_at: datetime
    comment: str
    parent_version: int | None
    active: bool = False

    @property
    def pack(self) -> dict[str, Any]:
        return parse_pack(self.pack_text)


def _now() -> datetime:
    return datetime.now(UTC)


class RulePackStore:
    """Rule pack versions in the alert store (tables of migration 0008; run the migrations first).

    A running consumer reads :meth:`active_version` at checkpoint boundaries (one primary-key read of
    ``rule_pack_active``) and, when the number changed, switches each unit's rules at a recorded point
    (:mod:`stream.kafka.liverules`, docs/console.md).
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def _audit(self, conn: Any, username: str, action: str, target: str | None, detail: Mapping[str, Any]) -> None:
        from stream.console.store import audit_table

        conn.execute(insert(audit_table).values(ts=_now(), username=username, action=action, target=target,
                                                detail=dict(detail)))

    def ensure_seeded(self) -> None:
        """Store the configured pack as version 1, active, if no version is stored yet."""
        from sqlalchemy.exc import IntegrityError

        with self.engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(rule_packs_table)).scalar_one():
                return
        try:
            self._seed()
        except IntegrityError:  # another process stored version 1 first
            return

    def _seed(self) -> None:
        with self.engine.begin() as conn:
            text = pack_to_toml(configured_pack(self.settings))
            now = _now()
            conn.execute(insert(rule_packs_table).values(version=1, pack=text, author="(config)", created_at=now,
                                                         comment=f"the configured pack ({self.settings.source})",
                                                         parent_version=None))
            conn.execute(insert(rule_pack_active_table).values(id=1, version=1, changed_at=now,
                                                               changed_by="(config)"))
            self._audit(conn, "(config)", "rules.seed", "v1", {"version": 1, "source": self.settings.source})

    def active_version(self) -> int | None:
        """The active version's number (None before anything is stored): what a consumer polls."""
        with self.engine.connect() as conn:
            return conn.execute(select(rule_pack_active_table.c.version)
                                .where(rule_pack_active_table.c.id == 1)).scalar_one_or_none()

    def versions(self) -> list[PackVersion]:
        """Every stored version, newest first."""
        self.ensure_seeded()
        active = self.active_version()
        with self.engine.connect() as conn:
            rows = conn.execute(select(rule_packs_table).order_by(rule_packs_table.c.version.desc())).mappings()
            return [self._row(r, active) for r in rows]

    def get(self, version: int | None = None) -> PackVersion:
        """Version ``version``, or the active one; ``LookupError`` if there is no such version."""
        self.ensure_seeded()
        active = self.active_version()
        want = active if version is None else version
        with self.engine.connect() as conn:
            row = conn.execute(select(rule_packs_table).where(rule_packs_table.c.version == want)).mappings().first()
        if row is None:
            raise LookupError(f"no rule pack version {want}")
        return self._row(row, active)

    @staticmethod
    def _row(r: Any, active: int | None) -> PackVersion:
        return PackVersion(version=int(r["version"]), pack_text=str(r["pack"]), author=str(r["author"]),
                           created_at=r["created_at"], comment=str(r["comment"]),
                           parent_version=r["parent_version"], active=int(r["version"]) == active)

    def deploy(self, pack: Mapping[str, Any] | str, *, author: str, comment: str = "") -> PackVersion:
        """Validate ``pack``, store it as the next version and make it active (one transaction, one audit row)."""
        if not author or len(author) > 64:
            raise ConfigError("an author has 1 to 64 characters")
        parsed = validate_pack(self.settings, pack)
        text = pack_to_toml(parsed)
        self.ensure_seeded()
        with self.engine.begin() as conn:
            parent = conn.execute(select(rule_pack_active_table.c.version)  # locked: deploys take turns
                                  .where(rule_pack_active_table.c.id == 1).with_for_update()).scalar_one()
            version = int(conn.execute(select(func.max(rule_packs_table.c.version))).scalar_one()) + 1
            now = _now()
            conn.execute(insert(rule_packs_table).values(version=version, pack=text, author=author, created_at=now,
                                                         comment=comment, parent_version=parent))
            conn.execute(update(rule_pack_active_table).where(rule_pack_active_table.c.id == 1)
                         .values(version=version, changed_at=now, changed_by=author))
            self._audit(conn, author, "rules.deploy", f"v{version}",
                        {"version": version, "parent": parent, "comment": comment,
                         "rules": rule_names_in(parsed)})
        return self.get(version)

    def rollback(self, *, author: str, comment: str = "") -> PackVersion:
        """Make the version that was active before the active one (its ``parent_version``) active again; a
        :class:`LookupError` if the active version has none (it is the first)."""
        if not author or len(author) > 64:
            raise ConfigError("an author has 1 to 64 characters")
        self.ensure_seeded()
        with self.engine.begin() as conn:
            active = conn.execute(select(rule_pack_active_table.c.version)
                                  .where(rule_pack_active_table.c.id == 1).with_for_update()).scalar_one()
            parent = conn.execute(select(rule_packs_table.c.parent_version)
                                  .where(rule_packs_table.c.version == active)).scalar_one()
            if parent is None:
                raise LookupError(f"version {active} is the first: there is nothing to roll back to")
            # the parent was valid when it was deployed; it is checked again against today's configuration
            text = conn.execute(select(rule_packs_table.c.pack).where(rule_packs_table.c.version == parent)
                                ).scalar_one()
            validate_pack(self.settings, str(text))
            conn.execute(update(rule_pack_active_table).where(rule_pack_active_table.c.id == 1)
                         .values(version=parent, changed_at=_now(), changed_by=author))
            self._audit(conn, author, "rules.rollback", f"v{parent}",
                        {"from": active, "to": parent, "comment": comment})
        return self.get(parent)

    def live_stats(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per rule: ``alerts`` (stored alerts whose reasons name it), ``fraud`` and ``legit`` (of those, how many
        carry such a review verdict) and ``precision`` = fraud / (fraud + legit), None without verdicts."""
        if self.engine.dialect.name == "postgresql" and names:
            return self._live_stats_pg(names)
        return self._live_stats_scan(names)

    def _live_stats_scan(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`live_stats` one rule at a time: two scans of the alerts per rule (SQLite's way; on PostgreSQL
        the reference the two-pass query is tested against)."""
        from sqlalchemy import String as Str
        from sqlalchemy import cast, distinct, type_coerce
        from sqlalchemy.dialects import postgresql

        from sinks.feedback import feedback_table
        from sinks.sql import alerts_table

        a, fb = alerts_table.c, feedback_table.c
        out: dict[str, dict[str, Any]] = {}
        pg = self.engine.dialect.name == "postgresql"
        with self.engine.connect() as conn:
            for name in names:
                if pg:
                    cond = type_coerce(a.reasons, postgresql.JSONB).contains([{"detector": "rules", "feature": name}])
                else:  # JSON text: the reason objects are written with sorted keys (detail, detector, feature)
                    body = cast(a.reasons, Str)
                    needle = orjson.dumps({"detector": "rules", "feature": name}).decode()[1:-1]
                    cond = (func.instr(body, needle) > 0) | (func.instr(body, needle.replace('":"', '": "')
                                                                         .replace('","', '", "')) > 0)
                n = conn.execute(select(func.count()).select_from(alerts_table).where(cond)).scalar_one()
                rows = conn.execute(
                    select(fb.outcome, func.count(distinct(a.alert_id)))
                    .select_from(alerts_table.join(feedback_table, fb.alert_id == a.alert_id))
                    .where(cond).group_by(fb.outcome)).all()
                by = {str(o): int(c) for o, c in rows}
                fraud, legit = by.get("fraud", 0), by.get("legit", 0)
                out[name] = {"alerts": int(n), "fraud": fraud, "legit": legit,
                             "precision": fraud / (fraud + legit) if fraud + legit else None}
        return out

    def _live_stats_pg(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`live_stats` on PostgreSQL in two passes over the alerts' reasons, unnested, whatever the number
        of rules (one containment scan per rule and count took seconds per page on a million alerts). A rule can
        give an alert two reasons (its score, and the forced block of an ``action = "block"`` rule): alerts are
        counted, not reasons."""
        from sqlalchemy import bindparam, text

        from sinks.feedback import feedback_table
        from sinks.sql import alerts_table

        fires = text(f"""
            SELECT r.value ->> 'feature', count(DISTINCT a.alert_id)
            FROM {alerts_table.name} a CROSS JOIN LATERAL jsonb_array_elements(a.reasons::jsonb) AS r(value)
            WHERE r.value ->> 'detector' = 'rules' AND r.value ->> 'feature' IN :names
            GROUP BY 1""").bindparams(bindparam("names", expanding=True))
        reviewed = text(f"""
            SELECT r.value ->> 'feature', f.outcome, count(DISTINCT a.alert_id)
            FROM {alerts_table.name} a JOIN {feedback_table.name} f ON f.alert_id = a.alert_id
                 CROSS JOIN LATERAL jsonb_array_elements(a.reasons::jsonb) AS r(value)
            WHERE r.value ->> 'detector' = 'rules' AND r.value ->> 'feature' IN :names
            GROUP BY 1, 2""").bindparams(bindparam("names", expanding=True))
        with self.engine.connect() as conn:
            n = {str(k): int(c) for k, c in conn.execute(fires, {"names": list(names)})}
            by: dict[str, dict[str, int]] = {}
            for k, o, c in conn.execute(reviewed, {"names": list(names)}):
                by.setdefault(str(k), {})[str(o)] = int(c)
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            fraud, legit = by.get(name, {}).get("fraud", 0), by.get(name, {}).get("legit", 0)
            out[name] = {"alerts": n.get(name, 0), "fraud": fraud, "legit": legit,
                         "precision": fraud / (fraud + legit) if fraud + legit else None}
        return out


# ---- backtests -------------------------------------------------------------------------------------------------


class _Bounded:
    """The first ``max_events`` events (and the invalid records among them) of a source."""

    def __init__(self, source: Any, max_events: int | None) -> None:
        self.source, self.max_events = source, max_events

    def __iter__(self) -> Iterator[Any]:
        from stream.sources import Batch

        left = self.max_events
        for batch in self.source:
            if left is None:
                yield batch
                continue
            if left <= 0:
                return
            if len(batch.events) > left:
                batch = Batch(events=batch.events[:left], invalid=batch.invalid)
            left -= len(batch.events)
            yield batch

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def _rules_in_reasons(alert: Any) -> list[str]:
    return list(dict.fromkeys(str(r.get("feature")) for r in alert.reasons if r.get("detector") == "rules"))


#: ``runner(settings, on_batch) -> report``: one replay of the recorded events with these settings.
Runner = Callable[[Settings, Callable[[Any, Any], None]], Mapping[str, Any]]


def _run(settings: Settings, make_source: Callable[[], Any] | None, max_events: int | None,
         runner: Runner | None = None) -> dict[str, Any]:
    from stream.replay import replay

    alerts: list[Any] = []

    def on_batch(_batch: Any, outcome: Any) -> None:
        alerts.extend(outcome.alerts)

    if runner is not None:
        result = runner(settings, on_batch)
    else:
        assert make_source is not None
        source = _Bounded(make_source(), max_events)
        try:
            result = replay(source, settings, on_batch=on_batch)
        finally:
            source.close()
    fires: Counter[str] = Counter()
    for al in alerts:
        fires.update(_rules_in_reasons(al))
    return {
        "events": result["events"], "alerts": result["alerts"], "positives": result["positives"],
        "labelled_events": result["labelled_events"],
        "precision_at_budget": result["precision_at_budget"], "recall_at_budget": result["recall_at_budget"],
        "pr_auc": result["pr_auc"], "rule_alerts": dict(sorted(fires.items())),
        "config_hash": result["config_hash"], "_alerts": alerts,
    }


def backtest(settings: Settings, current: Mapping[str, Any] | str, candidate: Mapping[str, Any] | str,
             make_source: Callable[[], Any] | None = None, *, max_events: int | None = 50_000, show: int = 50,
             runner: Runner | None = None) -> dict[str, Any]:
    """Run the engine of ``settings`` with the ``current`` pack and with the ``candidate`` pack over the same
    events (``make_source()`` is called once per run; at most ``max_events`` events each) and compare.

    The report has ``current`` and ``candidate`` (events, alerts, precision and recall at the budget when the
    stream has labels, ``rule_alerts``: per rule, the alerts whose reasons name it) and ``added`` / ``removed``:
    the alerts the candidate raises on events the current pack does not alert on, and the reverse (counts, and
    the first ``show`` of each with alert id, event id, the rules named in its reasons and its label when known).
    Alert ids include the configuration hash, so the same event alerted under both packs has two ids; the two
    runs are matched by event id. Instead of ``make_source``, a ``runner`` may replay the events (e.g.
    :func:`kafka_runner`, a bounded Kafka range; ``max_events`` does not apply to it).
    """
    if (make_source is None) == (runner is None):
        raise ValueError("backtest: give make_source or runner")
    cur = validate_pack(settings, current)
    cand = validate_pack(settings, candidate)
    runs = {name: _run(settings_with_pack(settings, pack), make_source, max_events, runner)
            for name, pack in (("current", cur), ("candidate", cand))}
    by_event = {name: {al.event_id: al for al in run.pop("_alerts")} for name, run in runs.items()}
    added_ids = [e for e in by_event["candidate"] if e not in by_event["current"]]
    removed_ids = [e for e in by_event["current"] if e not in by_event["candidate"]]

    def row(al: Any) -> dict[str, Any]:
        return {"alert_id": al.alert_id, "event_id": al.event_id, "entity": al.entity_key,
                "score": round(float(al.score), 6), "rules": _rules_in_reasons(al)}

    return {
        "max_events": max_events if runner is None else None,
        "current": runs["current"], "candidate": runs["candidate"],
        "added": {"count": len(added_ids), "alerts": [row(by_event["candidate"][e]) for e in added_ids[:show]]},
        "removed": {"count": len(removed_ids), "alerts": [row(by_event["current"][e]) for e in removed_ids[:show]]},
        "new_rules": [n for n in rule_names_in(cand) if n not in set(rule_names_in(cur))],
    }


def file_source_factory(paths: Sequence[str], settings: Settings) -> Callable[[], Any]:
    """``make_source`` for :func:`backtest` over recorded files (JSONL/CSV, as ``riskstream replay`` reads)."""
    from pathlib import Path

    from stream.sources import FileSource

    for p in paths:
        if not Path(p).is_file():
            raise ConfigError(f"no such event file: {p}")
    batch = int(settings.engine["batch_size"])
    return lambda: FileSource(list(paths), batch_size=batch)


def kafka_runner(topics: Sequence[str] | None, *, bootstrap: str | None = None, from_offset: int | None = None,
                 to_offset: int | None = None, from_timestamp: float | None = None,
                 to_timestamp: float | None = None) -> Runner:
    """A :func:`backtest` ``runner`` over a bounded range of Kafka topics, read as ``riskstream replay --kafka``
    reads it (:func:`stream.kafka.replay_kafka`: no consumer group, one engine per partition)."""

    def run(settings: Settings, on_batch: Callable[[Any, Any], None]) -> Mapping[str, Any]:
        from stream.errors import SourceError
        from stream.kafka import replay_kafka
        from stream.kafka.client import KAFKA_ERRORS

        try:
            return replay_kafka(settings, list(topics) if topics else None, bootstrap=bootstrap,
                                from_offsets=from_offset, to_offsets=to_offset, from_timestamp=from_timestamp,
                                to_timestamp=to_timestamp, on_batch=on_batch)
        except KAFKA_ERRORS as e:
            raise SourceError(f"Kafka: {type(e).__name__}: {e}") from e

    return run
