"""The measured review loop: do analysts' verdicts, fed back as label events, make the engine better?

One replay of a labelled stream (the Fraud-Detection-Handbook transactions, a prefix of ``--days`` days from
``--start``) is run twice through the same engine and configuration (``bench/review-loop.toml``):

- **without reviews**: no label event at all (what the engine does on its detectors alone);
- **with reviews**: during the first ``--review-days`` days, at the end of each day a team reviews that day's
  top ``--k`` alerts by score (alerts the engine raised *in this run*, so what it learned from yesterday's reviews
  changes today's queue); each review's verdict is the stream's true label of that transaction, and it reaches the
  engine as a ``label`` event (``source = "review"``) ``--delay`` after the transaction (never before the day's
  queue is complete). Nothing else is labelled: the other transactions, frauds the engine missed included, never
  get a label.

Optionally (``--reference``) a third run gets every transaction's label ``--delay`` late during the review days:
what a team that reviewed everything would have taught.

Both runs are scored on the days after the review period (``--eval-days``): average precision over every
transaction, average precision over the transactions of cards no review had named as fraud before them (the
handbook's "known-compromised cards removed", so the gain is not only "the card we already caught"), and the
precision of the top ``--k`` transactions per day (precision at the review budget), averaged over the days.

    python bench/review_loop.py                                  # defaults: 14 review days, 7 eval days, K=100
    python bench/review_loop.py --k 50 --delay 2d --out bench/results/review_loop_k50.json

The stream comes from the shared data folder (``stream.eval.data.shared_data_dir``); the engine reads the CSV
with the handbook's column mapping (``bench/handbook/README.md``) and stops at the end of the prefix.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.config import load_settings  # noqa: E402
from stream.eval.data import shared_data_dir  # noqa: E402
from stream.eval.delayed_labels import parse_duration  # noqa: E402
from stream.events import Event, Label  # noqa: E402
from stream.replay import replay  # noqa: E402
from stream.sources import Batch, ColumnMapping, FileSource  # noqa: E402

DAY = 86400.0
MAP = ["ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,amount=TX_AMOUNT,label=TX_FRAUD,"
       "event_id=TRANSACTION_ID"]
DROP = "TX_FRAUD_SCENARIO,TX_TIME_SECONDS,TX_TIME_DAYS"


def _day_start(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class ReviewLoop:
    """A source: the prefix ``[start, end)`` of ``source``, with review verdicts injected as label events.

    ``mode``: ``"none"`` (no labels), ``"review"`` (top ``k`` alerts of each review day, by score), ``"all"``
    (every labelled transaction of the review days). Batches are cut at day boundaries, so when the next day
    starts, the engine has scored the whole previous day (:meth:`observe` saw it) and its queue can be closed.
    """

    def __init__(self, source: Any, *, start: float, end: float, review_start: float, review_end: float, k: int,
                 delay: float, mode: str, period: float = DAY) -> None:
        self.period = period  # a review "day": the queue is worked at the end of each period
        self.source, self.start, self.end = source, start, end
        self.review_start, self.review_end = review_start, review_end
        self.k, self.delay, self.mode = k, delay, mode
        self.queue: dict[int, list[tuple[float, str, int, float, str]]] = defaultdict(list)
        self.reviewed = 0
        self.reviewed_fraud = 0
        self.labels = 0
        self.fraud_known_at: dict[str, float] = {}  # card -> when its first fraud label reached the engine

    def _day(self, ts: float) -> int:
        return int((ts - self.start) // self.period)

    def observe(self, outcome: Any) -> None:
        if self.mode != "review":
            return
        for e, r, a in zip(outcome.scored, outcome.risk, outcome.alerted, strict=True):
            if a and self.review_start <= e.ts < self.review_end and e.label is not None:
                self.queue[self._day(e.ts)].append((float(r), e.event_id, int(e.label), e.ts, e.user_id))

    def _close(self, day: int, pending: list[tuple[float, int, Label]]) -> None:
        """The team works day ``day``'s queue: its top ``k`` alerts by score get their verdicts."""
        day_end = self.start + (day + 1) * self.period
        top = heapq.nlargest(self.k, self.queue.pop(day, []), key=lambda x: (x[0], x[1]))
        for _, eid, y, ts, user in top:
            self._push(pending, eid, y, max(ts + self.delay, day_end), user)
        self.reviewed += len(top)
        self.reviewed_fraud += sum(y for _, _, y, _, _ in top)

    def _push(self, pending: list[tuple[float, int, Label]], eid: str, y: int, t: float, user: str) -> None:
        heapq.heappush(pending, (t, self.labels, Label(event_id=f"review-{eid}", ts=t, ref_event_id=eid, label=y,
                                                       source="review")))
        self.labels += 1
        if y and (user not in self.fraud_known_at or t < self.fraud_known_at[user]):
            self.fraud_known_at[user] = t

    def __iter__(self) -> Iterator[Batch]:
        pending: list[tuple[float, int, Label]] = []
        day = 0
        out: list[Event] = []
        for batch in self.source:
            invalid = batch.invalid
            for e in batch.events:
                if e.ts < self.start:
                    continue
                if e.ts >= self.end:
                    break
                d = self._day(e.ts)
                if d != day:
                    if out or invalid:
                        yield Batch(out, invalid)  # the engine scores the rest of the closing day first
                        out, invalid = [], []
                    for closing in range(day, d):
                        if self.mode == "review" and closing in self.queue:
                            self._close(closing, pending)
                    day = d
                while pending and pending[0][0] <= e.ts:
                    out.append(heapq.heappop(pending)[2])
                out.append(e)
                if self.mode == "all" and self.review_start <= e.ts < self.review_end and e.label is not None:
                    self._push(pending, e.event_id, int(e.label), e.ts + self.delay, e.user_id)
            else:
                if out or invalid:
                    yield Batch(out, invalid)
                    out = []
                continue
            break  # past the prefix
        if out:
            yield Batch(out, [])

    def close(self) -> None:
        self.source.close()


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    settings = load_settings(args.config)
    if args.budget is not None:
        settings = settings.replace({"engine.budget": args.budget})
    start = _day_start(args.start)
    review_start = start + args.warmup_days * DAY
    review_end = review_start + args.review_days * DAY
    end = review_end + args.eval_days * DAY
    mapping = ColumnMapping.parse(type="order", map_spec=MAP, set_spec=[], features="none", drop=DROP,
                                  ts_origin=None, ts_unit="s")
    src = FileSource([str(args.data)], batch_size=int(settings.engine["batch_size"]), mapping=mapping)
    loop = ReviewLoop(src, start=start, end=end, review_start=review_start, review_end=review_end, k=args.k,
                      delay=args.delay, mode=mode)
    ts_l: list[float] = []
    risk_l: list[float] = []
    y_l: list[int] = []
    user_l: list[str] = []
    alert_l: list[bool] = []

    def on_batch(batch: Batch, outcome: Any) -> None:
        loop.observe(outcome)
        for e, r, a in zip(outcome.scored, outcome.risk, outcome.alerted, strict=True):
            if e.ts >= review_end:
                ts_l.append(e.ts)
                risk_l.append(float(r))
                y_l.append(int(e.label or 0))
                user_l.append(e.user_id)
                alert_l.append(bool(a))

    t0 = time.perf_counter()
    try:
        result = replay(loop, settings, on_batch=on_batch)
    finally:
        loop.close()
    return {"mode": mode, "seconds": round(time.perf_counter() - t0, 1), "events": result["events"],
            "label_events": result["label_events"], "reviewed": loop.reviewed,
            "reviewed_fraud": loop.reviewed_fraud, "labels_injected": loop.labels,
            "label_store": result.engine.label_store_stats(), "fraud_known_at": loop.fraud_known_at,
            "eval": {"ts": np.array(ts_l), "risk": np.array(risk_l), "y": np.array(y_l, dtype=int),
                     "user": np.array(user_l, dtype=object), "alerted": np.array(alert_l, dtype=bool)}}


def metrics(ev: dict[str, np.ndarray], keep: np.ndarray, *, start: float, k: int) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = ev["y"][keep], ev["risk"][keep]
    days = ((ev["ts"][keep] - start) // DAY).astype(int)
    per_day = []
    for d in sorted(set(days.tolist())):
        m = days == d
        top = np.argsort(-s[m], kind="stable")[:k]
        per_day.append(float(y[m][top].mean()) if len(top) else math.nan)
    alerted = ev["alerted"][keep]
    return {"events": int(keep.sum()), "frauds": int(y.sum()),
            "average_precision": round(float(average_precision_score(y, s)), 4) if y.any() else None,
            "roc_auc": round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None,
            f"precision_at_{k}_per_day": [round(p, 3) for p in per_day],
            f"precision_at_{k}": round(float(np.nanmean(per_day)), 4) if per_day else None,
            "alerts": int(alerted.sum()),
            "alert_precision": round(float(y[alerted].mean()), 4) if alerted.any() else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="the handbook CSV (default: fraud_handbook/transactions.csv.gz in the shared data folder)")
    ap.add_argument("--config", default=str(ROOT / "bench" / "review-loop.toml"))
    ap.add_argument("--start", default="2018-04-01", help="first day of the prefix (UTC date)")
    ap.add_argument("--warmup-days", type=int, default=30,
                    help="days the engine runs first, unreviewed and unscored (its 30-day windows fill)")
    ap.add_argument("--review-days", type=int, default=14, help="days whose alerts are reviewed")
    ap.add_argument("--eval-days", type=int, default=7, help="days after them that are scored")
    ap.add_argument("--k", type=int, default=100, help="alerts the team reviews per day (top by score)")
    ap.add_argument("--budget", type=float, default=None,
                    help="the alert budget (default: the config's, 0.01 = ~97 alerts a day); K above the day's "
                         "alerts reviews them all, so raise it with --k")
    ap.add_argument("--delay", default="1d", help="a verdict reaches the engine this long after its transaction")
    ap.add_argument("--reference", action="store_true",
                    help="also run with every transaction of the review days labelled (the ceiling)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "review_loop.json")
    args = ap.parse_args(argv)
    if args.k < 1 or args.review_days < 1 or args.eval_days < 1 or args.warmup_days < 0:
        ap.error("--k, --review-days and --eval-days must be >= 1, --warmup-days >= 0")
    args.delay = parse_duration(args.delay)
    if args.data is None:
        args.data = shared_data_dir("fraud_handbook") / "transactions.csv.gz"
    start = _day_start(args.start)
    eval_start = start + (args.warmup_days + args.review_days) * DAY
    runs = {m: run(args, m) for m in (["none", "review"] + (["all"] if args.reference else []))}
    for r in runs.values():
        print(f"{r['mode']}: {r['events']:,} events, {r['labels_injected']:,} labels, {r['seconds']} s",
              file=sys.stderr)
    ev = runs["none"]["eval"]
    for r in runs.values():  # the same events in every run
        assert np.array_equal(r["eval"]["ts"], ev["ts"]) and np.array_equal(r["eval"]["y"], ev["y"])
    known = runs["review"]["fraud_known_at"]
    unnamed = np.array([not (u in known and known[u] <= t) for u, t in zip(ev["user"], ev["ts"], strict=True)])
    report: dict[str, Any] = {
        "command": "python bench/review_loop.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(args.data), "config": str(Path(args.config).relative_to(ROOT)) if
        Path(args.config).resolve().is_relative_to(ROOT) else args.config,
        "start": args.start, "warmup_days": args.warmup_days, "review_days": args.review_days,
        "eval_days": args.eval_days, "k": args.k,
        "budget": args.budget if args.budget is not None else load_settings(args.config).budget,
        "delay_s": args.delay,
        "eval_from": datetime.fromtimestamp(eval_start, UTC).date().isoformat(),
        "cards_named_by_reviews": len(known), "runs": {},
    }
    for name, r in runs.items():
        report["runs"][name] = {
            "seconds": r["seconds"], "events": r["events"], "label_events": r["label_events"],
            "reviewed": r["reviewed"], "reviewed_fraud": r["reviewed_fraud"], "label_store": r["label_store"],
            "eval_all": metrics(r["eval"], np.ones(len(ev["y"]), dtype=bool), start=eval_start, k=args.k),
            "eval_unnamed_cards": metrics(r["eval"], unnamed, start=eval_start, k=args.k),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report["runs"].items():
        a, u = r["eval_all"], r["eval_unnamed_cards"]
        print(f"{name:7s} AP {a['average_precision']}  P@{args.k} {a[f'precision_at_{args.k}']}  "
              f"(cards not named by a review: AP {u['average_precision']}  P@{args.k} {u[f'precision_at_{args.k}']})"
              f"  reviewed {r['reviewed']} ({r['reviewed_fraud']} fraud)")
    print(f"report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
