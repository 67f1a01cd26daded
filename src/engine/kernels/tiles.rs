//! The data of the tiled product: activations quantized once per product and interleaved 8
//! tokens x 4 bytes ([`GemmActs`]), the codes of a row tile unpacked into one normalized form
//! ([`Scratch`]), and the tile sizes. `gemm` dispatches over them; `scalar` and `x86` hold the
//! tiles themselves.

// The kernels index several fixed-size arrays (rows, tokens, register tiles) in lockstep.
#![allow(clippy::needless_range_loop)]

use super::blocks::{QFormat, unpack_block};

/// Tokens per interleaved block (one 256-bit register of i32 lanes).
pub(crate) const TB: usize = 8;
/// Rows per integer tile.
pub(crate) const TR: usize = 4;
/// Rows and tokens per float tile (AVX2 and portable).
pub(crate) const FR: usize = 3;
pub(crate) const FT: usize = 4;
/// Rows and tokens per float tile on AVX-512 (24 of the 32 vector registers accumulate).
pub(crate) const FR16: usize = 4;
pub(crate) const FT16: usize = 6;
/// Row tiles per block of the AVX-512 float product (64 rows: 96 KiB of F16 at 768 columns).
pub(crate) const FLOAT_BLOCK: usize = 16;

/// Activations of a batch, quantized once for every row tile: int8 values with one scale per
/// 32, interleaved 8 tokens x 4 bytes (and their absolute values, for signed weights), each
/// token block's scales side by side, and per-16 scaled sums per token.
pub struct GemmActs {
    pub(crate) tokens: usize,
    pub(crate) groups: usize,
    pub(crate) il: Vec<i8>,
    pub(crate) ail: Vec<u8>,
    pub(crate) dxv: Vec<f32>,
    /// Per token block, group and half: the 8 tokens' scale x sum of their 16 values.
    pub(crate) sxv: Vec<f32>,
}

impl GemmActs {
    /// Quantizes `x` (tokens x cols, row-major; cols a multiple of 32); tokens are padded with
    /// zeros to a multiple of 8.
    pub fn quantize(x: &[f32], cols: usize) -> GemmActs {
        GemmActs::quantize_for(x, cols, true)
    }

    /// [`GemmActs::quantize`], with the absolute values only when `signed` (the AVX2 and
    /// portable tiles of Q8_0 weights use them).
    pub(crate) fn quantize_for(x: &[f32], cols: usize, signed: bool) -> GemmActs {
        let tokens = x.len() / cols;
        let groups = cols / 32;
        // An even number of blocks (zero tokens after the last): the VNNI tile takes two at once.
        let blocks = tokens.div_ceil(2 * TB) * 2;
        let mut a = GemmActs {
            tokens,
            groups,
            il: vec![0; blocks * TB * cols],
            ail: vec![0; if signed { blocks * TB * cols } else { 0 }],
            dxv: vec![0.0; blocks * groups * TB],
            sxv: vec![0.0; blocks * groups * 2 * TB],
        };
        let (mut d, mut qrow, mut s16) = (vec![0f32; groups], vec![0i8; cols], vec![0; 2 * groups]);
        for t in 0..tokens {
            let (tb, lane) = (t / TB, t % TB);
            super::quant::quantize_row_q8(
                &x[t * cols..(t + 1) * cols],
                32,
                &mut d,
                &mut qrow,
                &mut s16,
            );
            for g in 0..groups {
                let q = &qrow[32 * g..32 * g + 32];
                a.dxv[(tb * groups + g) * TB + lane] = d[g];
                for h in 0..2 {
                    a.sxv[((tb * groups + g) * 2 + h) * TB + lane] = d[g] * s16[2 * g + h] as f32;
                }
                let base = (tb * groups + g) * 8 * 32;
                for c in 0..8 {
                    let at = base + c * 32 + lane * 4;
                    a.il[at..at + 4].copy_from_slice(&q[4 * c..4 * c + 4]);
                    if signed {
                        for k in 0..4 {
                            a.ail[at + k] = q[4 * c + k].unsigned_abs();
                        }
                    }
                }
            }
        }
        a
    }

    /// Tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Value `e` of token `t`, and its scale.
    pub(crate) fn at(&self, t: usize, e: usize) -> (i8, f32) {
        let (tb, lane, g) = (t / TB, t % TB, e / 32);
        let c = (e % 32) / 4;
        let i = (tb * self.groups + g) * 8 * 32 + c * 32 + lane * 4 + e % 4;
        (self.il[i], self.dxv[(tb * self.groups + g) * TB + lane])
    }

    /// The quantized values as f32, token-major (the reference tests multiply with).
    pub fn dequantized(&self) -> Vec<f32> {
        let cols = self.groups * 32;
        (0..self.tokens * cols)
            .map(|i| {
                let (q, d) = self.at(i / cols, i % cols);
                q as f32 * d
            })
            .collect()
    }
}

/// Up to four rows in normalized form.
pub(crate) struct Scratch {
    pub(crate) q: Vec<u8>,
    pub(crate) dl: Vec<f32>,
    pub(crate) ml: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(cols: usize) -> Scratch {
        Scratch {
            q: vec![0; TR * cols],
            dl: vec![0.0; TR * cols / 16],
            ml: vec![0.0; TR * cols / 16],
        }
    }

    /// Row `i`'s signed codes (Q8_0) as unsigned ones: `q + 128`, with the offset `-128 dl`
    /// that takes it back out (the VNNI tile multiplies unsigned codes by signed activations).
    pub(crate) fn unsigned(&mut self, i: usize, cols: usize) {
        for q in &mut self.q[i * cols..(i + 1) * cols] {
            *q ^= 0x80;
        }
        let h = i * cols / 16..(i + 1) * cols / 16;
        for (m, d) in self.ml[h.clone()].iter_mut().zip(&self.dl[h]) {
            *m = -128.0 * d;
        }
    }

    #[cfg(test)]
    pub(crate) fn unpack(&mut self, f: QFormat, row: &[u8], i: usize, cols: usize) {
        self.unpack_strided(f, row, f.block().1, i, cols);
    }

    /// [`Scratch::unpack`] of a row whose `cols / block values` blocks lie `stride` bytes apart
    /// in `bytes` (a row of a matrix interleaved eight rows at a time, read where it lies).
    pub(crate) fn unpack_strided(
        &mut self,
        f: QFormat,
        bytes: &[u8],
        stride: usize,
        i: usize,
        cols: usize,
    ) {
        let (bv, bb) = f.block();
        let (h0, n) = (i * cols / 16, bv / 16);
        let blocks = cols / bv;
        assert!(
            blocks == 0 || (blocks - 1) * stride + bb <= bytes.len(),
            "a row's blocks lie inside its matrix"
        );
        #[cfg(target_arch = "x86_64")]
        if bv == 32 && super::simd() {
            let (q, dl, ml) = (
                &mut self.q[i * cols..(i + 1) * cols],
                &mut self.dl[h0..h0 + cols / 16],
                &mut self.ml[h0..h0 + cols / 16],
            );
            // SAFETY: AVX2/F16C were detected; the scratch row holds cols codes and cols / 16
            // scales and offsets; the blocks lie inside `bytes` (asserted above).
            unsafe { super::x86::unpack::unpack_row32(f, bytes, stride, q, dl, ml) };
            return;
        }
        for k in 0..blocks {
            let b = &bytes[k * stride..k * stride + bb];
            let q = &mut self.q[i * cols + k * bv..i * cols + (k + 1) * bv];
            let dl = &mut self.dl[h0 + k * n..h0 + (k + 1) * n];
            let ml = &mut self.ml[h0 + k * n..h0 + (k + 1) * n];
            unpack_block(f, b, q, dl, ml);
        }
    }
}
