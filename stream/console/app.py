"""The console's ASGI app (Starlette + Jinja2, server-rendered, no JavaScript needed).

Every route but ``/login`` and ``/static`` needs a signed-in session: pages redirect to ``/login``, ``/api/``
routes answer 401. Every POST carries the session's CSRF token (``csrf`` form field); a missing or wrong token is
refused with 403. Form input is checked and a bad value is a message on the page (400), never a traceback.

``/rules`` shows the active rule pack with each rule's alerts and reviewed precision, backtests an edited pack
against the active one over a recorded stream the console was started with (``backtest_inputs``; at most
``backtest_max_events`` events per run, in a worker thread, one backtest at a time), deploys it (admin only) and
rolls back (admin only).

``/overview`` charts alerts and reviewed precision per hour or day of event time, fire counts per detector and rule
(all aggregated in SQL, :mod:`stream.console.overview`), and the lag and throughput of the consumers whose
``/metrics`` the console was given (``metrics_urls``), scraped at each page load.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from sinks.alert import SEVERITIES
from stream.config import Settings, default_settings
from stream.console.overview import MetricsScraper, OverviewStore, bar_chart, fmt_rate
from stream.console.store import VERDICTS, CaseFilter, ConsoleStore
from stream.errors import ERRORS as RISKSTREAM_ERRORS
from stream.errors import ConfigError
from stream.rulepacks import RulePackStore, backtest, file_source_factory, parse_pack

__all__ = ["create_app"]

log = logging.getLogger("riskstream.console")
_HERE = Path(__file__).resolve().parent
PER_PAGE = 50


class BadInput(ValueError):
    pass


def _parse_time(name: str, value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name}: '{value}' is not a date/time (use e.g. 2024-05-02 or 2024-05-02T09:00)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _graph(center: str, links: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Server-side layout: the case's entity in the middle, shared values on an inner ring, other entities out."""
    values = sorted({(k, v) for k, v, _ in links})
    others = sorted({o for _, _, o in links})
    w, h = 560, 360
    cx, cy = w / 2, h / 2
    nodes: dict[str, dict[str, Any]] = {center: {"x": cx, "y": cy, "label": center, "kind": "case"}}
    for i, (k, v) in enumerate(values):
        ang = 2 * math.pi * i / max(1, len(values))
        nodes[f"{k}={v}"] = {"x": cx + 95 * math.cos(ang), "y": cy + 75 * math.sin(ang),
                             "label": f"{k} {v}"[:22], "kind": "value"}
    for i, o in enumerate(others):
        ang = 2 * math.pi * (i + 0.5) / max(1, len(others))
        nodes[o] = {"x": cx + 230 * math.cos(ang), "y": cy + 150 * math.sin(ang), "label": o[:22], "kind": "other"}
    edges = [(center, f"{k}={v}") for k, v in values] + [(f"{k}={v}", o) for k, v, o in links]
    return {"w": w, "h": h, "nodes": nodes, "edges": edges}


def create_app(engine: Engine, *, secret: str | None = None, window_hours: float = 6.0,
               settings: Settings | None = None, backtest_inputs: Sequence[str] = (),
               backtest_max_events: int = 50_000, label_publisher: Any = None,
               metrics_urls: Sequence[str] = ()) -> Starlette:
    """The console app over ``engine`` (the alert store). ``label_publisher`` (a
    :class:`~stream.console.publish.LabelPublisher`, or anything with its ``publish``): where each verdict's label
    events go the moment it is recorded (the Kafka runtime's labels topic); None: only the store keeps them.
    ``metrics_urls``: the consumers' /metrics the overview page scrapes."""
    store = ConsoleStore(engine, window_hours=window_hours)
    overview_store = OverviewStore(engine)
    scraper = MetricsScraper(metrics_urls)
    settings = settings if settings is not None else default_settings()
    packs = RulePackStore(engine, settings)
    inputs = [str(p) for p in backtest_inputs]
    one_backtest = threading.Semaphore(1)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("error", None)
        return templates.TemplateResponse(request, name, {"user": request.session.get("user"),
                                                          "role": request.session.get("role"),
                                                          "csrf": csrf_token(request), **ctx}, status_code=status)

    def csrf_token(request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(32)
        return str(tok)

    async def form_checked(request: Request) -> Any:
        form = await request.form()
        sent = str(form.get("csrf", ""))
        want = request.session.get("csrf", "")
        if not sent or not want or not secrets.compare_digest(sent, want):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")
        return form

    def signed_in(request: Request) -> bool:
        return bool(request.session.get("user"))

    def need_login(request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "login.html", next=request.query_params.get("next", "/"))
        form = await form_checked(request)
        name, pw = str(form.get("username", "")).strip(), str(form.get("password", ""))
        nxt = str(form.get("next", "/"))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        role = store.check_password(name, pw) if name and pw else None
        if role is None:
            return render(request, "login.html", status=400, next=nxt, error="Wrong user name or password.")
        request.session.clear()
        request.session.update({"user": name, "role": role, "csrf": secrets.token_urlsafe(32)})
        store.audit(name, "login", None, {})
        return RedirectResponse(nxt, status_code=303)

    async def logout(request: Request) -> Response:
        if signed_in(request):
            await form_checked(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    def parse_filter(request: Request) -> tuple[CaseFilter, int]:
        q = request.query_params
        sev = q.get("severity", "") or None
        if sev and sev not in SEVERITIES:
            raise BadInput(f"severity must be one of {', '.join(SEVERITIES)}")
        status = q.get("status", "") or None
        if status and status not in ("open", "labelled"):
            raise BadInput("status must be open or labelled")
        action = (q.get("action", "") or "").strip() or None
        det = (q.get("detector", "") or "").strip() or None
        if det and (len(det) > 64 or not det.replace("_", "").replace("-", "").replace(".", "").isalnum()):
            raise BadInput("detector: letters, digits, '_', '-', '.' only")
        try:
            page = int(q.get("page", "1") or 1)
        except ValueError:
            raise BadInput("page must be a number") from None
        if page < 1 or page > 100_000:
            raise BadInput("page must be between 1 and 100000")
        f = CaseFilter(severity=sev, action=action, detector=det, since=_parse_time("from", q.get("since", "")),
                       until=_parse_time("to", q.get("until", "")), status=status)
        return f, page

    async def queue(request: Request) -> Response:
        q = dict(request.query_params)
        try:
            f, page = parse_filter(request)
        except BadInput as e:
            return render(request, "queue.html", status=400, cases=[], q=q, page=1, error=str(e),
                          severities=SEVERITIES, prev_url=None, next_url=None)
        cases = store.cases(f, page=page, per_page=PER_PAGE)

        def url(p: int) -> str:
            return "/?" + urlencode({**q, "page": p})

        return render(request, "queue.html", cases=cases, q=q, page=page, severities=SEVERITIES,
                      prev_url=url(page - 1) if page > 1 else None,
                      next_url=url(page + 1) if len(cases) == PER_PAGE else None)

    async def api_cases(request: Request) -> Response:
        try:
            f, page = parse_filter(request)
        except BadInput as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        rows = store.cases(f, page=page, per_page=PER_PAGE)
        return JSONResponse([{**r, "first": r["first"].isoformat(), "last": r["last"].isoformat()} for r in rows])

    def case_key(request: Request, source: Any) -> tuple[str, int]:
        ek = str(source.get("e", "")).strip()
        try:
            b = int(str(source.get("b", "")))
        except ValueError:
            raise BadInput("no such case (bad case window)") from None
        if not ek or len(ek) > 300:
            raise BadInput("no such case (bad entity)")
        return ek, b

    async def case_page(request: Request, error: str | None = None, status: int = 200,
                        message: str | None = None) -> Response:
        try:
            ek, b = case_key(request, request.query_params)
        except BadInput as e:
            return render(request, "error.html", status=400, error=str(e))
        alerts = store.case_alerts(ek, b)
        if not alerts:
            return render(request, "error.html", status=404, error=f"No alerts for {ek} in that window.")
        start, end = store.case_bounds(b)
        links = store.linked(alerts, ek)
        hist = store.score_history(ek, b)
        t0 = hist[0][0].timestamp() if hist else 0
        t1 = hist[-1][0].timestamp() if hist else 1
        span = max(1.0, t1 - t0)
        spark = [(10 + 520 * (t.timestamp() - t0) / span, 110 - 100 * s, s, t) for t, s in hist]
        return render(request, "case.html", status=status, ek=ek, b=b, alerts=alerts, start=start, end=end,
                      graph=_graph(ek, links), links=links, spark=spark,
                      feedback=store.case_feedback([a.alert_id for a in alerts]), verdicts=list(VERDICTS),
                      error=error, message=message,
                      ts=lambda x: datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M:%S"))

    async def verdict(request: Request) -> Response:
        form = await form_checked(request)
        try:
            ek, b = case_key(request, form)
        except BadInput as e:
            return render(request, "error.html", status=400, error=str(e))
        request.scope["query_string"] = urlencode({"e": ek, "b": b}).encode()
        v = str(form.get("verdict", ""))
        note = str(form.get("note", "")).strip()
        if v not in VERDICTS:
            return await case_page(request, error=f"Choose a verdict: {', '.join(VERDICTS)}.", status=400)
        if len(note) > 2000:
            return await case_page(request, error="The note is longer than 2000 characters.", status=400)
        user = str(request.session["user"])
        try:
            n, labels = store.record_verdict_labels(user, ek, b, v, note)
        except LookupError:
            return render(request, "error.html", status=404, error="No such case.")
        message = f"Verdict '{v}' recorded ({n} new label rows)."
        if label_publisher is not None and labels:
            try:
                sent = await run_in_threadpool(label_publisher.publish, labels)
            except RISKSTREAM_ERRORS as e:
                log.warning("console: verdict on %s@%s not published: %s", ek, b, e)
                store.audit(user, "verdict.unpublished", f"{ek}@{b}", {"error": str(e)[:500],
                                                                       "labels": len(labels)})
                return await case_page(request, status=503, message=message, error=(
                    f"The verdict is stored, but its {len(labels)} label events did not reach the labels topic "
                    f"({e}). `riskstream label export --since 1d --kafka HOST:PORT` sends them again."))
            message += f" {sent} label events sent to the engine's labels topic."
        return await case_page(request, message=message)

    async def audit(request: Request) -> Response:
        if request.session.get("role") != "admin":
            return render(request, "error.html", status=403, error="Only an admin may read the audit trail.")
        return render(request, "audit.html", rows=store.audit_rows())

    # ---- rules
    async def rules_page(request: Request, *, status: int = 200, error: str | None = None,
                         message: str | None = None, pack_text: str | None = None, bt: Any = None,
                         chosen: int = 0, comment: str = "") -> Response:
        active = await run_in_threadpool(packs.get)
        versions = await run_in_threadpool(packs.versions)
        live = active.pack
        live_rules = [{"name": r.get("name"), "when": r.get("when"), "score": r.get("score", 1.0),
                       "action": r.get("action", "review")} for r in live.get("rules") or []]
        stats = await run_in_threadpool(packs.live_stats, [str(r["name"]) for r in live_rules])
        bt_rules = sorted(set(bt["current"]["rule_alerts"]) | set(bt["candidate"]["rule_alerts"])) if bt else []
        return render(request, "rules.html", status=status, error=error, message=message, active=active,
                      versions=versions, live_rules=live_rules, stats=stats,
                      pack_text=active.pack_text if pack_text is None else pack_text, inputs=inputs,
                      chosen=chosen, max_events=backtest_max_events, bt=bt, bt_rules=bt_rules, comment=comment)

    async def rules_form(request: Request) -> tuple[Any, str, str]:
        form = await form_checked(request)
        text = str(form.get("pack", ""))
        comment = str(form.get("comment", "")).strip()
        if len(text) > 200_000:
            raise BadInput("The pack is longer than 200000 characters.")
        if len(comment) > 2000:
            raise BadInput("The comment is longer than 2000 characters.")
        return form, text, comment

    async def rules_backtest(request: Request) -> Response:
        try:
            form, text, comment = await rules_form(request)
        except BadInput as e:
            return await rules_page(request, status=400, error=str(e))
        try:
            chosen = int(str(form.get("input", "")))
            if not 0 <= chosen < len(inputs):
                raise ValueError
        except ValueError:
            msg = ("Choose a recorded stream." if inputs else
                   "No recorded stream to backtest on: start the console with --backtest-input FILE.")
            return await rules_page(request, status=400, error=msg, pack_text=text, comment=comment)
        try:
            candidate = parse_pack(text)
            current = (await run_in_threadpool(packs.get)).pack
        except ConfigError as e:
            return await rules_page(request, status=400, error=str(e), pack_text=text, chosen=chosen,
                                    comment=comment)
        if not one_backtest.acquire(blocking=False):
            return await rules_page(request, status=429, error="Another backtest is running; try again shortly.",
                                    pack_text=text, chosen=chosen, comment=comment)
        try:
            result = await run_in_threadpool(backtest, settings, current, candidate,
                                             file_source_factory([inputs[chosen]], settings),
                                             max_events=backtest_max_events)
        except ConfigError as e:
            return await rules_page(request, status=400, error=str(e), pack_text=text, chosen=chosen,
                                    comment=comment)
        finally:
            one_backtest.release()
        store.audit(str(request.session["user"]), "rules.backtest", inputs[chosen],
                    {"events": result["candidate"]["events"], "added": result["added"]["count"],
                     "removed": result["removed"]["count"]})
        return await rules_page(request, pack_text=text, bt=result, chosen=chosen, comment=comment,
                                message="Backtest done: the live pack and the candidate side by side below.")

    async def rules_deploy(request: Request) -> Response:
        try:
            _, text, comment = await rules_form(request)
        except BadInput as e:
            return await rules_page(request, status=400, error=str(e))
        if request.session.get("role") != "admin":
            store.audit(str(request.session["user"]), "rules.deploy.refused", None, {"role": "analyst"})
            return await rules_page(request, status=403, error="Only an admin may deploy rules.", pack_text=text,
                                    comment=comment)
        try:
            v = await run_in_threadpool(lambda: packs.deploy(text, author=str(request.session["user"]),
                                                             comment=comment))
        except ConfigError as e:
            return await rules_page(request, status=400, error=str(e), pack_text=text, comment=comment)
        return await rules_page(request, message=f"Deployed rule pack v{v.version} (was v{v.parent_version}).")

    async def rules_rollback(request: Request) -> Response:
        await form_checked(request)
        if request.session.get("role") != "admin":
            return await rules_page(request, status=403, error="Only an admin may roll back rules.")
        try:
            before = await run_in_threadpool(packs.active_version)
            v = await run_in_threadpool(lambda: packs.rollback(author=str(request.session["user"])))
        except (LookupError, ConfigError) as e:
            return await rules_page(request, status=400, error=str(e))
        return await rules_page(request, message=f"Rolled back: v{v.version} is active again (was v{before}).")

    # ---- overview
    async def overview(request: Request) -> Response:
        consumers = await scraper.scrape()
        live = [c for c in consumers if c.error is None]
        events = sum(c.events for c in live)
        since_ts = min((c.started_at for c in live if c.started_at is not None), default=None)
        since = datetime.fromtimestamp(since_ts, UTC) if live and events > 0 and since_ts is not None else None
        ov = await run_in_threadpool(overview_store.overview, since)
        buckets = ov["buckets"]
        alerts_chart = bar_chart(buckets, "alerts", unit=ov["unit"], title=f"Alerts per {ov['unit']} (event time)")
        prec_chart = bar_chart(buckets, "precision", unit=ov["unit"], ymax=1.0, fmt="{:.3f}",
                               title=f"Precision per {ov['unit']} from verdicts",
                               note=lambda b: f"{b['fraud']} fraud of {b['reviewed']} reviewed")
        fires = ov["fires"]
        # per 1,000 events only over alerts the scraped consumers can have raised: detected (wall clock) since they
        # started; a replay's alerts (or `run --event-time-clock`) carry event time in detected_at and are not
        rated = since is not None and fires.get("recent_total", 0) > 0
        for rows in (fires["detectors"], fires["rules"]):
            for r in rows:
                r["share"] = r["alerts"] / ov["total"] if ov["total"] else 0.0
                r["per_1000"] = 1000.0 * r["recent"] / events if rated else None
        consumer_alerts = sum(c.alerts for c in live)
        return render(request, "overview.html", ov=ov, buckets=buckets, alerts_chart=alerts_chart,
                      prec_chart=prec_chart, fires=fires, consumers=consumers, events=events, since=since,
                      rated=rated, consumer_alerts=consumer_alerts,
                      metrics_urls=scraper.urls, fmt_rate=fmt_rate,
                      tfmt="%Y-%m-%d %H:00" if ov["unit"] == "hour" else "%Y-%m-%d")

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", queue),
        Route("/case", case_page),
        Route("/case/verdict", verdict, methods=["POST"]),
        Route("/admin/audit", audit),
        Route("/overview", overview),
        Route("/rules", rules_page),
        Route("/rules/backtest", rules_backtest, methods=["POST"]),
        Route("/rules/deploy", rules_deploy, methods=["POST"]),
        Route("/rules/rollback", rules_rollback, methods=["POST"]),
        Route("/api/cases", api_cases),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return render(request, "error.html", status=exc.status_code, error=exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return Response("Something went wrong on the server; it is logged.", status_code=500,
                        media_type="text/plain")

    class Gate:
        """Inside the session middleware: no page or API answers without a signed-in session."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                path = scope["path"]
                if not (path == "/login" or path.startswith("/static/")) and not scope["session"].get("user"):
                    await need_login(Request(scope, receive))(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app = Starlette(routes=routes, middleware=[
        Middleware(SessionMiddleware, secret_key=secret or secrets.token_urlsafe(32), session_cookie="rs_console",
                   same_site="strict", max_age=12 * 3600),
        Middleware(Gate),
    ], exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.store = store
    return app
