//! Small ordered maps value -> last-seen time, kept in last-seen order (a touched value moves to the end): the
//! distinct-value sets (`_distinct`) and a user's known-value memories (`_known`) of `stream/features.py`.
//!
//! They hold at most `max_distinct` (64) or `max_known` (32) values, so a vector with linear search beats a hash
//! map here, in time and memory. An empty set stands for Python's `None` (no value yet): a distinct set that lost
//! every value gives the same features either way, and a known-value memory never loses its last value.

use serde::{Deserialize, Serialize};

pub type Key = super::small::SmallStr;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    items: Vec<(Key, f64)>,
}

impl Recent {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The last-seen time of `v`, if the set has it.
    #[inline]
    pub fn get(&self, v: &str) -> Option<f64> {
        self.items.iter().find(|(k, _)| &**k == v).map(|e| e.1)
    }

    /// `_distinct` for one set: drop the values last seen before `cut` (a prefix), return how many are left (the
    /// feature), then record `v` at `t` (if any), dropping the least recently seen value when at `cap`.
    #[inline]
    pub fn distinct(&mut self, v: Option<&str>, t: f64, cut: f64, cap: usize) -> f64 {
        if let Some(first) = self.items.first() {
            if first.1 < cut {
                let k = self.items.iter().position(|e| e.1 >= cut).unwrap_or(self.items.len());
                self.items.drain(..k);
            }
        }
        let c = self.items.len();
        if let Some(v) = v {
            match self.items.iter().position(|(k, _)| &**k == v) {
                Some(i) => self.move_to_end(i, t),
                None => {
                    if c >= cap {
                        self.items.remove(0);
                    }
                    self.items.push((v.into(), t));
                }
            }
        }
        c as f64
    }

    /// How many values were last seen at or after `cut`, counting from the most recent back to the first older
    /// one (`_known`'s count).
    #[inline]
    pub fn count_since(&self, cut: f64) -> f64 {
        let mut n = 0.0;
        for (_, lt) in self.items.iter().rev() {
            if *lt < cut {
                break;
            }
            n += 1.0;
        }
        n
    }

    /// `_known`'s learning: `v` (last seen at `lt`, as `get` said) is now seen at `t`, at the end; a new value
    /// drops the least recently seen one when at `cap`.
    #[inline]
    pub fn learn(&mut self, v: &str, known: bool, t: f64, cap: usize) {
        if known {
            let i = self.items.iter().position(|(k, _)| &**k == v).expect("a known value is in the memory");
            self.move_to_end(i, t);
        } else {
            if self.items.len() >= cap {
                self.items.remove(0);
            }
            self.items.push((v.into(), t));
        }
    }

    #[inline]
    fn move_to_end(&mut self, i: usize, t: f64) {
        let last = self.items.len() - 1;
        if i != last {
            self.items[i..].rotate_left(1);
        }
        self.items[last].1 = t;
    }

    /// The values and times, least recently seen first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.items.iter().map(|(k, t)| (&**k, *t))
    }

    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<(Key, f64)>()
            + self.items.iter().map(|(k, _)| k.heap_bytes()).sum::<usize>()
    }
}

/// What a heap string of `len` bytes costs with the allocator's rounding (glibc malloc: 16-byte granules, at least
/// 32 bytes per chunk including its 8-byte header): an estimate, for `stats`.
pub fn heap_str(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).div_ceil(16).max(2) * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(r: &Recent) -> Vec<(String, f64)> {
        r.iter().map(|(k, t)| (k.to_owned(), t)).collect()
    }

    #[test]
    fn distinct_counts_before_recording_and_expires_a_prefix() {
        let mut r = Recent::default();
        assert_eq!(r.distinct(Some("a"), 1.0, 0.0, 3), 0.0);
        assert_eq!(r.distinct(Some("b"), 2.0, 0.0, 3), 1.0);
        assert_eq!(r.distinct(Some("a"), 3.0, 0.0, 3), 2.0); // a moves to the end
        assert_eq!(keys(&r), [("b".into(), 2.0), ("a".into(), 3.0)]);
        assert_eq!(r.distinct(None, 4.0, 2.5, 3), 1.0); // b expired; nothing recorded
        assert_eq!(keys(&r), [("a".into(), 3.0)]);
        assert_eq!(r.distinct(None, 9.0, 5.0, 3), 0.0);
        assert!(r.is_empty());
    }

    #[test]
    fn distinct_saturates_at_cap_dropping_the_least_recent() {
        let mut r = Recent::default();
        for (i, v) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(r.distinct(Some(v), i as f64, 0.0, 3), i.min(3) as f64);
        }
        assert_eq!(keys(&r).iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["c", "d", "e"]);
        // an existing value at the cap drops nothing
        r.distinct(Some("c"), 10.0, 0.0, 3);
        assert_eq!(keys(&r).iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["d", "e", "c"]);
    }

    #[test]
    fn known_counts_back_from_the_newest_and_learns_with_a_cap() {
        let mut r = Recent::default();
        r.learn("a", false, 1.0, 2);
        r.learn("b", false, 5.0, 2);
        assert_eq!(r.count_since(3.0), 1.0);
        assert_eq!(r.count_since(0.0), 2.0);
        assert_eq!(r.get("a"), Some(1.0));
        r.learn("a", true, 6.0, 2);
        assert_eq!(keys(&r), [("b".into(), 5.0), ("a".into(), 6.0)]);
        r.learn("c", false, 7.0, 2);
        assert_eq!(keys(&r), [("a".into(), 6.0), ("c".into(), 7.0)]);
        assert_eq!(r.get("b"), None);
    }
}
