//! Activation quantization for the row dot products: Q8_1 blocks of 32 (the 32-value formats),
//! Q8_K super-blocks of 256 with 16 group sums (the K formats), the row quantizer both share,
//! and Q4_1 weight quantization for synthetic models.

use half::f16;

pub use super::blocks::{QK, QK_K};

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

/// Quantizes activations to int8 with one scale per `per` values (32, or 256 for Q8_K): scale
/// `d[b] = amax / 127` of block `b`, codes `q` (value / d, rounded half to even as llama.cpp's
/// x86 kernels round) and `s16[j]`, the sum of codes `16 j..16 j + 16`. `x.len()` is a multiple
/// of `per`, and `per` of 32; AVX2 where the CPU has it (the same bytes as the portable loop).
pub(crate) fn quantize_row_q8(x: &[f32], per: usize, d: &mut [f32], q: &mut [i8], s16: &mut [i32]) {
    debug_assert!(per.is_multiple_of(32) && x.len().is_multiple_of(per));
    debug_assert!(d.len() >= x.len() / per && q.len() >= x.len() && s16.len() >= x.len() / 16);
    #[cfg(target_arch = "x86_64")]
    if super::simd() {
        // SAFETY: AVX2 was detected; the lengths were checked above (debug) and are the
        // callers' invariant: blocks of `per` within x, q, d and s16.
        unsafe { super::x86::quant::quantize_row_q8(x, per, d, q, s16) };
        return;
    }
    quantize_row_q8_portable(x, per, d, q, s16);
}

pub(crate) fn quantize_row_q8_portable(
    x: &[f32],
    per: usize,
    d: &mut [f32],
    q: &mut [i8],
    s16: &mut [i32],
) {
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

/// One Q8_K super-block of activations: scale, 256 int8 values, the sum of each 16.
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; 16],
}

/// Quantizes one activation vector to Q8_K super-blocks.
pub fn quantize_q8_k(x: &[f32]) -> Vec<BlockQ8K> {
    let n = x.len() / QK_K * QK_K;
    let (mut d, mut q, mut s16) = (vec![0f32; n / QK_K], vec![0i8; n], vec![0i32; n / 16]);
    quantize_row_q8(&x[..n], QK_K, &mut d, &mut q, &mut s16);
    (0..n / QK_K)
        .map(|b| {
            let mut qs = [0i8; QK_K];
            qs.copy_from_slice(&q[QK_K * b..QK_K * (b + 1)]);
            let mut bsums = [0i16; 16];
            for (g, s) in bsums.iter_mut().enumerate() {
                // |sum of 16 codes| <= 16 x 127: fits in i16.
                *s = s16[16 * b + g] as i16;
            }
            BlockQ8K { d: d[b], qs, bsums }
        })
        .collect()
}
