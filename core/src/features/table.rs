//! An entity table: key -> record, kept in last-seen order like the Python engine's dicts (a touched record moves
//! to the end), so the idle and the least recently seen are a prefix. A slab of records in a doubly linked list
//! plus a hash index: touch, insert and removal from the front are O(1) and move no record.
//!
//! The list's links and last-seen times live in their own dense array, apart from the records: a touch rewrites
//! the links of the record's two neighbours, which are anywhere in the table, and 16-byte links of a hundred
//! thousand entities stay in cache where records of a few hundred bytes each do not (the unlinks were 9 % of the
//! simulated stream's time with the links inside the records).

use std::collections::HashMap;

use super::small::SmallStr;

use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    last: f64,
    prev: u32,
    next: u32,
}

#[derive(Clone, Debug)]
struct Slot<R> {
    key: SmallStr,
    rec: R,
}

#[derive(Clone, Debug)]
pub struct Table<R> {
    index: HashMap<SmallStr, u32>,
    /// The records by slab index (`None`: a free slot).
    slots: Vec<Option<Slot<R>>>,
    /// The list by slab index, parallel to `slots`.
    links: Vec<Link>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table { index: HashMap::new(), slots: Vec::new(), links: Vec::new(), free: Vec::new(), head: NIL, tail: NIL }
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
            if i != self.tail {
                self.unlink(i);
                self.link_last(i);
            }
            self.links[i as usize].last = t;
            return (&mut self.slots[i as usize].as_mut().expect("indexed slot").rec, false);
        }
        let key = SmallStr::from(key);
        let i = self.push_slot(key.clone(), t, make());
        self.index.insert(key, i);
        (&mut self.slots[i as usize].as_mut().expect("new slot").rec, true)
    }

    /// Append `key` (absent) at the end; for deserialising.
    fn push_back(&mut self, key: &str, last: f64, rec: R) {
        let key = SmallStr::from(key);
        let i = self.push_slot(key.clone(), last, rec);
        let clash = self.index.insert(key, i);
        debug_assert!(clash.is_none());
    }

    fn push_slot(&mut self, key: SmallStr, last: f64, rec: R) -> u32 {
        let slot = Slot { key, rec };
        let link = Link { last, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                self.links[i as usize] = link;
                i
            }
            None => {
                assert!(self.slots.len() < NIL as usize, "more than 2^32 - 1 entities in one table");
                self.slots.push(Some(slot));
                self.links.push(link);
                (self.slots.len() - 1) as u32
            }
        };
        self.link_last(i);
        i
    }

    pub fn get(&self, key: &str) -> Option<&R> {
        self.index.get(key).map(|&i| &self.slots[i as usize].as_ref().expect("indexed slot").rec)
    }

    #[inline]
    fn unlink(&mut self, i: u32) {
        let Link { prev, next, .. } = self.links[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
    }

    #[inline]
    fn link_last(&mut self, i: u32) {
        let tail = self.tail;
        let l = &mut self.links[i as usize];
        l.prev = tail;
        l.next = NIL;
        if tail == NIL {
            self.head = i;
        } else {
            self.links[tail as usize].next = i;
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
        let slot = self.slots[i as usize].take().expect("linked slot");
        self.index.remove(&slot.key);
        self.free.push(i);
        if self.index.is_empty() {
            // nothing left: give the slab back rather than keep a free list of the peak's size
            self.slots.clear();
            self.links.clear();
            self.free.clear();
        }
        Some((slot.key, slot.rec))
    }

    /// `_expire` for one table: drop the records last seen before `cut`, then the least recently seen past `cap`
    /// (a prefix, walked from the front exactly as the Python loop does).
    pub fn expire(&mut self, cut: f64, cap: usize) {
        let excess = self.len() as i64 - cap as i64;
        let mut stale: i64 = 0;
        let mut i = self.head;
        while i != NIL {
            let l = &self.links[i as usize];
            if l.last >= cut && stale >= excess {
                break;
            }
            stale += 1;
            i = l.next;
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
        let slab = self.slots.capacity() * std::mem::size_of::<Option<Slot<R>>>()
            + self.links.capacity() * std::mem::size_of::<Link>()
            + self.free.capacity() * 4;
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
        let i = self.i as usize;
        let (slot, link) = (self.table.slots[i].as_ref().expect("linked slot"), &self.table.links[i]);
        self.i = link.next;
        Some((&slot.key, link.last, &slot.rec))
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
        t.slots.reserve(entries.len());
        t.links.reserve(entries.len());
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
