"""The fault suite as a command: ``riskstream run`` members under faults while a producer writes live
traffic, each run checked against ``riskstream replay --kafka --group`` of the same offsets.

    python bench/faults/suite.py --scenario all --events 40000 --rate 700 [--kills 20] [--members 3]
        [--out bench/results/faults_suite.json]

Scenarios: kills (SIGKILL of random members, restarted), zombie (SIGSTOP past the session timeout, then
SIGCONT), join (a member joins mid-run), broker-restart (a private broker, stopped and started), pg-outage (a
private PostgreSQL holding the alert store and the state store, killed and started). The shared broker and
PostgreSQL come from RISKSTREAM_KAFKA_BOOTSTRAP / RISKSTREAM_DATABASE_URL (eval "$(scripts/services env)").
Prints one result table (Markdown); exit code 1 if any scenario found a difference or did not inject its fault.
See stream/bench/faults.py for what each scenario does and checks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from stream.bench.faults import SCENARIOS, FaultConfig, dump, run_scenario, summary_line, table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="all", help=f"all, or a comma-separated list of {', '.join(SCENARIOS)}")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--rate", type=float, default=700.0, help="events/s of the live producer")
    ap.add_argument("--members", type=int, default=3, help="riskstream run processes (join: one of them joins)")
    ap.add_argument("--kills", type=int, default=20, help="kills scenario: how many SIGKILLs")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pg-down-s", type=float, default=8.0, help="pg-outage: seconds PostgreSQL stays down")
    ap.add_argument("--broker-down-s", type=float, default=20.0,
                    help="broker-restart: seconds the broker stays stopped (past the 5 s a transaction waits for it "
                         "and the 10 s a new client does)")
    ap.add_argument("--workdir", type=Path, default=None, help="where each scenario's logs and state go")
    ap.add_argument("--keep", action="store_true", help="keep the work folders of passing scenarios too")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    results = []
    t0 = time.monotonic()
    for name in names:
        cfg = FaultConfig(name, events=args.events, rate=args.rate, members=args.members, kills=args.kills,
                          seed=args.seed, pg_down_s=args.pg_down_s,
                          broker_down_s=args.broker_down_s, workdir=args.workdir, keep=args.keep)
        r = run_scenario(cfg, log=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True))
        results.append(r)
        if not r.ok:
            print(f"[{name}] FAILED, logs kept in {r.workdir}: {summary_line(r)}", file=sys.stderr)
            for c in r.crashes[:5]:
                print(c, file=sys.stderr)
    print(table(results))
    print(f"\n{len(results)} scenario(s) in {time.monotonic() - t0:.0f} s; "
          f"{sum(r.ok for r in results)} passed")
    if args.out:
        dump(results, args.out, "python bench/faults/suite.py " + " ".join(shlex.quote(a) for a in
                                                                          (argv if argv is not None else sys.argv[1:])))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
