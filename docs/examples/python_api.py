"""riskstream from Python: simulate a small stream, replay it with a config override, print the top alerts and
the ROC AUC, and the per-detector scores of the riskiest event.

Run from a checkout (or anywhere riskstream is installed)::

    python docs/examples/python_api.py --events 20000 --budget 0.01

See docs/python-api.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from sinks import MemorySink
from stream import ListSource, Outcome, SimConfig, load_settings, replay, roc_auc, simulate


def main(events: int, seed: int, budget: float) -> None:
    # The embedded defaults, then the environment, then these overrides (dotted keys, as in a TOML file).
    settings = load_settings(overrides={"engine.budget": budget, "ensemble.min_history": 200})
    source = ListSource(simulate(SimConfig(events=events, seed=seed)), batch_size=1000)

    # Every batch's outcome: each scored event with its risk, alert flag and each detector's raw/calibrated scores.
    labels: list[int] = []
    risks: list[float] = []
    riskiest: tuple[float, str, dict[str, float]] = (-1.0, "", {})

    def on_batch(batch, outcome: Outcome) -> None:
        nonlocal riskiest
        for i, e in enumerate(outcome.scored):
            if e.label is not None:
                labels.append(e.label)
                risks.append(float(outcome.risk[i]))
        if len(outcome.scored):
            i = int(np.argmax(outcome.risk))
            if outcome.risk[i] > riskiest[0]:
                raw = {name: float(r[i]) for name, r in outcome.raw.items()}
                riskiest = (float(outcome.risk[i]), outcome.scored[i].event_id, raw)

    alerts = MemorySink()  # any sink: JsonlSink("alerts.jsonl"), SqlSink(url), ...
    report = replay(source, settings, sinks=[alerts], on_batch=on_batch)

    print(f"{report['events']} events scored, {report['alerts']} alerts (budget {budget:.2%})")
    print("top alerts:")
    for a in sorted(alerts.alerts, key=lambda a: (-a.score, a.event_id))[:5]:
        why = a.reasons[0]["detail"] if a.reasons else ""
        print(f"  {a.score:.4f}  {a.severity:<8}  {a.event_type:<5}  user={a.entities.get('user')}  {why}")
    print(f"ROC AUC {report['roc_auc']:.3f} (report), {roc_auc(labels, risks):.3f} (from the outcomes)")
    print(f"riskiest event {riskiest[1]}: raw scores " + ", ".join(f"{k}={v:.3g}" for k, v in riskiest[2].items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.01)
    args = parser.parse_args()
    main(args.events, args.seed, args.budget)
