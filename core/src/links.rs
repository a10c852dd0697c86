//! Entity risk from arrived labels, and link features between accounts: the port of `stream/links.py`.
//!
//! [`EntityRisk`] and [`LinkGraph`] give the same numbers as the Python classes for the same calls (same float
//! operations in the same order; Python's float `//` and `round` are reproduced exactly), keep the same bounds
//! and evict in the same order. `tests/core/test_links_differential.py` replays simulated and real streams
//! through both.
//!
//! Entities arrive as [`EntityIds`]: the engine's six entity kinds ([`ENTITY_KINDS`], `stream.pipeline.entity_ids`)
//! by position. A kind name outside those six is accepted (as Python accepts it) and simply never present.
//!
//! The link graph interns users and values into slots (u32 ids) so that a feature computation walks integer
//! lists and marks visited users in a stamp array, without hashing strings. A slot lives exactly as long as
//! something refers to it (its table entry, a membership in another entry's list, a confirmed or flagged time),
//! so memory stays bounded by the caps, as in Python, under any flood of fresh ids.

// `!(x > 0.0)` and `!(t < cut)` are Python's tests, NaN included: kept as written.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::EventRef;

pub const DAY: f64 = 86400.0;
/// The engine's entity kinds, in `stream.pipeline._ENTITY_FIELDS` order: the positions of [`EntityIds`].
pub const ENTITY_KINDS: [&str; 6] = ["user", "device", "ip", "payment", "address", "merchant"];
/// What links accounts, by default (`stream.links.LINK_KINDS`).
pub const LINK_KINDS: [&str; 4] = ["device", "ip", "payment", "address"];
/// The default kinds of [`EntityRisk`] (`stream.links.EntityRisk`'s default, in its order).
pub const RISK_KINDS: [&str; 6] = ["merchant", "user", "device", "ip", "payment", "address"];
/// Every feature [`LinkGraph`] can emit, in its dicts' order (`link_flagged` only with `flagged`).
pub const LINK_FEATURES: [&str; 4] = ["link_neighbours", "link_group", "link_confirmed", "link_flagged"];

/// The position of an entity kind in [`ENTITY_KINDS`].
pub fn kind_index(name: &str) -> Option<usize> {
    ENTITY_KINDS.iter().position(|k| *k == name)
}

/// An event's entity ids by kind ([`ENTITY_KINDS`] positions): `stream.pipeline.entity_ids` without the dict.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EntityIds<'a> {
    pub ids: [Option<&'a str>; 6],
}

impl<'a> EntityIds<'a> {
    /// The ids an order or login carries (user and merchant are always there for orders; `merchant_id` of a
    /// login is empty in `EventRef` and absent in Python, so it is left out).
    pub fn from_event(e: &'a EventRef<'_>) -> Self {
        let order = e.kind == Some(crate::event::Kind::Order);
        EntityIds {
            ids: [
                Some(&e.user_id),
                e.device_id.as_deref(),
                e.ip.as_deref(),
                e.payment_id.as_deref(),
                e.address_id.as_deref(),
                if order { Some(&e.merchant_id) } else { None },
            ],
        }
    }

    pub fn get(&self, kind: usize) -> Option<&'a str> {
        self.ids[kind]
    }

    /// From `(kind name, id)` pairs; unknown kinds are ignored.
    pub fn from_pairs<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let mut out = EntityIds::default();
        for (k, v) in pairs {
            if let Some(i) = kind_index(k) {
                out.ids[i] = Some(v);
            }
        }
        out
    }
}

/// Python's `a // b` for floats (CPython `float_floor_div`), bit for bit.
pub fn py_floordiv(vx: f64, wx: f64) -> f64 {
    let m = vx % wx; // C fmod
    let mut div = (vx - m) / wx;
    if m != 0.0 && (wx < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut fl = div.floor();
        if div - fl > 0.5 {
            fl += 1.0;
        }
        fl
    } else {
        (0.0f64).copysign(vx / wx)
    }
}

/// `int(a // b)` as Python computes it, for the bucket index of a time (finite inputs).
fn py_int_floordiv(a: f64, b: f64) -> i64 {
    py_floordiv(a, b) as i64
}

/// `86400 -> "1d"`, `3600 -> "1h"`, `90 -> "90s"` (`stream.links.window_label`).
pub fn window_label(seconds: f64) -> String {
    for (unit, size) in [("d", DAY), ("h", 3600.0), ("m", 60.0)] {
        if seconds >= size && seconds % size == 0.0 {
            return format!("{}{}", py_floordiv(seconds, size) as i64, unit);
        }
    }
    format!("{}s", seconds.trunc() as i64)
}

/// Every feature an [`EntityRisk`] of these kinds and windows emits (`stream.links.risk_feature_names`; `prior`:
/// with a prior strength, the shrunk rate after each window's rate).
pub fn risk_feature_names(kinds: &[&str], windows: &[f64], prior: bool) -> Vec<String> {
    let whats: &[&str] = if prior { &["labels", "frauds", "rate", "shrunk"] } else { &["labels", "frauds", "rate"] };
    let mut out = Vec::new();
    for k in kinds {
        for &w in windows {
            for what in whats {
                out.push(format!("risk_{k}_{what}_{}", window_label(w)));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// EntityRisk

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Bucket {
    b: i64,
    labels: i64,
    frauds: i64,
}

/// Per-entity confirmed-fraud counts and rates from arrived labels, over sliding windows of arrival time
/// (`stream.links.EntityRisk`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntityRisk {
    kinds: Vec<String>,
    windows: Vec<f64>,
    bucket: f64,
    expire_every: i64,
    nb: Vec<i64>,
    /// kinds[i] -> its position in ENTITY_KINDS (None: never present)
    kind_pos: Vec<Option<usize>>,
    /// kinds[i] -> its table (a kind named twice shares one table, as Python's dict of tables does)
    kind_table: Vec<usize>,
    names: Vec<String>,
    /// one per distinct kind name: entity id -> buckets, oldest first
    tables: Vec<FxHashMap<Box<str>, Vec<Bucket>>>,
    /// the cohort's weight in labels (`None`: no shrunk rates)
    prior: Option<f64>,
    /// one per distinct kind name: the buckets of every label of the kind (only with a prior)
    cohort: Vec<Vec<Bucket>>,
    learned: i64,
    latest: i64,
}

/// Count a label of bucket `b` in `rec` (Python's `EntityRisk._count`).
fn count(rec: &mut Vec<Bucket>, b: i64, y: i64, horizon_nb: i64) {
    match rec.last_mut() {
        Some(last) if last.b >= b => {
            last.labels += 1;
            last.frauds += y;
        }
        _ => {
            rec.push(Bucket { b, labels: 1, frauds: y });
            let horizon = b - horizon_nb;
            let drop = rec.iter().take_while(|r| r.b <= horizon).count();
            rec.drain(..drop);
        }
    }
}

/// Labels and frauds of `rec` in each window (`nbs` buckets each) at bucket `b`, into `n` and `f`.
fn sums(rec: Option<&Vec<Bucket>>, b: i64, nbs: &[i64], n: &mut [f64], f: &mut [f64]) {
    n.fill(0.0);
    f.fill(0.0);
    let last = nbs[nbs.len() - 1];
    if let Some(rec) = rec {
        for r in rec.iter().rev() {
            let age = b - r.b;
            if age >= last {
                break;
            }
            for (j, &nb) in nbs.iter().enumerate() {
                if age < nb {
                    n[j] += r.labels as f64;
                    f[j] += r.frauds as f64;
                }
            }
        }
    }
}

impl EntityRisk {
    /// `EntityRisk(kinds, windows, bucket, expire_every, prior_strength)`; the same validation as Python, plus
    /// `expire_every >= 1` (Python would divide by zero at the first label).
    pub fn new(kinds: &[&str], windows: &[f64], bucket: f64, expire_every: i64, prior: Option<f64>) -> Result<Self, String> {
        if windows.is_empty() || windows.iter().any(|w| !(*w > 0.0)) {
            return Err(format!("windows must be positive seconds, got {windows:?}"));
        }
        if !(bucket > 0.0) {
            return Err(format!("bucket must be > 0 seconds, got {bucket:?}"));
        }
        if expire_every < 1 {
            return Err(format!("expire_every must be an integer >= 1, got {expire_every}"));
        }
        if let Some(k) = prior {
            if !(k.is_finite() && k > 0.0) {
                return Err(format!("prior_strength must be a finite number of labels > 0, got {k:?}"));
            }
        }
        let mut ws: Vec<f64> = windows.to_vec();
        ws.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let nb = ws.iter().map(|w| ((w / bucket).round_ties_even() as i64).max(1)).collect();
        let mut distinct: Vec<&str> = Vec::new();
        let mut kind_table = Vec::new();
        for k in kinds {
            let t = distinct.iter().position(|d| d == k).unwrap_or_else(|| {
                distinct.push(k);
                distinct.len() - 1
            });
            kind_table.push(t);
        }
        Ok(EntityRisk {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            names: risk_feature_names(kinds, &ws, prior.is_some()),
            windows: ws,
            bucket,
            expire_every,
            nb,
            kind_pos: kinds.iter().map(|k| kind_index(k)).collect(),
            kind_table,
            tables: vec![FxHashMap::default(); distinct.len()],
            prior,
            cohort: vec![Vec::new(); distinct.len()],
            learned: 0,
            latest: 0,
        })
    }

    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    /// Windows in seconds, sorted (as Python sorts them).
    pub fn windows(&self) -> &[f64] {
        &self.windows
    }

    /// The names [`Self::features_into`] fills, in the order of Python's dict (a name repeated when a kind or
    /// window is: the later value is the same, as Python's dict keeps one key).
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Count a label that arrived at `arrived` for the entities of its event.
    pub fn learn(&mut self, ids: &EntityIds, y: i64, arrived: f64) {
        let b = py_int_floordiv(arrived, self.bucket);
        self.latest = self.latest.max(b);
        let horizon_nb = *self.nb.last().unwrap();
        for i in 0..self.kinds.len() {
            let Some(eid) = self.kind_pos[i].and_then(|p| ids.get(p)) else { continue };
            let t = self.kind_table[i];
            let table = &mut self.tables[t];
            let rec = match table.get_mut(eid) {
                Some(r) => r,
                None => table.entry(eid.into()).or_default(),
            };
            count(rec, b, y, horizon_nb);
            if self.prior.is_some() {
                count(&mut self.cohort[t], b, y, horizon_nb);
            }
        }
        self.learned += 1;
        if self.learned % self.expire_every == 0 {
            self.expire();
        }
    }

    /// The risk features of an event at `ts` with these entities, into `out` (`feature_names()` order;
    /// `out.len() == feature_names().len()`).
    pub fn features_into(&self, ids: &EntityIds, ts: f64, out: &mut [f64]) {
        assert_eq!(out.len(), self.names.len());
        let b = py_int_floordiv(ts, self.bucket);
        let nbs = &self.nb;
        let w = nbs.len();
        let per = if self.prior.is_some() { 4 } else { 3 };
        let mut buf = [0.0f64; 32];
        let mut bufv;
        let buf: &mut [f64] = if w <= 8 {
            &mut buf[..4 * w]
        } else {
            bufv = vec![0.0; 4 * w];
            &mut bufv[..]
        };
        let (n, rest) = buf.split_at_mut(w);
        let (f, rest) = rest.split_at_mut(w);
        let (cn, cf) = rest.split_at_mut(w);
        for i in 0..self.kinds.len() {
            let t = self.kind_table[i];
            let rec = self.kind_pos[i].and_then(|p| ids.get(p)).and_then(|eid| self.tables[t].get(eid));
            sums(rec, b, nbs, n, f);
            if self.prior.is_some() {
                sums(Some(&self.cohort[t]), b, nbs, cn, cf);
            }
            let o = &mut out[i * per * w..(i + 1) * per * w];
            for j in 0..w {
                o[per * j] = n[j];
                o[per * j + 1] = f[j];
                o[per * j + 2] = if n[j] != 0.0 { f[j] / n[j] } else { 0.0 };
                if let Some(k) = self.prior {
                    let p = if cn[j] != 0.0 { cf[j] / cn[j] } else { 0.0 };
                    o[per * j + 3] = (f[j] + k * p) / (n[j] + k);
                }
            }
        }
    }

    /// [`Self::features_into`] as `(name, value)` pairs, in order.
    pub fn features(&self, ids: &EntityIds, ts: f64) -> Vec<(&str, f64)> {
        let mut v = vec![0.0; self.names.len()];
        self.features_into(ids, ts, &mut v);
        self.names.iter().map(String::as_str).zip(v).collect()
    }

    fn expire(&mut self) {
        let horizon = self.latest - self.nb.last().unwrap();
        for table in &mut self.tables {
            table.retain(|_, rec| rec.last().is_some_and(|r| r.b > horizon));
        }
    }

    /// Entities held.
    pub fn size(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(self).expect("entity risk serialises")
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        bincode::deserialize(bytes).map_err(|e| format!("entity risk state does not load: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// LinkGraph

mod arc_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

const NONE: u32 = u32::MAX;

/// A user: its entry of `by_user` (values it used, oldest first; `seq` its last use) when `in_table`, its
/// confirmed and flagged times, and `refs`, the number of `by_value` lists it is in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct UserSlot {
    #[serde(with = "arc_str")]
    name: Arc<str>,
    refs: u32,
    in_table: bool,
    seq: u64,
    values: Vec<(u32, f64)>,
    confirmed: Option<f64>,
    flagged: Option<f64>,
}

/// A (kind, value): its entry of `by_value` (users, oldest first; `seq` its last use) when `in_table`, and
/// `refs`, the number of users' lists it is in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ValueSlot {
    kind: u8,
    #[serde(with = "arc_str")]
    name: Arc<str>,
    refs: u32,
    in_table: bool,
    seq: u64,
    users: Vec<(u32, f64)>,
}

/// The link features of one event (`link_flagged` is `None` without `flagged`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkFeatures {
    pub neighbours: f64,
    pub group: f64,
    pub confirmed: f64,
    pub flagged: Option<f64>,
}

impl LinkFeatures {
    /// `(name, value)` in the order of Python's dict.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [self.neighbours, self.group, self.confirmed]
            .into_iter()
            .chain(self.flagged)
            .enumerate()
            .map(|(i, v)| (LINK_FEATURES[i], v))
    }
}

/// Users linked through shared devices, IPs, payments and addresses within a sliding window
/// (`stream.links.LinkGraph`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkGraph {
    window: f64,
    kinds: Vec<String>,
    /// kinds[i] -> its position in ENTITY_KINDS (None: never present)
    kind_pos: Vec<Option<usize>>,
    max_users: usize,
    max_values: usize,
    max_group: usize,
    expire_every: i64,
    flagged: bool,
    max_entries: usize,
    seen: i64,
    now: f64,
    /// the last-use clock of both tables (Python's dict order: pop and put back)
    clock: u64,
    users: Vec<UserSlot>,
    free_users: Vec<u32>,
    values: Vec<ValueSlot>,
    free_values: Vec<u32>,
    n_users: usize,
    n_values: usize,
    #[serde(skip)]
    user_index: FxHashMap<Arc<str>, u32>,
    #[serde(skip)]
    value_index: [FxHashMap<Arc<str>, u32>; 6],
    #[serde(skip)]
    scratch: Scratch,
}

/// Per-call work space: stamps of the users met (by slot) and the first-hop list.
#[derive(Clone, Debug, Default)]
struct Scratch {
    epoch: u32,
    first_mark: Vec<u32>,
    group_mark: Vec<u32>,
    first: Vec<u32>,
    own: Vec<(usize, u32)>,
}

impl LinkGraph {
    /// `LinkGraph(window, kinds, max_users, max_values, max_group, expire_every, flagged, max_entries)`; the same
    /// validation as Python, plus `expire_every >= 1` (Python would divide by zero at the first observe).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        window: f64,
        kinds: &[&str],
        max_users: i64,
        max_values: i64,
        max_group: i64,
        expire_every: i64,
        flagged: bool,
        max_entries: i64,
    ) -> Result<Self, String> {
        if !(window > 0.0) {
            return Err(format!("window must be > 0 seconds, got {window:?}"));
        }
        for (name, v) in [
            ("max_users", max_users),
            ("max_values", max_values),
            ("max_group", max_group),
            ("max_entries", max_entries),
        ] {
            if v < 1 {
                return Err(format!("{name} must be an integer >= 1, got {v}"));
            }
        }
        if expire_every < 1 {
            return Err(format!("expire_every must be an integer >= 1, got {expire_every}"));
        }
        Ok(LinkGraph {
            window,
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            kind_pos: kinds.iter().map(|k| kind_index(k)).collect(),
            max_users: max_users as usize,
            max_values: max_values as usize,
            max_group: max_group as usize,
            expire_every,
            flagged,
            max_entries: max_entries as usize,
            seen: 0,
            now: f64::NEG_INFINITY,
            clock: 0,
            users: Vec::new(),
            free_users: Vec::new(),
            values: Vec::new(),
            free_values: Vec::new(),
            n_users: 0,
            n_values: 0,
            user_index: FxHashMap::default(),
            value_index: Default::default(),
            scratch: Scratch::default(),
        })
    }

    /// The defaults of the Python class.
    pub fn with_defaults() -> Self {
        Self::new(7.0 * DAY, &LINK_KINDS, 32, 16, 256, 100_000, true, 1_000_000).unwrap()
    }

    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    pub fn flagged(&self) -> bool {
        self.flagged
    }

    /// Whether any of the graph's kinds is present in `ids` (the engine's `_links(e)`, for these kinds).
    pub fn links(&self, ids: &EntityIds) -> bool {
        self.kind_pos.iter().any(|p| p.and_then(|p| ids.get(p)).is_some())
    }

    /// The names of the features, in order (3, or 4 with `flagged`).
    pub fn feature_names(&self) -> &'static [&'static str] {
        if self.flagged { &LINK_FEATURES } else { &LINK_FEATURES[..3] }
    }

    /// Link features of `user`'s event at `ts` carrying `ids` (before it is observed).
    pub fn features(&mut self, user: &str, ids: &EntityIds, ts: f64) -> LinkFeatures {
        self.load_own(ids);
        self.compute(user, ts)
    }

    /// Record that `user` used these values at `ts` (after its event was scored).
    pub fn observe(&mut self, user: &str, ids: &EntityIds, ts: f64) {
        self.observe_inner(user, ids, ts);
    }

    /// [`Self::features`], then [`Self::observe`] (the engine's per-event call for orders and successful logins).
    pub fn features_then_observe(&mut self, user: &str, ids: &EntityIds, ts: f64) -> LinkFeatures {
        let out = self.features(user, ids, ts);
        self.observe_inner(user, ids, ts);
        out
    }

    /// A fraud label for one of `user`'s events arrived at `ts`.
    pub fn confirm(&mut self, user: &str, ts: f64) {
        let u = self.intern_user(user) as usize;
        let s = &mut self.users[u];
        s.confirmed = Some(py_max(ts, s.confirmed.unwrap_or(ts)));
    }

    /// The engine alerted on one of `user`'s events at `ts`.
    pub fn flag(&mut self, user: &str, ts: f64) {
        let u = self.intern_user(user) as usize;
        let s = &mut self.users[u];
        s.flagged = Some(py_max(ts, s.flagged.unwrap_or(ts)));
    }

    /// Users and values held (`len(_by_user) + len(_by_value)`).
    pub fn size(&self) -> usize {
        self.n_users + self.n_values
    }

    /// `(len(_by_user), len(_by_value))`.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.n_users, self.n_values)
    }

    /// Slots allocated (users, values), alive or free: what the memory is proportional to.
    pub fn slots(&self) -> (usize, usize) {
        (self.users.len(), self.values.len())
    }

    /// Heap bytes held (capacities and string contents; the allocator's own overhead not counted).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let map = |cap: usize| cap * (size_of::<(Arc<str>, u32)>() + 1);
        let arc = |s: &str| if s.is_empty() { 0 } else { s.len() + 16 };
        self.users.capacity() * size_of::<UserSlot>()
            + self.users.iter().map(|u| u.values.capacity() * 16 + arc(&u.name)).sum::<usize>()
            + self.values.capacity() * size_of::<ValueSlot>()
            + self.values.iter().map(|v| v.users.capacity() * 16 + arc(&v.name)).sum::<usize>()
            + (self.free_users.capacity() + self.free_values.capacity()) * 4
            + map(self.user_index.capacity())
            + self.value_index.iter().map(|m| map(m.capacity())).sum::<usize>()
            + (self.scratch.first_mark.capacity() + self.scratch.group_mark.capacity()) * 4
    }

    /// Slots alive (users, values): every user and value the Python graph still refers to somewhere.
    pub fn live(&self) -> (usize, usize) {
        (self.user_index.len(), self.value_index.iter().map(|m| m.len()).sum())
    }

    pub fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(self).expect("link graph serialises")
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut g: LinkGraph =
            bincode::deserialize(bytes).map_err(|e| format!("link graph state does not load: {e}"))?;
        for (i, s) in g.users.iter().enumerate() {
            if g.user_alive(i as u32) {
                g.user_index.insert(s.name.clone(), i as u32);
            }
        }
        for (i, s) in g.values.iter().enumerate() {
            if s.in_table || s.refs > 0 {
                g.value_index[s.kind as usize].insert(s.name.clone(), i as u32);
            }
        }
        Ok(g)
    }

    /// Run the expiry pass now (Python's `_expire`; the graph runs it every `expire_every` observed events).
    pub fn expire(&mut self) {
        let cut = self.now - self.window;
        // _prune(by_value): inner entries seen before the cut, then entries left empty
        for v in 0..self.values.len() {
            if !self.values[v].in_table {
                continue;
            }
            let mut gone = Vec::new();
            self.values[v].users.retain(|&(u, t)| {
                let keep = !(t < cut);
                if !keep {
                    gone.push(u);
                }
                keep
            });
            for u in gone {
                self.users[u as usize].refs -= 1;
                self.release_user(u);
            }
            if self.values[v].users.is_empty() {
                self.values[v].in_table = false;
                self.n_values -= 1;
                self.release_value(v as u32);
            }
        }
        for u in 0..self.users.len() {
            if !self.users[u].in_table {
                continue;
            }
            let mut gone = Vec::new();
            self.users[u].values.retain(|&(v, t)| {
                let keep = !(t < cut);
                if !keep {
                    gone.push(v);
                }
                keep
            });
            for v in gone {
                self.values[v as usize].refs -= 1;
                self.release_value(v);
            }
            if self.users[u].values.is_empty() {
                self.users[u].in_table = false;
                self.n_users -= 1;
                self.release_user(u as u32);
            }
        }
        for u in 0..self.users.len() {
            let s = &mut self.users[u];
            let mut changed = false;
            if s.confirmed.is_some_and(|t| t < cut) {
                s.confirmed = None;
                changed = true;
            }
            if s.flagged.is_some_and(|t| t < cut) {
                s.flagged = None;
                changed = true;
            }
            if changed {
                self.release_user(u as u32);
            }
        }
    }

    // -- internals ---------------------------------------------------------------------------------------------

    /// The event's own linking values that the graph knows, into `scratch.own` as (entity kind, value slot),
    /// and whether it had any linking value at all (known or not).
    fn load_own(&mut self, ids: &EntityIds) -> bool {
        self.scratch.own.clear();
        let mut any = false;
        for p in self.kind_pos.iter().flatten() {
            if let Some(v) = ids.get(*p) {
                any = true;
                if let Some(&slot) = self.value_index[*p].get(v) {
                    self.scratch.own.push((*p, slot));
                }
            }
        }
        // an own value the graph does not know links nobody, but it still makes the event "linking"
        if any && self.scratch.own.is_empty() {
            self.scratch.own.push((usize::MAX, NONE));
        }
        any
    }

    fn compute(&mut self, user: &str, ts: f64) -> LinkFeatures {
        let uid = self.user_index.get(user).copied();
        let known = uid.filter(|&u| {
            let s = &self.users[u as usize];
            s.in_table && !s.values.is_empty()
        });
        if self.scratch.own.is_empty() && known.is_none() {
            return LinkFeatures {
                neighbours: 0.0,
                group: 0.0,
                confirmed: 0.0,
                flagged: self.flagged.then_some(0.0),
            };
        }
        let cut = ts - self.window;
        let me = uid.unwrap_or(NONE);
        let sc = &mut self.scratch;
        sc.epoch = sc.epoch.wrapping_add(1);
        if sc.epoch == 0 {
            sc.first_mark.iter_mut().for_each(|m| *m = 0);
            sc.group_mark.iter_mut().for_each(|m| *m = 0);
            sc.epoch = 1;
        }
        let epoch = sc.epoch;
        if sc.first_mark.len() < self.users.len() {
            sc.first_mark.resize(self.users.len(), 0);
            sc.group_mark.resize(self.users.len(), 0);
        }
        sc.first.clear();
        let users = &self.users;
        let values = &self.values;
        // first hop: users of the event's values and of the user's values still in the window
        let visit = |v: u32, sc: &mut Scratch| {
            for &(n, t) in &values[v as usize].users {
                if t >= cut && n != me && sc.first_mark[n as usize] != epoch {
                    sc.first_mark[n as usize] = epoch;
                    sc.group_mark[n as usize] = epoch;
                    sc.first.push(n);
                }
            }
        };
        for i in 0..sc.own.len() {
            let (_, v) = sc.own[i];
            if v != NONE && values[v as usize].in_table {
                visit(v, sc);
            }
        }
        if let Some(u) = known {
            for &(v, t) in &users[u as usize].values {
                if t >= cut && values[v as usize].in_table {
                    visit(v, sc);
                }
            }
        }
        // second hop, stopping once the group reaches max_group (the value is then max_group whatever the order)
        let mut group = sc.first.len();
        'hop: for i in 0..sc.first.len() {
            if group >= self.max_group {
                break;
            }
            let n = &users[sc.first[i] as usize];
            if !n.in_table {
                continue;
            }
            for &(v, t) in &n.values {
                if t < cut || !values[v as usize].in_table {
                    continue;
                }
                for &(m, t2) in &values[v as usize].users {
                    if t2 >= cut && m != me && sc.group_mark[m as usize] != epoch {
                        sc.group_mark[m as usize] = epoch;
                        group += 1;
                        if group >= self.max_group {
                            break 'hop;
                        }
                    }
                }
            }
        }
        let confirmed = sc.first.iter().filter(|&&n| users[n as usize].confirmed.is_some_and(|t| t >= cut)).count();
        let flagged = self
            .flagged
            .then(|| sc.first.iter().filter(|&&n| users[n as usize].flagged.is_some_and(|t| t >= cut)).count() as f64);
        LinkFeatures {
            neighbours: sc.first.len() as f64,
            group: group.min(self.max_group) as f64,
            confirmed: confirmed as f64,
            flagged,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn observe_inner(&mut self, user: &str, ids: &EntityIds, ts: f64) {
        self.now = py_max(self.now, ts);
        self.seen += 1;
        if self.seen % self.expire_every == 0 {
            self.expire();
        }
        if !self.links(ids) {
            return;
        }
        let u = self.intern_user(user);
        if !self.users[u as usize].in_table {
            self.users[u as usize].in_table = true;
            self.n_users += 1;
        }
        self.users[u as usize].seq = self.next_seq();
        for i in 0..self.kind_pos.len() {
            let Some(p) = self.kind_pos[i] else { continue };
            let Some(val) = ids.get(p) else { continue };
            let v = self.intern_value(p, val);
            if !self.values[v as usize].in_table {
                self.values[v as usize].in_table = true;
                self.n_values += 1;
            }
            self.values[v as usize].seq = self.next_seq();
            // users.pop(user); users[user] = ts; evict the oldest past max_users
            let list = &mut self.values[v as usize].users;
            match list.iter().position(|&(n, _)| n == u) {
                Some(pos) => {
                    list.remove(pos);
                    list.push((u, ts));
                }
                None => {
                    list.push((u, ts));
                    self.users[u as usize].refs += 1;
                }
            }
            if list.len() > self.max_users {
                let (old, _) = list.remove(0);
                self.users[old as usize].refs -= 1;
                self.release_user(old);
            }
            // mine.pop(key); mine[key] = ts; evict the oldest past max_values
            let mine = &mut self.users[u as usize].values;
            match mine.iter().position(|&(n, _)| n == v) {
                Some(pos) => {
                    mine.remove(pos);
                    mine.push((v, ts));
                }
                None => {
                    mine.push((v, ts));
                    self.values[v as usize].refs += 1;
                }
            }
            if mine.len() > self.max_values {
                let (old, _) = mine.remove(0);
                self.values[old as usize].refs -= 1;
                self.release_value(old);
            }
        }
        let cap = self.max_entries;
        let slack = 64.max(cap / 16);
        if self.n_users > cap + slack {
            self.evict_users(self.n_users - cap);
        }
        if self.n_values > cap + slack {
            self.evict_values(self.n_values - cap);
        }
    }

    /// Drop the `k` least recently used entries of `by_user`.
    fn evict_users(&mut self, k: usize) {
        let mut live: Vec<(u64, u32)> =
            self.users.iter().enumerate().filter(|(_, s)| s.in_table).map(|(i, s)| (s.seq, i as u32)).collect();
        live.select_nth_unstable(k - 1);
        for &(_, u) in &live[..k] {
            let vals = std::mem::take(&mut self.users[u as usize].values);
            self.users[u as usize].in_table = false;
            self.n_users -= 1;
            for (v, _) in vals {
                self.values[v as usize].refs -= 1;
                self.release_value(v);
            }
            self.release_user(u);
        }
    }

    /// Drop the `k` least recently used entries of `by_value`.
    fn evict_values(&mut self, k: usize) {
        let mut live: Vec<(u64, u32)> =
            self.values.iter().enumerate().filter(|(_, s)| s.in_table).map(|(i, s)| (s.seq, i as u32)).collect();
        live.select_nth_unstable(k - 1);
        for &(_, v) in &live[..k] {
            let us = std::mem::take(&mut self.values[v as usize].users);
            self.values[v as usize].in_table = false;
            self.n_values -= 1;
            for (u, _) in us {
                self.users[u as usize].refs -= 1;
                self.release_user(u);
            }
            self.release_value(v);
        }
    }

    fn user_alive(&self, u: u32) -> bool {
        let s = &self.users[u as usize];
        s.in_table || s.refs > 0 || s.confirmed.is_some() || s.flagged.is_some()
    }

    fn intern_user(&mut self, name: &str) -> u32 {
        if let Some(&u) = self.user_index.get(name) {
            return u;
        }
        let name: Arc<str> = Arc::from(name);
        let slot = UserSlot {
            name: name.clone(),
            refs: 0,
            in_table: false,
            seq: 0,
            values: Vec::new(),
            confirmed: None,
            flagged: None,
        };
        let u = match self.free_users.pop() {
            Some(u) => {
                self.users[u as usize] = slot;
                u
            }
            None => {
                self.users.push(slot);
                (self.users.len() - 1) as u32
            }
        };
        self.user_index.insert(name, u);
        u
    }

    fn intern_value(&mut self, kind: usize, name: &str) -> u32 {
        if let Some(&v) = self.value_index[kind].get(name) {
            return v;
        }
        let name: Arc<str> = Arc::from(name);
        let slot = ValueSlot { kind: kind as u8, name: name.clone(), refs: 0, in_table: false, seq: 0, users: Vec::new() };
        let v = match self.free_values.pop() {
            Some(v) => {
                self.values[v as usize] = slot;
                v
            }
            None => {
                self.values.push(slot);
                (self.values.len() - 1) as u32
            }
        };
        self.value_index[kind].insert(name, v);
        v
    }

    /// Free a user slot that nothing refers to any more.
    fn release_user(&mut self, u: u32) {
        if self.user_alive(u) {
            return;
        }
        let s = &mut self.users[u as usize];
        self.user_index.remove(&*s.name);
        s.name = Arc::from("");
        s.values = Vec::new();
        self.free_users.push(u);
    }

    /// Free a value slot that nothing refers to any more.
    fn release_value(&mut self, v: u32) {
        let s = &mut self.values[v as usize];
        if s.in_table || s.refs > 0 {
            return;
        }
        self.value_index[s.kind as usize].remove(&*s.name);
        s.name = Arc::from("");
        s.users = Vec::new();
        self.free_values.push(v);
    }
}

/// Python's `max(a, b)`: `a` unless `b > a`.
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(pairs: &[(&'a str, &'a str)]) -> EntityIds<'a> {
        EntityIds::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn floordiv_and_labels_match_python() {
        assert_eq!(py_floordiv(7.0, 2.0), 3.0);
        assert_eq!(py_floordiv(-7.0, 2.0), -4.0);
        assert_eq!(py_floordiv(1.0, 0.1), 9.0); // Python: 1.0 // 0.1 == 9.0
        assert_eq!(window_label(86400.0), "1d");
        assert_eq!(window_label(3600.0), "1h");
        assert_eq!(window_label(90.0), "90s");
        assert_eq!(window_label(120.0), "2m");
        assert_eq!(window_label(90.7), "90s");
        assert_eq!(risk_feature_names(&["ip"], &[86400.0], false), ["risk_ip_labels_1d", "risk_ip_frauds_1d", "risk_ip_rate_1d"]);
        assert_eq!(risk_feature_names(&["ip"], &[86400.0], true)[3], "risk_ip_shrunk_1d");
    }

    #[test]
    fn entity_risk_counts_arrived_labels_per_window() {
        let mut risk = EntityRisk::new(&["merchant", "user"], &[7.0 * DAY, DAY], DAY, 100_000, None).unwrap();
        for d in 0..5 {
            let u = format!("u{d}");
            risk.learn(&ids(&[("merchant", "t1"), ("user", &u)]), (d >= 3) as i64, d as f64 * DAY + 10.0);
        }
        let f: FxHashMap<&str, f64> = risk.features(&ids(&[("merchant", "t1"), ("user", "u4")]), 4.0 * DAY + 100.0).into_iter().collect();
        assert_eq!(f["risk_merchant_labels_7d"], 5.0);
        assert_eq!(f["risk_merchant_frauds_7d"], 2.0);
        assert_eq!(f["risk_merchant_rate_7d"], 0.4);
        assert_eq!(f["risk_merchant_labels_1d"], 1.0);
        assert_eq!(f["risk_user_frauds_7d"], 1.0);
        assert_eq!(risk.feature_names()[0], "risk_merchant_labels_1d"); // windows sorted
        let back = EntityRisk::restore(&risk.snapshot()).unwrap();
        assert_eq!(back.features(&ids(&[("merchant", "t1")]), 5.0 * DAY), risk.features(&ids(&[("merchant", "t1")]), 5.0 * DAY));
        assert!(EntityRisk::new(&["ip"], &[], DAY, 1, None).is_err());
        assert!(EntityRisk::new(&["ip"], &[f64::NAN], DAY, 1, None).is_err());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(EntityRisk::new(&["ip"], &[DAY], DAY, 1, Some(bad)).is_err());
        }
    }

    #[test]
    fn entity_risk_shrinks_toward_the_cohort() {
        let mut risk = EntityRisk::new(&["merchant"], &[DAY], DAY, 100_000, Some(2.0)).unwrap();
        for (t, y) in [("t1", 1), ("t1", 0), ("t2", 0), ("t2", 0)] {
            risk.learn(&ids(&[("merchant", t)]), y, 10.0);
        }
        let get = |r: &EntityRisk, m: &str, ts: f64| -> f64 {
            r.features(&ids(&[("merchant", m)]), ts).into_iter().find(|(n, _)| *n == "risk_merchant_shrunk_1d").unwrap().1
        };
        assert_eq!(get(&risk, "new", 30.0), 0.25); // no labels: the cohort's rate
        assert_eq!(get(&risk, "t1", 30.0), 0.375); // (1 + 2 * 0.25) / (2 + 2)
        assert_eq!(get(&risk, "new", 2.0 * DAY), 0.0); // the cohort's labels left the window
        let back = EntityRisk::restore(&risk.snapshot()).unwrap();
        assert_eq!(get(&back, "t1", 30.0), 0.375);
    }

    #[test]
    fn link_graph_groups_neighbours_confirmed_and_flagged() {
        let mut g = LinkGraph::new(DAY, &LINK_KINDS, 32, 16, 256, 100_000, true, 1_000_000).unwrap();
        g.observe("a", &ids(&[("device", "d1")]), 0.0);
        g.observe("b", &ids(&[("device", "d1"), ("payment", "p1")]), 10.0);
        g.observe("c", &ids(&[("payment", "p1")]), 20.0);
        g.observe("z", &ids(&[("device", "d9")]), 20.0);
        g.confirm("c", 30.0);
        g.flag("b", 31.0);
        let fa = g.features("a", &ids(&[("device", "d1")]), 40.0);
        assert_eq!(fa, LinkFeatures { neighbours: 1.0, group: 2.0, confirmed: 0.0, flagged: Some(1.0) });
        let fb = g.features("b", &ids(&[]), 40.0);
        assert_eq!((fb.neighbours, fb.confirmed), (2.0, 1.0));
        assert_eq!(g.features("a", &ids(&[("device", "d1")]), 2.0 * DAY).neighbours, 0.0);
        let mut back = LinkGraph::restore(&g.snapshot()).unwrap();
        assert_eq!(back.features("a", &ids(&[("device", "d1")]), 40.0), fa);
    }

    #[test]
    fn link_graph_is_bounded_and_frees_slots() {
        let mut g = LinkGraph::new(10.0 * DAY, &LINK_KINDS, 4, 2, 3, 50, true, 1_000_000).unwrap();
        for i in 0..200 {
            let (d, p) = (format!("d{i}"), format!("p{}", i % 3));
            g.observe(&format!("u{i}"), &ids(&[("ip", "shared"), ("device", &d), ("payment", &p)]), i as f64);
        }
        assert!(g.values.iter().all(|v| v.users.len() <= 4));
        assert!(g.users.iter().all(|u| u.values.len() <= 2));
        let f = g.features("new", &ids(&[("ip", "shared")]), 300.0);
        assert_eq!(f.neighbours, 4.0);
        assert!(f.group <= 3.0);
        g.observe("late", &ids(&[("ip", "x")]), 100.0 * DAY);
        g.expire();
        assert_eq!(g.size(), 2);
        assert_eq!(g.user_index.len(), 1);
        // a flood of fresh ids under max_entries: slots stay bounded
        let mut g = LinkGraph::new(DAY, &LINK_KINDS, 32, 16, 256, 100_000, true, 300).unwrap();
        for i in 0..20_000 {
            let (d, ip) = (format!("d{i}"), format!("i{i}"));
            g.observe(&format!("bot{i}"), &ids(&[("device", &d), ("ip", &ip)]), 1.0 + i as f64);
            assert!(g.n_users <= 364 && g.n_values <= 364);
        }
        // a slot lives while an entry or a list refers to it: values <= entries + entries x max_values of users
        assert!(g.users.len() <= 2 * 364 && g.values.len() <= 3 * 364, "{:?}", g.slots());
        assert_eq!(g.user_index.len() + g.free_users.len(), g.users.len());
    }
}
