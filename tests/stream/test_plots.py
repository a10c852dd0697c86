"""Report plots: the precision/recall numbers they draw, valid PNG files, and a clear error without matplotlib."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

from stream.eval.plots import plot_alerts_over_time, plot_pr_curve, precision_recall

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def _labelled(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    scores = rng.normal(size=n) + 2.0 * y
    ts = 1.7e9 + np.sort(rng.uniform(0, 7 * 86400, n))
    return y, scores, ts


def test_precision_recall_matches_counting_at_every_threshold():
    y, s, _ = _labelled(500)
    s = np.round(s, 1)  # ties
    curve = precision_recall(y, s)
    assert list(curve.thresholds) == sorted(set(s.tolist()), reverse=True)
    for t, p, r in zip(curve.thresholds, curve.precision, curve.recall, strict=True):
        alert = s >= t
        assert p == pytest.approx((alert & (y == 1)).sum() / alert.sum())
        assert r == pytest.approx((alert & (y == 1)).sum() / y.sum())
    expected_ap = sum((r1 - r0) * p for r0, r1, p in zip(np.r_[0, curve.recall[:-1]], curve.recall, curve.precision,
                                                        strict=True))
    assert curve.average_precision == pytest.approx(expected_ap)
    perfect = precision_recall(y, y.astype(float))
    assert perfect.average_precision == 1.0


def test_pr_curve_is_a_valid_png(tmp_path):
    y, s, _ = _labelled()
    path = plot_pr_curve(y, s, tmp_path / "sub" / "pr.png")
    data = path.read_bytes()
    assert path == tmp_path / "sub" / "pr.png"
    assert len(data) > 10_000  # a drawn figure, not an empty canvas
    assert _png_size(data) == (600, 450)


def test_alerts_over_time_is_a_valid_png_with_and_without_labels(tmp_path):
    y, s, ts = _labelled()
    alerted = s > 2.0
    with_labels = plot_alerts_over_time(ts, alerted, y, tmp_path / "alerts.png").read_bytes()
    assert _png_size(with_labels) == (1000, 400) and len(with_labels) > 10_000
    no_labels = plot_alerts_over_time(ts.astype("int64").astype("datetime64[s]"), alerted, None,
                                      tmp_path / "alerts-only.png").read_bytes()
    assert _png_size(no_labels) == (1000, 400)
    assert no_labels != with_labels
    empty = plot_alerts_over_time([], [], None, tmp_path / "empty.png").read_bytes()
    assert _png_size(empty) == (1000, 400)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: plot_pr_curve([0, 1], [0.5], p), "equal length"),
        (lambda p: plot_pr_curve([0, 2], [0.5, 0.1], p), "0/1"),
        (lambda p: plot_pr_curve([0, 0], [0.5, 0.1], p), "no positive"),
        (lambda p: plot_pr_curve([0, 1], [0.5, np.nan], p), "finite"),
        (lambda p: plot_alerts_over_time([1.0, 2.0], [True], None, p), "equal length"),
        (lambda p: plot_alerts_over_time([1.0, 2.0], [True, False], [1], p), "labels"),
    ],
)
def test_bad_inputs_are_refused_before_drawing(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_without_matplotlib_the_error_says_what_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install riskstream\[plot\]"):
        plot_pr_curve([0, 1], [0.1, 0.9], tmp_path / "pr.png")
    with pytest.raises(RuntimeError, match=r"pip install riskstream\[plot\]"):
        plot_alerts_over_time([1.0], [True], None, tmp_path / "a.png")
    assert not (tmp_path / "pr.png").exists()
