//! `detectors.supervised.Supervised(model="logreg")`: P(fraud) from river's
//! `RandomUnderSampler(StandardScaler | LogisticRegression(SGD(lr)), desired_dist={0: 1 - s, 1: s}, seed)`,
//! trained on delayed labels only, as the Python reference computes it (river 0.26):
//!
//! ```text
//! x       = the features it reads: `features` (names, or "a/b" ratios, 0 where b is 0), else every feature of
//!           the event; absent or non-finite -> 0, clipped to +-1e9
//! score   = 0 until `warmup` labels of each class arrived; then sigmoid(w . z + b), z = (x - mean) / sqrt(var)
//!           (0 where var is 0), sigmoid 0 below -30 and 1 above 30
//! label y = the under-sampler decides (its pivot class always trains; another class with probability
//!           f[y] / (f[pivot] / g[pivot] * g[y]), one `random()` of CPython's MT19937 each time that is < 1);
//!           training moves the scaler's running mean and variance (Welford), then one SGD step of the log
//!           loss on the scaled row: b -= 0.01 g, w_k -= lr (z_k g), with g = dloss/draw clipped to +-1e12
//! ```
//!
//! The model never learns from an unlabelled event (`Detector::learns` is false), and its score is a probability:
//! under `risk = "evidence"` its `p` is `1 - P`. Keys are feature names; the state does not depend on column
//! numbers. The other models of the Python detector (forest, boosting, mlp) are not compiled.

use serde::{Deserialize, Serialize};

use super::pyrandom::PyRandom;
use super::value;
use crate::event::Schema;

const CLIP: f64 = 1e9;
const CLIP_GRADIENT: f64 = 1e12;
const INTERCEPT_LR: f64 = 0.01;
const NO_KEY: u32 = u32::MAX;

/// One input of an explicit `features` list: a feature, or the ratio `num / den` (named `"num/den"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Input {
    Feature,
    Ratio(String, String),
}

/// river's `RandomUnderSampler` decision, with CPython's `random.Random(seed)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sampler {
    desired: [f64; 2],
    actual: [u64; 2],
    /// classes in the order first seen (the order of river's `Counter`, which `max` walks)
    seen: Vec<u8>,
    pivot: Option<u8>,
    /// boxed: 2.5 KB of generator state would make every detector variant that large
    rng: Box<PyRandom>,
}

impl Sampler {
    fn train(&mut self, y: u8) -> bool {
        let yi = y as usize;
        self.actual[yi] += 1;
        if !self.seen.contains(&y) {
            self.seen.push(y);
        }
        if self.pivot == Some(y) {
            return true;
        }
        // max(g.keys(), key=lambda c: f[c] / g[c]): the first class with the highest ratio
        let mut best: Option<(u8, f64)> = None;
        for &c in &self.seen {
            let r = self.desired[c as usize] / self.actual[c as usize] as f64;
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((c, r));
            }
        }
        let pivot = best.expect("a class was seen").0;
        self.pivot = Some(pivot);
        let m = self.desired[pivot as usize] / self.actual[pivot as usize] as f64;
        let ratio = self.desired[yi] / (m * self.actual[yi] as f64);
        ratio < 1.0 && self.rng.random() < ratio
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogReg {
    /// `Some`: the explicit inputs, named by `keys[i]`; `None`: every feature of the event is a key
    inputs: Option<Vec<Input>>,
    warmup: u64,
    lr: f64,
    /// labels of each class arrived
    counts: [u64; 2],
    sampler: Sampler,
    /// per key: the scaler's count, mean and variance, and the regression's weight
    keys: Vec<String>,
    n: Vec<u64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    weight: Vec<f64>,
    intercept: f64,
    /// explicit inputs: their columns (ratios: numerator and denominator)
    #[serde(skip)]
    cols: Vec<(Option<usize>, Option<usize>)>,
    /// every feature: schema column -> key (`NO_KEY`: not a key yet)
    #[serde(skip)]
    col_key: Vec<u32>,
    #[serde(skip)]
    bound: usize,
    /// the row read as `(key, value)` pairs, reused
    #[serde(skip)]
    x: Vec<(u32, f64)>,
}

/// `_value`: absent, `None` or non-finite -> 0.
#[inline]
fn plain(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// `Supervised._x`'s clip: finite values into +-1e9, others 0.
#[inline]
fn clipped(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(-CLIP, CLIP)
    } else {
        0.0
    }
}

/// river's `utils.math.sigmoid`.
#[inline]
fn sigmoid(x: f64) -> f64 {
    if x < -30.0 {
        0.0
    } else if x > 30.0 {
        1.0
    } else {
        1.0 / (1.0 + (-x).exp())
    }
}

/// river's `optim.losses.Log().gradient(y, raw)` (weights 1).
#[inline]
fn log_loss_gradient(y: u8, raw: f64) -> f64 {
    let yt = if y == 0 { -1.0 } else { 1.0 };
    let z = raw * yt;
    if z > 18.0 {
        (-z).exp() * -yt
    } else if z < -18.0 {
        -yt
    } else {
        -yt / (z.exp() + 1.0)
    }
}

impl LogReg {
    /// `features`: names (a `"a/b"` is the ratio of `a` and `b`), empty for every feature of the event.
    pub fn new(features: Vec<String>, pos_share: f64, warmup: u64, lr: f64, seed: i128) -> Self {
        assert!(pos_share > 0.0 && pos_share < 1.0 && warmup >= 1);
        let (inputs, keys) = if features.is_empty() {
            (None, Vec::new())
        } else {
            let inputs = features
                .iter()
                .map(|f| match f.split_once('/') {
                    Some((num, den)) => Input::Ratio(num.to_string(), den.to_string()),
                    None => Input::Feature,
                })
                .collect();
            (Some(inputs), features)
        };
        let k = keys.len();
        LogReg {
            inputs,
            warmup,
            lr,
            counts: [0, 0],
            sampler: Sampler { desired: [1.0 - pos_share, pos_share], actual: [0, 0], seen: Vec::new(), pivot: None,
                               rng: Box::new(PyRandom::new(seed)) },
            keys,
            n: vec![0; k],
            mean: vec![0.0; k],
            var: vec![0.0; k],
            weight: vec![0.0; k],
            intercept: 0.0,
            cols: Vec::new(),
            col_key: Vec::new(),
            bound: usize::MAX,
            x: Vec::new(),
        }
    }

    pub fn rebuild(&mut self) {
        self.bound = usize::MAX;
    }

    pub fn ready(&self) -> bool {
        self.counts[0].min(self.counts[1]) >= self.warmup
    }

    fn bind(&mut self, schema: &Schema) {
        if self.bound == schema.len() {
            return;
        }
        match &self.inputs {
            Some(inputs) => {
                self.cols = inputs
                    .iter()
                    .zip(&self.keys)
                    .map(|(input, key)| match input {
                        Input::Feature => (schema.get(key), None),
                        Input::Ratio(num, den) => (schema.get(num), schema.get(den)),
                    })
                    .collect();
            }
            None => {
                self.col_key.clear();
                self.col_key.extend(schema.names.iter().map(|name| {
                    self.keys.iter().position(|k| k == name).map_or(NO_KEY, |i| i as u32)
                }));
            }
        }
        self.bound = schema.len();
    }

    /// The row as `(key, value)` pairs in `self.x`. With every feature, a column not yet a key becomes one only
    /// when `learning` (a key the model never learned scales to 0, so scoring may skip it).
    fn read(&mut self, schema: &Schema, row: &[f64], learning: bool) {
        self.bind(schema);
        self.x.clear();
        match &self.inputs {
            Some(inputs) => {
                for (i, (input, &(a, b))) in inputs.iter().zip(&self.cols).enumerate() {
                    let v = match input {
                        Input::Feature => plain(value(row, a)),
                        Input::Ratio(..) => {
                            let d = plain(value(row, b));
                            if d != 0.0 {
                                plain(value(row, a)) / d
                            } else {
                                0.0
                            }
                        }
                    };
                    self.x.push((i as u32, clipped(v)));
                }
            }
            None => {
                for (c, &v) in row.iter().enumerate() {
                    if v.is_nan() {
                        continue; // absent
                    }
                    let mut key = self.col_key[c];
                    if key == NO_KEY {
                        if !learning {
                            continue;
                        }
                        key = self.keys.len() as u32;
                        self.keys.push(schema.names[c].clone());
                        self.n.push(0);
                        self.mean.push(0.0);
                        self.var.push(0.0);
                        self.weight.push(0.0);
                        self.col_key[c] = key;
                    }
                    self.x.push((key, clipped(v)));
                }
            }
        }
    }

    /// StandardScaler's `transform_one` of a value of key `k`: `(v - mean) / var ** 0.5`.
    #[inline]
    fn scaled(&self, k: usize, v: f64) -> f64 {
        let var = self.var[k];
        if var != 0.0 {
            // Python's `var ** 0.5` is the C library's pow(), which is not always sqrt() to the last bit; with a
            // constant 0.5 the compiler would turn powf into sqrt, so the exponent is hidden from it
            (v - self.mean[k]) / var.powf(std::hint::black_box(0.5))
        } else {
            0.0
        }
    }

    fn raw(&self) -> f64 {
        let mut dot = 0.0;
        for &(k, v) in &self.x {
            dot += self.weight[k as usize] * self.scaled(k as usize, v);
        }
        dot + self.intercept
    }

    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        if !self.ready() {
            return 0.0;
        }
        self.read(schema, row, false);
        let p = sigmoid(self.raw());
        if p.is_finite() {
            p
        } else {
            0.0
        }
    }

    /// A delayed label `y` of an event scored with `row`.
    pub fn learn_label(&mut self, schema: &Schema, row: &[f64], y: bool) {
        let y = y as u8;
        self.counts[y as usize] += 1;
        if !self.sampler.train(y) {
            return;
        }
        self.read(schema, row, true);
        // the scaler learns the row, then scales it (river's pipeline)
        for &(k, v) in &self.x {
            let k = k as usize;
            self.n[k] += 1;
            let old = self.mean[k];
            self.mean[k] += (v - old) / self.n[k] as f64;
            self.var[k] += ((v - old) * (v - self.mean[k]) - self.var[k]) / self.n[k] as f64;
        }
        let g = log_loss_gradient(y, self.raw()).clamp(-CLIP_GRADIENT, CLIP_GRADIENT);
        self.intercept -= INTERCEPT_LR * g;
        for i in 0..self.x.len() {
            let (k, v) = self.x[i];
            let z = self.scaled(k as usize, v);
            self.weight[k as usize] -= self.lr * (z * g);
        }
    }

    /// `Supervised.explain`: `(feature, w * scaled value)` of the features pushing towards fraud, largest first
    /// (ties by name), at most `top`.
    pub fn explain(&mut self, schema: &Schema, row: &[f64], top: usize) -> Vec<(String, f64)> {
        if !self.ready() {
            return Vec::new();
        }
        self.read(schema, row, false);
        let mut out: Vec<(String, f64)> = self
            .x
            .iter()
            .map(|&(k, v)| (self.keys[k as usize].clone(), self.weight[k as usize] * self.scaled(k as usize, v)))
            .filter(|(_, c)| *c > 0.0 && c.is_finite())
            .collect();
        out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then_with(|| a.0.cmp(&b.0)));
        out.truncate(top);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(names: &[&str]) -> Schema {
        let mut s = Schema::default();
        for n in names {
            s.column(n);
        }
        s
    }

    #[test]
    fn scores_zero_until_both_classes_reach_warmup_then_separates_them() {
        let s = schema(&["amount", "noise"]);
        let mut m = LogReg::new(Vec::new(), 0.2, 5, 0.01, 1);
        assert_eq!(m.score(&s, &[500.0, 0.5]), 0.0);
        let mut rng = PyRandom::new(7);
        for _ in 0..2000 {
            let y = rng.random() < 0.1;
            let amount = if y { 300.0 } else { 50.0 } + 20.0 * (rng.random() - 0.5);
            m.learn_label(&s, &[amount, rng.random()], y);
        }
        assert!(m.ready());
        let hi = m.score(&s, &[320.0, 0.5]);
        let lo = m.score(&s, &[45.0, 0.5]);
        assert!(hi > 0.5 && 0.5 > lo, "{hi} {lo}");
        let why = m.explain(&s, &[320.0, 0.5], 3);
        assert_eq!(why[0].0, "amount");
    }

    #[test]
    fn the_pivot_class_always_trains_and_the_other_is_sampled() {
        // desired {0: 0.8, 1: 0.2}: after 1 fraud and many legitimate events, the fraud class is the pivot
        let mut s = Sampler { desired: [0.8, 0.2], actual: [0, 0], seen: Vec::new(), pivot: None,
                              rng: Box::new(PyRandom::new(42)) };
        assert!(!s.train(0)); // the first label: its class becomes the pivot, ratio 1, not < 1: not trained
        let trained: u32 = (0..999).map(|_| s.train(0) as u32).sum();
        assert_eq!(trained, 999); // the pivot class always trains
        // a fraud among 1000 legitimate events makes its class the pivot (f / g is 0.2 against 0.0008): that
        // label itself is not trained (ratio 1), the next fraud is
        assert!(!s.train(1));
        assert!(s.train(1));
        // a legitimate label is now kept with probability 0.8 / (0.2 / 2 * g[0]) ~ 0.8 %
        let legit: u32 = (0..1000).map(|_| s.train(0) as u32).sum();
        assert!(legit > 0 && legit < 30, "{legit}");
    }

    #[test]
    fn state_round_trips_and_continues_exactly() {
        let s = schema(&["a", "b", "a/b"]);
        let mut m = LogReg::new(vec!["a".into(), "a/b".into()], 0.3, 2, 0.05, 3);
        let rows: Vec<[f64; 3]> = (0..400).map(|i| [(i % 17) as f64, (i % 5) as f64, f64::NAN]).collect();
        for (i, r) in rows.iter().enumerate().take(200) {
            m.learn_label(&s, r, i % 7 == 0);
        }
        let mut b: LogReg = bincode::deserialize(&bincode::serialize(&m).unwrap()).unwrap();
        b.rebuild();
        for (i, r) in rows.iter().enumerate().skip(200) {
            assert_eq!(m.score(&s, r).to_bits(), b.score(&s, r).to_bits());
            m.learn_label(&s, r, i % 7 == 0);
            b.learn_label(&s, r, i % 7 == 0);
        }
        assert!(m.ready() && m.score(&s, &rows[0]) > 0.0);
    }
}
