"""Print bench/README.md's simulator table from the replay reports in bench/results/ (run from the repository root:
``python bench/sim_table.py``), so the table is never typed by hand."""

import json
cols = [("seed 7", "sim200k_seed7"), ("seed 11", "sim200k_seed11"), ("seed 3", "sim200k_seed3"),
        ("seed 5", "sim200k_seed5"), ("seed 13 (held out)", "sim200k_seed13"), ("seed 17 (held out)", "sim200k_seed17"),
        ("seed 7, no graph", "sim200k_nograph_seed7"),
        ("seed 11, no graph", "sim200k_nograph_seed11"), ("seed 7, + flagged", "sim200k_flagged_seed7"),
        ("seed 11, + flagged", "sim200k_flagged_seed11")]
ds = [json.load(open(f"bench/results/{f}.json")) for _, f in cols]
print("| | " + " | ".join(c for c, _ in cols) + " |")
print("|---|" + "---:|" * len(cols))
row = lambda name, f: print(f"| {name} | " + " | ".join(f(d) for d in ds) + " |")
row("ROC AUC", lambda d: f"{d['roc_auc']:.3f}")
row("PR AUC", lambda d: f"{d['pr_auc']:.3f}")
row("alerts (per 1k)", lambda d: f"{d['alerts']} ({d['alerts_per_1k']:.1f})")
row("precision / recall at budget", lambda d: f"{d['precision_at_budget']:.3f} / {d['recall_at_budget']:.3f}")
for sc in ("account_takeover", "card_testing", "credential_stuffing", "promo_abuse", "fraud_ring"):
    row(f"recall `{sc}`", lambda d, sc=sc: f"{d['per_scenario_recall'][sc]:.3f}")
row("median detection delay `fraud_ring` / `card_testing` (s)", lambda d: "%.0f / %.0f" % (d['eval']['detection_delay']['fraud_ring']['median_delay_s'], d['eval']['detection_delay']['card_testing']['median_delay_s']))
for b in ("benign_new_phone", "benign_travel", "benign_seasonal_spike", "benign_big_purchase"):
    row(f"alerted `{b}`", lambda d, b=b: f"{d['benign_alert_rate'][b]:.3f}")
row("events/s", lambda d: f"{d['events_per_second']:,.0f}")
print()
print("configs:", ", ".join(sorted({f'`{d["config_hash"]}`' for d in ds})))
