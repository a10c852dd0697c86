//! CPython's `random.Random(seed)` for integer seeds: MT19937 seeded by `init_by_array` with the 32-bit words of
//! `abs(seed)`, and `random()` from two draws (53 bits). HST's trees are built from these draws, so the core can
//! build them itself when the first window completes, exactly as `detectors.hst.build_trees` does.

const N: usize = 624;
const M: usize = 397;

#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PyRandom {{ index: {} }}", self.index)
    }
}

/// The generator's state, serialised as its 624 words and position (serde has no arrays that long).
impl serde::Serialize for PyRandom {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&(&self.mt[..], self.index as u64), s)
    }
}

impl<'de> serde::Deserialize<'de> for PyRandom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (words, index): (Vec<u32>, u64) = serde::Deserialize::deserialize(d)?;
        let mt: [u32; N] = words
            .try_into()
            .map_err(|w: Vec<u32>| serde::de::Error::custom(format!("MT19937 state of {} words, not {N}", w.len())))?;
        if index as usize > N {
            return Err(serde::de::Error::custom(format!("MT19937 position {index} past {N}")));
        }
        Ok(PyRandom { mt, index: index as usize })
    }
}

impl PyRandom {
    /// `random.Random(seed)`; CPython seeds with `abs(seed)`.
    pub fn new(seed: i128) -> Self {
        let mut n = seed.unsigned_abs();
        let mut key = Vec::new();
        while n != 0 {
            key.push(n as u32);
            n >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        let mut r = PyRandom { mt: [0; N], index: N };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let p = self.mt[i - 1];
            self.mt[i] = 1812433253u32.wrapping_mul(p ^ (p >> 30)).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19650218);
        let (mut i, mut j) = (1usize, 0usize);
        let mut k = N.max(key.len());
        while k > 0 {
            let p = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (p ^ (p >> 30)).wrapping_mul(1664525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
            k -= 1;
        }
        k = N - 1;
        while k > 0 {
            let p = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (p ^ (p >> 30)).wrapping_mul(1566083941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            k -= 1;
        }
        self.mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        for kk in 0..N {
            let y = (self.mt[kk] & 0x8000_0000) | (self.mt[(kk + 1) % N] & 0x7fff_ffff);
            self.mt[kk] = self.mt[(kk + M) % N] ^ (y >> 1) ^ if y & 1 != 0 { 0x9908_b0df } else { 0 };
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_cpython_random() {
        // python3 -c "import random; r=random.Random(42); print([r.random() for _ in range(3)])"
        let mut r = PyRandom::new(42);
        let want = [0.6394267984578837, 0.025010755222666936, 0.27502931836911926];
        for w in want {
            assert_eq!(r.random(), w);
        }
        // random.Random(0).random(), and a negative seed is its absolute value
        assert_eq!(PyRandom::new(0).random(), 0.8444218515250481);
        assert_eq!(PyRandom::new(-42).random(), 0.6394267984578837);
        // a seed wider than 32 bits: random.Random(2**40 + 5).random()
        assert_eq!(PyRandom::new((1i128 << 40) + 5).random(), 0.5043802970418443);
    }
}
