"""The compiled detection stack (``stream._core.DetectorCore``, Rust): which ensembles it can run, and the plain
spec it is built from.

The Rust core runs the built-in HST, robust z-score, cold-start, rules and priors detectors (rules without blocklists,
or with the caller matching blocklists: :meth:`DetectorCore.process` takes a ``blocked`` flag per event), the
supervised detector's ``"logreg"`` model (trained on the labels the core joins, in ``CoreEngine``) and the ensemble
around them, adaptive weights (``[ensemble.adaptive]``) included, with the Python classes here as the reference
it must equal (``tests/core/``). An ensemble with any other detector (the supervised detector's other models,
rate, a plug-in) or the review allocator (``[ensemble.bandit]``) keeps the Python path: :func:`core_spec` raises
:class:`Unsupported` for it.

The spec is read from a *built* :class:`~detectors.ensemble.Ensemble`, so the configuration is validated once, by
the Python classes, and both paths share their defaults.
"""

from __future__ import annotations

from typing import Any

from detectors.coldstart import ColdStart
from detectors.ensemble import Ensemble
from detectors.hst import HalfSpaceTrees
from detectors.priors import Priors
from detectors.rules import Rules
from detectors.supervised import Supervised
from detectors.zscore import RobustZScore

__all__ = ["Unsupported", "core_spec", "compile_ensemble"]


class Unsupported(ValueError):
    """The ensemble has a detector or setting the compiled core does not run."""


def _params(name: str, det: Any) -> tuple[str, dict[str, Any]]:
    if type(det) is HalfSpaceTrees:
        if det.seed is None or isinstance(det.seed, bool) or not isinstance(det.seed, int) \
                or not -(2**63) < det.seed < 2**63:
            raise Unsupported(f"detector {name!r}: the core needs an integer seed (64 bits), got {det.seed!r}")
        return "hst", {"n_trees": det.n_trees, "height": det.height, "window_size": det.window_size,
                       "seed": det.seed, "features": None if det.features is None else list(det.features)}
    if type(det) is RobustZScore:
        return "zscore", {"features": None if det.features is None else list(det.features), "window": det.window,
                          "refresh_every": det.refresh_every, "clip": float(det.clip), "top_k": det.top_k,
                          "min_count": det.min_count, "log_nonneg": bool(det.log_nonneg),
                          "count_floor": float(det.count_floor)}
    if type(det) is ColdStart:
        return "coldstart", {"low": list(det.low), "high": list(det.high), "window": det.window,
                             "refresh_every": det.refresh_every, "min_count": det.min_count}
    if type(det) is Rules:
        rules = [{"name": r.name, "clauses": [(c.feature, c.op, float(c.value)) for c in r.clauses],
                  "score": float(r.score), "action": r.action} for r in det._rules]
        return "rules", {"combine": det.combine, "rules": rules}
    if type(det) is Priors:  # each rule's score slot holds its stated rate p
        rules = [{"name": r.name, "clauses": [(c.feature, c.op, float(c.value)) for c in r.clauses],
                  "score": float(r.score), "action": "review"} for r in det._rules]
        return "priors", {"combine": "product", "rules": rules}
    if type(det) is Supervised:
        if det.model != "logreg":
            raise Unsupported(f"detector {name!r}: model {det.model!r} of the supervised detector has no compiled "
                              "version (\"logreg\" has)")
        if isinstance(det.seed, bool) or not isinstance(det.seed, int) or not -(2**63) < det.seed < 2**63:
            raise Unsupported(f"detector {name!r}: the core needs an integer seed (64 bits), got {det.seed!r}")
        return "supervised", {"features": list(det.features), "pos_share": det.pos_share, "warmup": det.warmup,
                              "lr": det.lr, "seed": det.seed}
    raise Unsupported(f"detector {name!r} ({type(det).__name__}) has no compiled version")


def core_spec(ensemble: Ensemble) -> dict[str, Any]:
    """The plain-data spec of a fresh ``ensemble`` that ``stream._core.DetectorCore`` takes.

    Raises :class:`Unsupported` for a detector without a compiled version, or an ensemble that already
    processed events (its state is not carried over).
    """
    if ensemble.seen:
        raise Unsupported("the ensemble has processed events; build the core from a fresh one")
    if ensemble.allocator is not None:
        raise Unsupported("[ensemble.bandit] is enabled and the compiled core does not run the review allocator")
    dets = []
    for name, det in ensemble.detectors.items():
        kind, params = _params(name, det)
        dets.append({"name": name, "type": kind, "params": params, "weight": ensemble._weights[name],
                     "calibration": (ensemble.calibration or {}).get(name, "rank")})
    return {
        "detectors": dets,
        "budget": ensemble.budget,
        "calibration_window": ensemble.calibration_window,
        "protect": ensemble.protect,
        "min_history": ensemble.min_history,
        "severity": [(k, float(v)) for k, v in ensemble.severity.items()],
        "actions": list(ensemble.actions.items()),
        "risk": ensemble.risk,
        "adaptive": ensemble.adapter.params() if ensemble.adapter is not None else None,
    }


def compile_ensemble(ensemble: Ensemble) -> Any:
    """A ``stream._core.DetectorCore`` configured as ``ensemble`` (fresh)."""
    from stream import _core

    return _core.DetectorCore(core_spec(ensemble))
