"""The decision: raw scores -> calibrated evidence -> one risk, an alert budget, severity and action.

For a batch of feature vectors, in order::

    for each detector d (a whole batch at a time):
        raw_d = d.process_many(xs, gate_d)      score, then learn only what the gate allows
        p_d = TailCalibrator_d.update(raw_d)    (in the gate) tail probability among d's recent scores
        gate_d = p_d > protect                  a detector does not learn from what it flags
        p_d = exp(-raw_d**2 / 2)                or, calibration "gaussian" (z-scores): their own scale
    S = sum_d w_d * -ln(p_d)                    combined evidence (Fisher's method, weighted)
    q = TailCalibrator_S.update(S)              the event's tail probability among recent traffic
    risk = 1 - q
    alert = (q <= budget and at least min_history events seen before) or a forced block

Because ``q`` ranks an event against the last ``calibration_window`` events, about a ``budget`` fraction of
live traffic alerts, whatever the detectors' raw scales and however traffic drifts. Severity compares ``q``
to fractions of the budget (``q <= budget * severity["critical"]`` is critical, and so on; otherwise "low"),
and ``actions`` maps severity to an action. A rule with action ``"block"`` or a blocklisted entity forces an
alert with action ``"block"`` and severity ``"critical"``. Events that do not alert get severity ``"none"``
and action ``"allow"``.

Every step is exact under any batch split (each detector's ``process_many`` equals its loop; calibrators rank
at fixed counts), so a replay reproduces a live run's alerts. The whole object pickles: it is the detection
state of a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.adaptive import WeightAdapter
from detectors.bandit import ReviewAllocator, drivers
from detectors.base import Detector, Features, Frame
from detectors.calibration import TailCalibrator
from detectors.text import number

__all__ = ["Ensemble", "Verdicts", "SEVERITY_LEVELS", "alert_reasons"]

#: Floor of a probabilistic detector's p = 1 - P(fraud) (P = 1 would make -ln p infinite).
_P_FLOOR = 1e-12
_RISKS = ("rank", "evidence")
#: How a detector's raw score becomes its ``p``: ranked among its recent scores, or (z-scores) read on its scale.
_CALIBRATIONS = ("rank", "gaussian")


def gaussian_p(raw: np.ndarray) -> np.ndarray:
    """``p = exp(-z**2 / 2)`` of root-mean-square z-scores, floored at ``_P_FLOOR`` (NaN: ``p = 1``, no evidence).
    Its evidence ``-ln p`` is ``z**2 / 2`` nats, the Gaussian tail's exponent: fixed, not fitted to a stream. With
    libm's ``exp`` (``math.exp``, which the Rust core's ``f64::exp`` also calls), element by element."""
    exp = math.exp
    return np.array([1.0 if z != z else max(exp(-0.5 * z * z), _P_FLOOR)
                     for z in np.asarray(raw, dtype=np.float64).tolist()], dtype=np.float64)


def neg_log(p: np.ndarray) -> np.ndarray:
    """``-ln p`` with libm's ``log`` (``math.log``, which the Rust core's ``f64::ln`` also calls): numpy's own
    vectorised ``log`` can differ in the last bit, and with ``risk = "evidence"`` the risk shows every bit."""
    log = math.log
    return np.array([-log(v) for v in np.asarray(p, dtype=np.float64).tolist()], dtype=np.float64)
#: Severities from most to least severe (an alerted event is one of these).
SEVERITY_LEVELS = ("critical", "high", "medium", "low")
_DEFAULT_SEVERITY = {"critical": 0.05, "high": 0.2, "medium": 0.5}
_DEFAULT_ACTIONS = {"critical": "block", "high": "review", "medium": "review", "low": "review"}
_ACTIONS = ("allow", "review", "block")


@dataclass(slots=True)
class Verdicts:
    """The ensemble's verdicts on one batch, column by column (index ``i`` is the batch's ``i``-th event).

    Attributes
    ----------
    risk
        In ``[0, 1]``: ``1 - q`` (``risk = "rank"``, the default), or ``1 - exp(-S / sum(w))`` (``"evidence"``).
    q
        The event's tail probability among recent traffic (small = rare).
    alert
        Whether the event raises an alert.
    p
        Detector name -> that detector's tail probabilities.
    evidence
        ``S = sum_d w_d * -ln(p_d)``.
    severity, action
        Per event; ``"none"`` / ``"allow"`` when no alert.
    forced
        Per event, why a block was forced: ``(detector, rule name or "blocklist:<kind>")``; mostly empty.
    raw
        Detector name -> that detector's raw scores (its own scale, what its ``process_many`` returned), the
        input of its calibration into ``p``.
    """

    risk: np.ndarray
    q: np.ndarray
    alert: np.ndarray
    p: dict[str, np.ndarray]
    evidence: np.ndarray
    severity: list[str]
    action: list[str]
    forced: list[list[tuple[str, str]]]
    entity_ids: Sequence[Mapping[str, str]] | None = None
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    _ensemble: Ensemble | None = field(default=None, repr=False)
    #: Per event, its review-allocator arm (the alert's driver); None when the ensemble has no allocator.
    arms: list[str] | None = None

    def __len__(self) -> int:
        return len(self.risk)

    def reasons(self, i: int, x: Features) -> list[dict[str, Any]]:
        """Why event ``i`` (feature vector ``x``) alerted, most important first; ``[]`` if it did not alert.

        Each reason is ``{"detector", "feature", "value", "detail", "contribution"}``. Forced blocks come
        first (contribution 1.0). An alert whose action comes from its severity and is not ``review`` (a
        critical one blocks) then says why, as detector ``"ensemble"``, feature ``"severity"`` (contribution
        0: it weighs nothing, it explains the action), so an alert that blocks on reasons that would each only
        ask for a review says where the block comes from. Then detectors in decreasing order of their share
        ``w_d * -ln(p_d) / S`` of the evidence, each with its :meth:`~detectors.base.Detector.explain` top
        features; a feature's ``contribution`` is the detector's share split in proportion to the feature's
        explain weight. Detectors explain against their state after the batch (they did not learn the alerted
        event unless it was below their protect threshold).
        """
        if not bool(self.alert[i]) or self._ensemble is None:
            return []
        ens = self._ensemble
        ids = self.entity_ids[i] if self.entity_ids is not None else {}
        out = alert_reasons(ens, ens.detectors, x, ids, q=float(self.q[i]), severity=self.severity[i],
                            action=self.action[i], forced=self.forced[i], evidence=float(self.evidence[i]),
                            p={name: float(p[i]) for name, p in self.p.items()})
        if self.arms is not None and ens.allocator is not None:
            arm = self.arms[i]
            out.append({"detector": "bandit", "feature": arm, "value": None, "detail": ens.allocator.why(arm),
                        "contribution": 0.0})
        return out


def alert_reasons(ens: Ensemble, explainers: Mapping[str, Any], x: Features, ids: Mapping[str, str], *, q: float,
                  severity: str, action: str, forced: Sequence[tuple[str, str]], evidence: float,
                  p: Mapping[str, float]) -> list[dict[str, Any]]:
    """The reasons of an alert (see :meth:`Verdicts.reasons`): from the ensemble's configuration, the event's
    vector ``x`` and entity ids, its verdict, and per detector an object with the detector's ``explain(x, top)``
    and, optionally, ``describe(x, feature)``: the detector itself (the Python engine), or a view of the explain
    data the compiled core returned for the event (``stream.compiled``). Both paths format through here."""
    out: list[dict[str, Any]] = []
    if not forced and action != "review":
        out.append({"detector": "ensemble", "feature": "severity", "value": None,
                    "detail": ens._why_action(q, severity, action), "contribution": 0.0})
    for det_name, why in forced:
        if why.startswith("blocklist:"):
            kind = why.split(":", 1)[1]
            out.append({"detector": det_name, "feature": why, "value": ids.get(kind),
                        "detail": f"{kind} {ids.get(kind)!r} is blocklisted", "contribution": 1.0})
        else:
            det = explainers[det_name]
            detail = det.describe(x, why) if hasattr(det, "describe") else why
            out.append({"detector": det_name, "feature": why, "value": None, "detail": detail,
                        "contribution": 1.0})
    total = evidence
    if total <= 0:
        return out
    shares = []
    for name, pv in p.items():
        c = ens._weights[name] * -math.log(pv)
        if c > 0:
            shares.append((c / total, name))
    shares.sort(key=lambda t: (-t[0], t[1]))
    for share, name in shares:
        det = explainers[name]
        top = [(f, c) for f, c in det.explain(x, top=3) if c > 0]
        csum = sum(c for _, c in top)
        for f, c in top:
            value = x.get(f)
            if hasattr(det, "describe"):
                detail = det.describe(x, f)
            else:
                shown = "missing" if value is None else number(value)
                detail = f"{f}={shown} (weighs {number(c, 3)} in {name}'s score)"
            out.append({"detector": name, "feature": f, "value": None if value is None else float(value),
                        "detail": detail, "contribution": float(share * c / csum)})
    return out


class _Gate(ABC):
    """A detector's learning gate: turns each raw score into the ``p`` the evidence uses (kept, in order) and
    allows learning when ``p > protect``. Answers one score per call, or a run through :meth:`many` (see
    :func:`detectors.base.ask_gate`); both give the same answers."""

    __slots__ = ("protect", "parts", "asked")

    def __init__(self, protect: float) -> None:
        self.protect = protect
        self.parts: list[Any] = []
        self.asked = 0

    @abstractmethod
    def _p(self, s: float) -> float: ...

    @abstractmethod
    def _p_many(self, scores: np.ndarray, stop: np.ndarray | None) -> np.ndarray: ...

    def __call__(self, s: float) -> bool:
        p = self._p(s)
        self.parts.append(p)
        self.asked += 1
        return p > self.protect

    def many(self, scores: np.ndarray, stop: np.ndarray | None = None) -> np.ndarray:
        p = self._p_many(scores, stop)
        self.parts.append(p)
        self.asked += len(p)
        return p > self.protect

    def tail_probabilities(self) -> np.ndarray:
        parts = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in self.parts]
        return np.concatenate(parts) if parts else np.empty(0)


class _CalibratingGate(_Gate):
    """``p`` is the score's tail probability among the detector's recent scores (its calibrator)."""

    __slots__ = ("cal",)

    def __init__(self, cal: TailCalibrator, protect: float) -> None:
        super().__init__(protect)
        self.cal = cal

    def _p(self, s: float) -> float:
        return self.cal.update(s)

    def _p_many(self, scores: np.ndarray, stop: np.ndarray | None) -> np.ndarray:
        # the run ends at the first refused score flagged to stop, inside the calibrator's ranking pass
        return self.cal.update_many(scores, stop=stop, protect=self.protect)


class _ProbabilityGate(_Gate):
    """A probabilistic detector under ``risk = "evidence"``: ``p = 1 - P(fraud)`` (floored so that ``-ln p``
    stays finite), no rank calibration."""

    __slots__ = ()

    def _p(self, s: float) -> float:
        return max(1.0 - float(s), _P_FLOOR)

    def _p_many(self, scores: np.ndarray, stop: np.ndarray | None) -> np.ndarray:
        p = np.maximum(1.0 - np.asarray(scores, dtype=np.float64), _P_FLOOR)
        if stop is not None:
            ends = np.flatnonzero(stop & (p <= self.protect))
            if len(ends):
                p = p[: ends[0] + 1]
        return p


class Ensemble:
    """Calibrated combination of detectors with an alert budget.

    Parameters
    ----------
    detectors
        Name -> detector. Each is driven through its own ``process_many`` with its own calibrator.
    weights
        Name -> weight of that detector's evidence ``-ln(p)`` (default 1.0 each; 0 mutes a detector).
    budget
        Target fraction of events that alert.
    calibration_window
        Recent scores each calibrator ranks against (per detector, and for the combined evidence).
    protect
        A detector learns an event only if its tail probability ``p`` is above this.
    min_history
        No budget alert until this many events were scored (forced blocks still alert).
    severity
        Severity -> fraction of the budget: ``q <= budget * fraction``. Keys among critical, high, medium.
    actions
        Severity (critical, high, medium, low) -> action (allow, review, block).
    risk
        What the risk score is. ``"rank"``: ``1 - q``, the event's rank among recent traffic. ``"evidence"``:
        ``1 - exp(-S / sum(w))``, one minus the weighted geometric mean of the detectors' ``p``, where a
        probabilistic detector (a supervised model: ``Detector.probabilistic``) contributes ``p = 1 - P(fraud)``
        instead of its tail rank, so with one supervised model the risk *is* its probability. Ranks are relative
        to recent scores, which shift while a learner improves; a probability keeps one scale over the whole
        stream (ULB with labels an hour late: average precision 0.559 ranked, 0.684 as probabilities). Alerts
        and severities follow ``q`` either way, so the budget holds.
    bandit
        Parameters of a :class:`~detectors.bandit.ReviewAllocator` (``seed``, ``strength``, ``resample_every``,
        ``max_pending``), or None (the default): no allocator. With one, alert slots go by ``q'``, the rank of
        ``-ln(q) + strength * ln(theta_arm)`` (each alert's driver's sampled reviewed precision); ``q`` and the
        rank risk then are ``q'``, and the engine feeds the allocator the verdicts on alerted events.
    adaptive
        Parameters of a :class:`~detectors.adaptive.WeightAdapter` (``prior_positives``, ``window``,
        ``refresh_every``, ``max_pending``), or None (the default): fixed weights. With one, the engine hands it
        the evidence vector of every scored event and the labels that arrive, and each batch is combined with
        the weights it measured (the configured ``weights`` are its prior and stay in :meth:`config_dict`).
    calibration
        Name -> ``"rank"`` (the default for every detector) or ``"gaussian"``, for a detector whose score is a
        root-mean-square z-score (``Detector.z_scale``): its ``p`` is then ``exp(-z**2 / 2)``, the score read on
        its own scale, instead of its rank among its recent scores. A rank against the last
        ``calibration_window`` scores compares today's scores with the window's, and moves when the window's
        content moves; the z-score's own scale does not. Its learning gate still reads the rank, so it learns
        exactly what it would learn under ``"rank"``.

    Examples
    --------
    >>> import random
    >>> from detectors.zscore import RobustZScore
    >>> rng = random.Random(3)
    >>> ens = Ensemble({"zscore": RobustZScore(window=256, refresh_every=64)}, budget=0.01, min_history=100)
    >>> xs = [{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)} for _ in range(2000)]
    >>> xs[1500] = {"a": 8.0, "b": -9.0}
    >>> v = ens.process_many(xs)
    >>> bool(v.alert[1500]), v.severity[1500], v.action[1500]
    (True, 'high', 'review')
    >>> [(r["feature"], round(r["contribution"], 2)) for r in v.reasons(1500, xs[1500])]
    [('a', 0.5), ('b', 0.5)]
    """

    #: Class default, so that an ensemble pickled before the option existed (a checkpoint) loads as "rank".
    risk = "rank"
    #: Class default, so that an ensemble pickled before the allocator existed loads without one.
    allocator: ReviewAllocator | None = None
    #: Likewise for the weight adapter.
    adapter: WeightAdapter | None = None
    #: Likewise for the detectors read on their own scale (``calibration``): none.
    calibration: dict[str, str] | None = None

    def __init__(
        self,
        detectors: Mapping[str, Detector],
        weights: Mapping[str, float] | None = None,
        budget: float = 0.005,
        calibration_window: int = 20000,
        protect: float = 0.01,
        min_history: int = 500,
        severity: Mapping[str, float] | None = None,
        actions: Mapping[str, str] | None = None,
        risk: str = "rank",
        bandit: Mapping[str, Any] | None = None,
        adaptive: Mapping[str, Any] | None = None,
        calibration: Mapping[str, str] | None = None,
    ) -> None:
        if not detectors:
            raise ValueError("an ensemble needs at least one detector")
        for name, d in detectors.items():
            if not isinstance(d, Detector):
                raise ValueError(f"detector {name!r} is a {type(d).__name__}, not a Detector")
        weights = dict(weights or {})
        unknown = set(weights) - set(detectors)
        if unknown:
            raise ValueError(f"weights for unknown detector(s): {', '.join(sorted(unknown))}")
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {w!r}")
        if not (isinstance(budget, int | float) and 0 < budget < 1):
            raise ValueError(f"budget must be in (0, 1), got {budget!r}")
        if not (isinstance(protect, int | float) and 0 <= protect < 1):
            raise ValueError(f"protect must be in [0, 1), got {protect!r}")
        if isinstance(min_history, bool) or not isinstance(min_history, int) or min_history < 0:
            raise ValueError(f"min_history must be an integer >= 0, got {min_history!r}")
        sev = dict(_DEFAULT_SEVERITY if severity is None else severity)
        bad = set(sev) - set(SEVERITY_LEVELS[:3])
        if bad:
            got = ", ".join(sorted(bad))
            raise ValueError(f"severity keys must be among critical, high, medium; got {got}")
        for k, frac in sev.items():
            if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
                raise ValueError(f"severity[{k!r}] must be a fraction of the budget in (0, 1], got {frac!r}")
        act = dict(_DEFAULT_ACTIONS)
        for k, v in (actions or {}).items():
            if k not in SEVERITY_LEVELS:
                raise ValueError(f"actions keys must be among {', '.join(SEVERITY_LEVELS)}; got {k!r}")
            if v not in _ACTIONS:
                raise ValueError(f"actions[{k!r}] must be one of {', '.join(_ACTIONS)}, got {v!r}")
            act[k] = v
        if risk not in _RISKS:
            raise ValueError(f"risk must be one of {', '.join(_RISKS)}, got {risk!r}")
        calibration = dict(calibration or {})
        for name, how in calibration.items():
            if name not in detectors:
                raise ValueError(f"calibration for unknown detector {name!r}")
            if how not in _CALIBRATIONS:
                raise ValueError(f"calibration of {name!r} must be one of {', '.join(_CALIBRATIONS)}, got {how!r}")
            if how == "gaussian" and not detectors[name].z_scale:
                raise ValueError(f"calibration of {name!r} cannot be \"gaussian\": its scores are not z-scores "
                                 f"({type(detectors[name]).__name__}); only a z-score detector's can")
        self.calibration = {k: v for k, v in calibration.items() if v != "rank"} or None
        self.risk = risk
        self.detectors = dict(detectors)
        self.weights = weights or None
        self.budget = float(budget)
        self.calibration_window = calibration_window
        self.protect = float(protect)
        self.min_history = min_history
        self.severity = sev
        self.actions = act
        self._weights = {name: float(weights.get(name, 1.0)) for name in self.detectors}
        self._calibrators = {name: TailCalibrator(calibration_window) for name in self.detectors}
        self._final = TailCalibrator(calibration_window)
        self.seen = 0
        if bandit is not None:
            extra = set(bandit) - {"seed", "strength", "resample_every", "max_pending"}
            if extra:
                raise ValueError(f"unknown bandit parameter(s): {', '.join(sorted(extra))}")
            self.allocator = ReviewAllocator(**bandit, calibration_window=calibration_window)
        if adaptive is not None:
            extra = set(adaptive) - {"prior_positives", "window", "refresh_every", "max_pending", "measure"}
            if extra:
                raise ValueError(f"unknown adaptive parameter(s): {', '.join(sorted(extra))}")
            self.adapter = WeightAdapter(list(self.detectors), self._weights, **adaptive)

    # -- processing ------------------------------------------------------------------------------------------

    def process_many(
        self, xs: Sequence[Features], entity_ids: Sequence[Mapping[str, str]] | None = None
    ) -> Verdicts:
        """Score, calibrate, decide and learn a batch, in order (see the module docstring)."""
        n = len(xs)
        if not isinstance(xs, Frame):
            xs = Frame(xs)  # one feature matrix for the batch, shared by the vectorised detectors
        if entity_ids is not None and len(entity_ids) != n:
            raise ValueError(f"{len(entity_ids)} entity id mappings for {n} events")
        p: dict[str, np.ndarray] = {}
        raws: dict[str, np.ndarray] = {}
        evidence = np.zeros(n)
        if self.adapter is not None:  # the weights measured on the labels that arrived before this batch
            self._weights = self.adapter.weights()
        protect = self.protect
        own = self.calibration
        for name, det in self.detectors.items():
            if not getattr(det, "learns", True):
                # a detector that never learns (rules) needs no gate: its scores do not depend on the gate's
                # answers, so the whole batch is calibrated at once (update_many equals the loop bitwise)
                raw = raws[name] = np.asarray(det.process_many(xs), dtype=np.float64)
                if self.risk == "evidence" and det.probabilistic:
                    pa = np.maximum(1.0 - np.asarray(raw, dtype=np.float64), _P_FLOOR)
                else:
                    pa = self._calibrators[name].update_many(raw)
                if len(pa) != n:
                    raise RuntimeError(f"detector {name!r} returned {len(pa)} scores for {n} events")
                if own is not None and name in own:
                    pa = gaussian_p(raw)
                p[name] = pa
                w = self._weights[name]
                if w:
                    evidence += w * neg_log(pa)
                continue
            gate: _Gate
            if self.risk == "evidence" and det.probabilistic:
                gate = _ProbabilityGate(protect)
            else:
                gate = _CalibratingGate(self._calibrators[name], protect)
            raws[name] = np.asarray(det.process_many(xs, gate), dtype=np.float64)
            if gate.asked != n:
                raise RuntimeError(f"detector {name!r} called its gate {gate.asked} times for {n} events")
            pa = gate.tail_probabilities()
            if own is not None and name in own:  # the gate read the rank; the evidence reads the scale
                pa = gaussian_p(raws[name])
            p[name] = pa
            w = self._weights[name]
            if w:
                evidence += w * neg_log(pa)
        q = self._final.update_many(evidence)
        forced = self._forced(xs, entity_ids)
        arms: list[str] | None = None
        if self.allocator is not None:
            contrib = {name: self._weights[name] * neg_log(pa) for name, pa in p.items()}
            rule_arm = {name: d for name, d in self.detectors.items() if hasattr(d, "fired")}
            arms = drivers(contrib, rule_arm, xs, forced)
            q = self.allocator.allocate(q, arms, self.seen)
        if self.risk == "evidence":  # 1 - the weighted geometric mean of the p's: P itself for one supervised model
            total = sum(w for w in self._weights.values() if w) or 1.0
            # libm's expm1 (math, as the Rust core's f64::exp_m1), not numpy's: they differ in the last bit
            expm1 = math.expm1
            risk = np.array([-expm1(v) for v in (-evidence / total).tolist()], dtype=np.float64)
        else:
            risk = 1.0 - q
        seen_before = self.seen + np.arange(n)
        alert = (q <= self.budget) & (seen_before >= self.min_history)
        severity = ["none"] * n
        action = ["allow"] * n
        thresholds = [(self.budget * self.severity[k], k) for k in SEVERITY_LEVELS[:3] if k in self.severity]
        thresholds.sort()
        for i in np.flatnonzero(alert).tolist():
            qi = q[i]
            sev = "low"
            for limit, k in thresholds:
                if qi <= limit:
                    sev = k
                    break
            severity[i] = sev
            action[i] = self.actions[sev]
        for i, why in enumerate(forced):
            if why:
                alert[i] = True
                severity[i] = "critical"
                action[i] = "block"
        self.seen += n
        return Verdicts(
            risk=risk, q=q, alert=alert, p=p, evidence=evidence, severity=severity, action=action,
            forced=forced, entity_ids=entity_ids, raw=raws, _ensemble=self, arms=arms,
        )

    def _forced(
        self, xs: Sequence[Features], entity_ids: Sequence[Mapping[str, str]] | None
    ) -> list[list[tuple[str, str]]]:
        out: list[list[tuple[str, str]]] = [[] for _ in xs]
        for name, det in self.detectors.items():
            if not getattr(det, "can_block", False):
                continue
            for i, x in enumerate(xs):
                why = det.block_reasons(x, entity_ids[i] if entity_ids is not None else None)  # type: ignore
                out[i].extend((name, w) for w in why)
        return out

    def _why_action(self, q: float, severity: str, action: str) -> str:
        """Why an alert of tail probability ``q`` has this severity and action, in words (a reason's detail):
        ``critical severity means block: q=3.2e-05 <= 0.05 x budget 0.005``."""
        frac = self.severity.get(severity)
        limit = f"budget {number(self.budget)}" if frac is None else f"{number(frac)} x budget {number(self.budget)}"
        return f"{severity} severity means {action}: q={number(q, 3)} <= {limit}"

    def learn_label(self, x: Features, y: int) -> None:
        """Forward a delayed ground-truth label to every detector (unsupervised ones ignore it)."""
        for det in self.detectors.values():
            det.learn_label(x, y)

    # -- configuration ---------------------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The whole detection configuration as canonical JSON-ready data (sorted keys, plain values)."""
        dets = {}
        for name, det in self.detectors.items():
            kind = getattr(type(det), "registry_name", f"{type(det).__module__}.{type(det).__qualname__}")
            dets[name] = {"type": kind, "params": _canonical(det._get_params())}
        return _canonical({
            "detectors": dets,
            "weights": self.adapter.prior if self.adapter is not None else self._weights,
            "budget": self.budget,
            "calibration_window": self.calibration_window,
            "protect": self.protect,
            "min_history": self.min_history,
            "severity": self.severity,
            "actions": self.actions,
            **({"risk": self.risk} if self.risk != "rank" else {}),  # the default leaves older hashes as they were
            **({"bandit": self.allocator.params()} if self.allocator is not None else {}),
            **({"adaptive": self.adapter.params()} if self.adapter is not None else {}),
            **({"calibration": self.calibration} if self.calibration else {}),
        })

    def config_hash(self) -> str:
        """SHA-256 (hex, 16 characters) of :meth:`config_dict` as compact sorted JSON."""
        blob = json.dumps(self.config_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Ensemble({', '.join(self.detectors)}; budget={self.budget}, seen={self.seen})"


def _canonical(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _canonical(v[k]) for k in sorted(v, key=str)}
    if isinstance(v, list | tuple):
        return [_canonical(e) for e in v]
    if isinstance(v, bool) or v is None or isinstance(v, str | int):
        return v
    if isinstance(v, float | np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    raise TypeError(f"configuration value {v!r} of type {type(v).__name__} is not plain data")
