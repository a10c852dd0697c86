"""Print bench/README.md's simulator table from the replay reports in bench/results/ (run from the repository root:
``python bench/sim_table.py``), so the table is never typed by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
COLUMNS = [
    ("seed 7", "sim200k_seed7"), ("seed 11", "sim200k_seed11"), ("seed 3", "sim200k_seed3"),
    ("seed 5", "sim200k_seed5"), ("seed 13 (held out)", "sim200k_seed13"), ("seed 17 (held out)", "sim200k_seed17"),
    ("seed 7, no graph", "sim200k_nograph_seed7"), ("seed 11, no graph", "sim200k_nograph_seed11"),
    ("seed 7, + flagged", "sim200k_flagged_seed7"), ("seed 11, + flagged", "sim200k_flagged_seed11"),
]  # fmt: skip
ATTACKS = ("account_takeover", "card_testing", "credential_stuffing", "promo_abuse", "fraud_ring")
BENIGN = ("benign_new_phone", "benign_travel", "benign_seasonal_spike", "benign_big_purchase")


def _delays(d: dict[str, Any]) -> str:
    delay = d["eval"]["detection_delay"]
    return f"{delay['fraud_ring']['median_delay_s']:.0f} / {delay['card_testing']['median_delay_s']:.0f}"


def main() -> None:
    reports = [json.loads((RESULTS / f"{name}.json").read_text()) for _, name in COLUMNS]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        print(f"| {label} | " + " | ".join(cell(d) for d in reports) + " |")

    print("| | " + " | ".join(title for title, _ in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    row("ROC AUC", lambda d: f"{d['roc_auc']:.3f}")
    row("PR AUC", lambda d: f"{d['pr_auc']:.3f}")
    row("alerts (per 1k)", lambda d: f"{d['alerts']} ({d['alerts_per_1k']:.1f})")
    row("precision / recall at budget", lambda d: f"{d['precision_at_budget']:.3f} / {d['recall_at_budget']:.3f}")
    for sc in ATTACKS:
        row(f"recall `{sc}`", lambda d, sc=sc: f"{d['per_scenario_recall'][sc]:.3f}")
    row("median detection delay `fraud_ring` / `card_testing` (s)", _delays)
    for b in BENIGN:
        row(f"alerted `{b}`", lambda d, b=b: f"{d['benign_alert_rate'][b]:.3f}")
    row("events/s", lambda d: f"{d['events_per_second']:,.0f}")
    print()
    print("configs:", ", ".join(sorted({f"`{d['config_hash']}`" for d in reports})))


if __name__ == "__main__":
    main()
