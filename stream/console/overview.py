"""The console's overview: alerts and reviewed precision over event time, fire counts per detector and rule (SQL),
and consumer lag and throughput scraped from the ``/metrics`` of running ``riskstream run`` consumers.

Everything about alerts is aggregated in the database (``GROUP BY`` the bucket, or the detector/rule a reason
names): a page is four queries, two of them a pass over the alerts table (~1.2 s on 1M alerts in PostgreSQL, see
docs/console.md). Buckets are hours or days
of *event* time (``alerts.event_ts``), epoch-aligned like the case windows of :class:`~stream.console.store
.ConsoleStore`: hours when the stored alerts span at most :data:`HOURLY_MAX_SPAN_S`, else days.

Precision per bucket counts reviewed alerts the way the rules page does (:meth:`stream.rulepacks.RulePackStore
.live_stats`): distinct alerts with a ``fraud`` verdict, distinct alerts with a ``legit`` verdict, precision =
fraud / (fraud + legit), None for a bucket without verdicts.

The metrics side reads the Prometheus text the runtime exports (:mod:`stream.kafka.observability`:
``riskstream_events_total``, ``riskstream_alerts_total``, ``riskstream_records_in_total``,
``riskstream_consumer_lag{topic,partition}``, ``riskstream_uptime_seconds``, ``riskstream_healthy``) with httpx and
prometheus-client's text parser. Throughput is events per second between this scrape and the previous one of
the same consumer when there is one, else the average since the consumer started (events / uptime).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, Integer, case, cast, distinct, func, literal_column, select, text, true

from sinks.feedback import feedback_table
from sinks.sql import alerts_table

__all__ = ["OverviewStore", "MetricsScraper", "ConsumerMetrics", "bucket_size", "check_metrics_url",
           "HOURLY_MAX_SPAN_S"]

HOUR, DAY = 3600, 86400
#: Alerts spanning at most this much event time are bucketed per hour, more per day.
HOURLY_MAX_SPAN_S = 4 * DAY


def bucket_size(first: datetime | None, last: datetime | None) -> tuple[int, str]:
    """``(seconds, "hour" | "day")`` for stored alerts from ``first`` to ``last`` (event time).

    >>> bucket_size(datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 3, tzinfo=UTC))
    (3600, 'hour')
    >>> bucket_size(datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 30, tzinfo=UTC))
    (86400, 'day')
    """
    if first is None or last is None or (last - first).total_seconds() <= HOURLY_MAX_SPAN_S:
        return HOUR, "hour"
    return DAY, "day"


class OverviewStore:
    """The overview's aggregate reads of the alert store (PostgreSQL or SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"

    def _bucket(self, col: Any, seconds: int) -> Any:
        """The bucket of ``col``: its start time on PostgreSQL (``date_bin``, ~3x cheaper per row than arithmetic on
        ``extract(epoch ...)``), the bucket number on SQLite; :func:`_number` makes both a bucket number."""
        if self.pg:
            return func.date_bin(literal_column(f"interval '{int(seconds)} seconds'"), col,
                                 literal_column("timestamptz '1970-01-01 00:00:00+00'"))
        return cast(func.strftime("%s", col) / int(seconds), Integer)

    def span(self) -> tuple[datetime | None, datetime | None]:
        """First and last event time of the stored alerts (two reads of the ``event_ts`` index)."""
        a = alerts_table.c
        with self.engine.connect() as conn:
            first, last = conn.execute(select(func.min(a.event_ts), func.max(a.event_ts))).one()
        return _utc(first), _utc(last)

    def alerts_over_time(self, seconds: int) -> dict[int, int]:
        """Alerts per bucket of ``seconds`` of event time: ``{bucket number: alerts}`` (empty buckets absent)."""
        a = alerts_table.c
        b = self._bucket(a.event_ts, seconds).label("b")
        with self.engine.connect() as conn:
            return {_number(k, seconds): int(n) for k, n in conn.execute(select(b, func.count()).group_by(b))}

    def precision_over_time(self, seconds: int) -> dict[int, tuple[int, int]]:
        """Per bucket of the alerts' event time: ``(fraud, legit)`` distinct reviewed alerts."""
        a, fb = alerts_table.c, feedback_table.c
        b = self._bucket(a.event_ts, seconds).label("b")
        q = (select(b, fb.outcome, func.count(distinct(a.alert_id)))
             .select_from(feedback_table.join(alerts_table, a.alert_id == fb.alert_id))
             .group_by(b, fb.outcome))
        out: dict[int, list[int]] = {}
        with self.engine.connect() as conn:
            for k, outcome, n in conn.execute(q):
                row = out.setdefault(_number(k, seconds), [0, 0])
                if outcome == "fraud":
                    row[0] += int(n)
                elif outcome == "legit":
                    row[1] += int(n)
        return {k: (f, lg) for k, (f, lg) in out.items()}

    def fire_counts(self, kind: str, detected_since: datetime | None = None) -> list[dict[str, Any]]:
        """Alerts naming each detector (``kind="detectors"``) or each rule (``"rules"``: reasons of detector
        ``rules``) in their reasons, most first: rows ``{"name", "alerts", "recent"}``; ``recent`` counts only the
        alerts detected (wall clock) at or after ``detected_since`` (None without it).

        One pass over the alerts with their reasons unnested (``jsonb_array_elements`` / ``json_each``). A detector
        may give several reasons to one alert (HST one per rare feature), so each alert counts once per detector; a
        rule gives at most one (rule names are unique in a pack), so the rules are counted without that step.
        """
        if kind not in ("detectors", "rules"):
            raise ValueError("kind is detectors or rules")
        with self.engine.connect() as conn:
            if self.pg:
                rows = conn.execute(text(_PG_FIRES[kind]), {"since": detected_since or _EPOCH}).all()
            else:
                a = alerts_table.c
                elems = func.json_each(a.reasons).table_valued("value")
                det = func.json_extract(elems.c.value, "$.detector")
                key = det if kind == "detectors" else func.json_extract(elems.c.value, "$.feature")
                q = (select(key, func.count(distinct(a.alert_id)),
                            func.count(distinct(case((a.detected_at >= (detected_since or _EPOCH), a.alert_id)))))
                     .select_from(alerts_table.join(elems, true()))
                     .where(*([] if kind == "detectors" else [det == "rules"])).group_by(key))
                rows = conn.execute(q).all()
        out = [{"name": str(name), "alerts": int(n), "recent": int(recent) if detected_since is not None else None}
               for name, n, recent in rows if name is not None]
        return sorted(out, key=lambda r: (-r["alerts"], r["name"]))

    def detected_since(self, since: datetime) -> int:
        """How many alerts were detected (wall clock) at or after ``since``."""
        a = alerts_table.c
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(alerts_table)
                                    .where(a.detected_at >= since)).scalar_one())

    def overview(self, detected_since: datetime | None = None) -> dict[str, Any]:
        """All the overview's numbers: the span, the bucket size, per-bucket alerts and precision, fire counts.

        The aggregate queries run side by side, each on a connection of its own (on PostgreSQL the page then
        takes about as long as the slowest of them, not their sum).
        """
        first, last = self.span()
        seconds, unit = bucket_size(first, last)
        buckets: list[dict[str, Any]] = []
        if first is None or last is None:
            return {"first": None, "last": None, "total": 0, "seconds": seconds, "unit": unit, "buckets": [],
                    "fires": {"detectors": [], "rules": [], "recent_total": 0}}
        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="overview") as pool:
            f_counts = pool.submit(self.alerts_over_time, seconds)
            f_prec = pool.submit(self.precision_over_time, seconds)
            f_det = pool.submit(self.fire_counts, "detectors", detected_since)
            f_rules = pool.submit(self.fire_counts, "rules", detected_since)
            f_recent = pool.submit(self.detected_since, detected_since) if detected_since is not None else None
            counts, prec = f_counts.result(), f_prec.result()
            fires = {"detectors": f_det.result(), "rules": f_rules.result(),
                     "recent_total": f_recent.result() if f_recent is not None else None}
        lo, hi = int(first.timestamp() // seconds), int(last.timestamp() // seconds)
        for k in range(lo, hi + 1):
            fraud, legit = prec.get(k, (0, 0))
            buckets.append({"start": datetime.fromtimestamp(k * seconds, UTC), "alerts": counts.get(k, 0),
                            "fraud": fraud, "legit": legit, "reviewed": fraud + legit,
                            "precision": fraud / (fraud + legit) if fraud + legit else None})
        return {"first": first, "last": last, "total": sum(counts.values()), "seconds": seconds, "unit": unit,
                "buckets": buckets, "fires": fires}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: PostgreSQL's fire counts: each alert's distinct detectors (hashed on the row's ctid), or its rules' names.
_PG_FIRES = {
    "detectors": """
        SELECT det, count(*), count(*) FILTER (WHERE recent)
        FROM (SELECT DISTINCT a.ctid, a.detected_at >= :since AS recent, r.value ->> 'detector' AS det
              FROM alerts a CROSS JOIN LATERAL jsonb_array_elements(a.reasons) AS r(value)) AS d
        GROUP BY det""",
    "rules": """
        SELECT r.value ->> 'feature', count(*), count(*) FILTER (WHERE a.detected_at >= :since)
        FROM alerts a CROSS JOIN LATERAL jsonb_array_elements(a.reasons) AS r(value)
        WHERE r.value ->> 'detector' = 'rules'
        GROUP BY 1""",
}


def _number(k: Any, seconds: int) -> int:
    """A bucket number from what :meth:`OverviewStore._bucket` gave (a start time, or already a number)."""
    if isinstance(k, datetime):
        return int(_utc(k).timestamp()) // seconds  # type: ignore[union-attr]
    return int(k)


def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


# ---- metrics ---------------------------------------------------------------------------------------------------


def check_metrics_url(url: str) -> str:
    """The ``/metrics`` URL of a consumer: ``http(s)://host:port[/path]``, ``/metrics`` added when no path is
    given. A bad URL raises ValueError with a one-line reason.

    >>> check_metrics_url("http://10.0.0.5:9400")
    'http://10.0.0.5:9400/metrics'
    """
    u = urlsplit(url.strip())
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"--metrics-url '{url}': give http://HOST:PORT/metrics of a `riskstream run` consumer")
    try:
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"--metrics-url '{url}': bad port") from None
    return url.strip() if u.path not in ("", "/") else f"{u.scheme}://{u.netloc}/metrics"


@dataclass
class ConsumerMetrics:
    """What one scrape of one consumer's ``/metrics`` said (``error`` set when it could not be read)."""

    url: str
    error: str | None = None
    events: float = 0.0
    records_in: float = 0.0
    alerts: float = 0.0
    uptime_s: float = 0.0
    healthy: bool | None = None
    owned_units: float = 0.0
    lag: list[tuple[str, str, float]] = field(default_factory=list)  # (topic, partition, records)
    events_per_s: float | None = None
    rate_basis: str = ""  # "since the last scrape (N s)" or "average since start"

    @property
    def lag_total(self) -> float:
        return sum(v for _, _, v in self.lag)

    @property
    def started_at(self) -> float | None:
        return time.time() - self.uptime_s if self.error is None else None


def parse_metrics(url: str, text: str) -> ConsumerMetrics:
    """Read the runtime's metrics out of Prometheus text (raises ValueError on text that is not)."""
    m = ConsumerMetrics(url)
    simple = {"riskstream_events_total": "events", "riskstream_records_in_total": "records_in",
              "riskstream_alerts_total": "alerts", "riskstream_uptime_seconds": "uptime_s",
              "riskstream_owned_units": "owned_units"}
    seen = False
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in simple:
                setattr(m, simple[s.name], float(s.value))
                seen = True
            elif s.name == "riskstream_consumer_lag":
                m.lag.append((s.labels.get("topic", ""), s.labels.get("partition", ""), float(s.value)))
            elif s.name == "riskstream_healthy":
                m.healthy = s.value >= 1
    if not seen:
        raise ValueError("no riskstream_* metrics there (is it a `riskstream run --metrics-port` endpoint?)")
    m.lag.sort(key=lambda t: (t[0], int(t[1]) if t[1].isdigit() else 0, t[1]))
    return m


class MetricsScraper:
    """Scrapes the consumers' ``/metrics`` and remembers each one's last scrape to turn counters into rates."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 3.0) -> None:
        self.urls = [check_metrics_url(u) for u in urls]
        self.timeout_s = timeout_s
        self._last: dict[str, tuple[float, float, float]] = {}  # url -> (monotonic time, events, uptime)

    async def scrape(self) -> list[ConsumerMetrics]:
        if not self.urls:
            return []
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            return list(await asyncio.gather(*(self._one(client, u) for u in self.urls)))

    async def _one(self, client: httpx.AsyncClient, url: str) -> ConsumerMetrics:
        try:
            r = await client.get(url)
            r.raise_for_status()
            m = parse_metrics(url, r.text)
        except httpx.HTTPStatusError as e:
            return ConsumerMetrics(url, error=f"HTTP {e.response.status_code}")
        except httpx.HTTPError as e:
            return ConsumerMetrics(url, error=f"unreachable: {type(e).__name__}: {e}".rstrip(": "))
        except ValueError as e:
            return ConsumerMetrics(url, error=f"not the runtime's metrics: {e}")
        now = time.monotonic()
        prev = self._last.get(url)
        self._last[url] = (now, m.events, m.uptime_s)
        # the same process (its uptime grew, its counter did not go back) scraped a moment ago: the recent rate
        if prev and m.uptime_s > prev[2] and m.events >= prev[1] and 1.0 <= now - prev[0] <= 900:
            m.events_per_s = (m.events - prev[1]) / (now - prev[0])
            m.rate_basis = f"since the last scrape ({now - prev[0]:.0f} s ago)"
        elif m.uptime_s > 0:
            m.events_per_s = m.events / m.uptime_s
            m.rate_basis = "average since the consumer started"
        return m


def fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


# ---- charts (inline SVG, drawn on the server) ------------------------------------------------------------------


def bar_chart(buckets: Sequence[dict[str, Any]], key: str, *, unit: str, title: str, fmt: str = "{:,}",
              ymax: float | None = None, note: Any = None, w: int = 900, h: int = 170) -> dict[str, Any]:
    """Geometry of a bar chart over time buckets for the template: one bar per bucket (``key`` of its dict; None
    draws no bar), each with a ``<title>`` naming the bucket and the number; a few axis labels."""
    left, right, top, bottom = 48, 8, 10, 22
    pw, ph = w - left - right, h - top - bottom
    vals = [b[key] for b in buckets]
    peak = ymax if ymax is not None else max([v for v in vals if v is not None] or [0]) or 1
    n = max(1, len(buckets))
    step = pw / n
    bw = max(1.0, step * 0.85)
    tfmt = "%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    bars = []
    for i, b in enumerate(buckets):
        v = b[key]
        if v is None:
            continue
        bh = ph * (v / peak)
        extra = f" ({note(b)})" if note else ""
        bars.append({"x": left + i * step, "y": top + ph - bh, "w": bw, "h": bh,
                     "title": f"{b['start'].strftime(tfmt)} UTC: {fmt.format(v)}{extra}"})
    every = max(1, math.ceil(n / 8))
    xlabels = [{"x": left + i * step + bw / 2, "text": b["start"].strftime("%m-%d %H:00" if unit == "hour"
                                                                            else "%Y-%m-%d")}
               for i, b in enumerate(buckets) if i % every == 0]
    ylabels = [{"y": top + ph * (1 - f), "text": f"{peak * f:.2f}" if ymax is not None else f"{round(peak * f):,}"}
               for f in (0, 0.5, 1)]
    return {"w": w, "h": h, "left": left, "top": top, "pw": pw, "ph": ph, "bars": bars, "xlabels": xlabels,
            "ylabels": ylabels, "title": title, "empty": not bars}
