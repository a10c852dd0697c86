"""Plots for replay and benchmark reports: the precision/recall curve and alerts over time, as PNG files.

matplotlib is an optional dependency (``pip install riskstream[plot]``), imported only when a plot is drawn;
the figures are drawn with matplotlib's object API on the Agg canvas, so no global backend is switched and no
display is needed. Without matplotlib, drawing raises a ``RuntimeError`` that says what to install.

>>> import numpy as np, tempfile, pathlib
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
>>> curve = precision_recall(y, s)
>>> round(curve.average_precision, 4)
0.9167
>>> with tempfile.TemporaryDirectory() as d:
...     path = plot_pr_curve(y, s, pathlib.Path(d) / "pr.png")
...     path.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PrCurve", "precision_recall", "plot_pr_curve", "plot_alerts_over_time"]

_INSTALL = "plotting needs matplotlib, which is not installed: pip install riskstream[plot]"


@dataclass(frozen=True)
class PrCurve:
    """Precision and recall at every distinct score threshold (descending), and the average precision."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    average_precision: float
    positives: int


def precision_recall(y: Any, scores: Any) -> PrCurve:
    """Precision and recall of "alert when score >= threshold" for each distinct score, highest first.

    ``average_precision`` is ``sum((R_k - R_{k-1}) * P_k)`` over those thresholds (the step-wise area, as
    scikit-learn's ``average_precision_score`` defines it). ``ValueError`` on mismatched lengths, labels other
    than 0/1, non-finite scores, or no positive label.
    """
    yv = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    if yv.ndim != 1 or s.ndim != 1 or len(yv) != len(s):
        raise ValueError(f"y and scores must be 1-d and of equal length, got {yv.shape} and {s.shape}")
    if not np.isin(yv, (0, 1)).all():
        raise ValueError("y must hold 0/1 labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    yb = yv.astype(bool)
    positives = int(yb.sum())
    if positives == 0:
        raise ValueError("y has no positive label: precision/recall is undefined")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], yb[order]
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # the last row of each run of equal scores
    tp = np.cumsum(y_sorted)[last]
    alerts = np.flatnonzero(last) + 1
    precision = tp / alerts
    recall = tp / positives
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return PrCurve(s_sorted[last], precision, recall, ap, positives)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise RuntimeError(_INSTALL) from e
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_pr_curve(y: Any, scores: Any, path: str | Path, *, title: str = "Precision / recall") -> Path:
    """Draw the precision/recall curve of ``scores`` against 0/1 labels ``y`` into the PNG file ``path``.

    The legend gives the average precision and the base rate (the precision of alerting on everything).
    Returns the path written.
    """
    curve = precision_recall(y, scores)
    fig, ax = _figure(6.0, 4.5)
    n = len(np.asarray(y))
    base = curve.positives / n
    ax.step(np.r_[0.0, curve.recall], np.r_[curve.precision[0], curve.precision], where="pre", color="C0",
            label=f"AP = {curve.average_precision:.3f}")
    ax.axhline(base, color="0.6", linestyle="--", linewidth=1, label=f"base rate = {base:.3g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title} ({curve.positives} positives of {n})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def _as_datetimes(ts: Any) -> np.ndarray:
    t = np.asarray(ts)
    if np.issubdtype(t.dtype, np.datetime64):
        return t.astype("datetime64[ms]")
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("ts must be finite epoch seconds or datetime64 values")
    return (t * 1000.0).round().astype("int64").astype("datetime64[ms]")


def plot_alerts_over_time(ts: Any, alerted: Any, labels: Any | None, path: str | Path, *, bins: int = 96,
                          title: str = "Alerts over time") -> Path:
    """Draw alerts per time bin into the PNG file ``path``: true and false alerts stacked, and the labelled
    positives as a line, so bursts, quiet spells and misses show at a glance.

    ``ts`` are event times (epoch seconds UTC, or ``datetime64``), ``alerted`` whether each event alerted, and
    ``labels`` the 0/1 ground truth (``None``: alerts only). Returns the path written.
    """
    t = _as_datetimes(ts)
    a = np.asarray(alerted).astype(bool)
    if t.ndim != 1 or a.shape != t.shape:
        raise ValueError(f"ts and alerted must be 1-d and of equal length, got {t.shape} and {a.shape}")
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != t.shape or not np.isin(lab, (0, 1)).all():
            raise ValueError("labels must be 0/1 and as long as ts")
        lab = lab.astype(bool)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    fig, ax = _figure(10.0, 4.0)
    if len(t):
        ms = t.astype("int64")
        lo, hi = int(ms.min()), int(ms.max())
        edges = np.linspace(lo, hi + 1, bins + 1)
        centres = ((edges[:-1] + edges[1:]) / 2).astype("int64").astype("datetime64[ms]")
        width = np.diff(edges).astype("int64").astype("timedelta64[ms]")
        if lab is None:
            counts, _ = np.histogram(ms[a], edges)
            ax.bar(centres, counts, width=width, color="C0", label=f"alerts ({int(a.sum())})")
        else:
            good, _ = np.histogram(ms[a & lab], edges)
            bad, _ = np.histogram(ms[a & ~lab], edges)
            pos, _ = np.histogram(ms[lab], edges)
            ax.bar(centres, good, width=width, color="C2", label=f"true alerts ({int((a & lab).sum())})")
            ax.bar(centres, bad, width=width, bottom=good, color="C3", label=f"false alerts ({int((a & ~lab).sum())})")
            ax.step(centres, pos, where="mid", color="k", linewidth=1.2, label=f"labelled positives ({int(lab.sum())})")
    ax.set_xlabel("event time (UTC)")
    ax.set_ylabel("events per bin")
    ax.set_title(f"{title} ({len(t)} events, {int(a.sum())} alerts)")
    ax.grid(True, axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path)
