"""The review allocator (``[ensemble.bandit]``) against the fixed ensemble: frauds found per 100 reviews, per day.

The review loop of ``bench/review_loop.py``, on a stream and a configuration, run twice: the fixed ensemble, and the
same configuration with ``ensemble.bandit.enabled = true``. Every alert is a review slot: at the end of each day a
team reviews that day's top ``--k`` alerts by score (the budget is set so that about ``--k`` alerts a day are
raised, so the team reviews nearly every one), and each verdict (the stream's true label) reaches the engine as a
label event ``--delay`` after the event. Nothing else is labelled (the stream's own label events are dropped). The
allocator learns from those verdicts only; the fixed ensemble gets the same kind of feedback (its label learners and
link graph read it as usual). Reported per day: reviews, frauds found, frauds per 100 reviews.

    python bench/bandit_bench.py sim   --data s7.jsonl.gz --k 100 --out bench/results/bandit_sim_seed7.json
    python bench/bandit_bench.py handbook --k 100 --out bench/results/bandit_handbook_k100.json
    python bench/bandit_bench.py ulb --period 1h --k 10 --budget 0.002 --out bench/results/bandit_ulb_k10h.json

ULB spans two days, so its review "day" is ``--period`` (an hour: the team works the last hour's top ``--k``
alerts), and ``--warmup-days`` / ``--review-days`` count periods.

Both runs use the Python engine (the compiled core does not run the allocator), so they differ only in it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from review_loop import DROP, MAP, ReviewLoop, _day_start  # noqa: E402

from stream.config import load_settings  # noqa: E402
from stream.eval.data import shared_data_dir  # noqa: E402
from stream.eval.delayed_labels import parse_duration  # noqa: E402
from stream.events import Label  # noqa: E402
from stream.replay import replay  # noqa: E402
from stream.sources import Batch, ColumnMapping, FileSource  # noqa: E402

ULB_MAP = "ts=Time,amount=Amount,label=Class"
ULB_SET = "user_id=card,merchant_id=unknown"


class _NoLabels:
    """A source without its own label events (only the reviews' verdicts teach)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __iter__(self) -> Iterator[Batch]:
        for b in self.source:
            yield Batch([e for e in b.events if not isinstance(e, Label)], b.invalid)

    def close(self) -> None:
        self.source.close()


class _Counted(ReviewLoop):
    """The review loop, counting each day's reviews and the frauds among them."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.per_day: dict[int, list[int]] = defaultdict(lambda: [0, 0])

    def _close(self, day: int, pending: list) -> None:
        before, before_f = self.reviewed, self.reviewed_fraud
        super()._close(day, pending)
        self.per_day[day][0] += self.reviewed - before
        self.per_day[day][1] += self.reviewed_fraud - before_f


def run(args: argparse.Namespace, bandit: bool) -> dict[str, Any]:
    settings = load_settings(args.config)
    over: dict[str, Any] = {"engine.budget": args.budget, "engine.core": "python"}
    if bandit:
        over.update({"ensemble.bandit.enabled": True, "ensemble.bandit.seed": args.seed,
                     "ensemble.bandit.strength": args.strength})
    settings = settings.replace(over)
    if args.stream == "handbook":
        mapping = ColumnMapping.parse(type="order", map_spec=MAP, set_spec=[], features="none", drop=DROP,
                                      ts_origin=None, ts_unit="s")
        src: Any = FileSource([str(args.data)], batch_size=int(settings.engine["batch_size"]), mapping=mapping)
    elif args.stream == "ulb":
        mapping = ColumnMapping.parse(type="order", map_spec=ULB_MAP, set_spec=ULB_SET)
        src = FileSource([str(args.data)], batch_size=int(settings.engine["batch_size"]), mapping=mapping)
    else:
        src = _NoLabels(FileSource([str(args.data)], batch_size=int(settings.engine["batch_size"])))
    period = args.period
    start = _day_start(args.start)
    review_start = start + args.warmup_days * period
    end = review_start + args.review_days * period
    loop = _Counted(src, start=start, end=end, review_start=review_start, review_end=end, k=args.k,
                    delay=args.delay, mode="review", period=period)
    t0 = time.perf_counter()
    alerts_per_day: dict[int, int] = defaultdict(int)

    def on_batch(batch: Batch, outcome: Any) -> None:
        loop.observe(outcome)
        for e, a in zip(outcome.scored, outcome.alerted, strict=True):
            if a:
                alerts_per_day[loop._day(e.ts)] += 1

    try:
        result = replay(loop, settings, on_batch=on_batch)
    finally:
        loop.close()
    days = []
    first = int((review_start - start) // period)
    for d in range(first, first + args.review_days):
        n, f = loop.per_day.get(d, [0, 0])
        days.append({"day": d, "alerts": alerts_per_day.get(d, 0), "reviewed": n, "frauds": f,
                     "frauds_per_100": round(100.0 * f / n, 1) if n else None})
    n_all = sum(x["reviewed"] for x in days)
    f_all = sum(x["frauds"] for x in days)
    later = days[len(days) // 2:]
    n_l, f_l = sum(x["reviewed"] for x in later), sum(x["frauds"] for x in later)
    out: dict[str, Any] = {
        "bandit": bandit, "config_hash": settings.config_hash, "seconds": round(time.perf_counter() - t0, 1),
        "events": result["events"], "reviewed": n_all, "frauds_found": f_all,
        "frauds_per_100": round(100.0 * f_all / n_all, 2) if n_all else None,
        "frauds_per_100_second_half": round(100.0 * f_l / n_l, 2) if n_l else None, "per_day": days,
    }
    if bandit:
        out["arms"] = {kind: ens.allocator.stats() for kind, ens in result.engine.ensembles.items()
                       if ens.allocator is not None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stream", choices=["sim", "handbook", "ulb"])
    ap.add_argument("--data", type=Path, default=None,
                    help="the stream (sim: a `riskstream simulate` file; handbook: default the shared CSV)")
    ap.add_argument("--config", default=None, help="config TOML (handbook default: bench/review-loop.toml)")
    ap.add_argument("--start", default=None, help="first day (UTC date; sim 2024-03-01, handbook 2018-04-01)")
    ap.add_argument("--warmup-days", type=int, default=None, help="unreviewed days first (sim 1, handbook 30)")
    ap.add_argument("--review-days", type=int, default=None, help="reviewed days (sim 6, handbook 21)")
    ap.add_argument("--k", type=int, default=100, help="reviews a day (top alerts by score)")
    ap.add_argument("--budget", type=float, required=True, help="alert budget: about --k alerts a day")
    ap.add_argument("--delay", default=None, help="a verdict reaches the engine this long after its event "
                    "(default 1d; ulb 1h)")
    ap.add_argument("--period", default=None, help="the review period (default 1d; ulb 1h)")
    ap.add_argument("--seed", type=int, default=0, help="the allocator's seed")
    ap.add_argument("--strength", type=float, default=1.0, help="the allocator's strength")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sim, ulb = args.stream == "sim", args.stream == "ulb"
    if args.data is None:
        if sim:
            ap.error("sim needs --data (a `riskstream simulate` file)")
        args.data = shared_data_dir("creditcard_ulb") / "creditcard.csv.gz" if ulb else \
            shared_data_dir("fraud_handbook") / "transactions.csv.gz"
    if args.config is None and args.stream == "handbook":
        args.config = str(ROOT / "bench" / "review-loop.toml")
    args.start = args.start or ("2024-03-01" if sim else "1970-01-01" if ulb else "2018-04-01")
    args.warmup_days = args.warmup_days if args.warmup_days is not None else (1 if sim else 6 if ulb else 30)
    args.review_days = args.review_days or (6 if sim else 40 if ulb else 21)
    args.delay = parse_duration(args.delay or ("1h" if ulb else "1d"))
    args.period = parse_duration(args.period or ("1h" if ulb else "1d"))
    runs = {"fixed": run(args, False), "bandit": run(args, True)}
    report = {"command": "python bench/bandit_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "stream": args.stream, "data": str(args.data), "config": args.config, "k": args.k,
              "budget": args.budget, "delay_s": args.delay, "period_s": args.period, "seed": args.seed,
              "strength": args.strength,
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in runs.items():
        per = " ".join(str(d["frauds_per_100"]) for d in r["per_day"])
        print(f"{name:6s} frauds/100 reviews {r['frauds_per_100']} (2nd half {r['frauds_per_100_second_half']}); "
              f"per day: {per}; {r['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
