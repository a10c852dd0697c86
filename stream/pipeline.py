"""The engine: events in, verdicts and alerts out. One code path for replay, demo, bench and the Kafka runtime.

::

    batch of events -> features (per-entity windows) -> ensemble (detectors, calibration, budget) -> alerts

An :class:`Engine` owns the state of one stream (one Kafka partition, or a whole replay): the feature windows
and the detectors' models. It is deterministic: the same events in the same order give the same scores and the
same alerts, whatever the batch sizes, so a replay reproduces what the live consumer alerted.
:meth:`Engine.snapshot` / :meth:`Engine.restore` move that state through a checkpoint.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import detectors.supervised  # noqa: F401  (registers the "supervised" detector)
from detectors import build
from detectors.base import Detector
from detectors.ensemble import Ensemble, neg_log
from sinks.alert import Alert, alert_id
from stream.config import Settings
from stream.errors import CheckpointError, ConfigError
from stream.events import Event, Label, Login, Order
from stream.features import FeatureExtractor
from stream.labels import LabelStore
from stream.links import LINK_KINDS, EntityRisk, LinkGraph

__all__ = ["Engine", "Outcome", "build_ensemble", "entity_ids"]

#: Entity kinds an alert names, and the event attribute each comes from.
_ENTITY_FIELDS = (
    ("user", "user_id"),
    ("device", "device_id"),
    ("ip", "ip"),
    ("payment", "payment_id"),
    ("address", "address_id"),
    ("merchant", "merchant_id"),
)


#: The event attributes whose values the link graph joins accounts through.
_LINK_ATTRS = tuple(attr for kind, attr in _ENTITY_FIELDS if kind in LINK_KINDS)


def _links(e: Order | Login) -> bool:
    """Whether the event carries a value the link graph links accounts through."""
    return any(getattr(e, attr, None) is not None for attr in _LINK_ATTRS)


def _shows_control(e: Order | Login) -> bool:
    """Whether the event shows who controls the account (an order, a successful login): only such events tie the
    account to its device, IP, payment and address. A failed login is an attempt, possibly someone else's."""
    return e.success if isinstance(e, Login) else True


_NO_VECTOR: dict[str, float] = {}  # shared, never written: label-store entries that need no feature vector
_SHARED_USERS = 65536  # users whose {"user": id} dict the graph-only label-store entries share (then it restarts)


def entity_ids(event: Order | Login) -> dict[str, str]:
    """The entity ids an event carries, by kind (``{"user": "u1", "ip": "10.0.0.1", ...}``)."""
    out = {}
    for kind, attr in _ENTITY_FIELDS:
        value = getattr(event, attr, None)
        if value is not None:
            out[kind] = value
    return out


def build_ensemble(settings: Settings) -> Ensemble:
    """The ensemble the settings describe; an unknown detector or parameter is a :class:`ConfigError`."""
    dets = {}
    for name, params in settings.detectors.items():
        try:
            dets[name] = build(name, params)
        except ValueError as e:
            raise ConfigError(f"detectors.{name}: {e}") from None
    if not dets:
        raise ConfigError("no detector is enabled: enable at least one under [detectors.*]")
    ens = settings.ensemble
    weights = {k: float(v) for k, v in ens.pop("weights", {}).items() if k in dets}
    bandit = dict(ens.pop("bandit", {}))
    adaptive = dict(ens.pop("adaptive", {}))
    calibration = {k: v for k, v in ens.pop("calibration", {}).items() if k in dets}
    try:
        return Ensemble(dets, weights=weights or None, budget=settings.budget, calibration=calibration or None,
                        bandit=bandit if bandit.pop("enabled", False) else None,
                        adaptive=adaptive if adaptive.pop("enabled", False) else None, **ens)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"ensemble: {e}") from None


def join_tasks(ensembles: dict[str, Ensemble]) -> None:
    """Hand every detector that learns across event types (one with a ``join_tasks`` method, such as
    ``multitask``) its counterparts in the other types' ensembles: ``{"order": det, "login": det}``."""
    first = next(iter(ensembles.values()))
    for name, det in first.detectors.items():
        join = getattr(det, "join_tasks", None)
        if callable(join):
            join({kind: ens.detectors[name] for kind, ens in ensembles.items()})


@dataclass(slots=True)
class Outcome:
    """What the engine made of one batch.

    ``scored`` are the order and login events in input order, with ``risk`` (in [0, 1]) and ``alerted`` aligned
    to them; ``labels`` are the label events of the batch; ``alerts`` the alerts raised, in input order.
    ``raw`` and ``calibrated`` map each detector's name to its raw scores and its calibrated tail probabilities
    ``p`` (what an alert's ``detector_scores`` holds), aligned to ``scored`` like ``risk``.
    """

    scored: list[Order | Login] = field(default_factory=list)
    risk: np.ndarray = field(default_factory=lambda: np.empty(0))
    alerted: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    alerts: list[Alert] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    calibrated: dict[str, np.ndarray] = field(default_factory=dict)


class Engine:
    """Features, detectors and decision for one stream.

    ``clock`` gives the ``detected_at`` time of an alert from its event: the wall clock for the live consumer;
    the event time for replays, so a replay's alerts file is byte-identical run after run.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[Event], float] | None = None) -> None:
        self.settings = settings
        self.config_hash = settings.config_hash
        self.clock = clock or (lambda e: e.ts)
        try:
            self.features = FeatureExtractor(**settings.features)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"features: {e}") from None
        # Orders and logins live in different feature spaces with different normal behaviour, so each type gets
        # its own detectors, calibrators and budget (the budget then holds for each type and so overall).
        self.ensembles = {"order": build_ensemble(settings), "login": build_ensemble(settings)}
        join_tasks(self.ensembles)
        self.events_seen = 0
        # Delayed labels: the vectors events were scored with wait in the store for their label event; a joined
        # label trains the detectors that learn from labels and feeds the entity-risk and link state.
        labels = settings.data.get("labels", {})
        links = settings.data.get("links", {})
        try:
            self.entity_risk = EntityRisk(
                kinds=links["risk_kinds"], windows=links["risk_windows"],
                prior_strength=float(links["prior_strength"]) if links.get("risk_prior") else None) \
                if links.get("entity_risk") else None
            # The graph starts with the first event that carries a device, IP, payment or address: a stream
            # that never does (a card export such as ULB) pays nothing for it and gets no link features.
            self._graph_params = dict(window=links["graph_window"], max_users=int(links["max_users"]),
                                      max_values=int(links["max_values"]), max_group=int(links["max_group"]),
                                      flagged=bool(links.get("flagged", False)),
                                      max_entries=int(links["max_entities"])) \
                if links.get("graph") else None
            if self._graph_params is not None:
                LinkGraph(**self._graph_params)  # refuse bad parameters now, not at the first linking event
            self.graph: LinkGraph | None = None
            self._user_entities: dict[str, dict[str, str]] = {}  # user -> the label-store entries' shared ids
            self.label_store = LabelStore(max_size=int(labels.get("store_size", 500_000)),
                                          ttl=float(labels.get("ttl", 45 * 86400.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"labels/links: {e}") from None
        self.learns_labels = any(type(d).learn_label is not Detector.learn_label
                                 for ens in self.ensembles.values() for d in ens.detectors.values())
        #: Whether a review allocator (``[ensemble.bandit]``) spends the alert budget: it learns from the verdicts
        #: on alerted events, so label events matter.
        self.allocates = any(ens.allocator is not None for ens in self.ensembles.values())
        #: Whether the ensembles' weights adapt to the arrived labels (``[ensemble.adaptive]``).
        self.adapts = any(ens.adapter is not None for ens in self.ensembles.values())
        #: The stored rule pack version the rules detector runs (:meth:`set_rules`); None: the configuration's.
        self.rules_version: int | None = None

    @property
    def _ids_needed(self) -> bool:
        """Whether every event's entity ids are read: by the label store, the link state or a blocklist."""
        return self.uses_labels or any(getattr(d, "can_block", False)
                                       for ens in self.ensembles.values() for d in ens.detectors.values())

    @property
    def uses_labels(self) -> bool:
        """Whether label events change anything (a label-learning detector, entity risk or the link graph)."""
        return (self.learns_labels or self.entity_risk is not None or self.graph is not None or self.allocates
                or self.adapts)

    # -- live rule packs -------------------------------------------------------------------------------------

    def set_rules(self, params: dict[str, Any], version: int | None) -> None:
        """Switch the rules detector of every event type to ``params`` (the ``detectors.rules`` parameters of a
        validated configuration, e.g. ``settings_with_pack(...).detectors["rules"]``) and stamp ``version`` on
        the alerts from now on. The rules' calibrator and every other detector's state are kept: the switch
        changes what the rules score from the next event on, nothing learned so far.

        A :class:`ConfigError` (and nothing changed) when the engine has no rules detector or ``params`` do not
        build one."""
        try:
            new = {kind: build("rules", dict(params)) for kind in self.ensembles}
        except ValueError as e:
            raise ConfigError(f"detectors.rules: {e}") from None
        if any("rules" not in ens.detectors for ens in self.ensembles.values()):
            raise ConfigError("the engine has no rules detector (detectors.rules.enabled = false): a rule pack "
                              "cannot be switched in")
        for kind, ens in self.ensembles.items():
            ens.detectors["rules"] = new[kind]
        self.rules_version = version

    # -- processing -------------------------------------------------------------------------------------------

    def process(self, events: Sequence[Event]) -> Outcome:
        """Score a batch in order and return its outcome; state advances past the batch.

        When labels matter (:attr:`uses_labels`), the batch is cut at its label events: the events before a
        label are scored first, then the label is learned, so an event is never scored with a label that
        arrived after it, and the result does not depend on the batch split.
        """
        out = Outcome()
        parts: list[tuple[list[Order | Login], Outcome]] = []
        pending: list[Order | Login] = []
        for e in events:
            if isinstance(e, Label):
                out.labels.append(e)
                # Whether labels matter can change inside a batch: the link graph starts at the first event that
                # links anything, and from then on labels feed it. So the events before a label are scored first
                # whenever that may happen, then the label is learned if it matters now (a batch split once
                # decided this at the start of the batch, and dropped the labels of the batch the graph began in).
                if self.uses_labels or (self._graph_params is not None and self.graph is None):
                    if pending:
                        parts.append((pending, self._score(pending)))
                        pending = []
                    if self.uses_labels:
                        self._learn_label(e)
            else:
                pending.append(e)
        if pending:
            parts.append((pending, self._score(pending)))
        return self._merge(out, parts)

    @staticmethod
    def _merge(out: Outcome, parts: list[tuple[list[Order | Login], Outcome]]) -> Outcome:
        """One outcome of a batch's parts (the stretches between its labels), with the batch's labels."""
        if len(parts) == 1:
            scored, part = parts[0]
            part.labels = out.labels
            return part
        timings: dict[str, float] = {}
        for scored, part in parts:
            out.scored.extend(scored)
            out.alerts.extend(part.alerts)
            for k, v in part.timings.items():
                timings[k] = timings.get(k, 0.0) + v
        if parts:
            out.risk = np.concatenate([p.risk for _, p in parts])
            out.alerted = np.concatenate([p.alerted for _, p in parts])
            for attr in ("raw", "calibrated"):
                names = dict.fromkeys(k for _, p in parts for k in getattr(p, attr))
                setattr(out, attr, {k: np.concatenate([getattr(p, attr).get(k, np.full(len(s), np.nan))
                                                       for s, p in parts]) for k in names})
        out.timings = timings
        return out

    def _teach_ensembles(self, label: Label) -> None:
        """A label teaches the review allocator (a verdict on an alerted event; on any other: nothing) and the
        adaptive weights (any label of a scored event) of the ensemble that scored its event."""
        y = int(label.label or 0)
        if self.allocates:
            for ens in self.ensembles.values():
                if ens.allocator is not None and ens.allocator.learn(label.ref_event_id, y):
                    break
        if self.adapts:
            for ens in self.ensembles.values():
                if ens.adapter is not None and ens.adapter.learn(label.ref_event_id, y):
                    break

    def _learn_label(self, label: Label) -> None:
        self._teach_ensembles(label)
        store = self.label_store
        store.advance(label.ts)
        joined = store.join(label.ref_event_id, int(label.label or 0))
        if joined is None:
            return
        if self.learns_labels:
            ens = self.ensembles.get(joined.kind)
            if ens is not None:
                ens.learn_label(joined.x, joined.y)
        if self.entity_risk is not None:
            self.entity_risk.learn(joined.entities, joined.y, label.ts)
        if self.graph is not None and joined.y and "user" in joined.entities:
            self.graph.confirm(joined.entities["user"], label.ts)

    def _score(self, scored: list[Order | Login]) -> Outcome:
        t0 = time.perf_counter()
        xs, ids = self._vectors(scored)
        return self._decide(scored, xs, ids, t0)

    def _vectors(self, scored: list[Order | Login]) -> tuple[list[dict[str, float]], list[dict[str, str]] | None]:
        """The detectors' input for each event (features, entity risk, links), and the events' entity ids where
        something reads them for every event (labels, links, blocklists); state advances past the events."""
        graph_from = 0  # events before the first one that links anything get no link features (as at batch 1)
        if self.graph is None and self._graph_params is not None:
            graph_from = next((i for i, e in enumerate(scored) if _links(e)), len(scored))
            if graph_from < len(scored):
                self.graph = LinkGraph(**self._graph_params)
        xs = self.features.transform_many(scored)
        # entity ids per event, where something reads them for every event (labels, links, blocklists); otherwise
        # only an alerted event's are built
        ids: list[dict[str, str]] | None = [entity_ids(e) for e in scored] if self._ids_needed else None
        if ids is not None and (self.entity_risk is not None or self.graph is not None):
            risk_f, graph = self.entity_risk, self.graph
            for i, (e, x, ent) in enumerate(zip(scored, xs, ids, strict=True)):
                if risk_f is not None:
                    x.update(risk_f.features(ent, e.ts))
                if graph is not None and i >= graph_from:
                    # a failed login is scored against the graph but links nobody (a stuffing IP would otherwise
                    # tie every account it tried together)
                    if _shows_control(e):
                        x.update(graph.features_then_observe(e.user_id, ent, e.ts))
                    else:
                        x.update(graph.features(e.user_id, ent, e.ts))
        return xs, ids

    def _decide(self, scored: list[Order | Login], xs: list[dict[str, float]], ids: list[dict[str, str]] | None,
                t0: float) -> Outcome:
        """Each event type's ensemble over the vectors, what labels will need, and the alerts."""
        out = Outcome()
        out.scored = scored
        t1 = time.perf_counter()
        n = len(scored)
        risk = np.zeros(n, dtype=np.float64)
        alerted = np.zeros(n, dtype=bool)
        found: list[tuple[int, Any, int]] = []  # (input index, verdicts, index within the type's sub-batch)
        raw: dict[str, np.ndarray] = {}
        calibrated: dict[str, np.ndarray] = {}
        for kind, ensemble in self.ensembles.items():
            idx = [i for i, e in enumerate(scored) if e.type == kind]
            if not idx:
                continue
            verdicts = ensemble.process_many([xs[i] for i in idx], None if ids is None else [ids[i] for i in idx])
            risk[idx] = verdicts.risk
            alert = np.asarray(verdicts.alert, dtype=bool)
            alerted[idx] = alert
            for name, r in verdicts.raw.items():
                raw.setdefault(name, np.full(n, np.nan))[idx] = r
            for name, pv in verdicts.p.items():
                calibrated.setdefault(name, np.full(n, np.nan))[idx] = pv
            found.extend((idx[j], verdicts, int(j)) for j in np.flatnonzero(alert))
            if ensemble.adapter is not None:
                ensemble.adapter.remember_many(
                    [scored[i].event_id for i in idx],
                    np.column_stack([neg_log(verdicts.p[name]) for name in ensemble.adapter.names]))
            if verdicts.arms is not None and ensemble.allocator is not None:
                for j in np.flatnonzero(alert).tolist():
                    ensemble.allocator.remember(scored[idx[j]].event_id, verdicts.arms[j])
        t2 = time.perf_counter()
        out.risk = risk
        out.alerted = alerted
        out.raw = raw
        out.calibrated = calibrated
        self._keep_for_labels(scored, xs, ids, alerted)
        # Reasons read the models as they stand after the batch: scores, alert ids, severities and actions are
        # the same at any batch split; the reasons' numbers may move slightly with the split.
        for i, verdicts, j in sorted(found, key=lambda f: f[0]):
            ent = ids[i] if ids is not None else entity_ids(scored[i])
            out.alerts.append(self._alert(scored[i], ent, verdicts, j, xs[i]))
        t3 = time.perf_counter()
        self.events_seen += len(scored)
        out.timings = {"features": t1 - t0, "detectors": t2 - t1, "decision": t3 - t2}
        return out

    def _keep_for_labels(self, scored: list[Order | Login], xs: list[dict[str, float]],
                         ids: list[dict[str, str]] | None, alerted: np.ndarray) -> None:
        """Put the scored events in the label store (what their labels will need), and flag the alerted users."""
        if self.uses_labels and ids is not None:
            put = self.label_store.put
            if self.learns_labels or self.entity_risk is not None:
                for e, x, ent in zip(scored, xs, ids, strict=True):
                    put(e.event_id, e.ts, x, kind=e.type, entities=ent)
            elif self.graph is not None:
                # only the graph reads labels (link_confirmed): it needs the user of an event that linked it
                # to someone, not the vector; an event with no device/IP/payment/address waits for nothing
                # (orders and successful logins: a failed login linked nobody); the entries of one user share
                # one {"user": id} dict, which halves the store's memory (a stream may never send a label)
                kinds = self.graph.kinds
                shared = self._user_entities
                for e, ent in zip(scored, ids, strict=True):
                    if _shows_control(e) and any(k in ent for k in kinds):
                        uid = ent["user"]
                        one = shared.get(uid)
                        if one is None:
                            if len(shared) >= _SHARED_USERS:
                                shared.clear()
                            one = shared[uid] = {"user": uid}
                        put(e.event_id, e.ts, _NO_VECTOR, kind=e.type, entities=one)
            if self.graph is not None:
                for i in np.flatnonzero(alerted).tolist():
                    self.graph.flag(scored[i].user_id, scored[i].ts)

    def _alert(self, e: Order | Login, ids: dict[str, str], verdicts, i: int, x: dict[str, float]) -> Alert:
        return self._make_alert(e, ids, score=float(verdicts.risk[i]), severity=verdicts.severity[i],
                                action=verdicts.action[i], reasons=tuple(verdicts.reasons(i, x)),
                                detector_scores={name: float(p[i]) for name, p in verdicts.p.items()})

    def _make_alert(self, e: Order | Login, ids: dict[str, str], *, score: float, severity: str, action: str,
                    reasons: tuple[Any, ...], detector_scores: dict[str, float]) -> Alert:
        """An alert on event ``e``: its id, times and provenance are the engine's; the verdict is the caller's."""
        prov = e.provenance
        return Alert(
            alert_id=alert_id(e.event_id, self.config_hash),
            event_id=e.event_id,
            event_type=e.type,
            entities=ids,
            event_ts=e.ts,
            detected_at=self.clock(e),
            score=score,
            severity=severity,
            action=action,
            reasons=reasons,
            detector_scores=detector_scores,
            config_hash=self.config_hash,
            topic=prov.topic if prov else None,
            partition=prov.partition if prov else None,
            offset=prov.offset if prov else None,
            rules_version=self.rules_version,
        )

    # -- state ------------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The engine's whole state (features and models) as bytes, for a checkpoint."""
        return pickle.dumps(
            {"config_hash": self.config_hash, "features": self.features, "ensembles": self.ensembles,
             "events_seen": self.events_seen, "label_store": self.label_store, "entity_risk": self.entity_risk,
             "graph": self.graph, "rules_version": self.rules_version},
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def memory_stats(self) -> dict[str, float]:
        """Memory of the feature state (see :meth:`stream.features.FeatureExtractor.stats`)."""
        return self.features.stats()

    def label_store_stats(self) -> dict[str, int]:
        """The label store's ``held``, ``joined``, ``missed`` and ``expired`` counts."""
        return self.label_store.stats()

    def _load_state(self, blob: bytes) -> dict[str, Any]:
        try:
            state = pickle.loads(blob)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad checkpoint
            raise CheckpointError(f"checkpoint does not load: {type(e).__name__}: {e}") from None
        if not isinstance(state, dict):
            raise CheckpointError("checkpoint does not load: not an engine state")
        if state.get("config_hash") != self.config_hash:
            raise CheckpointError(
                f"checkpoint was made with configuration {state.get('config_hash')}, not {self.config_hash}; "
                "start from empty state (new state dir or group) to change the detection configuration"
            )
        return state

    def restore(self, blob: bytes) -> None:
        """Load a :meth:`snapshot`. Refuses state made under another detection configuration or by the compiled
        engine."""
        state = self._load_state(blob)
        if state.get("engine", "python") != "python":
            raise CheckpointError("checkpoint was made by the compiled engine and this one is the python engine; "
                                  "set [engine] core = \"compiled\" to continue from it, or start from empty state")
        self.features = state["features"]
        self.ensembles = state["ensembles"]
        self.events_seen = state["events_seen"]
        self.label_store = state.get("label_store", self.label_store)
        self.entity_risk = state.get("entity_risk", self.entity_risk)
        self.graph = state.get("graph", self.graph)
        self.rules_version = state.get("rules_version")
