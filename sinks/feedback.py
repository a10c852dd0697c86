"""Review feedback: review outcomes and chargebacks, stored beside the alerts and turned into label events.

A :class:`Feedback` says that event ``event_id`` (or the event of alert ``alert_id``) turned out to be fraud
or legitimate, according to a reviewer (``source="review"``) or a chargeback (``source="chargeback"``), at
time ``ts``. :class:`FeedbackStore` keeps them in the ``review_feedback`` table (created by the migrations),
joined to ``alerts``, and hands them back as ``label`` events for the online supervised learner::

    {"type": "label", "event_id": "fb-<feedback_id>", "ts": "2024-05-02T09:00:00.000Z",
     "ref_event_id": "<event_id>", "label": 1, "source": "chargeback"}

Imports are idempotent: a record's id is a hash of its event, source, outcome and time, so importing the same
file twice stores each record once. Records are read from JSON lines or CSV (see :func:`read_feedback`); a bad
record is an :class:`InvalidFeedback` naming the file, line and field, and nothing of that file is stored.

>>> from sinks.sql import SqlSink
>>> sink = SqlSink("sqlite://")              # the alerts table (and the feedback table) via the migrations
>>> store = FeedbackStore(sink.engine)
>>> store.add([Feedback(event_id="e1", outcome="fraud", source="chargeback", ts=1714640400.0)])
ImportResult(inserted=1, duplicates=0)
>>> [event for _, event in store.label_events()]  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
[{'type': 'label', 'event_id': 'fb-...', 'ts': '2024-05-02T09:00:00.000Z', 'ref_event_id': 'e1',
  'label': 1, 'source': 'chargeback'}]
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import CheckConstraint, Column, Engine, Index, String, Table, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from sinks.errors import SinkError
from sinks.sql import EngineHolder, UtcDateTime, alerts_table, describe_error, metadata

__all__ = [
    "Feedback",
    "FeedbackStore",
    "ImportResult",
    "InvalidFeedback",
    "feedback_table",
    "parse_feedback",
    "read_feedback",
    "to_label",
    "OUTCOMES",
    "FEEDBACK_SOURCES",
]

OUTCOMES = ("fraud", "legit")
FEEDBACK_SOURCES = ("review", "chargeback")
_MAX_STRING = 1024

#: The ``review_feedback`` table in :data:`sinks.sql.metadata`.
feedback_table = Table(
    "review_feedback",
    metadata,
    Column("feedback_id", String(32), primary_key=True),
    Column("event_id", String, nullable=False),
    Column("alert_id", String(64)),
    Column("user_id", String),
    Column("outcome", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("ts", UtcDateTime, nullable=False),
    Column("reviewer", String),
    Column("imported_at", UtcDateTime, nullable=False),
    CheckConstraint("outcome IN ('fraud', 'legit')", name="outcome"),
    CheckConstraint("source IN ('review', 'chargeback')", name="source"),
    Index("ix_review_feedback_event_id", "event_id"),
    Index("ix_review_feedback_alert_id", "alert_id"),
    Index("ix_review_feedback_ts", "ts"),
)


class InvalidFeedback(ValueError):
    """A feedback record that cannot be stored; the message names where it is and what is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """One review outcome or chargeback.

    Parameters
    ----------
    event_id
        The event judged. May be None when ``alert_id`` is given: the store looks it up in ``alerts``.
    outcome
        ``"fraud"`` or ``"legit"``.
    source
        ``"review"`` (an analyst's decision) or ``"chargeback"`` (the payment network's).
    ts
        When the outcome became known, epoch seconds UTC (the label event's time).
    alert_id
        The alert reviewed, if any.
    reviewer
        Who decided (review) or the dispute reference (chargeback).
    user_id
        The user the event belongs to, if known (the Kafka key of the label event; else taken from the alert).
    """

    event_id: str | None
    outcome: str
    source: str
    ts: float
    alert_id: str | None = None
    reviewer: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise InvalidFeedback(f"outcome: must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.source not in FEEDBACK_SOURCES:
            raise InvalidFeedback(
                f"source: must be one of {', '.join(FEEDBACK_SOURCES)}, not {self.source!r}")
        if not self.event_id and not self.alert_id:
            raise InvalidFeedback("event_id: is missing (give event_id, alert_id or both)")
        if not math.isfinite(self.ts):
            raise InvalidFeedback("ts: must be finite")

    @property
    def feedback_id(self) -> str:
        """Deterministic id (needs ``event_id``): the same judgement imported twice is stored once."""
        if not self.event_id:
            raise InvalidFeedback("feedback without an event_id has no id yet (resolve its alert first)")
        ms = round(self.ts * 1000)
        key = f"{self.event_id}\x1f{self.source}\x1f{self.outcome}\x1f{ms}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What :meth:`FeedbackStore.add` did: rows ``inserted``, and ``duplicates`` already stored."""

    inserted: int
    duplicates: int


# --- parsing ------------------------------------------------------------------------------------------------


def _text(name: str, value: Any, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidFeedback(f"{name}: is missing")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidFeedback(f"{name}: must be a string, not {type(value).__name__}")
    if len(value) > _MAX_STRING:
        raise InvalidFeedback(f"{name}: is longer than {_MAX_STRING} characters")
    if "\x00" in value:
        raise InvalidFeedback(f"{name}: contains a NUL character")
    return value.strip()


def _ts(value: Any) -> float:
    """ISO-8601 text (UTC if no offset) or epoch milliseconds, as events take them."""
    if value is None or value == "":
        raise InvalidFeedback("ts: is missing")
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text) / 1000.0 if text.lstrip("-").replace(".", "", 1).isdigit() else _iso(text)
        except ValueError:
            raise InvalidFeedback(
                f"ts: is not an ISO-8601 timestamp or epoch milliseconds: {value[:40]!r}") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) / 1000.0
    raise InvalidFeedback(f"ts: must be ISO-8601 text or epoch milliseconds, not {value!r}"[:120])


def _iso(text: str) -> float:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _outcome(obj: Mapping[str, Any]) -> str:
    value = obj.get("outcome")
    if value is None or value == "":
        label = obj.get("label")
        if label in (1, True, "1", "true"):
            return "fraud"
        if label in (0, False, "0", "false"):
            return "legit"
        raise InvalidFeedback("outcome: is missing (fraud or legit; or label 1 or 0)")
    if not isinstance(value, str) or value.strip().lower() not in OUTCOMES:
        raise InvalidFeedback(f"outcome: must be fraud or legit, not {value!r}"[:120])
    return value.strip().lower()


def parse_feedback(obj: Mapping[str, Any], *, default_source: str | None = None) -> Feedback:
    """A :class:`Feedback` from a decoded record, or :class:`InvalidFeedback`.

    Fields: ``event_id`` (or ``ref_event_id``) and/or ``alert_id``; ``outcome`` (``fraud`` | ``legit``, or
    ``label`` 1 | 0); ``source`` (``review`` | ``chargeback``; ``default_source`` if absent); ``ts`` (ISO-8601
    or epoch milliseconds); optional ``reviewer`` and ``user_id``. Unknown fields are ignored.
    """
    if not isinstance(obj, Mapping):
        raise InvalidFeedback(f"must be an object, not {type(obj).__name__}")
    source = _text("source", obj.get("source")) or default_source
    if source is None:
        raise InvalidFeedback("source: is missing (review or chargeback)")
    return Feedback(
        event_id=_text("event_id", obj.get("event_id") or obj.get("ref_event_id")),
        alert_id=_text("alert_id", obj.get("alert_id")),
        outcome=_outcome(obj),
        source=source.lower(),
        ts=_ts(obj.get("ts")),
        reviewer=_text("reviewer", obj.get("reviewer")),
        user_id=_text("user_id", obj.get("user_id")),
    )


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_feedback(path: str | Path, *, format: str | None = None,
                  default_source: str | None = None) -> list[Feedback]:
    """Every record of a JSON-lines or CSV file (by its extension, ``.gz`` allowed, or ``format``).

    CSV files have a header row naming the fields of :func:`parse_feedback`. The whole file is validated:
    the first bad record raises :class:`InvalidFeedback` as ``<file>:<line>: <field>: <problem>``.
    """
    p = Path(path)
    name = p.name.removesuffix(".gz")
    fmt = format or ("csv" if name.endswith(".csv") else "jsonl")
    if fmt not in ("csv", "jsonl"):
        raise InvalidFeedback(f"{p}: format must be csv or jsonl, not {fmt!r}")
    out: list[Feedback] = []
    try:
        with _open_text(p) as fh:
            for line_no, obj in _records(fh, fmt):
                try:
                    out.append(parse_feedback(obj, default_source=default_source))
                except InvalidFeedback as e:
                    raise InvalidFeedback(f"{p}:{line_no}: {e}") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise InvalidFeedback(f"{p}: cannot read: {e}") from e
    return out


def _records(fh: IO[str], fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "csv":
        reader = csv.DictReader(fh)
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}
        return
    for line_no, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            yield line_no, orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise InvalidFeedback(f"line {line_no}: not valid JSON ({e.args[0] if e.args else e})") from None


# --- labels -------------------------------------------------------------------------------------------------


def _iso_ms(dt: datetime | float) -> str:
    if not isinstance(dt, datetime):
        dt = datetime.fromtimestamp(dt, UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_label(feedback: Feedback) -> dict[str, Any]:
    """The ``label`` event (JSON object, as ``stream.events.decode`` reads it) a feedback record becomes.

    >>> to_label(Feedback(event_id="e1", outcome="legit", source="review", ts=0.0))["label"]
    0
    """
    return {
        "type": "label",
        "event_id": f"fb-{feedback.feedback_id}",
        "ts": _iso_ms(feedback.ts),
        "ref_event_id": feedback.event_id,
        "label": 1 if feedback.outcome == "fraud" else 0,
        "source": feedback.source,
    }


# --- the store ----------------------------------------------------------------------------------------------


class FeedbackStore(EngineHolder):
    """The ``review_feedback`` table, joined to ``alerts``.

    Parameters
    ----------
    url_or_engine
        Database URL or engine (the alert store's). An engine given is never disposed by :meth:`close`.
    create
        Run the migrations first (they create ``alerts`` and ``review_feedback``).
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, create: bool = True) -> None:
        self._open_engine(url_or_engine, "FeedbackStore")
        if create:
            from sinks.migrations import upgrade

            self._prepare("migrate the schema", lambda: upgrade(self._engine))

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except sa_exc.SQLAlchemyError as e:
            reason, retriable = describe_error(e, self._password)
            raise SinkError(f"cannot {what} at {self._where}: {reason}", retriable=retriable) from e

    def add(self, items: Iterable[Feedback]) -> ImportResult:
        """Store feedback records in one transaction, skipping those already stored.

        A record with only ``alert_id`` gets the alert's event; a record with only ``event_id`` is linked to
        that event's latest alert if there is one (feedback on events that never alerted, such as chargebacks
        on missed fraud, is kept too: it is the most useful label there is). A record whose ``alert_id`` is
        unknown and that has no ``event_id``, or whose ``event_id`` contradicts its alert's, is an
        :class:`InvalidFeedback` and nothing is stored.
        """
        records = list(items)
        a = alerts_table

        def run() -> ImportResult:
            with self._engine.begin() as conn:
                by_alert = {}
                alert_ids = sorted({r.alert_id for r in records if r.alert_id})
                for i in range(0, len(alert_ids), 500):
                    chunk = alert_ids[i : i + 500]
                    q = select(a.c.alert_id, a.c.event_id, a.c.user_id).where(a.c.alert_id.in_(chunk))
                    by_alert.update({row.alert_id: row for row in conn.execute(q)})
                by_event: dict[str, Any] = {}
                event_ids = sorted({r.event_id for r in records if r.event_id and not r.alert_id})
                for i in range(0, len(event_ids), 500):
                    chunk = event_ids[i : i + 500]
                    q = (select(a.c.event_id, a.c.alert_id, a.c.user_id)
                         .where(a.c.event_id.in_(chunk)).order_by(a.c.detected_at, a.c.alert_id))
                    by_event.update({row.event_id: row for row in conn.execute(q)})  # latest alert wins
                rows: dict[str, dict[str, Any]] = {}
                now = datetime.now(UTC)
                for n, r in enumerate(records, 1):
                    rows.setdefault(*self._row(n, r, by_alert, by_event, now))
                if not rows:
                    return ImportResult(0, 0)
                dialect_insert = postgresql.insert if self._pg else sqlite.insert
                ins = dialect_insert(feedback_table).on_conflict_do_nothing(
                    index_elements=["feedback_id"]).returning(feedback_table.c.feedback_id)
                batch = list(rows.values())
                inserted = 0
                for i in range(0, len(batch), 1000):
                    inserted += len(conn.execute(ins, batch[i : i + 1000]).all())
                return ImportResult(inserted, len(records) - inserted)

        return self._run(f"store {len(records)} feedback records", run)

    @staticmethod
    def _row(n: int, r: Feedback, by_alert: Mapping[str, Any], by_event: Mapping[str, Any],
             now: datetime) -> tuple[str, dict[str, Any]]:
        event_id, alert_id, user_id = r.event_id, r.alert_id, r.user_id
        if alert_id:
            hit = by_alert.get(alert_id)
            if hit is None and not event_id:
                raise InvalidFeedback(f"record {n}: alert_id {alert_id!r} is not in the alerts table "
                                      "and the record has no event_id")
            if hit is not None:
                if event_id and event_id != hit.event_id:
                    raise InvalidFeedback(f"record {n}: event_id {event_id!r} is not the event of alert "
                                          f"{alert_id!r} ({hit.event_id!r})")
                event_id, user_id = hit.event_id, user_id or hit.user_id
        elif event_id and event_id in by_event:
            hit = by_event[event_id]
            alert_id, user_id = hit.alert_id, user_id or hit.user_id
        fb = Feedback(event_id=event_id, alert_id=alert_id, user_id=user_id, outcome=r.outcome,
                      source=r.source, ts=r.ts, reviewer=r.reviewer)
        return fb.feedback_id, {
            "feedback_id": fb.feedback_id, "event_id": event_id, "alert_id": alert_id, "user_id": user_id,
            "outcome": r.outcome, "source": r.source, "ts": datetime.fromtimestamp(r.ts, UTC),
            "reviewer": r.reviewer, "imported_at": now,
        }

    def joined(self, *, since: float | None = None, until: float | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback rows, oldest first, each with its alert's ``score``, ``severity``, ``action``,
        ``entity_key`` and ``event_ts`` (None where the event never alerted)."""
        f, a = feedback_table, alerts_table
        stmt = (
            select(f, a.c.score, a.c.severity, a.c.action, a.c.entity_key, a.c.event_ts,
                   a.c.user_id.label("alert_user_id"))
            .select_from(f.outerjoin(a, a.c.alert_id == f.c.alert_id))
            .order_by(f.c.ts, f.c.feedback_id)
        )
        if since is not None:
            stmt = stmt.where(f.c.ts >= datetime.fromtimestamp(since, UTC))
        if until is not None:
            stmt = stmt.where(f.c.ts < datetime.fromtimestamp(until, UTC))
        if limit is not None:
            stmt = stmt.limit(limit)

        def run() -> list[dict[str, Any]]:
            with self._engine.connect() as conn:
                return [dict(r) for r in conn.execute(stmt).mappings()]

        return self._run("query review_feedback", run)

    def label_events(self, *, since: float | None = None, until: float | None = None, latest: bool = True,
                     event_time_delay: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(key, label event)`` for the stored records, oldest first.

        ``key`` is the Kafka message key that co-partitions the label with the user's events: the record's
        ``user_id``, else its alert's user, else the referenced event id.

        ``latest`` (the default): one label per event, from its latest record (by ``ts``, then id): a re-reviewed
        event says what its last verdict says. ``since``/``until`` select by that latest record's time.
        ``event_time_delay``: the label's time is the judged event's time (``event_ts`` of its alert) plus this
        many seconds instead of the record's own time, so a replay of the recorded stream meets the label where it
        belongs in event time; records whose event never alerted (no event time known) are left out.
        """
        rows = self.joined(until=until)
        if latest:
            last: dict[str, dict[str, Any]] = {}
            for r in rows:  # oldest first: a later record replaces an earlier one
                last.pop(r["event_id"], None)
                last[r["event_id"]] = r
            rows = sorted(last.values(), key=lambda r: (r["ts"], r["feedback_id"]))
        if since is not None:
            cut = datetime.fromtimestamp(since, UTC)
            rows = [r for r in rows if r["ts"] >= cut]
        out = []
        for r in rows:
            fb = Feedback(event_id=r["event_id"], outcome=r["outcome"], source=r["source"],
                          ts=r["ts"].timestamp(), alert_id=r["alert_id"], reviewer=r["reviewer"],
                          user_id=r["user_id"])
            event = to_label(fb)
            if event_time_delay is not None:
                if r["event_ts"] is None:
                    continue
                event["ts"] = _iso_ms(r["event_ts"].timestamp() + event_time_delay)
            out.append((r["user_id"] or r["alert_user_id"] or r["event_id"], event))
        if event_time_delay is not None:
            out.sort(key=lambda ke: (ke[1]["ts"], ke[1]["event_id"]))
        return out

    def close(self) -> None:
        self._dispose()

    def __repr__(self) -> str:
        return f"FeedbackStore({self._where!r})"
