//! Helpers shared by the integration tests and the benchmark: a tiny PRNG, a realistic
//! object-size distribution, and byte patterns that make every object checkable.
#![allow(dead_code)] // each test binary uses a different subset

/// SplitMix64: tiny, fast, good enough to shuffle workloads; deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// The SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Facebook's ETC value-size distribution (Atikoglu et al., SIGMETRICS 2012): a generalized
/// Pareto with location 0, scale 214.476, shape 0.348238, clipped to `32..=4096` bytes.
pub fn etc_size(rng: &mut Rng) -> usize {
    const SCALE: f64 = 214.476;
    const SHAPE: f64 = 0.348238;
    let u = rng.unit();
    let x = SCALE / SHAPE * ((1.0 - u).powf(-SHAPE) - 1.0);
    (x as usize).clamp(32, 4096)
}

/// Fill `buf` with the pattern for `key`: every 8-byte word differs and depends on the key,
/// so a byte landing in the wrong object, at the wrong offset, or left stale is caught.
pub fn fill_pattern(key: u64, buf: &mut [u8]) {
    let mut word = 0u64;
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        if i % 8 == 0 {
            word = mix(key ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        } else {
            word = word.rotate_left(7) ^ i as u64;
        }
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

pub fn pattern(key: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill_pattern(key, &mut v);
    v
}
