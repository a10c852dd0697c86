"""The console's reads and writes: users, the audit trail, the case queue, one case, verdicts.

A *case* is one entity's alerts (``entity_key``, e.g. ``user:u42``) inside one window of ``window_hours`` of event
time (windows are aligned to the epoch, so a case's id is ``(entity_key, window number)`` and stable). Cases are
ranked by their highest score. Filtering and paging are done in SQL: keyset reads of the alerts by score, no
``GROUP BY`` over the whole table (see :meth:`ConsoleStore.cases`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Engine,
    Index,
    Integer,
    String,
    Table,
    and_,
    cast,
    func,
    insert,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql

from sinks.feedback import Feedback, FeedbackStore, feedback_table, to_label
from sinks.sql import JSON_TYPE, UtcDateTime, _alert, alerts_table, metadata

__all__ = ["ConsoleStore", "CaseFilter", "ROLES", "VERDICTS", "LINK_KINDS"]

ROLES = ("analyst", "admin")
#: console verdict -> review_feedback outcome (unsure teaches nothing: it is kept in the audit trail only)
VERDICTS = {"fraud": "fraud", "legitimate": "legit", "unsure": None}
LINK_KINDS = ("device", "ip", "card", "address")

#: In :data:`sinks.sql.metadata`, created by migration 0007.
users_table = Table(
    "console_users", metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String, nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("role IN ('analyst', 'admin')", name="role"),
)
audit_table = Table(
    "console_audit", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("ts", UtcDateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String),
    Column("detail", JSON_TYPE, nullable=False),
    Index("ix_console_audit_ts", "ts"),
)

_hasher = PasswordHasher()


@dataclass(frozen=True)
class CaseFilter:
    severity: str | None = None
    action: str | None = None
    detector: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None  # "open" | "labelled" | None


def _now() -> datetime:
    return datetime.now(UTC)


class ConsoleStore:
    def __init__(self, engine: Engine, *, window_hours: float = 6.0) -> None:
        self.engine = engine
        self.window_s = window_hours * 3600.0
        self.feedback = FeedbackStore(engine, create=False)

    # ---- users and audit
    def add_user(self, name: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64:
            raise ValueError("a user name has 1 to 64 characters")
        if len(password) < 8:
            raise ValueError("a password has at least 8 characters")
        row = {"password_hash": _hasher.hash(password), "role": role}
        with self.engine.begin() as conn:
            found = conn.execute(select(users_table.c.name).where(users_table.c.name == name)).first()
            if found:
                conn.execute(users_table.update().where(users_table.c.name == name).values(**row))
            else:
                conn.execute(insert(users_table).values(name=name, created_at=_now(), **row))
            conn.execute(insert(audit_table).values(ts=_now(), username="(cli)", action="user.set", target=name,
                                                    detail={"role": role, "new": not found}))

    def check_password(self, name: str, password: str) -> str | None:
        """The user's role if the password is right, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users_table).where(users_table.c.name == name)).mappings().first()
        if row is None:
            _hasher.hash(password)  # same work either way: no user-name oracle by timing
            return None
        try:
            _hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        return str(row["role"])

    def audit(self, username: str, action: str, target: str | None, detail: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(audit_table).values(ts=_now(), username=username, action=action, target=target,
                                                    detail=dict(detail)))

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    # ---- cases
    def _bucket(self) -> Any:
        a = alerts_table.c
        if self.engine.dialect.name == "postgresql":
            return cast(func.floor(func.extract("epoch", a.event_ts) / self.window_s), BigInteger)
        return cast(func.strftime("%s", a.event_ts) / int(self.window_s), Integer)

    def _where(self, f: CaseFilter) -> list[Any]:
        a = alerts_table.c
        w: list[Any] = []
        if f.severity:
            w.append(a.severity == f.severity)
        if f.action:
            w.append(a.action == f.action)
        if f.since:
            w.append(a.event_ts >= f.since)
        if f.until:
            w.append(a.event_ts < f.until)
        if f.detector:
            if self.engine.dialect.name == "postgresql":
                w.append(type_coerce(a.reasons, postgresql.JSONB).contains([{"detector": f.detector}]))
            else:
                body = cast(a.reasons, String)  # JSON text; the detector name is checked to be [A-Za-z0-9_.-]
                w.append(or_(func.instr(body, f'"detector":"{f.detector}"') > 0,
                             func.instr(body, f'"detector": "{f.detector}"') > 0))
        return w

    def cases(self, f: CaseFilter, *, page: int = 1, per_page: int = 50) -> list[dict[str, Any]]:
        """One page of cases, highest risk first.

        A case's risk is its highest alert score, so the cases in risk order are the distinct ``(entity_key,
        window)`` pairs in the order their alerts first appear when read by score, highest first. The alerts are
        read that way in keyset chunks over the ``(score, alert_id)`` index and the reading stops as soon as the
        page is full: a page costs what it shows (and the pages before it), not a GROUP BY over every alert.
        """
        a = alerts_table.c
        bucket = self._bucket().label("bucket")
        where = self._where(f)
        need = page * per_page
        seen: set[tuple[str, int]] = set()
        keys: list[tuple[str, int]] = []
        last: tuple[float, str] | None = None
        chunk = max(2000, 4 * need)
        with self.engine.connect() as conn:
            while len(keys) < need:
                q = select(a.alert_id, a.entity_key, bucket, a.score).where(*where)
                if last is not None:
                    q = q.where(or_(a.score < last[0], and_(a.score == last[0], a.alert_id < last[1])))
                rows = conn.execute(q.order_by(a.score.desc(), a.alert_id.desc()).limit(chunk)).all()
                fresh: list[tuple[str, int]] = []
                for _, ek, b, _ in rows:
                    if (ek, int(b)) not in seen:
                        seen.add((ek, int(b)))
                        fresh.append((ek, int(b)))
                if f.status and fresh:
                    done = self._labelled(conn, fresh)
                    fresh = [k for k in fresh if (k in done) == (f.status == "labelled")]
                keys.extend(fresh)
                if len(rows) < chunk:
                    break
                last = (float(rows[-1][3]), str(rows[-1][0]))
            keys = keys[(page - 1) * per_page: need]
            if not keys:
                return []
            done = self._labelled(conn, keys)
            q = (select(a.entity_key, bucket, func.count().label("n"), func.max(a.score).label("risk"),
                        func.min(a.event_ts).label("first"), func.max(a.event_ts).label("last"))
                 .where(*where, a.entity_key.in_(sorted({k for k, _ in keys})))
                 .group_by(a.entity_key, bucket))
            agg = {(r["entity_key"], int(r["bucket"])): dict(r) for r in conn.execute(q).mappings()}
        out = []
        for k in keys:
            row = agg[k]
            row["bucket"] = k[1]
            row["labelled"] = int(k in done)
            out.append(row)
        return out

    def _labelled(self, conn: Any, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these cases have a verdict on one of their alerts."""
        a, fb = alerts_table.c, feedback_table.c
        bucket = self._bucket()
        q = (select(a.entity_key, bucket).select_from(alerts_table.join(feedback_table, fb.alert_id == a.alert_id))
             .where(a.entity_key.in_(sorted({k for k, _ in keys}))).distinct())
        return {(ek, int(b)) for ek, b in conn.execute(q)} & set(keys)

    def case_bounds(self, bucket: int) -> tuple[datetime, datetime]:
        start = datetime.fromtimestamp(bucket * self.window_s, UTC)
        return start, datetime.fromtimestamp((bucket + 1) * self.window_s, UTC)

    def case_alerts(self, entity_key: str, bucket: int) -> list[Any]:
        a = alerts_table.c
        start, end = self.case_bounds(bucket)
        q = (select(alerts_table).where(a.entity_key == entity_key, a.event_ts >= start, a.event_ts < end)
             .order_by(a.event_ts, a.alert_id))
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(q).mappings()]

    def score_history(self, entity_key: str, bucket: int, days: float = 7.0) -> list[tuple[datetime, float]]:
        a = alerts_table.c
        start, end = self.case_bounds(bucket)
        lo = datetime.fromtimestamp(start.timestamp() - days * 86400, UTC)
        q = (select(a.event_ts, a.score).where(a.entity_key == entity_key, a.event_ts >= lo, a.event_ts < end)
             .order_by(a.event_ts).limit(500))
        with self.engine.connect() as conn:
            return [(r[0], float(r[1])) for r in conn.execute(q)]

    def linked(self, alerts: list[Any], entity_key: str, days: float = 7.0,
               limit: int = 40) -> list[tuple[str, str, str]]:
        """``(kind, value, other entity_key)`` for other entities whose alerts share a device/ip/card/address."""
        a = alerts_table.c
        shared: dict[str, set[str]] = {}
        for al in alerts:
            for kind in LINK_KINDS:
                v = al.entities.get(kind)
                if v:
                    shared.setdefault(kind, set()).add(str(v))
        if not shared or not alerts:
            return []
        t0, t1 = min(al.event_ts for al in alerts), max(al.event_ts for al in alerts)
        lo = datetime.fromtimestamp(t0 - days * 86400, UTC)
        hi = datetime.fromtimestamp(t1 + days * 86400, UTC)
        conds = [a.entities[k].as_string().in_(sorted(vs)) for k, vs in shared.items()]
        q = (select(a.entity_key, a.entities).where(a.event_ts >= lo, a.event_ts < hi, a.entity_key != entity_key,
                                                    or_(*conds))
             .limit(2000))
        out: set[tuple[str, str, str]] = set()
        with self.engine.connect() as conn:
            for ek, ents in conn.execute(q):
                for k, vs in shared.items():
                    v = (ents or {}).get(k)
                    if v is not None and str(v) in vs:
                        out.add((k, str(v), ek))
        return sorted(out)[:limit]

    def case_feedback(self, alert_ids: list[str]) -> list[dict[str, Any]]:
        if not alert_ids:
            return []
        fb = feedback_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(feedback_table).where(fb.alert_id.in_(alert_ids))
                                .order_by(fb.imported_at)).mappings()
            return [dict(r) for r in rows]

    def record_verdict(self, username: str, entity_key: str, bucket: int, verdict: str, note: str) -> int:
        """Store a verdict on every alert of the case; returns how many feedback rows were new."""
        return self.record_verdict_labels(username, entity_key, bucket, verdict, note)[0]

    def record_verdict_labels(self, username: str, entity_key: str, bucket: int, verdict: str,
                              note: str) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
        """:meth:`record_verdict`, and the ``(key, label event)`` pairs it teaches: one per alert of the case
        whose event's latest stored verdict was not already this one (a repeated verdict teaches nothing new;
        unsure teaches nothing). Keys are the alerts' users (the labels topic is keyed like the inputs)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        alerts = self.case_alerts(entity_key, bucket)
        if not alerts:
            raise LookupError("no such case")
        outcome = VERDICTS[verdict]
        inserted = 0
        labels: list[tuple[str, dict[str, Any]]] = []
        ts = _now().timestamp()
        if outcome is not None:
            before = self._latest_outcomes([al.event_id for al in alerts])
            fbs = [Feedback(event_id=al.event_id, alert_id=al.alert_id, outcome=outcome, source="review", ts=ts,
                            reviewer=username, user_id=al.entities.get("user")) for al in alerts]
            res = self.feedback.add(fbs)
            inserted = res.inserted
            seen: set[str] = set()
            for fb in fbs:
                if fb.event_id in seen or before.get(str(fb.event_id)) == outcome:
                    continue
                seen.add(str(fb.event_id))
                labels.append((fb.user_id or str(fb.event_id), to_label(fb)))
        self.audit(username, "verdict", f"{entity_key}@{bucket}",
                   {"verdict": verdict, "note": note, "alerts": [al.alert_id for al in alerts],
                    "feedback_rows": inserted, "labels": len(labels)})
        return inserted, labels

    def _latest_outcomes(self, event_ids: list[str]) -> dict[str, str]:
        """Each event's latest stored outcome (any source), for the events that have one."""
        f = feedback_table
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(event_ids), 500):
                q = (select(f.c.event_id, f.c.outcome).where(f.c.event_id.in_(event_ids[i:i + 500]))
                     .order_by(f.c.ts, f.c.feedback_id))
                out.update({r.event_id: r.outcome for r in conn.execute(q)})
        return out

