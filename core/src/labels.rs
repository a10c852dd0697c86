//! The label join: what the engine needs of each scored event when its label arrives, kept until then (or until
//! it expires). The port of `stream/labels.py`.
//!
//! Per event id the store keeps the event's kind and time, its entity ids ([`OwnedIds`], one allocation) and,
//! when a detector learns from labels, the feature row it was scored with (over the engine's `Schema` of that
//! kind at the time: a schema only grows, so a shorter row reads as absent, `NaN`, in the later columns).
//!
//! Same bounds and order as Python's `OrderedDict`: insertion order (a re-put id moves to the back), `max_size`
//! items at most (oldest out first), and items older than the watermark minus `ttl` popped from the front. The
//! order is a doubly linked list over a slab of nodes; the index ([`IdIndex`]) maps an id's hash to its node,
//! which holds the id's one heap copy.

// `!(x > 0.0)` is Python's test, NaN included: kept as written.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Kind;
use crate::idindex::IdIndex;
use crate::links::EntityIds;

const NIL: u32 = u32::MAX;

/// Entity ids owned in one allocation: the present ids concatenated, with their end offsets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnedIds {
    buf: Box<str>,
    ends: [u32; 6],
    present: u8,
}

impl OwnedIds {
    pub fn new(ids: &EntityIds) -> Self {
        let mut buf = String::with_capacity(ids.ids.iter().flatten().map(|s| s.len()).sum());
        let mut ends = [0u32; 6];
        let mut present = 0u8;
        for (i, id) in ids.ids.iter().enumerate() {
            if let Some(s) = id {
                buf.push_str(s);
                present |= 1 << i;
            }
            ends[i] = buf.len() as u32;
        }
        OwnedIds { buf: buf.into_boxed_str(), ends, present }
    }

    pub fn heap_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The id of entity kind `kind` (a position of [`crate::links::ENTITY_KINDS`]).
    pub fn get(&self, kind: usize) -> Option<&str> {
        if self.present & (1 << kind) == 0 {
            return None;
        }
        let start = if kind == 0 { 0 } else { self.ends[kind - 1] as usize };
        Some(&self.buf[start..self.ends[kind] as usize])
    }

    pub fn as_ids(&self) -> EntityIds<'_> {
        let mut out = EntityIds::default();
        for i in 0..6 {
            out.ids[i] = self.get(i);
        }
        out
    }
}

/// A label joined to its event: the row it was scored with, the label `y` (0 or 1) and the event's facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    pub event_id: Arc<str>,
    pub row: Option<Box<[f64]>>,
    pub y: u8,
    pub kind: Kind,
    pub ts: f64,
    pub ids: OwnedIds,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Node {
    #[serde(with = "arc_str")]
    key: Arc<str>,
    prev: u32,
    next: u32,
    ts: f64,
    kind: u8,
    ids: OwnedIds,
    row: Option<Box<[f64]>>,
}

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

fn kind_from_u8(k: u8) -> Kind {
    match k {
        0 => Kind::Order,
        1 => Kind::Login,
        _ => Kind::Label,
    }
}

/// Bounded, expiring map `event id -> (ts, kind, ids, row)` in insertion order (`stream.labels.LabelStore`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelStore {
    max_size: usize,
    ttl: f64,
    pub watermark: f64,
    pub joined: u64,
    pub missed: u64,
    pub expired: u64,
    nodes: Vec<Node>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    len: usize,
    #[serde(skip)]
    index: IdIndex,
}

impl LabelStore {
    /// `LabelStore(max_size, ttl)`, validated as in Python.
    pub fn new(max_size: i64, ttl: f64) -> Result<Self, String> {
        if max_size < 1 {
            return Err(format!("max_size must be an integer >= 1, got {max_size}"));
        }
        if !(ttl > 0.0) {
            return Err(format!("ttl must be > 0 seconds, got {ttl:?}"));
        }
        Ok(LabelStore {
            max_size: max_size as usize,
            ttl,
            watermark: f64::NEG_INFINITY,
            joined: 0,
            missed: 0,
            expired: 0,
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            index: IdIndex::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    pub fn ttl(&self) -> f64 {
        self.ttl
    }

    /// Keep what event `event_id` needs for its label: its time, kind, entity ids and (optional) row.
    pub fn put(&mut self, event_id: &str, ts: f64, kind: Kind, ids: &EntityIds, row: Option<&[f64]>) {
        if ts > self.watermark {
            self.watermark = ts;
        }
        let ids = OwnedIds::new(ids);
        let row = row.map(|r| r.to_vec().into_boxed_slice());
        let h = IdIndex::hash(event_id);
        let nodes = &self.nodes;
        if let Some(n) = self.index.get(h, event_id, |n| &nodes[n as usize].key) {
            // the same key keeps its node (and its one copy of the id); a replayed id moves to the back
            self.unlink(n);
            let node = &mut self.nodes[n as usize];
            node.ts = ts;
            node.kind = kind as u8;
            node.ids = ids;
            node.row = row;
            self.push_back(n);
        } else {
            let node = Node { key: Arc::from(event_id), prev: NIL, next: NIL, ts, kind: kind as u8, ids, row };
            let n = match self.free.pop() {
                Some(n) => {
                    self.nodes[n as usize] = node;
                    n
                }
                None => {
                    self.nodes.push(node);
                    (self.nodes.len() - 1) as u32
                }
            };
            self.index.insert_new(h, n);
            self.push_back(n);
            self.len += 1;
        }
        self.expire();
    }

    /// Move the watermark (a label event's time counts too) and expire what fell out of `ttl`.
    pub fn advance(&mut self, ts: f64) {
        if ts > self.watermark {
            self.watermark = ts;
            self.expire();
        }
    }

    /// The stored facts of `event_id` with label `y` (any nonzero `y` is 1), removed from the store; `None` if
    /// unknown or expired.
    pub fn join(&mut self, event_id: &str, y: i64) -> Option<Joined> {
        let nodes = &self.nodes;
        let Some(n) = self.index.remove(IdIndex::hash(event_id), event_id, |n| &nodes[n as usize].key) else {
            self.missed += 1;
            return None;
        };
        self.joined += 1;
        let node = self.take(n);
        Some(Joined {
            event_id: node.key,
            row: node.row,
            y: (y != 0) as u8,
            kind: kind_from_u8(node.kind),
            ts: node.ts,
            ids: node.ids,
        })
    }

    /// `(held, joined, missed, expired)`, Python's `stats()`.
    pub fn stats(&self) -> (usize, u64, u64, u64) {
        (self.len, self.joined, self.missed, self.expired)
    }

    /// Heap bytes held (capacities and string contents; the allocator's own overhead not counted).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.nodes.capacity() * size_of::<Node>()
            + self
                .nodes
                .iter()
                .map(|n| {
                    (if n.key.is_empty() { 0 } else { n.key.len() + 16 })
                        + n.ids.heap_bytes()
                        + n.row.as_ref().map_or(0, |r| r.len() * 8)
                })
                .sum::<usize>()
            + self.free.capacity() * 4
            + self.index.heap_bytes()
    }

    /// The event ids held, oldest first.
    pub fn keys(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.len);
        let mut n = self.head;
        while n != NIL {
            out.push(&*self.nodes[n as usize].key);
            n = self.nodes[n as usize].next;
        }
        out
    }

    pub fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(self).expect("label store serialises")
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut s: LabelStore =
            bincode::deserialize(bytes).map_err(|e| format!("label store state does not load: {e}"))?;
        let mut n = s.head;
        while n != NIL {
            let key = &s.nodes[n as usize].key;
            s.index.insert_new(IdIndex::hash(key), n);
            n = s.nodes[n as usize].next;
        }
        Ok(s)
    }

    fn expire(&mut self) {
        let cut = self.watermark - self.ttl;
        while self.head != NIL {
            let n = self.head;
            if self.len > self.max_size || self.nodes[n as usize].ts < cut {
                let nodes = &self.nodes;
                let key: &str = &nodes[n as usize].key;
                let gone = self.index.remove(IdIndex::hash(key), key, |m| &nodes[m as usize].key);
                debug_assert_eq!(gone, Some(n));
                self.take(n);
                self.expired += 1;
            } else {
                break;
            }
        }
    }

    /// Unlink node `n`, free its slot and return its contents.
    fn take(&mut self, n: u32) -> Node {
        self.unlink(n);
        self.len -= 1;
        self.free.push(n);
        let empty = Node { key: Arc::from(""), prev: NIL, next: NIL, ts: 0.0, kind: 0, ids: OwnedIds::default(), row: None };
        std::mem::replace(&mut self.nodes[n as usize], empty)
    }

    fn unlink(&mut self, n: u32) {
        let (prev, next) = (self.nodes[n as usize].prev, self.nodes[n as usize].next);
        if prev == NIL { self.head = next } else { self.nodes[prev as usize].next = next }
        if next == NIL { self.tail = prev } else { self.nodes[next as usize].prev = prev }
    }

    fn push_back(&mut self, n: u32) {
        self.nodes[n as usize].prev = self.tail;
        self.nodes[n as usize].next = NIL;
        if self.tail == NIL { self.head = n } else { self.nodes[self.tail as usize].next = n }
        self.tail = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(user: &str) -> EntityIds<'_> {
        EntityIds::from_pairs([("user", user)])
    }

    #[test]
    fn store_joins_once_and_expires_by_ttl_and_size() {
        let mut s = LabelStore::new(2, 100.0).unwrap();
        s.put("a", 0.0, Kind::Order, &ids("u"), Some(&[1.0]));
        let j = s.join("a", 1).unwrap();
        assert_eq!((j.y, j.ids.get(0), j.row.as_deref()), (1, Some("u"), Some(&[1.0][..])));
        assert!(s.join("a", 1).is_none());
        s.put("b", 10.0, Kind::Order, &ids("u"), None);
        s.put("c", 20.0, Kind::Login, &ids("u"), None);
        s.put("d", 30.0, Kind::Order, &ids("u"), None);
        assert!(s.join("b", 0).is_none());
        assert_eq!(s.len(), 2);
        s.advance(125.0);
        assert!(s.join("c", 0).is_none());
        let mut back = LabelStore::restore(&s.snapshot()).unwrap();
        assert_eq!(back.join("d", 0).unwrap().kind, Kind::Order);
        assert!(s.join("d", 0).is_some());
        assert_eq!(s.stats(), (0, 2, 3, 2));
        assert!(LabelStore::new(0, 1.0).is_err() && LabelStore::new(1, 0.0).is_err());
    }

    #[test]
    fn a_replayed_id_moves_to_the_back_and_ids_round_trip() {
        let mut s = LabelStore::new(10, 1e9).unwrap();
        for k in ["a", "b", "c"] {
            s.put(k, 1.0, Kind::Order, &ids("u"), None);
        }
        s.put("a", 2.0, Kind::Order, &ids("v"), None);
        assert_eq!(s.keys(), ["b", "c", "a"]);
        let full = EntityIds { ids: [Some("u1"), None, Some("10.0.0.1"), Some(""), None, Some("m")] };
        assert_eq!(OwnedIds::new(&full).as_ids(), full);
    }
}
