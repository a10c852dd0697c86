"""Page times of the analyst console on N stored alerts in PostgreSQL: p50 and p95 per page, over the HTTP app.

Fills a private schema of the PostgreSQL in RISKSTREAM_DATABASE_URL (or ``--db``) with N synthetic alerts made
in SQL (``generate_series``: ~N/5 users over 30 days of event time, scores skewed towards 0, severities and
actions by score, one to three reasons from hst/zscore/rules with devices and IPs shared between users), runs
the migrations' indexes and ``ANALYZE``, then times each page ``--repeat`` times through starlette's TestClient
(session, SQL and template rendering: everything but the socket), and drops the schema.

    python bench/console_bench.py                  # 1 000 000 alerts
    python bench/console_bench.py --alerts 200000 --repeat 20
    python bench/console_bench.py --only overview --reviews   # the overview page, with a verdict on 2.6% of them
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import urllib.parse
import uuid

from sqlalchemy import create_engine, text

FILL = """
INSERT INTO alerts (alert_id, event_id, event_type, entity_key, user_id, entities, event_ts, detected_at, score,
                    severity, action, reasons, detector_scores, config_hash, schema_version)
SELECT md5(i::text), 'e' || i, CASE WHEN i % 3 = 0 THEN 'login' ELSE 'order' END,
       'user:u' || u, 'u' || u,
       jsonb_build_object('user', 'u' || u, 'device', 'd' || (u * 7 + i % 2) % :devices,
                          'ip', 'ip' || (u * 13) % :ips, 'card', 'c' || u),
       ts, ts + interval '50 milliseconds', s,
       CASE WHEN s > 0.99 THEN 'high' WHEN s > 0.9 THEN 'medium' ELSE 'low' END,
       CASE WHEN s > 0.99 THEN 'block' WHEN s > 0.9 THEN 'review' ELSE 'allow' END,
       jsonb_build_array(jsonb_build_object('detector', (ARRAY['hst', 'zscore', 'rules'])[1 + i % 3],
                                            'feature', CASE WHEN i % 3 = 2 THEN (ARRAY['card_burst_device',
                                                'promo_farm_device', 'many_accounts_ip'])[1 + i / 3 % 3]
                                                ELSE 'amount' END,
                                            'value', round((s * 1000)::numeric, 2),
                                            'detail', 'amount far above the user''s median')),
       jsonb_build_object('hst', s, 'zscore', s / 2), 'bench', 1
FROM (SELECT i, (hashint % :users) AS u,
             timestamptz '2024-03-01' + (i::float / :n) * interval '30 days' AS ts,
             power(((hashint / 7) % 100000) / 100000.0, 4) AS s
      FROM (SELECT i, abs(hashtext(i::text)) AS hashint FROM generate_series(1, :n) AS i) g) x
"""

REVIEWS = """
INSERT INTO review_feedback (feedback_id, event_id, alert_id, user_id, outcome, source, ts, reviewer, imported_at)
SELECT left(md5('fb' || alert_id), 32), event_id, alert_id, user_id,
       CASE WHEN score > 0.95 THEN 'fraud' ELSE 'legit' END, 'review', event_ts + interval '1 day', 'bench', now()
FROM alerts WHERE score > 0.9
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--db", default=os.environ.get("RISKSTREAM_DATABASE_URL"))
    ap.add_argument("--only", default="", help="time only the pages whose name contains this")
    ap.add_argument("--reviews", action="store_true",
                    help="also store a verdict on every alert scoring above 0.9 (fraud above 0.95)")
    args = ap.parse_args()
    if not args.db or not args.db.startswith("postgresql"):
        raise SystemExit("a PostgreSQL URL is needed: --db or RISKSTREAM_DATABASE_URL (scripts/services env)")
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

    from sinks.migrations import upgrade
    from stream.config import default_settings
    from stream.console.app import create_app
    from stream.console.store import ConsoleStore
    from stream.rulepacks import RulePackStore

    schema = f"cbench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.db)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in args.db else "?"
    engine = create_engine(f"{args.db}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}")
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        n = args.alerts
        with engine.begin() as conn:
            conn.execute(text(FILL), {"n": n, "users": max(10, n // 5), "devices": max(10, n // 6),
                                      "ips": max(10, n // 8)})
            if args.reviews:
                conn.execute(text(REVIEWS))
                conn.execute(text("ANALYZE review_feedback"))
            conn.execute(text("ANALYZE alerts"))
        print(f"filled {n:,} alerts in {time.perf_counter() - t0:.1f} s")
        ConsoleStore(engine).add_user("bench", "bench-password", "analyst")
        c = TestClient(create_app(engine, secret="bench"))
        tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"csrf": tok, "username": "bench", "password": "bench-password"})
        assert r.status_code == 200
        first = c.get("/api/cases?severity=high").json()[0]
        pages = {
            "queue, page 1": "/",
            "queue, page 20": "/?page=20",
            "queue, severity=high": "/?severity=high",
            "queue, detector=rules": "/?detector=rules",
            "queue, one day of event time": "/?since=2024-03-10&until=2024-03-11",
            "queue, status=open, action=block": "/?status=open&action=block",
            "case page": f"/case?e={urllib.parse.quote(first['entity_key'])}&b={first['bucket']}",
            "overview": "/overview",
            "rules page": "/rules",
        }
        pages = {k: v for k, v in pages.items() if args.only in k}
        print(f"{'page':36} {'p50 ms':>8} {'p95 ms':>8}   ({args.repeat} requests each, {n:,} alerts)")
        for name, path in pages.items():
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            print(f"{name:36} {statistics.median(times):8.1f} {p95:8.1f}")
        if "rules" in args.only or not args.only:  # the rules page's per-rule stats: its query, then rule by rule
            packs = RulePackStore(engine, default_settings())
            names = [str(r["name"]) for r in packs.get().pack.get("rules") or []]
            for label, fn in (("two passes (the page)", packs.live_stats), ("rule by rule", packs._live_stats_scan)):
                t = time.perf_counter()
                got = fn(names)
                print(f"rule stats, {len(names)} rules, {label}: {(time.perf_counter() - t) * 1000:.0f} ms, "
                      f"{sum(v['alerts'] for v in got.values()):,} rule reasons")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
