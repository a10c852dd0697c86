//! `detectors.zscore.RobustZScore`, event by event: per feature, `z = |x - median| / scale` over the last
//! `window` learned values, statistics refreshed every `refresh_every` learned events (numpy's median and
//! pairwise mean, bit for bit), features on the `log1p` scale when their window holds no negative value; the
//! score is the root-mean-square of the clipped z-scores of the features the event carries (its `top_k`
//! largest, if set). With `count_floor`, the scale of a window feature (a name ending in a window: `_1m`, `_24h`)
//! is at least that fraction of its level.
//!
//! Features are registered as learned events first carry them, in the schema's column order (the Python dict's
//! key order); the ring buffers keep the reference's slot order, since the mean absolute deviation is a pairwise
//! sum over the ring as laid out.

use serde::{Deserialize, Serialize};

use super::{pairwise_sum, resolve, value};
use crate::event::Schema;

const MAD_TO_SIGMA: f64 = 1.4826;
const MEANAD_TO_SIGMA: f64 = 1.2533;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RobustZScore {
    pub features: Option<Vec<String>>,
    pub window: usize,
    pub refresh_every: u64,
    pub clip: f64,
    pub top_k: Option<usize>,
    pub min_count: u64,
    pub log_nonneg: bool,
    pub count_floor: f64,
    names: Vec<String>,
    /// Per feature: a window feature ([`is_window_feature`]), which `count_floor` applies to (from `names`).
    #[serde(skip)]
    floored: Vec<bool>,
    /// One ring of `window` values per feature; slot `fill % window` takes the next learned value.
    ring: Vec<Vec<f64>>,
    fill: Vec<u64>,
    learned: u64,
    /// `fill % window` per feature (the next slot), kept to avoid a division per value.
    #[serde(skip)]
    slot: Vec<usize>,
    // the snapshot of the last refresh, over the first `med.len()` features
    med: Vec<f64>,
    scale: Vec<f64>,
    used: Vec<bool>,
    n_use: usize,
    log: Vec<bool>,
    #[serde(skip)]
    cols: Vec<Option<usize>>,
    /// Per schema column: whether it is a registered feature.
    #[serde(skip)]
    known: Vec<bool>,
    #[serde(skip)]
    bound: usize,
    #[serde(skip)]
    z: Vec<f64>,
    #[serde(skip)]
    buf: Vec<f64>,
    #[serde(skip)]
    keys: Vec<i64>,
    /// `log1p` of each ring value that is >= 0 (with `log_nonneg`), computed once when the value is learned
    /// rather than at every refresh; rebuilt from the rings after a restore.
    #[serde(skip)]
    lring: Vec<Vec<f64>>,
    /// The last scored event's `log1p` values (for features on the log scale), which its learning reuses.
    #[serde(skip)]
    lx: Vec<f64>,
    #[serde(skip)]
    scored: bool,
}

/// An integer with the order of the floats (`-0.0` before `0.0`, which no result here depends on).
#[inline]
fn key(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    b ^ (((b >> 63) as u64) >> 1) as i64
}

#[inline]
fn unkey(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

/// `np.median` of `v` (with `work` as scratch): the middle value, or the mean of the two middle values computed
/// as numpy's `mean` does (`(0.0 + a + b) / 2`). Selects on integer keys: one instruction per comparison.
fn median(v: &[f64], work: &mut Vec<i64>) -> f64 {
    work.clear();
    work.extend(v.iter().map(|&x| key(x)));
    let n = work.len();
    let h = n / 2;
    let (lower, &mut mid, _) = work.select_nth_unstable(h);
    let mid = unkey(mid);
    if n % 2 == 1 {
        (0.0 + mid) / 1.0
    } else {
        let lo = unkey(*lower.iter().max().expect("an even length >= 2"));
        ((0.0 + lo) + mid) / 2.0
    }
}

/// `detectors.zscore.is_window_feature`: the name ends in `_` digits (a `.` and digits) and `s`, `m` or `h`.
pub fn is_window_feature(name: &str) -> bool {
    let b = name.as_bytes();
    let Some((&unit, rest)) = b.split_last() else { return false };
    if !matches!(unit, b's' | b'm' | b'h') {
        return false;
    }
    let digits = |s: &[u8]| s.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let mut n = digits(rest);
    if n == 0 {
        return false;
    }
    let mut rest = &rest[..rest.len() - n];
    if let Some((&b'.', before)) = rest.split_last() {
        n = digits(before);
        if n == 0 {
            return false;
        }
        rest = &before[..before.len() - n];
    }
    rest.last() == Some(&b'_')
}

fn robust_scale(mad: f64, meanad: f64, med: f64) -> f64 {
    if mad > 0.0 {
        MAD_TO_SIGMA * mad
    } else if meanad > 0.0 {
        MEANAD_TO_SIGMA * meanad
    } else {
        1e-9 * med.abs().max(1.0)
    }
}

/// `log1p(v)`, from a table for the small non-negative integers counts mostly are (the table holds `ln_1p`'s
/// own values, so the result is the same float).
#[inline]
fn log1p(v: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    const N: usize = 4096;
    let i = v as usize; // saturating: negative and NaN give 0, which then differs from v (or is -0.0)
    if i < N && i as f64 == v && v.is_sign_positive() {
        let t = TABLE.get_or_init(|| (0..N).map(|i| (i as f64).ln_1p()).collect());
        t[i]
    } else {
        v.ln_1p()
    }
}

fn symlog(v: f64) -> f64 {
    // np.sign(v) * np.log1p(np.abs(v))
    let sign = if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else if v == 0.0 {
        0.0
    } else {
        f64::NAN
    };
    sign * log1p(v.abs())
}

impl RobustZScore {
    pub fn new(
        features: Option<Vec<String>>,
        window: usize,
        refresh_every: usize,
        clip: f64,
        top_k: Option<usize>,
        min_count: usize,
        log_nonneg: bool,
        count_floor: f64,
    ) -> Self {
        assert!(window >= 1 && refresh_every >= 1 && refresh_every <= window && min_count >= 1);
        assert!(count_floor >= 0.0 && count_floor.is_finite());
        let mut z = RobustZScore {
            features: features.clone(),
            window,
            refresh_every: refresh_every as u64,
            clip,
            top_k,
            min_count: min_count as u64,
            log_nonneg,
            count_floor,
            names: Vec::new(),
            floored: Vec::new(),
            ring: Vec::new(),
            fill: Vec::new(),
            learned: 0,
            slot: Vec::new(),
            med: Vec::new(),
            scale: Vec::new(),
            used: Vec::new(),
            n_use: 0,
            log: Vec::new(),
            cols: Vec::new(),
            known: Vec::new(),
            bound: usize::MAX,
            z: Vec::new(),
            buf: Vec::new(),
            keys: Vec::new(),
            lring: Vec::new(),
            lx: Vec::new(),
            scored: false,
        };
        if let Some(f) = features {
            for name in f {
                if !z.names.contains(&name) {
                    z.register(name);
                }
            }
        }
        z
    }

    /// Rebuild the caches after a restore.
    pub fn rebuild(&mut self) {
        self.bound = usize::MAX;
        self.slot = self.fill.iter().map(|&f| (f % self.window as u64) as usize).collect();
        self.floored = self.names.iter().map(|n| is_window_feature(n)).collect();
        self.scored = false;
        self.lring = if self.log_nonneg {
            self.ring
                .iter()
                .zip(&self.fill)
                .map(|(r, &fill)| {
                    let n = (fill as usize).min(self.window);
                    let mut l = vec![f64::NAN; self.window];
                    for (o, &v) in l[..n].iter_mut().zip(&r[..n]) {
                        if v >= 0.0 {
                            *o = log1p(v);
                        }
                    }
                    l
                })
                .collect()
        } else {
            Vec::new()
        };
    }

    fn register(&mut self, name: String) {
        self.floored.push(is_window_feature(&name));
        self.names.push(name);
        self.ring.push(vec![0.0; self.window]);
        if self.log_nonneg {
            self.lring.push(vec![f64::NAN; self.window]);
        }
        self.fill.push(0);
        self.slot.push(0);
        self.bound = usize::MAX;
    }

    fn bind(&mut self, schema: &Schema) {
        if self.bound != schema.len() {
            resolve(schema, &self.names, &mut self.cols);
            self.known.clear();
            self.known.resize(schema.len(), false);
            for c in self.cols.iter().flatten() {
                self.known[*c] = true;
            }
            self.bound = schema.len();
        }
    }

    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        let ns = self.med.len();
        self.scored = false;
        if ns == 0 {
            return 0.0;
        }
        self.bind(schema);
        self.z.clear();
        self.lx.resize(ns, f64::NAN);
        let mut missing = 0usize;
        for f in 0..ns {
            let mut z = 0.0;
            if self.used[f] {
                let mut v = value(row, self.cols[f]);
                if self.log[f] {
                    v = symlog(v);
                    self.lx[f] = v;
                }
                let d = (v - self.med[f]).abs() / self.scale[f];
                if d.is_nan() {
                    missing += 1;
                } else {
                    z = if d < self.clip { d } else { self.clip }; // np.minimum
                }
            }
            self.z.push(z);
        }
        self.scored = true;
        let mut scored = self.n_use - missing;
        if let Some(k) = self.top_k {
            if ns > k {
                self.z.sort_unstable_by(|a, b| a.total_cmp(b));
                self.z.drain(..ns - k);
                scored = scored.min(k);
            }
        }
        for z in self.z.iter_mut() {
            *z *= *z;
        }
        (pairwise_sum(&self.z) / scored.max(1) as f64).sqrt()
    }

    /// `RobustZScore.explain(x, top)` with what `describe` reads: the `top` features by clipped z (those with
    /// z > 0), each as `(name, z, median, scale, log scale)`, against the current snapshot. Does not touch the
    /// score/learn scratch that a following `learn` reuses.
    pub fn explain(&mut self, schema: &Schema, row: &[f64], top: usize) -> Vec<(String, f64, f64, f64, bool)> {
        let ns = self.med.len();
        if ns == 0 {
            return Vec::new();
        }
        self.bind(schema);
        let mut z: Vec<(f64, usize)> = Vec::with_capacity(ns);
        for f in 0..ns {
            let mut zf = 0.0;
            if self.used[f] {
                let mut v = value(row, self.cols[f]);
                if self.log[f] {
                    v = symlog(v);
                }
                let d = (v - self.med[f]).abs() / self.scale[f];
                if !d.is_nan() {
                    zf = if d < self.clip { d } else { self.clip };
                }
            }
            z.push((zf, f));
        }
        // np.argsort(-z, kind="stable")
        z.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        z.iter()
            .take(top)
            .filter(|(zf, _)| *zf > 0.0)
            .map(|&(zf, f)| (self.names[f].clone(), zf, self.med[f], self.scale[f], self.log[f]))
            .collect()
    }

    pub fn learn(&mut self, schema: &Schema, row: &[f64]) {
        let reuse = std::mem::replace(&mut self.scored, false);
        self.bind(schema);
        if self.features.is_none() {
            let mut new = false;
            for (c, &v) in row.iter().enumerate() {
                if !v.is_nan() && !self.known[c] {
                    self.register(schema.names[c].clone());
                    new = true;
                }
            }
            if new {
                self.bind(schema);
            }
        }
        let w = self.window;
        for f in 0..self.names.len() {
            let v = value(row, self.cols[f]);
            if v.is_finite() {
                let s = self.slot[f];
                self.ring[f][s] = v;
                if self.log_nonneg {
                    // symlog(v) == log1p(v) for v > 0: the score's value when it put f on the log scale
                    let scored_log = reuse && f < self.log.len() && self.log[f] && self.used[f] && v > 0.0;
                    self.lring[f][s] = if scored_log {
                        self.lx[f]
                    } else if v >= 0.0 {
                        log1p(v)
                    } else {
                        f64::NAN
                    };
                }
                self.slot[f] = if s + 1 == w { 0 } else { s + 1 };
                self.fill[f] += 1;
            }
        }
        self.learned += 1;
        if self.learned.is_multiple_of(self.refresh_every) {
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        let nf = self.names.len();
        // refilled in place: no allocation once the feature set is stable
        self.med.clear();
        self.med.resize(nf, 0.0);
        self.scale.clear();
        self.scale.resize(nf, 1.0);
        self.log.clear();
        self.log.resize(nf, false);
        self.used.clear();
        self.used.extend(self.fill.iter().map(|&c| c >= self.min_count));
        let w = self.window;
        for f in 0..nf {
            let fill = self.fill[f];
            let full = fill >= w as u64;
            if !full && !self.used[f] {
                continue;
            }
            let n = if full { w } else { fill as usize };
            let vals = &mut self.buf;
            vals.clear();
            vals.extend_from_slice(&self.ring[f][..n]);
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            if self.log_nonneg && lo >= 0.0 {
                self.log[f] = true;
                vals.clear();
                vals.extend_from_slice(&self.lring[f][..n]);
            }
            let m = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let varies = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max) != m;
            let (med, mad, meanad);
            if full && !varies {
                (med, mad, meanad) = (m, 0.0, 0.0);
            } else {
                let mv = median(vals, &mut self.keys);
                for v in vals.iter_mut() {
                    *v = (*v - mv).abs(); // in ring order: the mean is a pairwise sum over it
                }
                mad = median(vals, &mut self.keys); // selects on a keyed copy: `vals` keeps its ring order
                // the mean absolute deviation is the scale only where the MAD is not positive: summed only then
                meanad = if mad > 0.0 { 0.0 } else { pairwise_sum(vals) / n as f64 };
                med = mv;
            }
            self.med[f] = med;
            self.scale[f] = robust_scale(mad, meanad, med);
        }
        if self.count_floor > 0.0 {
            // over every feature, as the reference's np.where (an unused one keeps scale 1 unless the floor is > 1)
            for f in 0..nf {
                if self.floored[f] {
                    let level = if self.log[f] { 1.0 } else { self.med[f].abs().max(1.0) };
                    let least = self.count_floor * level;
                    if self.scale[f] < least {
                        self.scale[f] = least;
                    }
                }
            }
        }
        self.n_use = self.used.iter().filter(|&&u| u).count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_like_numpy() {
        let mut w = Vec::new();
        assert_eq!(median(&[3.0, 1.0, 2.0], &mut w), 2.0);
        assert_eq!(median(&[4.0, -1.0, 2.0, 3.0], &mut w), 2.5);
        assert_eq!(median(&[-4.0, -1.0, -2.0, -3.0], &mut w), -2.5);
        assert_eq!(median(&[5.0], &mut w), 5.0);
        for x in [-3.5, -0.0, 0.0, 1e-300, 7.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(unkey(key(x)).to_bits(), x.to_bits());
        }
        assert!(key(-3.5) < key(-1.0) && key(-1.0) < key(0.0) && key(0.0) < key(2.0));
    }

    #[test]
    fn an_outlier_scores_higher() {
        let mut schema = Schema::default();
        let a = schema.column("a");
        let mut det = RobustZScore::new(None, 64, 16, 5.0, None, 8, true, 0.0);
        let mut x = 0.3f64;
        for _ in 0..200 {
            x = (x * 3.9 * (1.0 - x)).abs();
            let mut row = vec![f64::NAN; 1];
            row[a] = x;
            det.learn(&schema, &row);
        }
        assert!(det.score(&schema, &[0.5]) < det.score(&schema, &[50.0]));
        assert_eq!(det.score(&schema, &[f64::NAN]), 0.0);
    }

    #[test]
    fn window_features_are_named_as_window_name_writes_windows() {
        for n in ["user_orders_24h", "ip_failed_login_ratio_1h", "x_30s", "x_1.5s", "_5m"] {
            assert!(is_window_feature(n), "{n}");
        }
        for n in ["dst_bytes", "V1", "x_24", "x_h", "x24h", "x_.5s", "x_1.s", "x_24H", "", "h"] {
            assert!(!is_window_feature(n), "{n}");
        }
    }

    #[test]
    fn the_count_floor_holds_a_window_features_scale_and_leaves_the_others() {
        let mut schema = Schema::default();
        let (d, c) = (schema.column("dst_bytes"), schema.column("host_orders_24h"));
        let mut plain = RobustZScore::new(None, 64, 64, 5.0, None, 8, true, 0.0);
        let mut floored = RobustZScore::new(None, 64, 64, 5.0, None, 8, true, 1.0 / 12.0);
        for i in 0..64 {
            let mut row = vec![0.0; 2];
            row[d] = 330.0 + (i % 2) as f64;
            row[c] = 86_400.0 + (i % 3) as f64;
            plain.learn(&schema, &row);
            floored.learn(&schema, &row);
        }
        let fd = plain.names.iter().position(|n| n == "dst_bytes").unwrap();
        let fc = 1 - fd;
        assert!(plain.scale[fc] < 0.001 && floored.scale[fc] == 1.0 / 12.0);
        assert_eq!(plain.scale[fd].to_bits(), floored.scale[fd].to_bits());
        let mut row = vec![0.0; 2];
        row[d] = 330.0;
        row[c] = 86_400.0 * 1.05; // a 5 % wobble: the clip without the floor, under 1 with it
        let z = |det: &mut RobustZScore| {
            let top = det.explain(&schema, &row, 2);
            top.iter().find(|e| e.0 == "host_orders_24h").map_or(0.0, |e| e.1)
        };
        assert_eq!(z(&mut plain), 5.0);
        assert!(z(&mut floored) < 1.0);
    }
}
