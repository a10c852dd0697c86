"""``bench/panel/zscore_scale_floor.py``: the z-score's scale floored at 1/12 of a feature's level. A busy count's
wobble within its counting resolution stops scoring; a count that doubles still scores the clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.zscore import RobustZScore

ROOT = Path(__file__).resolve().parents[2]


def _busy_count() -> RobustZScore:
    d = RobustZScore(window=64, refresh_every=64, min_count=8)
    for i in range(64):  # a busy entity's 24-hour count, moving by a few events
        d.learn_one({"count": 86_400.0 + i % 3})
    return d


def test_the_floor_keeps_a_wobble_within_a_bucket_quiet_and_a_doubling_loud(
    monkeypatch: pytest.MonkeyPatch, panel_script
):
    plain = _busy_count()
    monkeypatch.setattr(RobustZScore, "_refresh", RobustZScore._refresh)  # the experiment's wrapper is undone after
    experiment = panel_script("zscore_scale_floor")
    experiment.install()
    floored = _busy_count()
    assert floored._scale[0] == pytest.approx(1 / 12)  # on the log1p scale: a twelfth of the level
    # 5 % above the usual level: the clip without the floor, within the counts' resolution with it
    assert plain.score_one({"count": 86_400.0 * 1.05}) == 5.0
    assert floored.score_one({"count": 86_400.0 * 1.05}) < 1.0
    assert floored.score_one({"count": 86_400.0 * 2}) == 5.0


def test_windowed_only_floors_the_engines_window_counts_and_leaves_a_measurement_alone(
    monkeypatch: pytest.MonkeyPatch, panel_script
):
    monkeypatch.setattr(RobustZScore, "_refresh", RobustZScore._refresh)
    experiment = panel_script("zscore_scale_floor")
    experiment.install(windowed_only=True)
    d = RobustZScore(window=64, refresh_every=64, min_count=8)
    for i in range(64):  # SMTP's dst_bytes: a column that barely moves; and a busy host's 24-hour count
        d.learn_one({"dst_bytes": 330.0 + i % 2, "host_orders_24h": 86_400.0 + i % 3})
    by_name = dict(zip(d._names, d._scale, strict=True))
    assert by_name["host_orders_24h"] == pytest.approx(1 / 12)
    assert by_name["dst_bytes"] < 0.01  # its own, unfloored scale
    # a 13 % larger transfer is still the clip; the count's 5 % wobble is not
    z = dict(d.explain({"dst_bytes": 375.0, "host_orders_24h": 86_400.0 * 1.05}, top=2))
    assert z["dst_bytes"] == 5.0
    assert z["host_orders_24h"] < 1.0
