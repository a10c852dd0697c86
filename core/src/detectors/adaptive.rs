//! `detectors.adaptive.WeightAdapter`: detector weights measured on the labels that arrived (see the Python
//! module's docstring for the method). The same state and the same arithmetic, so the weights are equal bit for
//! bit:
//!
//! - an event's evidence vector (`-ln p` per detector) is kept as float32 until its label arrives (at most
//!   `max_pending`, the oldest remembered first dropped; remembering an id again replaces its vector in place);
//! - a label moves it into the ring of its class (`window` vectors each);
//! - every `refresh_every` labels each detector's Mann-Whitney AUC on the rings sets its weight.
//!
//! The AUC's rank sum is a sum of half-integers far below 2^52, exact in any order, so it equals numpy's.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightAdapter {
    prior: Vec<f64>,
    prior_positives: u64,
    window: usize,
    refresh_every: u64,
    max_pending: usize,
    /// event id -> (insertion number, evidence vector)
    pending: FxHashMap<String, (u64, Vec<f32>)>,
    /// `(insertion number, event id)` in insertion order; entries whose id was learned (or re-remembered under
    /// a newer number) are stale and skipped
    queue: VecDeque<(u64, String)>,
    next: u64,
    /// per class, `window` vectors of `d` floats, written round-robin
    rings: [Vec<f32>; 2],
    filled: [u64; 2],
    labels: u64,
    weights: Vec<f64>,
    /// `measure = "precision"`: average precision (else ROC AUC) decides the learned weights
    precision: bool,
    /// the last measured AUC per detector (NaN before the first measurement)
    pub auc: Vec<f64>,
}

/// A float32 as a `u32` whose unsigned order is the float's order (`-0.0` and `0.0` one key, as numpy's
/// `unique` counts them equal; evidence is never NaN).
#[inline]
fn ordered(v: f32) -> u32 {
    let b = (v + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Sort keys below 2^33 (`ordered(v) << 1 | class`): three passes of an 11-bit LSD radix sort, a few tens of
/// microseconds for two windows of 5,000 (a comparison sort took four times as long, and a refresh sorts once
/// per detector every `refresh_every` labels).
fn radix_sort(keys: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const B: usize = 1 << BITS;
    tmp.clear();
    tmp.resize(keys.len(), 0);
    let mut counts = vec![0usize; B];
    for pass in 0..3 {
        let shift = pass * BITS;
        counts.iter_mut().for_each(|c| *c = 0);
        for &k in keys.iter() {
            counts[((k >> shift) as usize) & (B - 1)] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) as usize) & (B - 1);
            tmp[counts[d]] = k;
            counts[d] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

/// Mann-Whitney AUC of the frauds' values above the legitimate ones (ties count one half), from average ranks,
/// as `_auc` computes it. `keys` holds `ordered(value) << 1 | is_fraud`; sorted, equal values are adjacent.
fn auc(keys: &mut Vec<u64>, n_pos: usize, tmp: &mut Vec<u64>) -> f64 {
    radix_sort(keys, tmp);
    let mut r_pos = 0.0;
    let mut i = 0;
    while i < keys.len() {
        let v = keys[i] >> 1;
        let mut j = i + 1;
        let mut k = (keys[i] & 1) as usize;
        while j < keys.len() && keys[j] >> 1 == v {
            k += (keys[j] & 1) as usize;
            j += 1;
        }
        // the run [i, j) covers the 1-based ranks i+1 ..= j: its average rank is j - (count - 1) / 2
        let count = (j - i) as f64;
        r_pos += (j as f64 - (count - 1.0) / 2.0) * k as f64;
        i = j;
    }
    let np = n_pos as f64;
    let nn = (keys.len() - n_pos) as f64;
    (r_pos - np * (np + 1.0) / 2.0) / (np * nn)
}

/// Average precision of the positives (key bit 0 set) over `keys` sorted ascending (as [`auc`] leaves them): runs
/// of equal values enter at once, highest first; `sum(precision * positives of the run) / n_pos`, summed in that
/// order (`detectors.adaptive._average_precision`).
fn average_precision(keys: &[u64], n_pos: usize) -> f64 {
    let (mut ctp, mut cn, mut acc) = (0.0f64, 0.0f64, 0.0f64);
    let mut j = keys.len();
    while j > 0 {
        let v = keys[j - 1] >> 1;
        let mut i = j - 1;
        let mut tp = (keys[i] & 1) as usize;
        while i > 0 && keys[i - 1] >> 1 == v {
            i -= 1;
            tp += (keys[i] & 1) as usize;
        }
        let tp = tp as f64;
        ctp += tp;
        cn += (j - i) as f64;
        acc += ctp / cn * tp;
        j = i;
    }
    acc / n_pos as f64
}

impl WeightAdapter {
    pub fn new(prior: Vec<f64>, prior_positives: u64, window: usize, refresh_every: u64, max_pending: usize,
               precision: bool) -> Self {
        assert!(window >= 2 && refresh_every >= 1 && max_pending >= 1, "validated by the Python side");
        let d = prior.len();
        WeightAdapter {
            precision,
            weights: prior.clone(),
            auc: vec![f64::NAN; d],
            prior,
            prior_positives,
            window,
            refresh_every,
            max_pending,
            pending: FxHashMap::default(),
            queue: VecDeque::new(),
            next: 0,
            rings: [vec![0.0; window * d], vec![0.0; window * d]],
            filled: [0, 0],
            labels: 0,
        }
    }

    /// The weights to use now, in the ensemble's order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn filled(&self) -> [u64; 2] {
        self.filled
    }

    /// The evidence an event was scored with: `-ln p` of each detector's tail probability `p`.
    pub fn remember(&mut self, event_id: &str, p: &[f64]) {
        let d = self.prior.len();
        debug_assert_eq!(p.len(), d);
        if let Some(entry) = self.pending.get_mut(event_id) {
            // an id remembered again keeps its place (Python's OrderedDict assignment)
            for (slot, &pv) in entry.1.iter_mut().zip(p) {
                *slot = (-pv.ln()) as f32;
            }
        } else {
            let vec: Vec<f32> = p.iter().map(|&pv| (-pv.ln()) as f32).collect();
            self.pending.insert(event_id.to_owned(), (self.next, vec));
            self.queue.push_back((self.next, event_id.to_owned()));
            self.next += 1;
        }
        while self.pending.len() > self.max_pending {
            let (n, id) = self.queue.pop_front().expect("every pending id is queued");
            if self.pending.get(&id).is_some_and(|e| e.0 == n) {
                self.pending.remove(&id);
            }
        }
        if self.queue.len() > 2 * self.pending.len() + 1024 {
            // drop the stale entries of learned ids, so the queue stays within twice the pending map
            let pending = &self.pending;
            self.queue.retain(|(n, id)| pending.get(id).is_some_and(|e| e.0 == *n));
        }
    }

    /// A label arrived for `event_id`: whether this adapter had its evidence (then it is learned, and the weights
    /// may change).
    pub fn learn(&mut self, event_id: &str, y: bool) -> bool {
        let Some((_, vec)) = self.pending.remove(event_id) else {
            return false;
        };
        let c = y as usize;
        let d = self.prior.len();
        let at = (self.filled[c] % self.window as u64) as usize * d;
        self.rings[c][at..at + d].copy_from_slice(&vec);
        self.filled[c] += 1;
        self.labels += 1;
        if self.labels.is_multiple_of(self.refresh_every) {
            self.refresh();
        }
        true
    }

    fn refresh(&mut self) {
        let d = self.prior.len();
        let n_pos = self.filled[1].min(self.window as u64) as usize;
        let n_neg = self.filled[0].min(self.window as u64) as usize;
        if n_pos == 0 || n_neg == 0 {
            return;
        }
        let mut learned = vec![0.0; d];
        let base = n_pos as f64 / (n_pos + n_neg) as f64;
        // blind: the same evidence on every labelled event (never fired); not measured, its share not handed out
        let mut blind = vec![false; d];
        let mut keys: Vec<u64> = Vec::with_capacity(n_pos + n_neg);
        let mut tmp: Vec<u64> = Vec::with_capacity(n_pos + n_neg);
        for j in 0..d {
            keys.clear();
            keys.extend((0..n_pos).map(|i| (ordered(self.rings[1][i * d + j]) as u64) << 1 | 1));
            keys.extend((0..n_neg).map(|i| (ordered(self.rings[0][i * d + j]) as u64) << 1));
            let first = keys[0] >> 1;
            blind[j] = keys.iter().all(|&k| k >> 1 == first);
            let a = auc(&mut keys, n_pos, &mut tmp);
            self.auc[j] = a;
            learned[j] = if self.prior[j] <= 0.0 || blind[j] {
                0.0
            } else if self.precision {
                ((average_precision(&keys, n_pos) - base) / (1.0 - base)).max(0.0)
            } else {
                (2.0 * a - 1.0).max(0.0)
            };
        }
        // Python's sum(): from 0, in order, over the detectors that showed evidence
        let total_prior = (0..d).filter(|&j| !blind[j]).fold(0.0, |s, j| s + self.prior[j]);
        let total = (0..d).filter(|&j| !blind[j]).fold(0.0, |s, j| s + learned[j]);
        if total <= 0.0 {
            self.weights.clone_from(&self.prior);
            return;
        }
        let f1 = self.filled[1] as f64;
        let a = f1 / (f1 + self.prior_positives as f64);
        for j in 0..d {
            self.weights[j] =
                if blind[j] { self.prior[j] } else { (1.0 - a) * self.prior[j] + a * learned[j] * total_prior / total };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auc_of(pos: &[f32], neg: &[f32]) -> f64 {
        let mut keys: Vec<u64> = pos.iter().map(|&v| (ordered(v) as u64) << 1 | 1).collect();
        keys.extend(neg.iter().map(|&v| (ordered(v) as u64) << 1));
        auc(&mut keys, pos.len(), &mut Vec::new())
    }

    fn ap_of(pos: &[f32], neg: &[f32]) -> f64 {
        let mut keys: Vec<u64> = pos.iter().map(|&v| (ordered(v) as u64) << 1 | 1).collect();
        keys.extend(neg.iter().map(|&v| (ordered(v) as u64) << 1));
        auc(&mut keys, pos.len(), &mut Vec::new()); // sorts the keys
        average_precision(&keys, pos.len())
    }

    #[test]
    fn average_precision_takes_ties_as_one_threshold() {
        // ranked 3 (+), 2 (-), 1 (+): precisions 1 and 2/3 at the positives
        assert_eq!(ap_of(&[3.0, 1.0], &[2.0]), (1.0 + 2.0 / 3.0) / 2.0);
        // all tied: one threshold, precision 2/4 for both positives
        assert_eq!(ap_of(&[1.0, 1.0], &[1.0, 1.0]), 0.5);
        // perfect
        assert_eq!(ap_of(&[5.0, 4.0], &[1.0, 0.0, -0.0]), 1.0);
    }

    #[test]
    fn the_radix_sort_sorts() {
        let mut x: u64 = 88172645463325252;
        let mut keys: Vec<u64> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % (1u64 << 33)
            })
            .collect();
        let mut want = keys.clone();
        want.sort_unstable();
        radix_sort(&mut keys, &mut Vec::new());
        assert_eq!(keys, want);
    }

    #[test]
    fn auc_counts_ties_as_one_half() {
        assert_eq!(auc_of(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc_of(&[1.0], &[1.0]), 0.5);
        assert_eq!(auc_of(&[2.0, 0.0], &[1.0, 2.0]), 0.375);
        assert_eq!(auc_of(&[-0.0, 5.0], &[0.0, -1.0]), 0.875, "-0.0 ties 0.0; negatives sort below");
        assert_eq!(auc_of(&[-2.0], &[-1.0, f32::INFINITY]), 0.0);
    }

    #[test]
    fn a_detector_that_separates_the_labels_gains_weight() {
        // the Python docstring's example
        let mut a = WeightAdapter::new(vec![1.0, 1.0], 2, 100, 10, 200_000, false);
        for i in 0..40u32 {
            let y = i % 4 == 0;
            let good = if y { 3.0 } else { 0.1 * (i % 3) as f64 };
            let bad = if y { 0.1 } else { 2.0 + (i % 5) as f64 };
            a.remember(&format!("e{i}"), &[(-good).exp(), (-bad).exp()]);
            assert!(a.learn(&format!("e{i}"), y));
        }
        let w = a.weights();
        assert!(w[0] > 1.5 && w[1] < 0.5, "{w:?}");
        assert!(!a.learn("e0", true), "a label is learned once");
    }

    #[test]
    fn pending_is_bounded_and_drops_the_oldest_first() {
        let mut a = WeightAdapter::new(vec![1.0], 20, 10, 5, 3, false);
        for i in 0..5 {
            a.remember(&format!("e{i}"), &[0.5]);
        }
        assert_eq!(a.pending(), 3);
        assert!(!a.learn("e1", true) && a.learn("e2", true));
        a.remember("e3", &[0.25]); // in place: e3 stays older than e4
        a.remember("e5", &[0.5]);
        a.remember("e6", &[0.5]);
        assert!(!a.learn("e3", false) && a.learn("e4", false));
        for i in 0..5000 {
            let id = format!("x{i}");
            a.remember(&id, &[0.5]);
            a.learn(&id, i % 2 == 0);
        }
        assert!(a.queue.len() <= 2 * a.pending() + 1025);
    }
}
