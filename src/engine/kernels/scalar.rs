//! The portable reference kernels: exact integer sums, then float scaling. They serve CPUs
//! without the x86 paths, and the tests hold every SIMD kernel to them.

// The kernels index several fixed-size arrays (rows, tokens, register tiles) in lockstep.
#![allow(clippy::needless_range_loop)]

use super::blocks::{
    BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, KNibbles, QFormat, QK_K, as_blocks, block, f16v,
    q5_parts, q5_value, scale_min_k4, unpack_block,
};
use super::quant::{BlockQ8K, BlockQ81};
use super::tiles::{GemmActs, Scratch, TB, TR};

/// Q5_0 or Q5_1 blocks times Q8 activations.
pub fn q5(f: QFormat, w: &[u8], x: &[BlockQ81]) -> f32 {
    let bb = f.block().1;
    let mut sum = 0f32;
    for (b, xb) in w.chunks_exact(bb).zip(x) {
        let (d, m, h, q) = q5_parts(f, b);
        let si: i32 = (0..32)
            .map(|j| q5_value(h, q, j) as i32 * xb.qs[j] as i32)
            .sum();
        sum += match f {
            QFormat::Q5_0 => d * xb.d * (si - 16 * xb.isum) as f32,
            _ => d * xb.d * si as f32 + m * xb.s,
        };
    }
    sum
}

/// The integer sum of 32 nibbles (low nibbles first) times 32 activations.
fn nibbles(qs: &[u8; 16], x: &[i8; 32]) -> i32 {
    let mut si = 0i32;
    for j in 0..16 {
        si += (qs[j] & 0xF) as i32 * x[j] as i32;
        si += (qs[j] >> 4) as i32 * x[j + 16] as i32;
    }
    si
}

/// Q4_1 blocks times Q8_1 activations.
pub fn q4_1(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (b, xb) in as_blocks::<BlockQ4_1>(w).iter().zip(x) {
        let si = nibbles(&b.qs, &xb.qs);
        sum += f16v(b.d) * xb.d * si as f32 + f16v(b.m) * xb.s;
    }
    sum
}

/// Q4_0 blocks times Q8 activations.
pub fn q4_0(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (b, xb) in as_blocks::<BlockQ4_0>(w).iter().zip(x) {
        let si = nibbles(&b.qs, &xb.qs);
        let d = f16v(b.d);
        sum += d * xb.d * (si - 8 * xb.isum) as f32;
    }
    sum
}

/// Q8_0 blocks times Q8 activations.
pub fn q8_0(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (b, xb) in as_blocks::<BlockQ8_0>(w).iter().zip(x) {
        let si: i32 = (0..32)
            .map(|j| b.qs[j] as i8 as i32 * xb.qs[j] as i32)
            .sum();
        sum += f16v(b.d) * xb.d * si as f32;
    }
    sum
}

/// Q4_K or Q5_K blocks (`B`) times Q8_K activations.
pub fn q4_5_k<B: KNibbles>(w: &[u8], x: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, xb) in as_blocks::<B>(w).iter().zip(x) {
        let (d, dmin, scales, qs) = b.parts();
        let qh = b.qh();
        let (d, dmin) = (f16v(d), f16v(dmin));
        let (mut si, mut mins) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, scales);
            let c = j / 2;
            let mut s = 0i32;
            for l in 0..32 {
                let q = qs[32 * c + l];
                let n = if j % 2 == 0 { q & 0xF } else { q >> 4 };
                let fifth = match qh {
                    Some(qh) if qh[l] & (1u8 << j) != 0 => 16,
                    _ => 0,
                };
                s += (n + fifth) as i32 * xb.qs[32 * j + l] as i32;
            }
            si += sc as i32 * s;
            mins += m as i32 * (xb.bsums[2 * j] as i32 + xb.bsums[2 * j + 1] as i32);
        }
        sum += xb.d * (d * si as f32 - dmin * mins as f32);
    }
    sum
}

/// Q6_K blocks times Q8_K activations.
pub fn q6_k(w: &[u8], x: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    let (mut q6, mut dl, mut ml) = ([0u8; QK_K], [0f32; 16], [0f32; 16]);
    for (bytes, xb) in w.chunks_exact(210).zip(x) {
        let b = block::<BlockQ6K>(bytes);
        unpack_block(QFormat::Q6K, bytes, &mut q6, &mut dl, &mut ml);
        let mut si = 0i32;
        for g in 0..16 {
            let s: i32 = (0..16)
                .map(|k| q6[16 * g + k] as i32 * xb.qs[16 * g + k] as i32)
                .sum();
            si += b.scales[g] as i8 as i32 * (s - 32 * xb.bsums[g] as i32);
        }
        sum += f16v(b.d) * xb.d * si as f32;
    }
    sum
}

/// The portable tile: exact integer sums per 16 values, then float scaling.
pub(crate) fn int_tile(
    s: &Scratch,
    a: &GemmActs,
    cols: usize,
    nr: usize,
    tb: usize,
    signed: bool,
    res: &mut [[f32; TB]; TR],
) {
    let groups = cols / 32;
    for (i, rr) in res.iter_mut().enumerate().take(nr) {
        let q = &s.q[i * cols..(i + 1) * cols];
        let dl = &s.dl[i * cols / 16..(i + 1) * cols / 16];
        let ml = &s.ml[i * cols / 16..(i + 1) * cols / 16];
        for (lane, v) in rr.iter_mut().enumerate() {
            let t = tb * TB + lane;
            let mut sum = 0f32;
            for g in 0..groups {
                for h in 0..2 {
                    sum += ml[2 * g + h] * a.sxv[((tb * groups + g) * 2 + h) * TB + lane];
                }
                let mut dx = 0.0;
                for h in 0..2 {
                    let mut si = 0i32;
                    for e in 32 * g + 16 * h..32 * g + 16 * h + 16 {
                        let w = if signed {
                            q[e] as i8 as i32
                        } else {
                            q[e] as i32
                        };
                        let (x, d) = a.at(t, e);
                        si += w * x as i32;
                        dx = d;
                    }
                    sum += dx * dl[2 * g + h] * si as f32;
                }
            }
            *v = sum;
        }
    }
}
