//! Per-entity running count and sum with one bucket ring per window: `_roll` of `stream/features.py`.
//!
//! A ring holds the entity's non-empty buckets of one window, oldest first (at most `BUCKETS + 1`), each with the
//! entity's running count and sum at the bucket's first event, so a window total is one subtraction.

use serde::{Deserialize, Serialize};

/// `float(BUCKETS)` of the Python reference.
pub const NB: f64 = 12.0;

/// One bucket: its id (`t // width`) and the running count and sum at its first event.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub b: f64,
    pub n: f64,
    pub s: f64,
}

/// The buckets of one window, oldest first.
pub type Ring = Vec<Bucket>;

/// An entity's running count and sum (of order amounts, or of login failures) and its rings, one per window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub n: f64,
    pub s: f64,
    pub rings: Box<[Ring]>,
}

impl Windows {
    pub fn new(windows: usize) -> Self {
        Windows { n: 0.0, s: 0.0, rings: (0..windows).map(|_| Ring::new()).collect() }
    }

    /// Push `(count, sum)` of each window before this event, then fold the event (value `x`, bucket ids `bs`) in.
    /// The same operations in the same order as the Python `_roll`.
    #[inline]
    pub fn roll(&mut self, x: f64, bs: &[f64], out: &mut Vec<f64>) {
        let n = self.n;
        let s = self.s;
        self.n = n + 1.0;
        self.s = s + x;
        debug_assert_eq!(self.rings.len(), bs.len());
        for (q, &b) in self.rings.iter_mut().zip(bs) {
            roll_ring(q, n, s, b, out);
        }
    }

    /// Heap bytes held by the rings (capacity, not length), plus the boxed slice.
    pub fn heap_bytes(&self) -> usize {
        self.rings.len() * std::mem::size_of::<Ring>()
            + self.rings.iter().map(|q| q.capacity() * std::mem::size_of::<Bucket>()).sum::<usize>()
    }
}

#[inline]
fn roll_ring(q: &mut Ring, n: f64, s: f64, b: f64, out: &mut Vec<f64>) {
    if let Some(last) = q.last() {
        let last = last.b;
        if last == b {
            // same bucket as the entity's last event: nothing can have expired
            out.push(n - q[0].n);
            out.push(s - q[0].s);
            return;
        }
        let lo = b - NB;
        if q[0].b < lo {
            if last < lo {
                // the whole window expired
                q.clear();
                q.push(Bucket { b, n, s });
                out.push(0.0);
                out.push(0.0);
                return;
            }
            let k = q.iter().position(|e| e.b >= lo).expect("the last bucket is in the window");
            q.drain(..k);
        }
        out.push(n - q[0].n);
        out.push(s - q[0].s);
    } else {
        out.push(0.0);
        out.push(0.0);
    }
    if q.len() == q.capacity() {
        // grow 2, 5, 9, 13 (a ring never holds more): not Vec's 4, 8, 16, which leaves a full ring 3 slots empty
        let cap = q.capacity();
        q.reserve_exact(
            if cap < 2 {
                2
            } else if cap < 5 {
                5
            } else if cap < 9 {
                9
            } else {
                13.max(cap + 1)
            } - cap,
        );
    }
    q.push(Bucket { b, n, s });
}

/// Python's float floor division `x // y` (CPython's `float_floor_div`), bit for bit: not `(x / y).floor()`.
#[inline]
pub fn py_floordiv(vx: f64, wx: f64) -> f64 {
    let mut m = vx % wx; // fmod
    let mut div = (vx - m) / wx;
    if m != 0.0 && ((wx < 0.0) != (m < 0.0)) {
        m += wx;
        div -= 1.0;
    }
    let _ = m;
    if div != 0.0 {
        let mut f = div.floor();
        if div - f > 0.5 {
            f += 1.0;
        }
        f
    } else {
        0.0f64.copysign(vx / wx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: events (time, value) of one entity; a window's total at `t` is over the events whose bucket is
    /// at least `b - 12`.
    #[test]
    fn roll_matches_brute_force_and_stays_bounded() {
        let widths = [5.0, 300.0];
        let mut w = Windows::new(2);
        let mut past: Vec<(f64, f64)> = Vec::new();
        let mut out = Vec::new();
        let mut t = 1_714_521_600.0;
        let mut seed = 12345u64;
        for i in 0..5000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            t += ((seed >> 33) % 40) as f64; // gaps of 0 to 39 s, sometimes long ones
            if i % 500 == 0 {
                t += 7200.0;
            }
            let x = (i % 7) as f64 + 0.5;
            let bs: Vec<f64> = widths.iter().map(|g| py_floordiv(t, *g)).collect();
            out.clear();
            w.roll(x, &bs, &mut out);
            for (j, g) in widths.iter().enumerate() {
                let inside: Vec<f64> =
                    past.iter().filter(|(s, _)| py_floordiv(*s, *g) >= bs[j] - NB).map(|p| p.1).collect();
                assert_eq!(out[2 * j], inside.len() as f64, "count, window {j}, event {i}");
                assert!((out[2 * j + 1] - inside.iter().sum::<f64>()).abs() < 1e-6);
                assert!(w.rings[j].len() <= 13);
            }
            past.push((t, x));
        }
    }

    #[test]
    fn a_whole_expired_window_restarts_at_zero() {
        let mut w = Windows::new(1);
        let mut out = Vec::new();
        w.roll(1.0, &[10.0], &mut out);
        w.roll(2.0, &[11.0], &mut out);
        assert_eq!(out, [0.0, 0.0, 1.0, 1.0]);
        out.clear();
        w.roll(4.0, &[40.0], &mut out);
        assert_eq!(out, [0.0, 0.0]);
        assert_eq!(w.rings[0], vec![Bucket { b: 40.0, n: 2.0, s: 3.0 }]);
        out.clear();
        w.roll(8.0, &[52.0], &mut out); // 40 >= 52 - 12: still in
        assert_eq!(out, [1.0, 4.0]);
        out.clear();
        w.roll(0.0, &[53.0], &mut out); // 40 left; 52 stays
        assert_eq!(out, [1.0, 8.0]);
        assert_eq!(w.rings[0].len(), 2);
    }

    #[test]
    fn floordiv_is_pythons() {
        // values checked against CPython: 1714521600.7 // 5.0 == 342904320.0, 1.0 // 0.1 == 9.0 (not 10.0)
        assert_eq!(py_floordiv(1_714_521_600.7, 5.0), 342_904_320.0);
        assert_eq!(py_floordiv(1.0, 0.1), 9.0);
        assert_eq!((1.0f64 / 0.1).floor(), 10.0); // why a plain floor would differ
        assert_eq!(py_floordiv(-1.0, 3.0), -1.0);
        assert!(py_floordiv(0.0, 5.0) == 0.0 && py_floordiv(0.0, 5.0).is_sign_positive());
    }
}
