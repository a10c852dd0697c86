//! The default detection stack, ported from `detectors/` (the Python reference): Half-Space Trees, the robust
//! z-score, the cold-start tails, rules, the tail calibrator, the ensemble that combines them and the weight
//! adapter that re-weights them on arrived labels.
//!
//! Semantics are the per-event loop the Python vectorised code is defined to equal: for each event and each
//! detector in configuration order, score, calibrate, learn if the gate allows; then combine and decide. Rows
//! are feature values over a [`crate::event::Schema`] (`NaN`: absent). Detectors keep feature *names* in their
//! state and resolve them to columns lazily (the schema only grows), so a snapshot does not depend on column
//! numbers. No Python types here: `py_detectors.rs` wraps [`ensemble::Ensemble`].

pub mod adaptive;
pub mod calibration;
pub mod coldstart;
pub mod ensemble;
pub mod hst;
pub mod pyrandom;
pub mod rules;
pub mod supervised;
pub mod zscore;

use crate::event::Schema;

/// `numpy.add.reduce` over a contiguous float64 row, bit for bit: numpy's pairwise summation (8 accumulators
/// up to 128 values, halves at multiples of 8 above), started from the identity `0.0`.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    0.0 + pairwise(a)
}

fn pairwise(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        let end = n - n % 8;
        while i < end {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&a[..n2]) + pairwise(&a[n2..])
    }
}

/// The value of column `col` in `row` (`NaN` when the row is shorter or the column unknown).
#[inline]
pub fn value(row: &[f64], col: Option<usize>) -> f64 {
    match col {
        Some(c) if c < row.len() => row[c],
        _ => f64::NAN,
    }
}

/// Columns of `names` in `schema` (`None`: not in the schema yet).
pub fn resolve(schema: &Schema, names: &[String], out: &mut Vec<Option<usize>>) {
    out.clear();
    out.extend(names.iter().map(|n| schema.get(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_groups_like_numpy() {
        // 1e16 + 1 + ... : grouping changes the result, so a plain loop would not pass these
        let v: Vec<f64> = (0..300).map(|i| if i % 37 == 0 { 1e16 } else { 1.0 + i as f64 * 1e-3 }).collect();
        // np.add.reduce(v) of this input; a plain loop gives 9.000000000000006e16
        assert_eq!(pairwise_sum(&v), 9.000000000000038e16);
        assert_eq!(pairwise_sum(&[-0.0]).to_bits(), 0.0f64.to_bits());
    }
}
