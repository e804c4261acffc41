//! A tiny seeded PRNG (splitmix64) so synthetic weights and inputs are identical forever.
//!
//! Why not a crate: the generated models back committed reference outputs, so the random stream
//! must never change with a dependency upgrade. Normal samples use the Irwin–Hall sum of twelve
//! uniforms instead of Box–Muller: it needs no `ln`/`cos`, whose last bit may differ between libm
//! implementations, so every platform produces bit-identical weights.

/// splitmix64: 64 bits of state, passes BigCrush, trivially reproducible.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// An independent stream for (`seed`, `stream`): keeps e.g. weights and inputs from sharing
    /// numbers when they use the same user-facing seed.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        let mut mixer = Rng::new(stream ^ 0x6d66_6e5f_6d6f_6465);
        Rng::new(seed ^ mixer.next_u64())
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform_range(&mut self, lo: f32, hi: f32) -> f32 {
        (lo as f64 + (hi as f64 - lo as f64) * self.uniform()) as f32
    }

    /// Approximately standard normal (mean 0, variance 1, bounded by ±6): Irwin–Hall, see module doc.
    pub fn normal(&mut self) -> f32 {
        let sum: f64 = (0..12).map(|_| self.uniform()).sum();
        (sum - 6.0) as f32
    }

    /// `len` samples of N(0, std²).
    pub fn normal_vec(&mut self, len: usize, std: f32) -> Vec<f32> {
        (0..len).map(|_| self.normal() * std).collect()
    }

    /// `len` samples of U(lo, hi).
    pub fn uniform_vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform_range(lo, hi)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_stable() {
        // Reference value of splitmix64 for seed 0 (from the published algorithm).
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn normal_has_unit_moments() {
        let v = Rng::new(7).normal_vec(100_000, 1.0);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn streams_differ() {
        assert_ne!(Rng::with_stream(1, 1).next_u64(), Rng::with_stream(1, 2).next_u64());
    }
}
