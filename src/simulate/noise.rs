//! The simulation's one source of randomness: deterministic, so a run is
//! repeatable from its seed. The store model jitters the depth with it and the
//! fleet spreads pod start-up with it.

/// Deterministic noise in [-1, 1] for step `index` (splitmix64).
pub(super) fn noise(seed: u64, index: u64) -> f64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_uniform_enough_and_deterministic() {
        let values: Vec<f64> = (0..10_000).map(|i| noise(7, i)).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert_eq!(noise(7, 3), noise(7, 3));
    }
}
