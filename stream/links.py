"""Entity risk from arrived labels, and link features between accounts: incremental, bounded, label-delay safe.

Two feature families are added to an event's vector before it is scored (see ``docs/labels.md``):

:class:`EntityRisk` — per entity (merchant/terminal, device, IP, payment, address, user), the labels that have
*arrived* (label events, joined to their event) within the last ``windows`` seconds **of arrival time**:
``risk_<kind>_labels_<w>`` (labelled events), ``risk_<kind>_frauds_<w>`` and ``risk_<kind>_rate_<w>``
(frauds / labels, 0 when none). Counting by arrival time is what respects the delay: with a 7-day delay, a
7-day window holds the events of 14 to 7 days ago, exactly the handbook's "terminal risk with a delay period".
Counts live in day-wide (``bucket`` seconds) buckets, at most ``max(windows) / bucket + 1`` per entity.
With ``prior_strength=k`` (transfer from the cohort, ``[links] risk_prior``), each window also gets
``risk_<kind>_shrunk_<w>`` = ``(frauds + k * p) / (labels + k)``, where ``p`` is the fraud rate of every label of
that kind that arrived in the same window (the cohort: all entities of the kind, one bucket list per kind): an
entity with no labels is scored with its cohort's rate, then, as its labels arrive, with its own.

:class:`LinkGraph` — accounts (users) linked through shared devices, IPs, payments and addresses seen within
``window`` seconds: ``link_neighbours`` (other users sharing a value with this one), ``link_group`` (users
reachable in two hops, the user's connected group as far as the bounded sets see, capped at ``max_group``),
``link_confirmed`` (neighbours with an arrived fraud label) and, with ``flagged=True``, ``link_flagged`` (neighbours
the engine alerted on: the engine records an alert after its micro-batch, so this one feature depends on where
batches are cut, and the engine's ``[links] flagged`` is off by default),
all within the window. Each value keeps at most ``max_users`` recent users and each user at most ``max_values``
recent values, so memory is bounded by the active entities, never by the stream length.

Both are plain dicts and lists: they pickle with the engine's checkpoint.

>>> risk = EntityRisk(kinds=("merchant",), windows=(86400.0,))
>>> risk.features({"merchant": "t1"}, ts=0.0)["risk_merchant_rate_1d"]
0.0
>>> risk.learn({"merchant": "t1"}, 1, arrived=10.0); risk.learn({"merchant": "t1"}, 0, arrived=20.0)
>>> f = risk.features({"merchant": "t1"}, ts=30.0)
>>> f["risk_merchant_labels_1d"], f["risk_merchant_frauds_1d"], f["risk_merchant_rate_1d"]
(2.0, 1.0, 0.5)
>>> risk.features({"merchant": "t1"}, ts=2 * 86400.0)["risk_merchant_labels_1d"]  # out of the window
0.0
>>> prior = EntityRisk(kinds=("merchant",), windows=(86400.0,), prior_strength=2.0)
>>> for t, y in (("t1", 1), ("t1", 0), ("t2", 0), ("t2", 0)): prior.learn({"merchant": t}, y, arrived=10.0)
>>> prior.features({"merchant": "new"}, ts=30.0)["risk_merchant_shrunk_1d"]  # no labels: the cohort's 1/4
0.25
>>> prior.features({"merchant": "t1"}, ts=30.0)["risk_merchant_shrunk_1d"]  # (1 + 2 * 0.25) / (2 + 2)
0.375
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LINK_KINDS", "LINK_FEATURES", "EntityRisk", "LinkGraph", "window_label", "risk_feature_names"]

DAY = 86400.0
LINK_KINDS = ("device", "ip", "payment", "address")  # what links accounts, by default
_NO_LINKS = {"link_neighbours": 0.0, "link_group": 0.0, "link_confirmed": 0.0}
#: Every feature :class:`LinkGraph` can emit (``link_flagged`` only with ``flagged=True``).
LINK_FEATURES = (*_NO_LINKS, "link_flagged")


def window_label(seconds: float) -> str:
    """``86400 -> "1d"``, ``3600 -> "1h"``, ``90 -> "90s"``."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def risk_feature_names(kinds: Sequence[str], windows: Sequence[float], prior: bool = False) -> list[str]:
    """Every feature an :class:`EntityRisk` of these kinds and windows emits (``prior``: with a prior strength).

    >>> risk_feature_names(["ip"], [86400.0])
    ['risk_ip_labels_1d', 'risk_ip_frauds_1d', 'risk_ip_rate_1d']
    >>> risk_feature_names(["ip"], [86400.0], prior=True)[-1]
    'risk_ip_shrunk_1d'
    """
    whats = ("labels", "frauds", "rate", "shrunk") if prior else ("labels", "frauds", "rate")
    return [f"risk_{k}_{what}_{window_label(float(w))}" for k in kinds for w in windows for what in whats]


class EntityRisk:
    """Per-entity confirmed-fraud counts and rates from arrived labels, over sliding windows of arrival time.

    Parameters
    ----------
    kinds
        Entity kinds tracked (keys of the engine's entity ids: user, device, ip, payment, address, merchant).
    windows
        Window lengths in seconds (arrival time of the labels).
    bucket
        Bucket width in seconds (the windows' resolution).
    expire_every
        Every this many learned labels, entities with no label within the largest window are dropped.
    prior_strength
        ``None`` (the default): no prior. A number ``k > 0`` of labels: emit ``risk_<kind>_shrunk_<w>``, the
        entity's rate shrunk toward its kind's rate over the same window with the weight of ``k`` labels.
    """

    prior_strength: float | None = None  # class default: instances pickled before the option had no prior

    def __init__(self, kinds: Sequence[str] = ("merchant", "user", "device", "ip", "payment", "address"),
                 windows: Sequence[float] = (DAY, 7 * DAY, 30 * DAY), bucket: float = DAY,
                 expire_every: int = 100_000, prior_strength: float | None = None) -> None:
        if not windows or any(not w > 0 for w in windows):
            raise ValueError(f"windows must be positive seconds, got {windows!r}")
        if not bucket > 0:
            raise ValueError(f"bucket must be > 0 seconds, got {bucket!r}")
        if isinstance(expire_every, bool) or not isinstance(expire_every, int) or expire_every < 1:
            raise ValueError(f"expire_every must be an integer >= 1, got {expire_every!r}")
        if prior_strength is not None and (isinstance(prior_strength, bool) or not isinstance(
                prior_strength, int | float) or not math.isfinite(prior_strength) or not prior_strength > 0):
            raise ValueError(f"prior_strength must be a finite number of labels > 0, got {prior_strength!r}")
        self.prior_strength = None if prior_strength is None else float(prior_strength)
        self.kinds = tuple(kinds)
        self.windows = tuple(sorted(float(w) for w in windows))
        self.bucket = float(bucket)
        self.expire_every = int(expire_every)
        self._nb = [max(1, round(w / self.bucket)) for w in self.windows]  # buckets per window
        self._names = {k: [(f"risk_{k}_labels_{window_label(w)}", f"risk_{k}_frauds_{window_label(w)}",
                            f"risk_{k}_rate_{window_label(w)}", f"risk_{k}_shrunk_{window_label(w)}")
                           for w in self.windows] for k in self.kinds}
        # kind -> entity id -> list of [bucket index, labels, frauds], oldest first
        self._tables: dict[str, dict[str, list[list[float]]]] = {k: {} for k in self.kinds}
        # kind -> the same list over every label of the kind (the cohort; only with a prior)
        self._cohort: dict[str, list[list[float]]] = {k: [] for k in self.kinds}
        self._csums: dict[str, tuple[int, list[float], list[float]]] = {}  # kind -> (bucket, its cohort sums)
        self._learned = 0
        self._latest = 0

    def learn(self, entities: Mapping[str, str], y: int, arrived: float) -> None:
        """Count a label that arrived at ``arrived`` for the entities of its event."""
        b = int(arrived // self.bucket)
        self._latest = max(self._latest, b)
        for kind in self.kinds:
            eid = entities.get(kind)
            if eid is None:
                continue
            self._count(self._tables[kind].setdefault(eid, []), b, y)
            if self.prior_strength is not None:
                self._count(self._cohort[kind], b, y)
                self._csums.pop(kind, None)
        self._learned += 1
        if self._learned % self.expire_every == 0:
            self._expire()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Load a pickle, one made before the prior included (3-name tuples, no cohort lists: no prior)."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_csums", {})
        if "_cohort" not in state:
            self._cohort = {k: [] for k in self.kinds}
            self._names = {k: [(*names, f"risk_{k}_shrunk_{window_label(w)}")
                               for names, w in zip(self._names[k], self.windows, strict=True)] for k in self.kinds}

    def _count(self, rec: list[list[float]], b: int, y: int) -> None:
        if rec and rec[-1][0] >= b:
            rec[-1][1] += 1
            rec[-1][2] += y
        else:
            rec.append([b, 1, y])
            horizon = b - self._nb[-1]
            while rec and rec[0][0] <= horizon:
                rec.pop(0)

    def _sums(self, rec: list[list[float]] | None, b: int) -> tuple[list[float], list[float]]:
        """Labels and frauds of ``rec`` in each window, at bucket ``b``."""
        nbs = self._nb
        n = [0.0] * len(nbs)
        f = [0.0] * len(nbs)
        if rec:
            for bi, cnt, fr in reversed(rec):
                age = b - bi  # 0 = the current bucket
                if age >= nbs[-1]:
                    break
                for j, nb in enumerate(nbs):
                    if age < nb:
                        n[j] += cnt
                        f[j] += fr
        return n, f

    def features(self, entities: Mapping[str, str], ts: float) -> dict[str, float]:
        """The risk features of an event at ``ts`` with these entities (zeros for unknown entities)."""
        out: dict[str, float] = {}
        b = int(ts // self.bucket)
        k = self.prior_strength
        for kind in self.kinds:
            eid = entities.get(kind)
            n, f = self._sums(self._tables[kind].get(eid) if eid is not None else None, b)
            if k is not None:  # the cohort's sums change only with a label or a new bucket: kept between them
                c = self._csums.get(kind)
                if c is None or c[0] != b:
                    c = self._csums[kind] = (b, *self._sums(self._cohort[kind], b))
                _, cn, cf = c
            for j, (nn, nf, nr, ns) in enumerate(self._names[kind]):
                out[nn] = n[j]
                out[nf] = f[j]
                out[nr] = f[j] / n[j] if n[j] else 0.0
                if k is not None:
                    p = cf[j] / cn[j] if cn[j] else 0.0
                    out[ns] = (f[j] + k * p) / (n[j] + k)
        return out

    def _expire(self) -> None:
        horizon = self._latest - self._nb[-1]
        for table in self._tables.values():
            for eid in [e for e, rec in table.items() if not rec or rec[-1][0] <= horizon]:
                del table[eid]

    def size(self) -> int:
        """Entities held."""
        return sum(len(t) for t in self._tables.values())


class LinkGraph:
    """Users linked through shared devices, IPs, payments and addresses within a sliding window.

    Parameters
    ----------
    window
        Seconds a user-value link stays alive after it was last seen.
    kinds
        Entity kinds that link users.
    max_users
        Most recent users remembered per value.
    max_values
        Most recent values remembered per user.
    max_group
        Cap of the two-hop group size (the work per event is bounded by it).
    flagged
        Whether to emit ``link_flagged`` (see the module docstring: it depends on the batch split).

    Examples
    --------
    >>> g = LinkGraph(window=3600.0)
    >>> g.observe("u1", {"device": "d1"}, ts=0.0); g.observe("u2", {"device": "d1", "ip": "i9"}, ts=10.0)
    >>> g.observe("u3", {"ip": "i9"}, ts=20.0); g.confirm("u3", ts=30.0)
    >>> f = g.features("u1", {"device": "d1"}, ts=40.0)
    >>> f["link_neighbours"], f["link_group"], f["link_confirmed"]
    (1.0, 2.0, 0.0)
    >>> g.features("u2", {"device": "d1"}, ts=40.0)["link_confirmed"]
    1.0
    """

    flagged = True  # class default: graphs pickled before the option had the feature
    max_entries = 1_000_000  # likewise: graphs pickled before the cap

    def __init__(self, window: float = 7 * DAY, kinds: Sequence[str] = LINK_KINDS, max_users: int = 32,
                 max_values: int = 16, max_group: int = 256, expire_every: int = 100_000,
                 flagged: bool = True, max_entries: int = 1_000_000) -> None:
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, got {window!r}")
        for name, v in (("max_users", max_users), ("max_values", max_values), ("max_group", max_group),
                        ("max_entries", max_entries), ("expire_every", expire_every)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.window = float(window)
        self.kinds = tuple(kinds)
        self.max_users = max_users
        self.max_values = max_values
        self.max_group = max_group
        self.expire_every = int(expire_every)
        self.flagged = bool(flagged)
        self.max_entries = max_entries
        self._by_value: dict[tuple[str, str], dict[str, float]] = {}  # (kind, value) -> user -> last seen
        self._by_user: dict[str, dict[tuple[str, str], float]] = {}  # user -> (kind, value) -> last seen
        self._confirmed: dict[str, float] = {}  # user -> arrival time of its latest fraud label
        self._flagged: dict[str, float] = {}  # user -> time of its latest alert
        self._seen = 0
        self._now = float("-inf")

    def _neighbours(self, user: str, values: Sequence[tuple[str, str]], cut: float) -> set[str]:
        out: set[str] = set()
        for v in values:
            users = self._by_value.get(v)
            if users:
                out.update(u for u, t in users.items() if t >= cut)
        out.discard(user)
        return out

    def features(self, user: str, entities: Mapping[str, str], ts: float) -> dict[str, float]:
        """Link features of ``user``'s event at ``ts`` carrying ``entities`` (before it is observed)."""
        return self._features(user, self._own(entities), ts)

    def observe(self, user: str, entities: Mapping[str, str], ts: float) -> None:
        """Record that ``user`` used these values at ``ts`` (after its event was scored)."""
        self._observe(user, self._own(entities), ts)

    def features_then_observe(self, user: str, entities: Mapping[str, str], ts: float) -> dict[str, float]:
        """:meth:`features`, then :meth:`observe`, reading the event's values once (the engine's per-event call)."""
        own = self._own(entities)
        out = self._features(user, own, ts)
        self._observe(user, own, ts)
        return out

    def _own(self, entities: Mapping[str, str]) -> list[tuple[str, str]]:
        return [(k, v) for k in self.kinds if (v := entities.get(k)) is not None]

    def _features(self, user: str, own: list[tuple[str, str]], ts: float) -> dict[str, float]:
        known = self._by_user.get(user)
        if not own and not known:  # nothing links this user (a card-only stream such as ULB): the hot case
            return {**_NO_LINKS, "link_flagged": 0.0} if self.flagged else dict(_NO_LINKS)
        cut = ts - self.window
        known = known or {}
        values = set(own) | {v for v, t in known.items() if t >= cut}
        first = self._neighbours(user, list(values), cut)
        group = set(first)
        for n in list(first):
            if len(group) >= self.max_group:
                break
            nv = [v for v, t in self._by_user.get(n, {}).items() if t >= cut]
            group.update(self._neighbours(user, nv, cut))
        group.discard(user)
        confirmed = sum(1 for n in first if self._confirmed.get(n, float("-inf")) >= cut)
        out = {"link_neighbours": float(len(first)), "link_group": float(min(len(group), self.max_group)),
               "link_confirmed": float(confirmed)}
        if self.flagged:
            out["link_flagged"] = float(sum(1 for n in first if self._flagged.get(n, float("-inf")) >= cut))
        return out

    def _observe(self, user: str, own: list[tuple[str, str]], ts: float) -> None:
        self._now = max(self._now, ts)
        self._seen += 1
        if self._seen % self.expire_every == 0:
            self._expire()
        if not own:
            return
        # Both tables stay in last-use order (popped and put back), so that past max_entries the least recently
        # used go: a flood of fresh ids cannot grow the graph past its cap (plus a slack of cap/16, evicted in
        # one pass: deleting a dict's first key one at a time costs a scan over the holes the last ones left).
        by_user, by_value = self._by_user, self._by_value
        mine = by_user.pop(user, None)
        if mine is None:
            mine = {}
        by_user[user] = mine
        for key in own:
            users = by_value.pop(key, None)
            if users is None:
                users = {}
            by_value[key] = users
            users.pop(user, None)
            users[user] = ts
            if len(users) > self.max_users:
                del users[next(iter(users))]
            mine.pop(key, None)
            mine[key] = ts
            if len(mine) > self.max_values:
                del mine[next(iter(mine))]
        cap = self.max_entries
        slack = max(64, cap // 16)
        for table in (by_user, by_value):
            if len(table) > cap + slack:
                for k in list(itertools.islice(table, len(table) - cap)):
                    del table[k]

    def confirm(self, user: str, ts: float) -> None:
        """A fraud label for one of ``user``'s events arrived at ``ts``."""
        self._confirmed[user] = max(ts, self._confirmed.get(user, ts))

    def flag(self, user: str, ts: float) -> None:
        """The engine alerted on one of ``user``'s events at ``ts``."""
        self._flagged[user] = max(ts, self._flagged.get(user, ts))

    def _expire(self) -> None:
        cut = self._now - self.window
        _prune(self._by_value, cut)
        _prune(self._by_user, cut)
        for seen in (self._confirmed, self._flagged):
            for key in [k for k, t in seen.items() if t < cut]:
                del seen[key]

    def size(self) -> int:
        """Users and values held."""
        return len(self._by_user) + len(self._by_value)


def _prune(table: dict[Any, dict[Any, float]], cut: float) -> None:
    """Drop inner entries last seen before ``cut``, and outer keys left empty."""
    for key in list(table):
        inner = table[key]
        for k2 in [k2 for k2, t in inner.items() if t < cut]:
            del inner[k2]
        if not inner:
            del table[key]
