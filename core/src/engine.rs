//! One partition unit's engine: event -> features -> entity-risk and link features -> detection, event by event,
//! with the label join. The compiled twin of `stream.pipeline.Engine` (the reference; see its docstring for the
//! semantics this follows, and `tests/core/test_engine_differential.py` for the check that both agree).
//!
//! The Python engine works on micro-batches (all features of a stretch of events, then each type's ensemble over
//! them); every stage is exact under any batch split, so doing the same work one event at a time gives the same
//! numbers. Two things are batch-level in Python and are kept batch-level here: the alerts of a stretch flag
//! their users in the link graph only after the stretch (the optional `link_flagged` feature), and a label event
//! ends a stretch.

use serde::{Deserialize, Serialize};

use crate::detectors::ensemble::{Ensemble, Explain, Verdict};
use crate::detectors::rules::Rules;
use crate::event::{EventRef, Kind, Row, Schema};
use crate::features::{FeatureState, Params as FeatureParams};
use crate::labels::LabelStore;
use crate::links::{EntityIds, EntityRisk, LinkGraph, LINK_KINDS};

/// Parameters of the link graph (`[links]` of the configuration; `None`: no graph).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphParams {
    pub window: f64,
    pub max_users: i64,
    pub max_values: i64,
    pub max_group: i64,
    pub flagged: bool,
    pub max_entries: i64,
}

/// Everything an [`Engine`] is built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineParams {
    pub features: FeatureParams,
    pub graph: Option<GraphParams>,
    /// `(kinds, windows, prior strength)` of the entity-risk features, or `None`.
    pub entity_risk: Option<(Vec<String>, Vec<f64>, Option<f64>)>,
    pub store_size: i64,
    pub store_ttl: f64,
    /// Whether a detector reads every event's entity ids (a blocklist): the label store then fills even
    /// without label-reading stages, as in Python.
    pub reads_ids: bool,
    /// Whether a detector learns from labels (Python-side): the label store then keeps every scored event, as
    /// Python's does, so that both stores evict and join alike.
    pub learns_labels: bool,
}

/// The feature vector of one scored event as the detectors see it: the values by column of its type's
/// [`VectorSchema`] (NaN: absent), and the columns present in the order of the Python engine's dict.
#[derive(Clone, Debug, Default)]
pub struct Vector {
    pub kind: Option<Kind>,
    pub row: Row,
    pub order: Vec<usize>,
}

/// The names of an event type's detector columns, in order of first appearance in the Python engine's
/// vectors (features, then pass-through, entity-risk and link features), with where each stage's values go.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VectorSchema {
    pub schema: Schema,
    /// feature-schema column -> vector column (`usize::MAX`: not seen yet)
    from_features: Vec<usize>,
    /// entity-risk name -> vector column
    from_risk: Vec<usize>,
    /// link feature -> vector column
    from_links: Vec<usize>,
}

impl VectorSchema {
    fn col(map: &mut Vec<usize>, i: usize, schema: &mut Schema, name: &str) -> usize {
        if map.len() <= i {
            map.resize(i + 1, usize::MAX);
        }
        if map[i] == usize::MAX {
            map[i] = schema.column(name);
        }
        map[i]
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    params: EngineParams,
    // The parts' own serialised states, written as byte strings (`serde_bytes`): the same bincode bytes as a
    // `Vec<u8>` sequence (a u64 length, then the bytes), so older checkpoints load, in one copy instead of a
    // serde call per byte.
    #[serde(with = "serde_bytes")]
    features: Vec<u8>,
    #[serde(with = "serde_bytes")]
    graph: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    entity_risk: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    label_store: Vec<u8>,
    vectors: [VectorSchema; 2],
    events_seen: u64,
    pending_flags: Vec<(String, f64)>,
    /// the order and login ensembles' state, when detection runs in the core
    detectors: Option<Vec<serde_bytes::ByteBuf>>,
}

/// The sizes of a state's parts, from [`Engine::plan`], for [`Engine::write`].
pub struct Plan {
    features: usize,
    graph: Option<usize>,
    entity_risk: Option<usize>,
    label_store: usize,
    detectors: Option<[usize; 2]>,
    /// Bytes of the whole state.
    pub total: usize,
}

/// Features, entity risk, link graph and label join of one stream (the detection stage is the caller's).
pub struct Engine {
    params: EngineParams,
    features: FeatureState,
    graph: Option<LinkGraph>,
    entity_risk: Option<EntityRisk>,
    label_store: LabelStore,
    vectors: [VectorSchema; 2],
    events_seen: u64,
    /// users of this stretch's alerted events, flagged in the graph when the stretch ends (Python's order)
    pending_flags: Vec<(String, f64)>,
    frow: Row,
    risk_buf: Vec<f64>,
    /// The order and login ensembles, when detection runs here (`None`: the caller detects).
    detectors: Option<[Ensemble; 2]>,
}

/// Whether an event carries a value the link graph links accounts through (Python's `_links`).
fn links(e: &EventRef<'_>) -> bool {
    e.device_id.is_some() || e.ip.is_some() || e.payment_id.is_some() || e.address_id.is_some()
}

/// Whether the event shows who controls the account: an order, or a successful login (Python's `_shows_control`).
fn shows_control(e: &EventRef<'_>) -> bool {
    e.kind() == Kind::Order || e.success
}

impl Engine {
    pub fn new(params: EngineParams) -> Result<Self, String> {
        let features = FeatureState::new(params.features.clone()).map_err(|e| format!("features: {e}"))?;
        if let Some(g) = &params.graph {
            // refuse bad parameters now, not at the first linking event
            Self::build_graph(g).map_err(|e| format!("links: {e}"))?;
        }
        let entity_risk = match &params.entity_risk {
            Some((kinds, windows, prior)) => {
                let k: Vec<&str> = kinds.iter().map(String::as_str).collect();
                Some(EntityRisk::new(&k, windows, 86400.0, 100_000, *prior).map_err(|e| format!("links: {e}"))?)
            }
            None => None,
        };
        let label_store = LabelStore::new(params.store_size, params.store_ttl).map_err(|e| format!("labels: {e}"))?;
        Ok(Engine {
            params,
            features,
            graph: None,
            entity_risk,
            label_store,
            vectors: Default::default(),
            events_seen: 0,
            pending_flags: Vec::new(),
            frow: Row::new(),
            risk_buf: Vec::new(),
            detectors: None,
        })
    }

    /// This engine's state, handed out whole, leaving in its place an empty engine of the same parameters (no
    /// detectors): the caller frees the state where its cost does not matter (a unit's state is millions of small
    /// allocations, a tenth of a second or more to free).
    pub fn take(&mut self) -> Result<Engine, String> {
        let empty = Engine::new(self.params.clone())?;
        Ok(std::mem::replace(self, empty))
    }

    /// Run detection here from now on: `order` and `login` are the two event types' ensembles (fresh).
    pub fn set_detectors(&mut self, order: Ensemble, login: Ensemble) {
        self.detectors = Some([order, login]);
    }

    /// Switch both ensembles' rules (see [`Ensemble::set_rules`]); `false` if detection does not run here or an
    /// ensemble has no rules detector (then nothing changed).
    pub fn set_rules(&mut self, order: Rules, login: Rules) -> bool {
        match self.detectors.as_mut() {
            Some([o, l]) if o.has_rules() && l.has_rules() => o.set_rules(order) && l.set_rules(login),
            _ => false,
        }
    }

    pub fn has_detectors(&self) -> bool {
        self.detectors.is_some()
    }

    /// Score, decide and learn the vector `v` of an event with its type's ensemble (see [`Ensemble::process`]).
    /// An adaptive ensemble keeps the event's tail probabilities for its label.
    pub fn detect(&mut self, e: &EventRef<'_>, v: &Vector, out: &mut Verdict) {
        let kind = v.kind.expect("a vectorized event");
        let ens = &mut self.detectors.as_mut().expect("detection runs in the core")[kind as usize];
        ens.process(&self.vectors[kind as usize].schema, &v.row, false, out);
        ens.remember(&e.event_id, &out.p);
    }

    /// Whether the ensembles re-weight their detectors on arrived labels (`[ensemble.adaptive]`).
    pub fn adapts(&self) -> bool {
        self.detectors.as_ref().is_some_and(|d| d.iter().any(|e| e.adapter().is_some()))
    }

    /// The ensembles' weights in use (order, login), when detection runs here.
    pub fn weights(&self, kind: Kind) -> Option<&[f64]> {
        self.detectors.as_ref().map(|d| d[kind as usize].weights())
    }

    /// The ensembles (order, login), when detection runs here.
    pub fn ensembles(&self) -> Option<&[Ensemble; 2]> {
        self.detectors.as_ref()
    }

    /// A verdict buffer for the ensembles (both have the same detectors).
    pub fn verdict(&self) -> Verdict {
        self.detectors.as_ref().expect("detection runs in the core")[0].verdict()
    }

    /// The explain data of an event of type `kind` (its `row`) against the ensemble as it stands.
    pub fn explain(&mut self, kind: Kind, row: &[f64], top: usize) -> Vec<Explain> {
        let ens = &mut self.detectors.as_mut().expect("detection runs in the core")[kind as usize];
        ens.explain(&self.vectors[kind as usize].schema, row, top)
    }

    /// Whether a label event ends a stretch of scored events (Python's engine cuts its batch there: when labels
    /// matter, or while the link graph may still start).
    pub fn cuts_at_label(&self) -> bool {
        self.uses_labels() || (self.params.graph.is_some() && self.graph.is_none())
    }

    fn build_graph(g: &GraphParams) -> Result<LinkGraph, String> {
        LinkGraph::new(g.window, &LINK_KINDS, g.max_users, g.max_values, g.max_group, 100_000, g.flagged, g.max_entries)
    }

    pub fn params(&self) -> &EngineParams {
        &self.params
    }

    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    pub fn features(&self) -> &FeatureState {
        &self.features
    }

    pub fn graph(&self) -> Option<&LinkGraph> {
        self.graph.as_ref()
    }

    pub fn label_store(&self) -> &LabelStore {
        &self.label_store
    }

    /// The detector columns of an event type.
    pub fn vector_schema(&self, kind: Kind) -> &Schema {
        &self.vectors[kind as usize].schema
    }

    /// Whether label events change anything (Python's `uses_labels`).
    pub fn uses_labels(&self) -> bool {
        self.params.learns_labels || self.entity_risk.is_some() || self.graph.is_some() || self.adapts()
    }

    fn ids_needed(&self) -> bool {
        self.uses_labels() || self.params.reads_ids
    }

    /// The vector of an order or login, state advanced past it; `false` for a label (nothing written).
    pub fn vectorize(&mut self, e: &EventRef<'_>, out: &mut Vector) -> bool {
        if e.kind() == Kind::Label {
            return false;
        }
        if self.graph.is_none() && links(e) {
            if let Some(g) = &self.params.graph {
                self.graph = Some(Self::build_graph(g).expect("validated in new"));
            }
        }
        let kind = self.features.transform(e, &mut self.frow).expect("an order or a login");
        let side_features = self.ids_needed() && (self.entity_risk.is_some() || self.graph.is_some());
        let vs = &mut self.vectors[kind as usize];
        out.kind = Some(kind);
        out.order.clear();
        // grow the row to the vector schema as it stands; new columns are appended below
        out.row.clear();
        out.row.resize(vs.schema.len(), f64::NAN);
        let fschema = self.features.schema(kind);
        let engine_len = self.features.engine_len(kind);
        let put = |col: usize, v: f64, row: &mut Row, order: &mut Vec<usize>| {
            if row.len() <= col {
                row.resize(col + 1, f64::NAN);
            }
            if row[col].is_nan() {
                order.push(col);
            }
            row[col] = v;
        };
        for i in 0..engine_len {
            let v = self.frow[i];
            if !v.is_nan() {
                let c = VectorSchema::col(&mut vs.from_features, i, &mut vs.schema, &fschema.names[i]);
                put(c, v, &mut out.row, &mut out.order);
            }
        }
        for &i in self.features.pass_columns() {
            let c = VectorSchema::col(&mut vs.from_features, i, &mut vs.schema, &fschema.names[i]);
            put(c, self.frow[i], &mut out.row, &mut out.order);
        }
        if side_features {
            let ids = EntityIds::from_event(e);
            if let Some(risk) = &self.entity_risk {
                let names = risk.feature_names();
                self.risk_buf.resize(names.len(), 0.0);
                risk.features_into(&ids, e.ts, &mut self.risk_buf);
                for (i, name) in names.iter().enumerate() {
                    let c = VectorSchema::col(&mut vs.from_risk, i, &mut vs.schema, name);
                    put(c, self.risk_buf[i], &mut out.row, &mut out.order);
                }
            }
            if let Some(graph) = &mut self.graph {
                let f = if shows_control(e) {
                    graph.features_then_observe(&e.user_id, &ids, e.ts)
                } else {
                    graph.features(&e.user_id, &ids, e.ts)
                };
                let names = graph.feature_names();
                let vals = [f.neighbours, f.group, f.confirmed, f.flagged.unwrap_or(0.0)];
                for (i, name) in names.iter().enumerate() {
                    let c = VectorSchema::col(&mut vs.from_links, i, &mut vs.schema, name);
                    put(c, vals[i], &mut out.row, &mut out.order);
                }
            }
        }
        out.row.resize(vs.schema.len(), f64::NAN);
        true
    }

    /// After the event's detection: keep what its label will need, and note an alert for the graph.
    pub fn scored(&mut self, e: &EventRef<'_>, v: &Vector, alerted: bool) {
        let kind = e.kind();
        if self.uses_labels() {
            let ids = EntityIds::from_event(e);
            if self.params.learns_labels || self.entity_risk.is_some() {
                // the row a label learner here will be taught with (detection in Python keeps its own vectors)
                let learns = self.detectors.as_ref().is_some_and(|d| d[kind as usize].learns_labels());
                self.label_store.put(&e.event_id, e.ts, kind, &ids, if learns { Some(&v.row) } else { None });
            } else if let Some(graph) = &self.graph {
                if shows_control(e) && graph.links(&ids) {
                    let only_user = EntityIds { ids: [Some(&e.user_id), None, None, None, None, None] };
                    self.label_store.put(&e.event_id, e.ts, kind, &only_user, None);
                }
            }
        }
        if alerted && self.graph.is_some() {
            self.pending_flags.push((e.user_id.to_string(), e.ts));
        }
        self.events_seen += 1;
    }

    /// The engine alerted on one of `user`'s events at `ts` (the caller's detection, applied after its stretch).
    pub fn flag(&mut self, user: &str, ts: f64) {
        if let Some(graph) = &mut self.graph {
            graph.flag(user, ts);
        }
    }

    /// The end of a stretch of scored events (before a label, and at the end of a batch): alerts flag their
    /// users in the graph.
    pub fn end_stretch(&mut self) {
        if let Some(graph) = &mut self.graph {
            for (user, ts) in self.pending_flags.drain(..) {
                graph.flag(&user, ts);
            }
        } else {
            self.pending_flags.clear();
        }
    }

    /// A label event: joined to its event, it feeds entity risk and the graph (Python's `_learn_label`).
    pub fn label(&mut self, e: &EventRef<'_>) {
        if !self.uses_labels() {
            return;
        }
        self.end_stretch();
        if let Some(ensembles) = &mut self.detectors {
            // any label of a scored event teaches its ensemble's weights (the first that scored it)
            let y = e.label.unwrap_or(0) != 0;
            for ens in ensembles.iter_mut() {
                if ens.learn_label(&e.ref_event_id, y) {
                    break;
                }
            }
        }
        self.label_store.advance(e.ts);
        let y = e.label.unwrap_or(0) as i64;
        let Some(joined) = self.label_store.join(&e.ref_event_id, y) else {
            return;
        };
        if let (Some(row), Some(ensembles)) = (&joined.row, &mut self.detectors) {
            let kind = joined.kind as usize;
            ensembles[kind].learn_row(&self.vectors[kind].schema, row, joined.y != 0);
        }
        let ids = joined.ids.as_ids();
        if let Some(risk) = &mut self.entity_risk {
            risk.learn(&ids, joined.y as i64, e.ts);
        }
        if let Some(graph) = &mut self.graph {
            if joined.y != 0 {
                if let Some(user) = ids.get(0) {
                    graph.confirm(user, e.ts);
                }
            }
        }
    }

    /// The state's bytes: [`State`] in bincode, each part's own bincode nested in it as a byte string.
    pub fn to_bytes(&self) -> Vec<u8> {
        let plan = self.plan();
        let mut out = Vec::with_capacity(plan.total);
        self.write(&plan, &mut out);
        debug_assert_eq!(out.len(), plan.total);
        out
    }

    /// The sizes [`write`](Self::write) needs (a sizing pass over the state, as `bincode::serialize` makes).
    pub fn plan(&self) -> Plan {
        let size = |r: bincode::Result<u64>| r.expect("serialisable") as usize;
        let features = size(bincode::serialized_size(&(crate::STATE_VERSION, &self.features)));
        let graph = self.graph.as_ref().map(|g| size(bincode::serialized_size(g)));
        let entity_risk = self.entity_risk.as_ref().map(|r| size(bincode::serialized_size(r)));
        let label_store = size(bincode::serialized_size(&self.label_store));
        let detectors = self.detectors.as_ref().map(|d| d.each_ref().map(|e| size(bincode::serialized_size(e))));
        let head = size(bincode::serialized_size(&self.params));
        let tail = size(bincode::serialized_size(&(&self.vectors, self.events_seen, &self.pending_flags)));
        let nested = |n: Option<usize>| n.map_or(1, |n| 1 + 8 + n); // Option tag, then length + bytes
        let total = head
            + 8 + features
            + nested(graph)
            + nested(entity_risk)
            + 8 + label_store
            + tail
            + detectors.map_or(1, |d| 1 + 8 + (8 + d[0]) + (8 + d[1]));
        Plan { features, graph, entity_risk, label_store, detectors, total }
    }

    /// Write the state's bytes ([`to_bytes`](Self::to_bytes)) to `w`: `plan.total` bytes, the same as
    /// `bincode::serialize` of a [`State`] holding each part's bytes, but with every part serialised where it
    /// lands. A snapshot of a busy unit is tens of MB: a buffer per part, the copy into the whole and the copy
    /// into a Python `bytes` were most of its time (page faults and `memmove`), not the serialising itself.
    pub fn write<W: std::io::Write>(&self, plan: &Plan, mut w: W) {
        fn put<W: std::io::Write, T: Serialize + ?Sized>(w: &mut W, v: &T) {
            bincode::serialize_into(w, v).expect("serialisable");
        }
        fn len<W: std::io::Write>(w: &mut W, n: usize) {
            w.write_all(&(n as u64).to_le_bytes()).expect("writable");
        }
        /// An optional part of `n` bytes: the `Option` tag, then (when present) its length and bytes.
        fn opt<W: std::io::Write, T: Serialize>(w: &mut W, part: Option<(&T, usize)>) {
            match part {
                Some((v, n)) => {
                    put(w, &1u8);
                    len(w, n);
                    put(w, v);
                }
                None => put(w, &0u8),
            }
        }
        let w = &mut w;
        put(w, &self.params);
        len(w, plan.features);
        put(w, &(crate::STATE_VERSION, &self.features));
        opt(w, self.graph.as_ref().zip(plan.graph));
        opt(w, self.entity_risk.as_ref().zip(plan.entity_risk));
        len(w, plan.label_store);
        put(w, &self.label_store);
        put(w, &(&self.vectors, self.events_seen, &self.pending_flags));
        match (&self.detectors, plan.detectors) {
            (Some(d), Some(n)) => {
                put(w, &1u8);
                len(w, 2);
                for (e, n) in d.iter().zip(n) {
                    len(w, n);
                    put(w, e);
                }
            }
            _ => put(w, &0u8),
        }
    }

    /// [`to_bytes`](Self::to_bytes) the way it was first written: the parts' bytes in a [`State`], serialised
    /// whole. The reference [`write`](Self::write) is tested against.
    #[cfg(test)]
    fn to_bytes_via_state(&self) -> Vec<u8> {
        let state = State {
            params: self.params.clone(),
            features: self.features.to_bytes(),
            graph: self.graph.as_ref().map(LinkGraph::snapshot),
            entity_risk: self.entity_risk.as_ref().map(EntityRisk::snapshot),
            label_store: self.label_store.snapshot(),
            vectors: self.vectors.clone(),
            events_seen: self.events_seen,
            pending_flags: self.pending_flags.clone(),
            detectors: self.detectors.as_ref()
                .map(|d| d.iter().map(|e| serde_bytes::ByteBuf::from(e.snapshot())).collect()),
        };
        bincode::serialize(&state).expect("serialisable")
    }

    /// Bytes of each part of [`to_bytes`](Self::to_bytes): what a checkpoint of this engine holds.
    pub fn snapshot_sizes(&self) -> Vec<(&'static str, usize)> {
        let mut out = vec![
            ("features", self.features.to_bytes().len()),
            ("graph", self.graph.as_ref().map_or(0, |g| g.snapshot().len())),
            ("entity_risk", self.entity_risk.as_ref().map_or(0, |r| r.snapshot().len())),
            ("label_store", self.label_store.snapshot().len()),
        ];
        if let Some(d) = &self.detectors {
            out.push(("order_detectors", d[0].snapshot().len()));
            out.push(("login_detectors", d[1].snapshot().len()));
        }
        out
    }

    /// [`to_bytes`](Self::to_bytes) compressed with LZ4 for a checkpoint ([`compress`]): a checkpoint's cost is
    /// mostly its size (copied, hashed, written and fsynced), and the state (windows of numbers, repeated ids)
    /// compresses about 3x at ~1 GB/s.
    ///
    /// Streamed: the state is serialised into a block of [`STREAM_BLOCK`] bytes at a time, each compressed while
    /// it is still in the core's cache, so the uncompressed state (tens of MB for a busy unit) is never held
    /// whole. The bytes are [`compress`]'s format, with smaller blocks. The time is LZ4's either way.
    pub fn to_compressed(&self) -> Vec<u8> {
        let plan = self.plan();
        let mut w = Lz4Writer::new(plan.total);
        self.write(&plan, &mut w);
        w.finish()
    }

    /// [`from_bytes`](Self::from_bytes) of [`to_compressed`](Self::to_compressed)'s output.
    pub fn from_compressed(bytes: &[u8]) -> Result<Self, String> {
        Self::from_bytes(&decompress(bytes)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let s: State = bincode::deserialize(bytes).map_err(|e| format!("engine state does not load: {e}"))?;
        let detectors = match s.detectors {
            Some(d) if d.len() == 2 => Some([Ensemble::restore(&d[0])?, Ensemble::restore(&d[1])?]),
            Some(_) => return Err("engine state does not load: two ensembles expected".into()),
            None => None,
        };
        let mut vectors = s.vectors;
        for v in &mut vectors {
            v.schema.reindex();
        }
        Ok(Engine {
            features: FeatureState::from_bytes(&s.features)?,
            graph: s.graph.as_deref().map(LinkGraph::restore).transpose()?,
            entity_risk: s.entity_risk.as_deref().map(EntityRisk::restore).transpose()?,
            label_store: LabelStore::restore(&s.label_store)?,
            params: s.params,
            vectors,
            events_seen: s.events_seen,
            pending_flags: s.pending_flags,
            frow: Row::new(),
            risk_buf: Vec::new(),
            detectors,
        })
    }
}

/// The most input bytes a block may hold, as [`decompress`] reads (a block's size field is 32 bits; any state
/// size works). Checkpoints written before session 24 used blocks of exactly this size.
const CHUNK: usize = 16 << 20;
const MAGIC: &[u8; 8] = b"RSLZ4v1\0";

/// `MAGIC`, the input's length (u64, little endian), then per block of at most [`CHUNK`] input bytes its
/// compressed length (u32) and its LZ4 block (size-prepended); written in blocks of [`STREAM_BLOCK`]
/// ([`Lz4Writer`], which [`Engine::to_compressed`] streams the state through).
pub fn compress(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = Lz4Writer::new(raw.len());
    w.write_all(raw).expect("written to memory");
    w.finish()
}

/// Input bytes of one LZ4 block of a streamed snapshot ([`Engine::to_compressed`]): within a core's L2 cache.
const STREAM_BLOCK: usize = 256 << 10;

/// [`compress`]'s format for `total` bytes given in any number of writes, compressed a block of
/// [`STREAM_BLOCK`] at a time as the writes fill it.
struct Lz4Writer {
    out: Vec<u8>,
    block: Vec<u8>,
    packed: Vec<u8>,
    total: usize,
    seen: usize,
}

impl Lz4Writer {
    fn new(total: usize) -> Self {
        let mut out = Vec::with_capacity(16 + total / 2);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(total as u64).to_le_bytes());
        Lz4Writer {
            out,
            block: Vec::with_capacity(STREAM_BLOCK),
            packed: vec![0; lz4_flex::block::get_maximum_output_size(STREAM_BLOCK)],
            total,
            seen: 0,
        }
    }

    /// Compress the block gathered so far, as `u32` length + `compress_prepend_size`'s bytes.
    fn seal(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let n = lz4_flex::block::compress_into(&self.block, &mut self.packed).expect("the output has room");
        self.out.extend_from_slice(&((4 + n) as u32).to_le_bytes());
        self.out.extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&self.packed[..n]);
        self.block.clear();
    }

    fn finish(mut self) -> Vec<u8> {
        self.seal();
        assert_eq!(self.seen, self.total, "engine state: the plan's size and the bytes written differ");
        self.out
    }
}

impl std::io::Write for Lz4Writer {
    #[inline]
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        self.seen += n;
        if self.block.len() + n < STREAM_BLOCK {
            self.block.extend_from_slice(buf); // most writes: one number
            return Ok(n);
        }
        while !buf.is_empty() {
            let take = (STREAM_BLOCK - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == STREAM_BLOCK {
                self.seal();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bytes [`compress`] was given; a damaged or foreign input is an error, never a panic.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |why: &str| format!("compressed engine state does not load: {why}");
    let rest = data.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("not an LZ4 engine state"))?;
    let (len, mut rest) = rest.split_first_chunk::<8>().ok_or_else(|| bad("truncated"))?;
    let total = u64::from_le_bytes(*len) as usize;
    let mut out = Vec::with_capacity(total.min(data.len().saturating_mul(8)));
    while !rest.is_empty() {
        let (n, tail) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated"))?;
        let n = u32::from_le_bytes(*n) as usize;
        if n > tail.len() {
            return Err(bad("truncated"));
        }
        // the block's own size field is read first: a damaged one must not ask for gigabytes
        match tail[..n].first_chunk::<4>() {
            Some(size) if u32::from_le_bytes(*size) as usize <= CHUNK => {}
            _ => return Err(bad("a block larger than a chunk")),
        }
        let block = lz4_flex::block::decompress_size_prepended(&tail[..n]).map_err(|e| bad(&e.to_string()))?;
        out.extend_from_slice(&block);
        rest = &tail[n..];
    }
    if out.len() != total {
        return Err(bad("length mismatch"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[test]
    fn compression_round_trips_across_chunks_and_refuses_damage() {
        for n in [0usize, 1, 1000, super::CHUNK, super::CHUNK + 12_345] {
            let raw: Vec<u8> = (0..n).map(|i| ((i * 7919) % 251) as u8 ^ ((i / 4096) as u8)).collect();
            let packed = super::compress(&raw);
            assert_eq!(super::decompress(&packed).unwrap(), raw, "{n} bytes");
            if n > 1000 {
                assert!(packed.len() < raw.len() / 2, "{n} bytes: {} compressed", packed.len());
            }
        }
        let packed = super::compress(&vec![3u8; 100_000]);
        assert!(super::decompress(&packed[..packed.len() - 1]).is_err());
        assert!(super::decompress(b"RSLZ4v1").is_err());
        assert!(super::decompress(&vec![0u8; 40]).unwrap_err().contains("not an LZ4 engine state"));
        let mut wrong_total = packed.clone();
        wrong_total[8] ^= 1;
        assert!(super::decompress(&wrong_total).unwrap_err().contains("length mismatch"));
        let mut huge_block = packed.clone();
        huge_block[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // the block's own size field
        assert!(super::decompress(&huge_block).unwrap_err().contains("larger than a chunk"));
    }

    /// `State`'s blobs as they were written before `serde_bytes` (a plain `Vec<u8>` sequence) ...
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Before {
        a: Vec<u8>,
        b: Option<Vec<u8>>,
        c: Option<Vec<Vec<u8>>>,
    }

    /// ... and as they are now.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct After {
        #[serde(with = "serde_bytes")]
        a: Vec<u8>,
        #[serde(with = "serde_bytes")]
        b: Option<Vec<u8>>,
        c: Option<Vec<serde_bytes::ByteBuf>>,
    }

    #[test]
    fn byte_strings_keep_the_bincode_bytes_of_a_u8_sequence() {
        let before = Before { a: vec![0, 1, 255], b: Some(vec![7; 300]), c: Some(vec![vec![], vec![9, 8]]) };
        let after = After {
            a: before.a.clone(),
            b: before.b.clone(),
            c: Some(before.c.clone().unwrap().into_iter().map(serde_bytes::ByteBuf::from).collect()),
        };
        let old = bincode::serialize(&before).unwrap();
        assert_eq!(old, bincode::serialize(&after).unwrap());
        let back: After = bincode::deserialize(&old).unwrap(); // a checkpoint written before loads
        assert_eq!(back, after);
        let none = Before { a: vec![], b: None, c: None };
        let back: After = bincode::deserialize(&bincode::serialize(&none).unwrap()).unwrap();
        assert_eq!((back.a.len(), back.b, back.c), (0, None, None));
    }

    /// Orders and logins of a few users, devices and IPs, some alerted, a label, stretches ended: an engine with
    /// every part of its state filled (features, link graph, entity risk, label store, pending flags).
    fn busy_engine() -> super::Engine {
        use super::{Engine, EngineParams, GraphParams, Vector};
        let graph = GraphParams { window: 86400.0, max_users: 50, max_values: 50, max_group: 20, flagged: true,
                                  max_entries: 10_000 };
        let params = EngineParams {
            features: crate::features::Params::default(),
            graph: Some(graph),
            entity_risk: Some((vec!["device".into(), "ip".into()], vec![3600.0, 86400.0], Some(2.0))),
            store_size: 1000,
            store_ttl: 7.0 * 86400.0,
            reads_ids: true,
            learns_labels: true,
        };
        let mut engine = Engine::new(params).unwrap();
        let mut v = Vector::default();
        for i in 0..400u32 {
            let ts = 1_714_564_800 + 7 * i;
            let (user, device, ip) = (i % 13, i % 7, i % 11);
            let who = format!(r#""ts":{ts},"user_id":"u{user}","device_id":"d{device}","ip":"10.0.0.{ip}""#);
            let raw = if i % 3 == 0 {
                format!(r#"{{"type":"login","event_id":"l{i}",{who},"success":{}}}"#, i % 5 != 0)
            } else {
                format!(
                    r#"{{"type":"order","event_id":"o{i}",{who},"order_id":"x{i}","amount":{}.5,"currency":"EUR","#,
                    i % 90
                ) + &format!(r#""merchant_id":"m{}","features":{{"f":{}}}}}"#, i % 4, i % 9)
            };
            let e = crate::decode::decode(raw.as_bytes()).unwrap();
            if engine.vectorize(&e, &mut v) {
                engine.scored(&e, &v, i % 17 == 0);
            }
            if i % 50 == 49 {
                engine.end_stretch();
            }
            if i == 300 {
                let label = format!(r#"{{"type":"label","event_id":"lab","ts":{ts},"ref_event_id":"o2","label":1}}"#);
                engine.label(&crate::decode::decode(label.as_bytes()).unwrap());
            }
        }
        engine
    }

    #[test]
    fn a_state_written_in_place_is_the_state_serialised_whole() {
        let mut engine = busy_engine();
        assert!(engine.graph().is_some() && engine.events_seen() > 0);
        for with_detectors in [false, true] {
            if with_detectors {
                use crate::detectors::ensemble::tests::stack;
                engine.set_detectors(stack(), stack());
            }
            let whole = engine.to_bytes_via_state();
            let plan = engine.plan();
            assert_eq!(plan.total, whole.len());
            assert_eq!(engine.to_bytes(), whole, "detectors: {with_detectors}");
            // into a buffer of exactly that size, as the Python `bytes` is filled
            let mut buf = vec![0u8; plan.total];
            engine.write(&plan, &mut buf[..]);
            assert_eq!(buf, whole);
            // and it loads: the loaded engine writes the same bytes again
            assert_eq!(super::Engine::from_bytes(&whole).unwrap().to_bytes(), whole);
            // compressed as it is written, in blocks of STREAM_BLOCK, it unpacks to the same bytes
            let packed = engine.to_compressed();
            assert_eq!(super::decompress(&packed).unwrap(), whole);
            assert!(packed.len() < whole.len(), "{} -> {}", whole.len(), packed.len());
        }
    }

    #[test]
    fn a_streamed_compression_unpacks_to_what_was_written_whatever_the_writes() {
        use std::io::Write;
        let b = super::STREAM_BLOCK;
        for n in [0usize, 1, b - 1, b, b + 1, 3 * b + 12_345] {
            let raw: Vec<u8> = (0..n).map(|i| ((i * 7919) % 251) as u8 ^ ((i / 4096) as u8)).collect();
            for piece in [1usize, 8, 1000, b + 7] {
                let mut w = super::Lz4Writer::new(n);
                for part in raw.chunks(piece) {
                    w.write_all(part).unwrap();
                }
                let packed = w.finish();
                assert_eq!(super::decompress(&packed).unwrap(), raw, "{n} bytes in writes of {piece}");
                if n > 1000 {
                    assert!(packed.len() < raw.len() / 2, "{n} bytes: {} compressed", packed.len());
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "the plan's size and the bytes written differ")]
    fn a_streamed_compression_refuses_to_end_short_of_its_announced_length() {
        use std::io::Write;
        let mut w = super::Lz4Writer::new(10);
        w.write_all(&[1; 9]).unwrap();
        w.finish();
    }
}
