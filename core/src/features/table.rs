//! An entity table: key -> record, kept in last-seen order like the Python engine's dicts (a touched record moves
//! to the end), so the idle and the least recently seen are a prefix. A slab of nodes in a doubly linked list
//! plus a hash index: touch, insert and removal from the front are O(1) and move no record.

use std::collections::HashMap;

use super::small::SmallStr;

use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node<R> {
    key: SmallStr,
    last: f64,
    prev: u32,
    next: u32,
    rec: R,
}

#[derive(Clone, Debug)]
pub struct Table<R> {
    index: HashMap<SmallStr, u32>,
    nodes: Vec<Option<Node<R>>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table { index: HashMap::new(), nodes: Vec::new(), free: Vec::new(), head: NIL, tail: NIL }
    }
}

impl<R> Table<R> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The record of `key` (a new one from `make` if absent), its last-seen time set to `t` and moved to the end;
    /// and whether it is new.
    #[inline]
    pub fn touch(&mut self, key: &str, t: f64, make: impl FnOnce() -> R) -> (&mut R, bool) {
        if let Some(&i) = self.index.get(key) {
            self.unlink(i);
            self.link_last(i);
            let node = self.nodes[i as usize].as_mut().expect("indexed node");
            node.last = t;
            return (&mut node.rec, false);
        }
        let key = SmallStr::from(key);
        let i = self.push_node(key.clone(), t, make());
        self.index.insert(key, i);
        (&mut self.nodes[i as usize].as_mut().expect("new node").rec, true)
    }

    /// Append `key` (absent) at the end; for deserialising.
    fn push_back(&mut self, key: &str, last: f64, rec: R) {
        let key = SmallStr::from(key);
        let i = self.push_node(key.clone(), last, rec);
        let clash = self.index.insert(key, i);
        debug_assert!(clash.is_none());
    }

    fn push_node(&mut self, key: SmallStr, last: f64, rec: R) -> u32 {
        let node = Node { key, last, prev: NIL, next: NIL, rec };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(node);
                i
            }
            None => {
                assert!(self.nodes.len() < NIL as usize, "more than 2^32 - 1 entities in one table");
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.link_last(i);
        i
    }

    pub fn get(&self, key: &str) -> Option<&R> {
        self.index.get(key).map(|&i| &self.nodes[i as usize].as_ref().expect("indexed node").rec)
    }

    fn node(&self, i: u32) -> &Node<R> {
        self.nodes[i as usize].as_ref().expect("linked node")
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<R> {
        self.nodes[i as usize].as_mut().expect("linked node")
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = self.node(i);
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    fn link_last(&mut self, i: u32) {
        let tail = self.tail;
        {
            let n = self.node_mut(i);
            n.prev = tail;
            n.next = NIL;
        }
        if tail == NIL {
            self.head = i;
        } else {
            self.node_mut(tail).next = i;
        }
        self.tail = i;
    }

    /// Remove the least recently seen record.
    pub fn pop_front(&mut self) -> Option<(SmallStr, R)> {
        if self.head == NIL {
            return None;
        }
        let i = self.head;
        self.unlink(i);
        let node = self.nodes[i as usize].take().expect("linked node");
        self.index.remove(&node.key);
        self.free.push(i);
        if self.index.is_empty() {
            // nothing left: give the slab back rather than keep a free list of the peak's size
            self.nodes.clear();
            self.free.clear();
        }
        Some((node.key, node.rec))
    }

    /// `_expire` for one table: drop the records last seen before `cut`, then the least recently seen past `cap`
    /// (a prefix, walked from the front exactly as the Python loop does).
    pub fn expire(&mut self, cut: f64, cap: usize) {
        let excess = self.len() as i64 - cap as i64;
        let mut stale: i64 = 0;
        let mut i = self.head;
        while i != NIL {
            let n = self.node(i);
            if n.last >= cut && stale >= excess {
                break;
            }
            stale += 1;
            i = n.next;
        }
        for _ in 0..stale {
            self.pop_front();
        }
    }

    /// `(key, last seen, record)`, least recently seen first.
    pub fn iter(&self) -> Iter<'_, R> {
        Iter { table: self, i: self.head }
    }

    /// Bytes of the index, the slab and the keys (an estimate of the allocator's, without the records' own heap).
    pub fn overhead_bytes(&self) -> usize {
        let index = self.index.capacity() * (std::mem::size_of::<(SmallStr, u32)>() + 1);
        let slab = self.nodes.capacity() * std::mem::size_of::<Option<Node<R>>>() + self.free.capacity() * 4;
        let keys: usize = self.index.keys().map(|k| 2 * k.heap_bytes()).sum();
        index + slab + keys
    }
}

pub struct Iter<'a, R> {
    table: &'a Table<R>,
    i: u32,
}

impl<'a, R> Iterator for Iter<'a, R> {
    type Item = (&'a str, f64, &'a R);

    fn next(&mut self) -> Option<Self::Item> {
        if self.i == NIL {
            return None;
        }
        let n = self.table.node(self.i);
        self.i = n.next;
        Some((&n.key, n.last, &n.rec))
    }
}

/// Serialised as the sequence of `(key, last seen, record)` in last-seen order: the order is part of the state.
impl<R: Serialize> Serialize for Table<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for entry in self.iter() {
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

impl<'de, R: Deserialize<'de>> Deserialize<'de> for Table<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<(String, f64, R)> = Vec::deserialize(d)?;
        let mut t = Table::default();
        t.index.reserve(entries.len());
        t.nodes.reserve(entries.len());
        for (k, last, rec) in entries {
            if t.index.contains_key(k.as_str()) {
                return Err(serde::de::Error::custom(format!("duplicate entity key {k:?}")));
            }
            t.push_back(&k, last, rec);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(t: &Table<u32>) -> Vec<(String, f64, u32)> {
        t.iter().map(|(k, l, r)| (k.to_owned(), l, *r)).collect()
    }

    #[test]
    fn touch_moves_to_the_end_and_keeps_the_record() {
        let mut t: Table<u32> = Table::default();
        assert!(t.touch("a", 1.0, || 10).1);
        assert!(t.touch("b", 2.0, || 20).1);
        assert!(t.touch("c", 3.0, || 30).1);
        let (r, new) = t.touch("a", 4.0, || 99);
        assert!(!new);
        *r += 1;
        assert_eq!(order(&t), [("b".into(), 2.0, 20), ("c".into(), 3.0, 30), ("a".into(), 4.0, 11)]);
        t.touch("c", 5.0, || 99); // the middle one
        t.touch("c", 6.0, || 99); // the last one again
        assert_eq!(order(&t).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(t.get("a"), Some(&11));
    }

    #[test]
    fn expire_drops_the_idle_then_the_least_recent_past_the_cap() {
        let mut t: Table<u32> = Table::default();
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            t.touch(k, i as f64, || i as u32);
        }
        t.expire(2.0, 10); // a, b idle
        assert_eq!(order(&t).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["c", "d", "e"]);
        t.expire(0.0, 2); // none idle, one too many
        assert_eq!(order(&t).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["d", "e"]);
        assert!(t.get("c").is_none());
        // a freed slot is reused, and order still holds
        t.touch("f", 9.0, || 7);
        t.touch("d", 10.0, || 0);
        assert_eq!(order(&t).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["e", "f", "d"]);
        t.expire(100.0, 10);
        assert!(t.is_empty());
        t.touch("g", 101.0, || 1);
        assert_eq!(order(&t), [("g".into(), 101.0, 1)]);
    }

    #[test]
    fn serde_round_trip_keeps_the_order() {
        let mut t: Table<u32> = Table::default();
        for (i, k) in ["x", "y", "z"].iter().enumerate() {
            t.touch(k, i as f64, || i as u32);
        }
        t.touch("x", 5.0, || 0);
        let bytes = bincode::serialize(&t).unwrap();
        let mut back: Table<u32> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(order(&back), order(&t));
        back.touch("y", 6.0, || 0);
        assert_eq!(order(&back).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["z", "x", "y"]);
    }
}
