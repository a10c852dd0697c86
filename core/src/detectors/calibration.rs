//! `detectors.calibration.TailCalibrator`: `p(s) = (#{window scores >= s} + 1) / (n + 1)` over the last `window`
//! scores, then `s` joins the window. Same structure as the reference (a sorted snapshot refreshed every
//! `refresh_every` updates, corrected by short sorted lists of the values added and evicted since), so the state
//! is the same; the counts are exact either way, so `p` is the reference's bit for bit.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TailCalibrator {
    window: usize,
    refresh_every: u64,
    ring: Vec<f64>,
    t: u64,
    snap: Vec<f64>,
    added: Vec<f64>,
    evicted: Vec<f64>,
    #[serde(skip)]
    buf: Vec<f64>,
    /// The last value of each block of `BLOCK` values of `snap`: a search reads this (small, cached) array, then
    /// one block, instead of hopping across the whole snapshot. Rebuilt with the snapshot.
    #[serde(skip)]
    index: Vec<f64>,
}

const BLOCK: usize = 64;

/// Number of values of sorted `a` below `s` (`bisect_left`).
#[inline]
fn below(a: &[f64], s: f64) -> usize {
    a.partition_point(|&v| v < s)
}

/// [`below`] for a value expected near the start of `a`: doubling probes, then a binary search between the last
/// two. The refresh visits the added and evicted values in order, each a few dozen snapshot values after the one
/// before, where a binary search over the whole rest of the snapshot was most of an update's time.
#[inline]
fn gallop_below(a: &[f64], s: f64) -> usize {
    let mut bound = 1;
    while bound <= a.len() && a[bound - 1] < s {
        bound <<= 1;
    }
    let (lo, hi) = (bound >> 1, bound.min(a.len()));
    lo + a[lo..hi].partition_point(|&v| v < s)
}

#[inline]
fn insort(a: &mut Vec<f64>, s: f64) {
    // insort (right): after equal values; equal values are indistinguishable, so either side gives the same state
    let i = a.partition_point(|&v| v <= s);
    a.insert(i, s);
}

impl TailCalibrator {
    pub fn new(window: usize, refresh_every: usize) -> Self {
        assert!(window >= 1 && refresh_every >= 1, "window and refresh_every must be >= 1");
        TailCalibrator {
            window,
            refresh_every: refresh_every as u64,
            ring: Vec::with_capacity(window),
            t: 0,
            snap: Vec::with_capacity(window),
            added: Vec::with_capacity(refresh_every + 1),
            evicted: Vec::with_capacity(refresh_every + 1),
            buf: Vec::with_capacity(window),
            index: Vec::new(),
        }
    }

    /// Rebuild the snapshot's block index (after a restore).
    pub fn reindex(&mut self) {
        self.index.clear();
        self.index.extend(self.snap.chunks(BLOCK).map(|c| c[c.len() - 1]));
    }

    /// Values of the snapshot below `s` (`bisect_left`), through the block index.
    #[inline]
    fn snap_below(&self, s: f64) -> usize {
        let b = self.index.partition_point(|&v| v < s); // the first block whose last value is >= s
        let start = b * BLOCK;
        if start >= self.snap.len() {
            return self.snap.len();
        }
        let end = (start + BLOCK).min(self.snap.len());
        start + self.snap[start..end].partition_point(|&v| v < s)
    }

    /// Scores in the window.
    pub fn n(&self) -> usize {
        (self.t as usize).min(self.window)
    }

    /// Updates so far.
    pub fn count(&self) -> u64 {
        self.t
    }

    /// Window values `>= s`, and where `s` would go among the values added since the snapshot (before any equal
    /// ones).
    #[inline]
    fn ge(&self, s: f64) -> (usize, usize) {
        let at = below(&self.added, s);
        // the snapshot's + the added's - the evicted's, summed in an order that cannot underflow
        let ge = (self.snap.len() - self.snap_below(s)) + (self.added.len() - at) + below(&self.evicted, s)
            - self.evicted.len();
        (ge, at)
    }

    /// Tail probability of `s` against the window, without adding it.
    pub fn tail(&self, s: f64) -> f64 {
        let s = if s.is_nan() { f64::NEG_INFINITY } else { s };
        (self.ge(s).0 + 1) as f64 / (self.n() + 1) as f64
    }

    /// Rank `s` against the window, then add it; its tail probability.
    pub fn update(&mut self, s: f64) -> f64 {
        let mut s = s + 0.0; // -0.0 -> 0.0
        if s.is_nan() {
            s = f64::NEG_INFINITY;
        }
        let w = self.window;
        let t = self.t;
        let (ge, at) = self.ge(s);
        let p = (ge + 1) as f64 / ((t as usize).min(w) + 1) as f64;
        if (t as usize) < w {
            self.ring.push(s);
        } else {
            let slot = (t % w as u64) as usize;
            let old = self.ring[slot];
            insort(&mut self.evicted, old);
            self.ring[slot] = s;
        }
        self.added.insert(at, s); // before equal values, where insort puts it after: the same multiset
        self.t = t + 1;
        if self.t.is_multiple_of(self.refresh_every) {
            self.refresh();
        }
        p
    }

    /// snap + added - evicted, sorted: runs of the snapshot copied whole between the (few) values added and
    /// evicted, which are visited in order, an eviction before an addition of the same value. An evicted value
    /// comes out of the snapshot if it holds one, else out of the values added since (equal values are
    /// indistinguishable, so the multiset is all that matters).
    fn refresh(&mut self) {
        let (snap, add, ev) = (&self.snap, &self.added, &self.evicted);
        let out = &mut self.buf;
        out.clear();
        let (mut i, mut j, mut k) = (0usize, 0usize, 0usize);
        let mut skip = 0usize; // evictions of value `skip_v` still to take out of the added values
        let mut skip_v = 0.0f64;
        while j < add.len() || k < ev.len() {
            let evict = k < ev.len() && (j == add.len() || ev[k] <= add[j]);
            let v = if evict { ev[k] } else { add[j] };
            let p = i + gallop_below(&snap[i..], v);
            out.extend_from_slice(&snap[i..p]);
            i = p;
            if evict {
                k += 1;
                if i < snap.len() && snap[i] == v {
                    i += 1;
                } else {
                    debug_assert!(skip == 0 || skip_v == v);
                    skip += 1;
                    skip_v = v;
                }
            } else {
                j += 1;
                if skip > 0 && v == skip_v {
                    skip -= 1;
                } else {
                    out.push(v);
                }
            }
        }
        debug_assert_eq!(skip, 0);
        out.extend_from_slice(&snap[i..]);
        std::mem::swap(&mut self.snap, &mut self.buf);
        self.reindex();
        self.added.clear();
        self.evicted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docstring_example() {
        let mut cal = TailCalibrator::new(4, 256);
        let got: Vec<f64> = [1.0, 2.0, 3.0, 0.5, 3.0, 9.0].iter().map(|&s| cal.update(s)).collect();
        let want = [1.0, 0.5, 1.0 / 3.0, 1.0, 0.4, 0.2];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert!((cal.tail(2.5) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn the_merged_snapshot_is_the_sorted_window() {
        let mut x = 0.7f64;
        for (w, every) in [(1, 1), (5, 3), (40, 16), (300, 64)] {
            let mut cal = TailCalibrator::new(w, every);
            for i in 0..5000 {
                x = (x * 3.7 * (1.0 - x)).abs() % 1.0;
                cal.update(if i % 7 == 0 { -0.0 } else { (x * 6.0).floor() });
                if cal.t.is_multiple_of(every as u64) {
                    let mut want = cal.ring.clone();
                    want.sort_by(f64::total_cmp);
                    let got: Vec<f64> = cal.snap.iter().map(|v| v + 0.0).collect();
                    assert_eq!(got, want, "window {w}, refresh every {every}, update {i}");
                }
            }
        }
    }

    #[test]
    fn galloping_counts_what_a_binary_search_counts() {
        for n in [0usize, 1, 2, 3, 7, 8, 9, 64, 100] {
            let a: Vec<f64> = (0..n).map(|i| (i / 3) as f64).collect(); // runs of equal values
            for k in 0..(2 * n + 3) {
                let s = k as f64 / 6.0 - 0.25;
                assert_eq!(gallop_below(&a, s), below(&a, s), "n {n}, s {s}");
            }
        }
    }

    #[test]
    fn refresh_every_does_not_change_results() {
        let mut a = TailCalibrator::new(50, 1);
        let mut b = TailCalibrator::new(50, 7);
        let mut c = TailCalibrator::new(50, 1000);
        let mut x = 0.3f64;
        for i in 0..2000 {
            x = (x * 3.7 * (1.0 - x)).abs() % 1.0;
            let s = if i % 11 == 0 { f64::NAN } else { (x * 10.0).floor() }; // ties and NaN
            let (pa, pb, pc) = (a.update(s), b.update(s), c.update(s));
            assert_eq!(pa, pb);
            assert_eq!(pa, pc);
        }
    }
}
