"""``riskstream alerts query`` on SQLite: event-time ranges, filters and sorting (tests/postgres runs the same on
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from sinks import Alert, alert_id
from sinks.sql import SqlSink
from stream.cli import cli

DAY = 86400.0
T0 = 1709251200.0  # 2024-03-01T00:00:00Z: replayed data, long before the wall clock


def make_alert(i: int, ts: float, score: float, severity: str, action: str = "review",
               rules: tuple[str, ...] = ()) -> Alert:
    reasons = tuple({"detector": "rules", "feature": r, "value": None, "detail": f"rule {r}: x=1 >= 1",
                     "contribution": 1.0 / len(rules)} for r in rules)
    return Alert(alert_id=alert_id(f"e{i}", "cfg"), event_id=f"e{i}", event_type="order", entities={"user": f"u{i}"},
                 event_ts=ts, detected_at=ts, score=score, severity=severity, action=action,
                 reasons=reasons or ({"detector": "hst", "feature": "amount", "value": 1.0, "detail": "x"},),
                 detector_scores={"hst": 0.5}, config_hash="cfg")


# two days of replayed alerts: e0-e2 on the first day, e3-e5 within the last day before the newest (e5)
ALERTS = [
    make_alert(0, T0, 0.999, "critical", "block", ("shared_device",)),
    make_alert(1, T0 + 3600, 0.95, "medium"),
    make_alert(2, T0 + 7200, 0.97, "high", rules=("card_burst_ip", "shared_device")),
    make_alert(3, T0 + DAY + 3600, 0.92, "low"),
    make_alert(4, T0 + DAY + 7200, 0.998, "critical", "block", ("card_burst_ip",)),
    make_alert(5, T0 + 2 * DAY, 0.96, "high"),
]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/alerts.db"
    sink = SqlSink(url)
    sink.add_many(ALERTS)
    sink.close()
    return url


def query(db: str, *args: str) -> list[str]:
    """The event ids ``alerts query`` prints (jsonl), in its order."""
    res = CliRunner().invoke(cli, ["alerts", "query", "--db", db, "--format", "jsonl", "--limit", "0", *args])
    assert res.exit_code == 0, res.output
    return [orjson.loads(line)["event_id"] for line in res.stdout.splitlines()]


def test_since_a_duration_counts_back_from_the_newest_alert_not_the_wall_clock(db: str) -> None:
    assert query(db, "--since", "1d") == ["e3", "e4", "e5"]
    assert query(db, "--since", "46h") == ["e2", "e3", "e4", "e5"]  # at or after
    assert query(db, "--since", "2024-03-02T01:00:00Z") == ["e3", "e4", "e5"]  # a time stays a time


@pytest.mark.parametrize("args, ids", [
    (["--from", "2024-03-01T01:00:00Z", "--to", "2024-03-02T01:00:00Z"], ["e1", "e2"]),  # --to is exclusive
    (["--from", str(T0 + 3600), "--to", str(T0 + 7200)], ["e1"]),  # epoch seconds
    (["--to", "2024-03-01"], ["e0", "e1", "e2"]),  # a bare date: through the end of that day
    (["--severity", "high"], ["e0", "e2", "e4", "e5"]),  # at least high, as alerts tail
    (["--min-score", "0.97"], ["e0", "e2", "e4"]),
    (["--action", "block"], ["e0", "e4"]),
    (["--rule", "shared_device"], ["e0", "e2"]),
    (["--rule", "card_burst_ip", "--since", "1d"], ["e4"]),
    (["--sort", "score"], ["e0", "e4", "e2", "e5", "e1", "e3"]),
    (["--sort", "score", "--limit", "2", "--severity", "high", "--action", "review"], ["e2", "e5"]),
    (["--limit", "2"], ["e4", "e5"]),  # by time: the newest, printed oldest first
])
def test_filters_and_sorting(db: str, args: list[str], ids: list[str]) -> None:
    assert query(db, *args) == ids


def test_an_empty_store_has_nothing_since_a_duration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    SqlSink(url).close()
    assert query(url, "--since", "1d") == []


@pytest.mark.parametrize("args, message", [
    (["--since", "1d", "--from", "2024-03-01"], "--since and --from both set where the range starts: give one of them"),
    (["--to", "yesterday"], "--to: 'yesterday' is not an ISO-8601 time or epoch seconds"),
    (["--since", "a while"], "--since: expected a duration (30m, 1h, 2d, 1w) or an ISO-8601 time, not 'a while'"),
])
def test_bad_ranges_exit_2_with_one_line(db: str, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["alerts", "query", "--db", db, *args])
    assert res.exit_code == 2 and res.output == f"riskstream: error: {message}\n"


def test_help_says_what_a_duration_counts_from() -> None:
    text: Any = CliRunner().invoke(cli, ["alerts", "query", "--help"]).output
    flat = " ".join(text.split())
    assert "counted back from the event time of the newest alert in the store, not from the wall clock" in flat
    assert "Only alerts of at least this severity" in flat
