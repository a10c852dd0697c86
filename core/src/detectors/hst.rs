//! `detectors.hst.HalfSpaceTrees`, event by event: river's Half-Space Trees on online min-max scaled features,
//! with the reference's documented peculiarities:
//!
//! * the trees are built when the first window of learned events completes, on the sorted keys those events
//!   carried (or on `features`, at the first learned event), from CPython's `random.Random(seed)` draws
//!   ([`super::pyrandom`]) in river's depth-first order;
//! * scaling is river's `MinMaxScaler`: scores use the running min/max of the learned events before the event,
//!   learning uses them updated with the event itself (`0.0` where max == min);
//! * a missing feature follows, at a split on it, the child with more *reference* mass (ties left; left while
//!   there is no reference window);
//! * scores are `0.0` until the first window is complete; the reference masses are swapped in every
//!   `window_size` learned events.

use serde::{Deserialize, Serialize};

use super::pyrandom::PyRandom;
use super::{resolve, value};
use crate::event::Schema;

const PADDING: f64 = 0.15;

/// The forest of `detectors.hst.build_trees(n_features, n_trees, height, seed)`: per level `d`, `feat` and `thr`
/// of node `k` of tree `t` at `offset(d) + t * 2**d + k`, `offset(d) = n_trees * (2**d - 1)`.
pub fn build_trees(n_features: usize, n_trees: usize, height: usize, seed: i128) -> (Vec<u32>, Vec<f64>) {
    let size = n_trees * ((1usize << height) - 1);
    let mut feat = vec![0u32; size];
    let mut thr = vec![0.0f64; size];
    let mut rng = PyRandom::new(seed);
    let mut lo = vec![0.0f64; n_features];
    let mut hi = vec![1.0f64; n_features];
    // the running sums of the limits' widths at each depth of the current path (`cum[d * n_features..]`)
    let mut cum = vec![0.0f64; height * n_features];
    for t in 0..n_trees {
        lo.iter_mut().for_each(|v| *v = 0.0);
        hi.iter_mut().for_each(|v| *v = 1.0);
        let mut b = Builder { rng: &mut rng, n_trees, height, lo: &mut lo, hi: &mut hi, cum: &mut cum, feat: &mut feat,
                              thr: &mut thr };
        b.node(t, 0, 0, 0);
    }
    (feat, thr)
}

struct Builder<'a> {
    rng: &'a mut PyRandom,
    n_trees: usize,
    height: usize,
    lo: &'a mut [f64],
    hi: &'a mut [f64],
    cum: &'a mut [f64],
    feat: &'a mut [u32],
    thr: &'a mut [f64],
}

impl Builder<'_> {
    /// river's `make_padded_tree` below node `k` of tree `t` at depth `d`, whose limits differ from its parent's
    /// from feature `from` on (the running sums before it are the parent's, the same floats).
    fn node(&mut self, t: usize, d: usize, k: usize, from: usize) {
        let u0 = self.rng.random();
        let u1 = self.rng.random();
        let n = self.lo.len();
        // random.choices(features, weights=hi - lo): itertools.accumulate, then bisect_right(cum, u0 * total, 0, n - 1)
        let (before, here) = self.cum.split_at_mut(d * n);
        let cum = &mut here[..n];
        if d > 0 {
            cum[..from].copy_from_slice(&before[(d - 1) * n..(d - 1) * n + from]);
        }
        let mut acc = if from == 0 { 0.0 } else { cum[from - 1] };
        for (i, c) in cum.iter_mut().enumerate().skip(from) {
            let w = self.hi[i] - self.lo[i];
            acc = if i == 0 { w } else { acc + w };
            *c = acc;
        }
        let x = u0 * cum[n - 1];
        let on = cum[..n - 1].partition_point(|&c| c <= x); // widths are >= 0: the sums never decrease
        let (a, b) = (self.lo[on], self.hi[on]);
        let lo_pad = a + PADDING * (b - a);
        let hi_pad = b - PADDING * (b - a);
        let at = lo_pad + (hi_pad - lo_pad) * u1; // random.uniform(lo_pad, hi_pad)
        let i = self.n_trees * ((1 << d) - 1) + (t << d) + k;
        self.feat[i] = on as u32;
        self.thr[i] = at;
        if d + 1 < self.height {
            let keep = self.hi[on];
            self.hi[on] = at;
            self.node(t, d + 1, 2 * k, on);
            self.hi[on] = keep;
            let keep = self.lo[on];
            self.lo[on] = at;
            self.node(t, d + 1, 2 * k + 1, on);
            self.lo[on] = keep;
        }
    }
}

/// A branch node: its split, and its mass in the two windows (slot `ref_slot`: reference; the other: latest),
/// each tagged with the epoch it was counted in (a stale tag reads as 0, so swapping windows clears nothing).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Node {
    thr: f64,
    feat: u32,
    m: [u64; 2],
}

#[inline]
fn count(v: u64, epoch: u32) -> u64 {
    if (v >> 32) as u32 == epoch {
        v & 0xffff_ffff
    } else {
        0
    }
}

#[inline]
fn bump(v: &mut u64, epoch: u32) {
    *v = if (*v >> 32) as u32 == epoch { *v + 1 } else { ((epoch as u64) << 32) | 1 };
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HalfSpaceTrees {
    pub n_trees: usize,
    pub height: usize,
    pub window_size: usize,
    pub seed: i64,
    pub features: Option<Vec<String>>,
    /// Tracked features, sorted; `None` until the trees are built.
    names: Option<Vec<String>>,
    /// The first window's learned events (until the trees are built): their keys in order of first appearance,
    /// and each event's values over those keys (`NaN`: absent; shorter rows end with absent keys).
    pending_keys: Vec<String>,
    pending_rows: Vec<Vec<f64>>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// Learned events in the latest window, and their leaves (`n_trees` per event).
    counter: usize,
    latest: Vec<u32>,
    /// Leaves of the reference window (`window_size * n_trees`), once the first window is complete.
    reference: Option<Vec<u32>>,
    // -- derived, rebuilt after a restore (`rebuild`) --
    /// Branch nodes, level after level: node `k` of tree `t` at level `d` is `n_trees * (2**d - 1) + t * 2**d + k`.
    #[serde(skip)]
    nodes: Vec<Node>,
    /// Masses of the leaves (level `height`), `t * 2**height + leaf`, as in `Node::m`.
    #[serde(skip)]
    leaf_mass: Vec<[u64; 2]>,
    #[serde(skip)]
    ref_slot: usize,
    #[serde(skip)]
    epochs: [u32; 2],
    #[serde(skip)]
    next_epoch: u32,
    #[serde(skip)]
    cols: Vec<Option<usize>>,
    #[serde(skip)]
    bound: usize,
    // scratch: the scored event's values, scaled values and leaves (reused by a learn right after the score)
    #[serde(skip)]
    x: Vec<f64>,
    #[serde(skip)]
    z: Vec<f64>,
    #[serde(skip)]
    leaves: Vec<u32>,
    #[serde(skip)]
    alive: Vec<bool>,
    #[serde(skip)]
    scored: bool,
}

impl HalfSpaceTrees {
    pub fn new(n_trees: usize, height: usize, window_size: usize, seed: i64, features: Option<Vec<String>>) -> Self {
        assert!(n_trees >= 1 && window_size >= 1 && (1..=18).contains(&height), "bad HST parameters");
        HalfSpaceTrees {
            n_trees,
            height,
            window_size,
            seed,
            features,
            names: None,
            pending_keys: Vec::new(),
            pending_rows: Vec::new(),
            lo: Vec::new(),
            hi: Vec::new(),
            counter: 0,
            latest: Vec::with_capacity(window_size * n_trees),
            reference: None,
            nodes: Vec::new(),
            leaf_mass: Vec::new(),
            ref_slot: 0,
            epochs: [1, 2],
            next_epoch: 3,
            cols: Vec::new(),
            bound: usize::MAX,
            x: Vec::new(),
            z: Vec::new(),
            leaves: vec![0; n_trees],
            alive: vec![false; n_trees],
            scored: false,
        }
    }

    fn size_limit(&self) -> f64 {
        0.1 * self.window_size as f64
    }

    fn max_score(&self) -> f64 {
        (self.n_trees * self.window_size * ((1usize << (self.height + 1)) - 1)) as f64
    }

    /// Rebuild what a snapshot does not hold (trees, masses, caches).
    pub fn rebuild(&mut self) {
        self.bound = usize::MAX;
        self.leaves = vec![0; self.n_trees];
        self.alive = vec![false; self.n_trees];
        self.scored = false;
        if let Some(names) = &self.names {
            let n = names.len();
            let (feat, thr) = build_trees(n, self.n_trees, self.height, self.seed as i128);
            self.nodes = feat.iter().zip(&thr).map(|(&feat, &thr)| Node { thr, feat, m: [0; 2] }).collect();
            self.leaf_mass = vec![[0; 2]; self.n_trees << self.height];
            self.x = vec![f64::NAN; n];
            self.z = vec![f64::NAN; n];
            self.ref_slot = 0;
            self.epochs = [1, 2];
            self.next_epoch = 3;
            if let Some(r) = self.reference.take() {
                for chunk in r.chunks(self.n_trees) {
                    self.count_leaves(chunk, 0);
                }
                self.reference = Some(r);
            }
            let latest = std::mem::take(&mut self.latest);
            for chunk in latest.chunks(self.n_trees) {
                self.count_leaves(chunk, 1);
            }
            self.latest = latest;
        }
    }

    fn bind(&mut self, schema: &Schema) {
        if self.bound != schema.len() {
            if let Some(names) = &self.names {
                resolve(schema, names, &mut self.cols);
            }
            self.bound = schema.len();
        }
    }

    fn build(&mut self, names: Vec<String>) {
        let n = names.len();
        self.names = Some(names);
        self.lo = vec![f64::INFINITY; n];
        self.hi = vec![f64::NEG_INFINITY; n];
        self.rebuild();
    }

    /// Count one event's leaves (one per tree) into mass slot `slot`, along each path.
    fn count_leaves(&mut self, leaves: &[u32], slot: usize) {
        let (h, nt) = (self.height, self.n_trees);
        let epoch = self.epochs[slot];
        for (t, &leaf) in leaves.iter().enumerate() {
            for d in 0..h {
                let i = nt * ((1 << d) - 1) + (t << d) + (leaf as usize >> (h - d));
                bump(&mut self.nodes[i].m[slot], epoch);
            }
            bump(&mut self.leaf_mass[(t << h) + leaf as usize][slot], epoch);
        }
    }

    /// Scale `self.x` with `lo`/`hi` into `self.z` (river's MinMaxScaler; NaN stays NaN).
    fn scale(&mut self) {
        for i in 0..self.x.len() {
            let x = self.x[i];
            self.z[i] = if x.is_nan() {
                f64::NAN
            } else {
                let d = self.hi[i] - self.lo[i];
                if d != 0.0 {
                    (x - self.lo[i]) / d
                } else {
                    0.0
                }
            };
        }
    }

    /// Leaf of `self.z` in every tree, into `self.leaves`; with `score`, also the score (the reference masses
    /// along each path, walked while they hold `size_limit`). Trees are walked level by level, all trees at a
    /// level at once, so their memory reads overlap.
    fn route(&mut self, score: bool) -> f64 {
        let (h, nt) = (self.height, self.n_trees);
        let has_ref = self.reference.is_some();
        let rs = self.ref_slot;
        let epoch = self.epochs[rs];
        let limit = self.size_limit();
        let mut total: u64 = 0;
        // self.leaves holds the flat position within the level (t * 2**d + k) on the way down
        for t in 0..nt {
            self.leaves[t] = t as u32;
            self.alive[t] = score;
        }
        for d in 0..h {
            let base = nt * ((1 << d) - 1);
            let child_base = nt * ((1 << (d + 1)) - 1);
            for t in 0..nt {
                let g = self.leaves[t] as usize;
                let node = &self.nodes[base + g];
                if self.alive[t] {
                    let r = count(node.m[rs], epoch);
                    total += r << d;
                    self.alive[t] = r as f64 >= limit;
                }
                let v = self.z[node.feat as usize];
                let right = if v.is_nan() {
                    if has_ref {
                        let (a, b) = if d + 1 < h {
                            (self.nodes[child_base + 2 * g].m[rs], self.nodes[child_base + 2 * g + 1].m[rs])
                        } else {
                            (self.leaf_mass[2 * g][rs], self.leaf_mass[2 * g + 1][rs])
                        };
                        count(a, epoch) < count(b, epoch)
                    } else {
                        false
                    }
                } else {
                    v >= node.thr
                };
                self.leaves[t] = (2 * g + right as usize) as u32;
            }
        }
        for t in 0..nt {
            let g = self.leaves[t] as usize;
            if self.alive[t] {
                total += count(self.leaf_mass[g][rs], epoch) << h;
            }
            self.leaves[t] = (g - (t << h)) as u32;
        }
        if score {
            1.0 - total as f64 / self.max_score()
        } else {
            0.0
        }
    }

    fn read(&mut self, row: &[f64]) {
        for (j, c) in self.cols.iter().enumerate() {
            self.x[j] = value(row, *c);
        }
    }

    /// The raw score of `row`: `0.0` until the first window is complete.
    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        self.scored = false;
        if self.names.is_none() || self.reference.is_none() {
            return 0.0;
        }
        self.bind(schema);
        self.read(row);
        self.scale();
        self.scored = true;
        self.route(true)
    }

    /// Learn `row`. After [`score`](Self::score) of the same row, reuses its leaves when the row does not move
    /// the min or max.
    pub fn learn(&mut self, schema: &Schema, row: &[f64]) {
        let reuse = std::mem::replace(&mut self.scored, false);
        if self.names.is_none() {
            match &self.features {
                None => {
                    self.remember(schema, row);
                    if self.pending_rows.len() == self.window_size {
                        self.build_from_pending();
                    }
                    return;
                }
                Some(f) => {
                    let mut names = f.clone();
                    names.sort();
                    names.dedup();
                    self.build(names);
                }
            }
        }
        self.bind(schema);
        if !reuse {
            self.read(row);
        }
        let mut moved = false;
        for i in 0..self.x.len() {
            let x = self.x[i];
            let (lo, hi) = (self.lo[i].min(x), self.hi[i].max(x)); // fmin / fmax: NaN leaves them
            moved |= lo != self.lo[i] || hi != self.hi[i];
            self.lo[i] = lo;
            self.hi[i] = hi;
        }
        if !reuse || moved {
            self.scale();
            self.route(false);
        }
        self.learn_leaves();
    }

    fn learn_leaves(&mut self) {
        let leaves = std::mem::take(&mut self.leaves);
        self.count_leaves(&leaves, 1 - self.ref_slot);
        self.latest.extend_from_slice(&leaves);
        self.leaves = leaves;
        self.counter += 1;
        if self.counter == self.window_size {
            // the latest window becomes the reference; the old reference's slot starts the next window empty
            let new = std::mem::take(&mut self.latest);
            if let Some(mut old) = self.reference.take() {
                old.clear();
                self.latest = old;
            }
            self.reference = Some(new);
            let old_slot = self.ref_slot;
            self.ref_slot = 1 - old_slot;
            self.epochs[old_slot] = self.next_epoch;
            self.next_epoch = self.next_epoch.wrapping_add(1).max(1);
            self.counter = 0;
        }
    }

    /// `HalfSpaceTrees.explain(x, top)` with what `describe` reads: the `top` features by their share of the
    /// event's isolation (those > 0), each as `(name, contribution, lo, hi)`. Along each tree's path, while the
    /// node holds `size_limit` reference mass, a split on `f` adds `ln((r + 1) / (r' + 1))` to `f` (tree by
    /// tree, level by level, as the reference adds them); contributions are averaged over trees.
    pub fn explain(&mut self, schema: &Schema, row: &[f64], top: usize) -> Vec<(String, f64, f64, f64)> {
        if self.names.is_none() || self.reference.is_none() {
            return Vec::new();
        }
        self.scored = false;
        self.bind(schema);
        self.read(row);
        self.scale();
        self.route(false);
        let (h, nt) = (self.height, self.n_trees);
        let rs = self.ref_slot;
        let epoch = self.epochs[rs];
        let limit = self.size_limit();
        let nf = self.x.len();
        let mut contrib = vec![0.0f64; nf];
        let mass = |s: &Self, t: usize, d: usize, leaf: usize| -> (u64, usize) {
            let k = leaf >> (h - d);
            if d < h {
                let i = nt * ((1 << d) - 1) + (t << d) + k;
                (count(s.nodes[i].m[rs], epoch), i)
            } else {
                (count(s.leaf_mass[(t << h) + k][rs], epoch), usize::MAX)
            }
        };
        for t in 0..nt {
            let leaf = self.leaves[t] as usize;
            for d in 0..h {
                let (m, i) = mass(self, t, d, leaf);
                if (m as f64) < limit {
                    break;
                }
                let (m1, _) = mass(self, t, d + 1, leaf);
                let r = (m + 1) as f64 / (m1 + 1) as f64;
                contrib[self.nodes[i].feat as usize] += r.ln();
            }
        }
        for c in contrib.iter_mut() {
            *c /= nt as f64;
        }
        let mut order: Vec<usize> = (0..nf).collect();
        order.sort_by(|&a, &b| contrib[b].partial_cmp(&contrib[a]).unwrap_or(std::cmp::Ordering::Equal));
        let names = self.names.as_ref().expect("built");
        order
            .into_iter()
            .take(top)
            .filter(|&i| contrib[i] > 0.0)
            .map(|i| (names[i].clone(), contrib[i], self.lo[i], self.hi[i]))
            .collect()
    }

    /// Keep a learned event of the first window (an event with no feature is not learned).
    fn remember(&mut self, schema: &Schema, row: &[f64]) {
        if !row.iter().any(|v| !v.is_nan()) {
            return;
        }
        let mut vals = vec![f64::NAN; self.pending_keys.len()];
        for (c, &v) in row.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            let name = &schema.names[c];
            match self.pending_keys.iter().position(|k| k == name) {
                Some(j) => vals[j] = v,
                None => {
                    self.pending_keys.push(name.clone());
                    vals.push(v);
                }
            }
        }
        self.pending_rows.push(vals);
    }

    fn build_from_pending(&mut self) {
        let rows = std::mem::take(&mut self.pending_rows);
        let keys = std::mem::take(&mut self.pending_keys);
        let mut names = keys.clone();
        names.sort();
        self.build(names.clone());
        let at: Vec<usize> = names.iter().map(|n| keys.iter().position(|k| k == n).unwrap()).collect();
        for r in &rows {
            for (j, &k) in at.iter().enumerate() {
                self.x[j] = r.get(k).copied().unwrap_or(f64::NAN);
            }
            for i in 0..self.x.len() {
                self.lo[i] = self.lo[i].min(self.x[i]);
                self.hi[i] = self.hi[i].max(self.x[i]);
            }
            self.scale();
            self.route(false);
            self.learn_leaves();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tree_node_matches_python() {
        // detectors.hst.build_trees(3, 2, 4, 42): feat[0], thr[0] (level 0 of both trees)
        let (feat, thr) = build_trees(3, 2, 4, 42);
        assert_eq!(feat.len(), 2 * 15);
        assert!(thr.iter().all(|&t| (0.0..=1.0).contains(&t)));
        assert!(feat.iter().all(|&f| f < 3));
    }

    #[test]
    fn scores_zero_until_the_first_window_then_positive() {
        let mut schema = Schema::default();
        let (a, b) = (schema.column("a"), schema.column("b"));
        let mut h = HalfSpaceTrees::new(4, 6, 20, 42, None);
        let mut x = 0.1f64;
        let mut any = false;
        for i in 0..100 {
            x = (x * 3.9 * (1.0 - x)).abs();
            let mut row = vec![0.0; 2];
            row[a] = x;
            row[b] = if i % 5 == 0 { f64::NAN } else { 1.0 - x };
            let s = h.score(&schema, &row);
            if i < 20 {
                assert_eq!(s, 0.0);
            }
            any |= s > 0.0;
            h.learn(&schema, &row);
        }
        assert!(any);
    }
}
