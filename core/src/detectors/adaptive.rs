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

use std::collections::{HashMap, VecDeque};

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::idindex::IdIndex;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightAdapter {
    prior: Vec<f64>,
    prior_positives: u64,
    window: usize,
    refresh_every: u64,
    max_pending: usize,
    /// The evidence waiting for its label, in insertion order.
    pending: Pending,
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
    /// `measure = "stream_precision"`: the average precision counts each class at its share of all the labels
    /// that arrived, not of the windows. Last, and read as `false` (the measure of then) from a state written
    /// before it existed, which ends where it would start.
    #[serde(default, deserialize_with = "absent_is_false")]
    stream: bool,
}

/// A trailing `bool` that older states do not have: reading past their end gives `false`.
fn absent_is_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(bool::deserialize(d).unwrap_or(false))
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
/// order (`detectors.adaptive._average_precision`). The adapter calls the weighted form; this one is its tests'.
#[cfg(test)]
fn average_precision(keys: &[u64], n_pos: usize) -> f64 {
    weighted_average_precision(keys, n_pos, 1.0, 1.0)
}

/// [`average_precision`] with each positive counted as `wp` events and each negative as `wn` in the precision
/// (`detectors.adaptive._average_precision(pos, neg, w_pos, w_neg)`, the same float). With both weights 1 the
/// precision `ctp / (ctp + cfp)` is the unweighted one bit for bit: the counts are whole numbers, summed exactly.
fn weighted_average_precision(keys: &[u64], n_pos: usize, wp: f64, wn: f64) -> f64 {
    let (mut ctp, mut cfp, mut acc) = (0.0f64, 0.0f64, 0.0f64);
    let mut j = keys.len();
    while j > 0 {
        let v = keys[j - 1] >> 1;
        let mut i = j - 1;
        let mut tp = (keys[i] & 1) as usize;
        while i > 0 && keys[i - 1] >> 1 == v {
            i -= 1;
            tp += (keys[i] & 1) as usize;
        }
        let fp = (j - i - tp) as f64;
        let tp = tp as f64;
        ctp += tp;
        cfp += fp;
        let wtp = wp * ctp;
        acc += wtp / (wtp + wn * cfp) * tp;
        j = i;
    }
    acc / n_pos as f64
}

/// An event's evidence waiting for its label: its id, insertion number and `-ln p` vector.
#[derive(Clone, Debug)]
struct Slot {
    id: String,
    seq: u64,
    live: bool,
    ev: Box<[f32]>,
}

/// event id -> (insertion number, evidence vector), in a slab whose freed slots (and their id and vector
/// buffers) are reused, with `queue`, the `(insertion number, slot)` pairs in insertion order: entries whose
/// slot was learned, evicted or reused under a newer number are stale and skipped.
///
/// Serialised as the map `id -> (number, vector)` then the queue of `(number, id)` (the state format of the
/// two fields it replaced), the queue without its stale entries: they change no result.
#[derive(Clone, Debug, Default)]
struct Pending {
    index: IdIndex,
    slots: Vec<Slot>,
    free: Vec<u32>,
    queue: VecDeque<(u64, u32)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn find(&self, h: u64, id: &str) -> Option<u32> {
        let slots = &self.slots;
        self.index.get(h, id, |s| &slots[s as usize].id)
    }

    /// Add `id` (absent) under number `seq`; its vector to fill.
    fn insert(&mut self, h: u64, id: &str, seq: u64, d: usize) -> &mut [f32] {
        let s = match self.free.pop() {
            Some(s) => {
                let slot = &mut self.slots[s as usize];
                slot.id.clear();
                slot.id.push_str(id);
                slot.seq = seq;
                slot.live = true;
                s
            }
            None => {
                self.slots.push(Slot { id: id.to_owned(), seq, live: true, ev: vec![0.0; d].into_boxed_slice() });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert_new(h, s);
        self.queue.push_back((seq, s));
        &mut self.slots[s as usize].ev
    }

    /// Drop slot `s` (indexed under its id).
    fn release(&mut self, s: u32) {
        let slots = &self.slots;
        let id: &str = &slots[s as usize].id;
        let gone = self.index.remove(IdIndex::hash(id), id, |t| &slots[t as usize].id);
        debug_assert_eq!(gone, Some(s));
        self.vacate(s);
    }

    /// Remove `id`; its evidence vector (until the slot is reused).
    fn take(&mut self, id: &str) -> Option<&[f32]> {
        let slots = &self.slots;
        let s = self.index.remove(IdIndex::hash(id), id, |t| &slots[t as usize].id)?;
        self.vacate(s);
        Some(&self.slots[s as usize].ev)
    }

    /// Free slot `s`, already out of the index (its buffers stay for the next id).
    fn vacate(&mut self, s: u32) {
        self.slots[s as usize].live = false;
        self.free.push(s);
    }

    /// The pending ids' `(number, slot)` in insertion order (the queue without its stale entries).
    fn live(&self) -> impl Iterator<Item = (u64, &Slot)> {
        self.queue.iter().filter(|&&e| current(&self.slots, e)).map(|&(n, s)| (n, &self.slots[s as usize]))
    }

    /// Drop the oldest ids until `max` are left.
    fn evict_to(&mut self, max: usize) {
        while self.len() > max {
            let e = self.queue.pop_front().expect("every pending id is queued");
            if current(&self.slots, e) {
                self.release(e.1);
            }
        }
    }

    /// Drop the stale queue entries once they outnumber the live ones, so the queue stays within twice the
    /// pending ids.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.len() + 1024 {
            let slots = &self.slots;
            self.queue.retain(|&e| current(slots, e));
        }
    }
}

/// Whether queue entry `(n, s)` is slot `s`'s current id (not learned, evicted or reused since).
fn current(slots: &[Slot], (n, s): (u64, u32)) -> bool {
    let slot = &slots[s as usize];
    slot.live && slot.seq == n
}

struct MapView<'a>(&'a Pending);

impl Serialize for MapView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(self.0.len()))?;
        for (n, slot) in self.0.live() {
            m.serialize_entry(slot.id.as_str(), &(n, &*slot.ev))?;
        }
        m.end()
    }
}

struct QueueView<'a>(&'a Pending);

impl Serialize for QueueView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut q = ser.serialize_seq(Some(self.0.len()))?;
        for (n, slot) in self.0.live() {
            q.serialize_element(&(n, slot.id.as_str()))?;
        }
        q.end()
    }
}

impl Serialize for Pending {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut t = ser.serialize_tuple(2)?;
        t.serialize_element(&MapView(self))?;
        t.serialize_element(&QueueView(self))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Pending {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type State = (HashMap<String, (u64, Vec<f32>)>, VecDeque<(u64, String)>);
        let (mut map, queue): State = Deserialize::deserialize(d)?;
        let mut p = Pending::default();
        for (n, id) in queue {
            if map.get(&id).is_some_and(|e| e.0 == n) {
                let (_, ev) = map.remove(&id).expect("just read");
                let s = p.slots.len() as u32;
                p.index.insert_new(IdIndex::hash(&id), s);
                p.slots.push(Slot { id, seq: n, live: true, ev: ev.into_boxed_slice() });
                p.queue.push_back((n, s));
            }
        }
        if let Some(id) = map.keys().next() {
            return Err(D::Error::custom(format!("adaptive weights: pending event {id:?} is not queued")));
        }
        Ok(p)
    }
}

impl WeightAdapter {
    pub fn new(prior: Vec<f64>, prior_positives: u64, window: usize, refresh_every: u64, max_pending: usize,
               precision: bool, stream: bool) -> Self {
        assert!(window >= 2 && refresh_every >= 1 && max_pending >= 1, "validated by the Python side");
        let d = prior.len();
        WeightAdapter {
            precision,
            stream,
            weights: prior.clone(),
            auc: vec![f64::NAN; d],
            prior,
            prior_positives,
            window,
            refresh_every,
            max_pending,
            pending: Pending::default(),
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
        let h = IdIndex::hash(event_id);
        let ev = match self.pending.find(h, event_id) {
            // an id remembered again keeps its place (Python's OrderedDict assignment)
            Some(s) => &mut self.pending.slots[s as usize].ev,
            None => {
                self.next += 1;
                self.pending.insert(h, event_id, self.next - 1, d)
            }
        };
        for (slot, &pv) in ev.iter_mut().zip(p) {
            *slot = (-pv.ln()) as f32;
        }
        self.pending.evict_to(self.max_pending);
        self.pending.compact();
    }

    /// A label arrived for `event_id`: whether this adapter had its evidence (then it is learned, and the weights
    /// may change).
    pub fn learn(&mut self, event_id: &str, y: bool) -> bool {
        let Some(vec) = self.pending.take(event_id) else {
            return false;
        };
        let c = y as usize;
        let d = self.prior.len();
        let at = (self.filled[c] % self.window as u64) as usize * d;
        self.rings[c][at..at + d].copy_from_slice(vec);
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
        let mut base = n_pos as f64 / (n_pos + n_neg) as f64;
        let (mut wp, mut wn) = (1.0, 1.0);
        if self.stream {
            // each class as many times as it has arrived, not as the windows hold it
            wp = self.filled[1] as f64 / n_pos as f64;
            wn = self.filled[0] as f64 / n_neg as f64;
            base = self.filled[1] as f64 / (self.filled[0] + self.filled[1]) as f64;
        }
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
                ((weighted_average_precision(&keys, n_pos, wp, wn) - base) / (1.0 - base)).max(0.0)
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
        let mut a = WeightAdapter::new(vec![1.0, 1.0], 2, 100, 10, 200_000, false, false);
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
    fn pending_reads_the_state_format_of_a_map_and_a_queue() {
        // the two fields this store replaced: a map id -> (number, vector), then the queue with a stale entry
        // (e1 learned) and e0 re-remembered in place
        let mut map: HashMap<String, (u64, Vec<f32>)> = HashMap::new();
        map.insert("e0".into(), (0, vec![1.5]));
        map.insert("e2".into(), (2, vec![2.5]));
        let queue: VecDeque<(u64, String)> = [(0, "e0"), (1, "e1"), (2, "e2")].iter().map(|&(n, id)| (n, id.to_owned())).collect();
        let bytes = bincode::serialize(&(&map, &queue)).unwrap();
        let p: Pending = bincode::deserialize(&bytes).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.slots[p.find(IdIndex::hash("e2"), "e2").unwrap() as usize].ev[..], [2.5]);
        assert!(p.find(IdIndex::hash("e1"), "e1").is_none());
        // written back: the same map and the queue without its stale entry
        let (m2, q2): (HashMap<String, (u64, Vec<f32>)>, VecDeque<(u64, String)>) =
            bincode::deserialize(&bincode::serialize(&p).unwrap()).unwrap();
        assert_eq!(m2, map);
        assert_eq!(q2, [(0, "e0".to_owned()), (2, "e2".to_owned())]);
        // a pending id missing from the queue is refused
        let bytes = bincode::serialize(&(&map, &VecDeque::<(u64, String)>::new())).unwrap();
        assert!(bincode::deserialize::<Pending>(&bytes).is_err());
    }

    #[test]
    fn a_restored_adapter_continues_as_the_uninterrupted_one() {
        let p = |i: u32| [0.5 / (1 + i % 7) as f64, 0.9 / (1 + i % 3) as f64];
        let mut a = WeightAdapter::new(vec![1.0, 1.0], 2, 50, 10, 40, true, true);
        let mut b: Option<WeightAdapter> = None;
        for i in 0..400u32 {
            for x in [&mut a].into_iter().chain(b.as_mut()) {
                x.remember(&format!("e{i}"), &p(i));
                if i >= 5 && i % 3 != 0 {
                    x.learn(&format!("e{}", i - 5), i % 4 == 0);
                }
            }
            if i == 150 {
                b = Some(bincode::deserialize(&bincode::serialize(&a).unwrap()).unwrap());
            }
        }
        let b = b.unwrap();
        assert_eq!(a.weights(), b.weights());
        assert_eq!(a.pending(), b.pending());
        assert_eq!(bincode::serialize(&a).unwrap(), bincode::serialize(&b).unwrap());
    }

    #[test]
    fn pending_is_bounded_and_drops_the_oldest_first() {
        let mut a = WeightAdapter::new(vec![1.0], 20, 10, 5, 3, false, false);
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
        assert!(a.pending.queue.len() <= 2 * a.pending() + 1025);
    }

    #[test]
    fn the_stream_weighted_precision_counts_each_class_at_its_weight() {
        // ranked 3 (+), 2 (-), 1 (+): unweighted precisions 1 and 2/3; with each negative counted 10 times the
        // second positive's precision is 2 / 12
        let mut keys: Vec<u64> = [(3u32, 1u64), (2, 0), (1, 1)].iter().map(|&(v, y)| (v as u64) << 1 | y).collect();
        keys.sort_unstable();
        assert_eq!(weighted_average_precision(&keys, 2, 1.0, 1.0), average_precision(&keys, 2));
        assert_eq!(weighted_average_precision(&keys, 2, 1.0, 10.0), (1.0 + 2.0 / 12.0) / 2.0);
    }

    #[test]
    fn a_state_written_before_the_stream_measure_loads_with_the_measure_of_then() {
        // detector 0 flags every fraud and one legitimate event in 7; detector 1 two frauds in 3 and one event in 9
        let row = |i: usize| -> [f64; 2] {
            let high = i % 4 == 0 || i % 7 == 1;
            let other = (i % 4 == 0 && i % 3 != 0) || i % 9 == 0;
            // tail probabilities p (the adapter keeps -ln p)
            let (e0, e1): (f64, f64) = (if high { 3.0 } else { 0.1 * (i % 3) as f64 }, if other { 2.0 } else { 0.5 });
            [(-e0).exp(), (-e1).exp()]
        };
        let mut a = WeightAdapter::new(vec![1.0, 1.0], 2, 20, 5, 100, true, false);
        for i in 0..200 {
            let y = i % 4 == 0;
            a.remember(&format!("e{i}"), &row(i));
            a.learn(&format!("e{i}"), y);
        }
        let mut bytes = bincode::serialize(&a).unwrap();
        assert_eq!(bytes.pop(), Some(0)); // the trailing `stream: false`: without it, the format of before
        let old: WeightAdapter = bincode::deserialize(&bytes).unwrap();
        assert!(!old.stream && old.precision && old.weights == a.weights);
        let mut s = WeightAdapter::new(vec![1.0, 1.0], 2, 20, 5, 100, true, true);
        let back: WeightAdapter = bincode::deserialize(&bincode::serialize(&s).unwrap()).unwrap();
        assert!(back.stream);
        // the windows (20 each) overflow, so counting the classes at their arrived shares moves the weights
        for i in 0..200 {
            let y = i % 4 == 0;
            s.remember(&format!("e{i}"), &row(i));
            s.learn(&format!("e{i}"), y);
        }
        assert_ne!(s.weights, a.weights);
    }
}
