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

/// Quantizes activations to int8 with one scale per `per` values (32, or 256 for Q8_K): scale
/// `d[b] = amax / 127` of block `b`, codes `q` (value / d, rounded half to even as llama.cpp's
/// x86 kernels round) and `s16[j]`, the sum of codes `16 j..16 j + 16`. `x.len()` is a multiple
/// of `per`, and `per` of 32; AVX2 where the CPU has it (the same bytes as the portable loop).
pub(crate) fn quantize_row_q8(x: &[f32], per: usize, d: &mut [f32], q: &mut [i8], s16: &mut [i32]) {
    debug_assert!(per.is_multiple_of(32) && x.len().is_multiple_of(per));
    debug_assert!(d.len() >= x.len() / per && q.len() >= x.len() && s16.len() >= x.len() / 16);
    #[cfg(target_arch = "x86_64")]
    if super::blocks::simd() {
        // SAFETY: AVX2 was detected; the lengths were checked above (debug) and are the
        // callers' invariant: blocks of `per` within x, q, d and s16.
        unsafe { x86::quantize_row_q8(x, per, d, q, s16) };
        return;
    }
    quantize_row_q8_portable(x, per, d, q, s16);
}

fn quantize_row_q8_portable(x: &[f32], per: usize, d: &mut [f32], q: &mut [i8], s16: &mut [i32]) {
    for (b, v) in x.chunks_exact(per).enumerate() {
        let amax = v.iter().fold(0f32, |a, &b| a.max(b.abs()));
        let db = amax / 127.0;
        let id = if db > 0.0 { 1.0 / db } else { 0.0 };
        d[b] = db;
        let qb = &mut q[b * per..(b + 1) * per];
        for (q, &f) in qb.iter_mut().zip(v) {
            *q = (f * id).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        for (j, c) in qb.chunks_exact(16).enumerate() {
            s16[b * per / 16 + j] = c.iter().map(|&q| q as i32).sum();
        }
    }
}

/// Quantizes one activation vector to Q8_1 blocks.
pub fn quantize_q8_1(x: &[f32]) -> Vec<BlockQ81> {
    let n = x.len() / QK * QK;
    let (mut d, mut q, mut s16) = (vec![0f32; n / QK], vec![0i8; n], vec![0i32; n / 16]);
    quantize_row_q8(&x[..n], QK, &mut d, &mut q, &mut s16);
    (0..n / QK)
        .map(|b| {
            let sum = s16[2 * b] + s16[2 * b + 1];
            let mut qs = [0i8; 32];
            qs.copy_from_slice(&q[QK * b..QK * (b + 1)]);
            // Stored in f16 as llama.cpp's Q8_1 blocks are: the same rounding gives the same
            // near-tie decisions as the engine people deploy.
            BlockQ81 {
                d: f16::from_f32(d[b]).to_f32(),
                s: f16::from_f32(d[b] * sum as f32).to_f32(),
                qs,
                isum: sum,
                ds: f16::from_f32(d[b]).to_f32() * sum as f32,
            }
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// See [`super::quantize_row_q8`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_row_q8(
        x: &[f32],
        per: usize,
        d: &mut [f32],
        q: &mut [i8],
        s16: &mut [i32],
    ) {
        let sign = _mm256_set1_ps(-0.0);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let (xp, qp, sp) = (x.as_ptr(), q.as_mut_ptr(), s16.as_mut_ptr());
        for b in 0..x.len() / per {
            // SAFETY (loads and stores below): block b covers x[b per..(b + 1) per], the same
            // range of q, d[b] and s16[b per / 16..]: inside the slices by the caller's lengths.
            unsafe {
                let base = xp.add(b * per);
                let mut m = _mm256_setzero_ps();
                for i in (0..per).step_by(8) {
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(base.add(i))));
                }
                let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
                let db = amax / 127.0;
                let id = _mm256_set1_ps(if db > 0.0 { 1.0 / db } else { 0.0 });
                *d.as_mut_ptr().add(b) = db;
                for g in (0..per).step_by(32) {
                    let at = b * per + g;
                    let mut v = [_mm256_setzero_si256(); 4];
                    for (k, v) in v.iter_mut().enumerate() {
                        let f = _mm256_mul_ps(_mm256_loadu_ps(xp.add(at + 8 * k)), id);
                        *v = _mm256_cvtps_epi32(f);
                    }
                    for h in 0..2 {
                        let s = _mm256_add_epi32(v[2 * h], v[2 * h + 1]);
                        let s4 = _mm_add_epi32(
                            _mm256_castsi256_si128(s),
                            _mm256_extracti128_si256(s, 1),
                        );
                        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
                        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
                        *sp.add(at / 16 + h) = _mm_cvtsi128_si32(s4);
                    }
                    let p = _mm256_packs_epi16(
                        _mm256_packs_epi32(v[0], v[1]),
                        _mm256_packs_epi32(v[2], v[3]),
                    );
                    let p = _mm256_permutevar8x32_epi32(p, order);
                    _mm256_storeu_si256(qp.add(at) as *mut __m256i, p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::matvec::{QFormat, QMatrix};
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

    /// The AVX2 row quantizer writes the portable loop's bytes, scales and sums (ties and
    /// zero blocks included), for both block sizes.
    #[test]
    fn simd_row_quantizer_equals_the_portable_one() {
        let mut rng = StdRng::seed_from_u64(5);
        for per in [32, 256] {
            let mut x: Vec<f32> = (0..4 * 256)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            x[..per].fill(0.0);
            // Exact halves after scaling: amax 127 makes the scale 1.
            x[per] = 127.0;
            x[per + 1] = 2.5;
            x[per + 2] = -3.5;
            let n = x.len();
            let mut a = (vec![0f32; n / per], vec![0i8; n], vec![0i32; n / 16]);
            let mut b = a.clone();
            quantize_row_q8(&x, per, &mut a.0, &mut a.1, &mut a.2);
            quantize_row_q8_portable(&x, per, &mut b.0, &mut b.1, &mut b.2);
            assert_eq!(a, b, "per {per}");
            assert_eq!((b.1[per + 1], b.1[per + 2]), (2, -4));
            for (j, s) in b.2.iter().enumerate() {
                assert_eq!(
                    *s,
                    b.1[16 * j..16 * j + 16]
                        .iter()
                        .map(|&q| q as i32)
                        .sum::<i32>()
                );
            }
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
