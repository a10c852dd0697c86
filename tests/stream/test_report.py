"""Alert reasons as the replay summary, ``alerts tail`` and the ``alerts query`` table print them."""

from __future__ import annotations

import re

import pytest

from stream.eval.report import format_reason


@pytest.mark.parametrize("reason, text", [
    # a detector's detail starting with feature=value is the line itself
    ({"detector": "zscore", "feature": "merchant_orders_1m", "value": 14.0, "contribution": 0.4,
      "detail": "merchant_orders_1m=14 (median 1, scale 0.741, z=17.5)"},
     "zscore: merchant_orders_1m=14 (median 1, scale 0.741, z=17.5)"),
    # a rule: no value of its own, the detail names the clauses
    ({"detector": "rules", "feature": "shared_device", "value": None, "contribution": 0.5,
      "detail": "rule shared_device: device_users_24h=6 >= 3"}, "rules: rule shared_device: device_users_24h=6 >= 3"),
    # why a block: the ensemble's reason
    ({"detector": "ensemble", "feature": "severity", "value": None, "contribution": 0.0,
      "detail": "critical severity means block: q=8.1e-05 <= 0.05 x budget 0.01"},
     "ensemble: critical severity means block: q=8.1e-05 <= 0.05 x budget 0.01"),
    # an alert stored before: float noise in the value is rounded, any other detail goes in brackets
    ({"detector": "hst", "feature": "account_age_days", "value": 0.07111956018540594, "detail": "isolated"},
     "hst: account_age_days=0.07112 (isolated)"),
    ({"detector": "rules", "feature": "blocklist:ip", "value": "203.0.113.9", "detail": "ip '203.0.113.9' is "
      "blocklisted"}, "rules: blocklist:ip=203.0.113.9 (ip '203.0.113.9' is blocklisted)"),
])
def test_format_reason(reason, text):
    assert format_reason(reason) == text


def test_without_detail_a_reason_is_its_feature_and_rounded_value():
    r = {"detector": "zscore", "feature": "ratio", "value": 0.21000000000000002, "detail": "ratio=0.21 (median 0)"}
    assert format_reason(r, detail=False) == "zscore: ratio=0.21"


def test_the_engine_reasons_read_cleanly(tmp_path):
    from stream.config import default_settings
    from stream.pipeline import Engine
    from stream.sim import SimConfig, simulate

    engine = Engine(default_settings().replace({"engine.budget": 0.02, "ensemble.min_history": 100}))
    alerts = [a for batch in _batches(list(simulate(SimConfig(events=6000, seed=3))), 1000)
              for a in engine.process(batch).alerts]
    lines = [format_reason(r) for a in alerts for r in a.reasons]
    assert alerts and lines
    # no float noise (0.21000000000000002, 0.07111956018540594): 4 significant digits, a few more only where a
    # rule's clause needs them to stay true
    noise = [ln for ln in lines if any(_significant(t) > 6 for t in re.findall(r"\d+\.\d+", ln))]
    assert noise == []
    assert not [ln for ln in lines if "(review)" in ln]  # a review rule does not contradict a block
    for a in alerts:
        forced = any(r["contribution"] == 1.0 for r in a.reasons)
        if a.action == "block" and not forced:
            assert format_reason(a.reasons[0]).startswith("ensemble: critical severity means block: q=")
    stats = [ln for ln in lines if ln.startswith("zscore: ")]
    assert stats and all(re.search(r"\((median .+, (log1p )?scale .+, z=.+|constant .+)\)$", ln) for ln in stats)


def _significant(token: str) -> int:
    return len(token.replace(".", "").lstrip("0"))


def _batches(events, n):
    for i in range(0, len(events), n):
        yield events[i : i + n]
