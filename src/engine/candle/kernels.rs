//! Pieces every kernel shares: Q8_1 activation blocks, CPU feature detection, the threshold
//! below which a product runs on the calling thread, and Q4_1 quantization for synthetic models.

use half::f16;

/// Below this many weights a matvec runs on the calling thread: waking the pool costs more.
pub(crate) const PARALLEL_MIN_WEIGHTS: usize = 100_000;

pub use super::blocks::QK;

/// One Q8_1 block of activations: scale, scale × sum of values, 32 int8 values.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ81 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
    /// The exact integer sum of `qs` (formats with a fixed offset use it instead of `s`).
    pub isum: i32,
    /// `d * isum` in f32 (the SIMD kernels' offset term, one multiply per block saved).
    pub ds: f32,
}

/// Quantizes f32 rows to GGUF Q4_1 bytes (20 per 32 values), for synthetic models and tests.
pub fn quantize_q4_1(w: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.len() / QK * 20);
    for x in w.chunks_exact(QK) {
        let (mn, mx) = x
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let d = (mx - mn) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(mn).to_le_bytes());
        for j in 0..16 {
            let q0 = (((x[j] - mn) * id + 0.5) as u8).min(15);
            let q1 = (((x[j + 16] - mn) * id + 0.5) as u8).min(15);
            out.push(q0 | (q1 << 4));
        }
    }
    out
}

pub(crate) struct SyncPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only used to write disjoint elements from the pool's workers.
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// Quantizes one activation vector to Q8_1 blocks.
pub fn quantize_q8_1(x: &[f32]) -> Vec<BlockQ81> {
    x.chunks_exact(QK)
        .map(|v| {
            let amax = v.iter().fold(0f32, |a, &b| a.max(b.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; 32];
            let mut sum = 0i32;
            for (q, &f) in qs.iter_mut().zip(v) {
                *q = (f * id).round() as i8;
                sum += *q as i32;
            }
            // Stored in f16 as llama.cpp's Q8_1 blocks are: the same rounding gives the same
            // near-tie decisions as the engine people deploy.
            BlockQ81 {
                d: f16::from_f32(d).to_f32(),
                s: f16::from_f32(d * sum as f32).to_f32(),
                qs,
                isum: sum,
                ds: f16::from_f32(d).to_f32() * sum as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::candle::qmatrix::{QFormat, QMatrix};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn q4_1_quantization_round_trips_within_half_a_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let w: Vec<f32> = (0..4 * 64)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let q = QMatrix::from_bytes(QFormat::Q4_1, 4, 64, quantize_q4_1(&w)).unwrap();
        for (a, b) in w.iter().zip(q.dequantize()) {
            assert!((a - b).abs() <= 2.0 / 15.0 / 2.0 + 1e-3, "{a} {b}");
        }
    }

    #[test]
    fn q8_1_sums_are_exact() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        for b in quantize_q8_1(&x) {
            assert_eq!(b.isum, b.qs.iter().map(|&q| q as i32).sum::<i32>());
            assert!(b.qs.iter().any(|&q| q.unsigned_abs() == 127));
        }
    }
}
