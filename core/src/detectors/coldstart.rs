//! `detectors.coldstart.ColdStart`, event by event: per cold-start signal, the one-sided empirical tail
//! probability `p = (#{w at least as extreme as x} + 1) / (n + 1)` of the event's value among the last `window`
//! learned values of that signal (`low` signals: `w <= x`; `high` signals: `w >= x`; ties on the event's side),
//! against a sorted snapshot refreshed every `refresh_every` learned events; the score is `sum(-ln p)` over the
//! signals the event carries, summed in configuration order (the reference's expression, bit for bit).

use serde::{Deserialize, Serialize};

use super::{resolve, value};
use crate::event::Schema;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColdStart {
    pub window: usize,
    pub refresh_every: u64,
    pub min_count: u64,
    /// `low` signals first, then `high` ones (configuration order).
    names: Vec<String>,
    is_low: Vec<bool>,
    /// One ring of `window` values per signal; slot `fill % window` takes the next learned value.
    ring: Vec<Vec<f64>>,
    fill: Vec<u64>,
    learned: u64,
    /// The snapshot: per signal, its window sorted (`None`: fewer than `min_count` values at the last refresh).
    sorted: Vec<Option<Vec<f64>>>,
    #[serde(skip)]
    cols: Vec<Option<usize>>,
    #[serde(skip)]
    bound: usize,
}

impl ColdStart {
    pub fn new(low: Vec<String>, high: Vec<String>, window: usize, refresh_every: usize, min_count: usize) -> Self {
        assert!(window >= 1 && refresh_every >= 1 && refresh_every <= window && min_count >= 1);
        let mut names: Vec<String> = Vec::new();
        let mut is_low = Vec::new();
        for (list, low) in [(low, true), (high, false)] {
            for n in list {
                if !names.contains(&n) {
                    names.push(n);
                    is_low.push(low);
                }
            }
        }
        let k = names.len();
        ColdStart {
            window,
            refresh_every: refresh_every as u64,
            min_count: min_count as u64,
            names,
            is_low,
            ring: vec![vec![0.0; window]; k],
            fill: vec![0; k],
            learned: 0,
            sorted: vec![None; k],
            cols: Vec::new(),
            bound: usize::MAX,
        }
    }

    /// Rebuild the caches after a restore.
    pub fn rebuild(&mut self) {
        self.bound = usize::MAX;
    }

    fn bind(&mut self, schema: &Schema) {
        if self.bound != schema.len() {
            resolve(schema, &self.names, &mut self.cols);
            self.bound = schema.len();
        }
    }

    /// How many values of the snapshot of signal `f` are at least as extreme as `v`, and the snapshot's size.
    #[inline]
    fn count(&self, f: usize, v: f64) -> Option<(usize, usize)> {
        let s = self.sorted[f].as_ref()?;
        let n = s.len();
        // np.searchsorted(s, v, "right") / n - np.searchsorted(s, v, "left")
        let c = if self.is_low[f] { s.partition_point(|&w| w <= v) } else { n - s.partition_point(|&w| w < v) };
        Some((c, n))
    }

    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        self.bind(schema);
        let mut s = 0.0;
        for f in 0..self.names.len() {
            let v = value(row, self.cols[f]);
            if v.is_nan() {
                continue;
            }
            if let Some((c, n)) = self.count(f, v) {
                s += -((c + 1) as f64 / (n + 1) as f64).ln();
            }
        }
        s
    }

    /// `ColdStart.explain(x, top)` with what `describe` reads: the `top` signals by `-ln p` (those > 0), each as
    /// `(name, -ln p, count at least as extreme, window size, low tail)`.
    pub fn explain(&mut self, schema: &Schema, row: &[f64], top: usize) -> Vec<(String, f64, u64, u64, bool)> {
        self.bind(schema);
        let mut t = Vec::new();
        for f in 0..self.names.len() {
            let v = value(row, self.cols[f]);
            if v.is_nan() {
                continue;
            }
            if let Some((c, n)) = self.count(f, v) {
                let e = -((c + 1) as f64 / (n + 1) as f64).ln();
                t.push((self.names[f].clone(), e, c as u64, n as u64, self.is_low[f]));
            }
        }
        // sorted(key=-e): stable, ties keep the configuration order
        t.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        t.truncate(top);
        t.retain(|r| r.1 > 0.0);
        t
    }

    pub fn learn(&mut self, schema: &Schema, row: &[f64]) {
        self.bind(schema);
        let w = self.window as u64;
        for f in 0..self.names.len() {
            let v = value(row, self.cols[f]);
            if v.is_finite() {
                let slot = (self.fill[f] % w) as usize;
                self.ring[f][slot] = v;
                self.fill[f] += 1;
            }
        }
        self.learned += 1;
        if self.learned.is_multiple_of(self.refresh_every) {
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        for f in 0..self.names.len() {
            let n = self.fill[f];
            if n >= self.min_count {
                let k = (n as usize).min(self.window);
                let mut s = self.ring[f][..k].to_vec();
                s.sort_unstable_by(|a, b| a.total_cmp(b));
                self.sorted[f] = Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_and_shared_score_higher_and_ties_give_nothing() {
        let mut schema = Schema::default();
        let (a, b) = (schema.column("age"), schema.column("shared"));
        let mut det = ColdStart::new(vec!["age".into()], vec!["shared".into()], 100, 50, 10);
        for i in 0..100 {
            let mut row = vec![0.0; 2];
            row[a] = 10.0 + i as f64;
            row[b] = 1.0;
            det.learn(&schema, &row);
        }
        let mut row = vec![0.0; 2];
        row[a] = 1e9;
        row[b] = 1.0;
        assert_eq!(det.score(&schema, &row), 0.0); // the oldest, the usual sharing: p = 1 twice
        row[a] = 0.0;
        row[b] = 3.0;
        let s = det.score(&schema, &row);
        assert!((s - 2.0 * (101.0f64).ln()).abs() < 1e-12);
        assert_eq!(det.score(&schema, &[f64::NAN, f64::NAN]), 0.0);
        let ex = det.explain(&schema, &row, 3);
        assert_eq!(ex.len(), 2);
        assert_eq!((ex[0].0.as_str(), ex[0].2, ex[0].3, ex[0].4), ("age", 0, 100, true));
    }
}
