//! `IdIndex`: an index from an id (an event id) to a slot of the caller's slab, for the structures that hold up to
//! hundreds of thousands of ids, insert one per scored event and drop the oldest as they go (the label store, the
//! adaptive weights' pending evidence).
//!
//! Each entry is the id's hash and its slot, 16 bytes; the id itself stays in the caller's slab, which the index
//! reads only to confirm a match. A `HashMap<String, _>` at that size and churn rehashes its tombstones every few
//! tens of thousands of inserts, re-hashing every key through a pointer to its heap copy: with the hash stored,
//! a rehash reads the table alone. A lookup compares the stored hash before it reads an id.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

#[derive(Clone, Debug, Default)]
pub struct IdIndex {
    table: HashTable<(u64, u32)>,
}

impl IdIndex {
    /// The hash an id is kept under.
    #[inline]
    pub fn hash(id: &str) -> u64 {
        FxBuildHasher.hash_one(id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Bytes of the table (entries and control bytes).
    pub fn heap_bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
    }

    /// The slot of `id` (hash `h`), if indexed; `id_of(slot)` reads a slot's id.
    #[inline]
    pub fn get<'a>(&self, h: u64, id: &str, id_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        self.table.find(h, |&(eh, slot)| eh == h && id_of(slot) == id).map(|&(_, slot)| slot)
    }

    /// Index `slot` under hash `h`; its id must not be indexed already.
    #[inline]
    pub fn insert_new(&mut self, h: u64, slot: u32) {
        self.table.insert_unique(h, (h, slot), |&(eh, _)| eh);
    }

    /// Remove `id` (hash `h`); its slot, if it was indexed.
    #[inline]
    pub fn remove<'a>(&mut self, h: u64, id: &str, id_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        match self.table.find_entry(h, |&(eh, slot)| eh == h && id_of(slot) == id) {
            Ok(entry) => Some(entry.remove().0 .1),
            Err(_) => None,
        }
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_insert_remove_by_id() {
        let ids = ["a", "b", "c"];
        let mut ix = IdIndex::default();
        for (slot, id) in ids.iter().enumerate() {
            assert_eq!(ix.get(IdIndex::hash(id), id, |s| ids[s as usize]), None);
            ix.insert_new(IdIndex::hash(id), slot as u32);
        }
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.get(IdIndex::hash("b"), "b", |s| ids[s as usize]), Some(1));
        assert_eq!(ix.remove(IdIndex::hash("b"), "b", |s| ids[s as usize]), Some(1));
        assert_eq!(ix.remove(IdIndex::hash("b"), "b", |s| ids[s as usize]), None);
        assert_eq!(ix.get(IdIndex::hash("b"), "b", |s| ids[s as usize]), None);
        assert_eq!(ix.get(IdIndex::hash("c"), "c", |s| ids[s as usize]), Some(2));
    }

    #[test]
    fn equal_hashes_are_told_apart_by_the_id() {
        // two ids forced under one hash: the stored hash matches both, the id decides
        let ids = ["x", "y"];
        let mut ix = IdIndex::default();
        ix.insert_new(7, 0);
        ix.insert_new(7, 1);
        assert_eq!(ix.get(7, "y", |s| ids[s as usize]), Some(1));
        assert_eq!(ix.get(7, "x", |s| ids[s as usize]), Some(0));
        assert_eq!(ix.remove(7, "x", |s| ids[s as usize]), Some(0));
        assert_eq!(ix.get(7, "y", |s| ids[s as usize]), Some(1));
        assert_eq!(ix.get(7, "z", |s| ids[s as usize]), None);
    }

    #[test]
    fn survives_churn_at_a_fixed_size() {
        // insert one, drop the oldest: the pattern that rehashes tombstones
        let ids: Vec<String> = (0..50_000).map(|i| format!("ev-{i}")).collect();
        let mut ix = IdIndex::default();
        for (i, id) in ids.iter().enumerate() {
            ix.insert_new(IdIndex::hash(id), i as u32);
            if i >= 1000 {
                let old = &ids[i - 1000];
                assert_eq!(ix.remove(IdIndex::hash(old), old, |s| ids[s as usize].as_str()), Some((i - 1000) as u32));
            }
        }
        assert_eq!(ix.len(), 1000);
        for (i, id) in ids.iter().enumerate() {
            let want = if i >= 49_000 { Some(i as u32) } else { None };
            assert_eq!(ix.get(IdIndex::hash(id), id, |s| ids[s as usize].as_str()), want);
        }
    }
}
