//! Batched products (prefill, and decode for formats without a dedicated dot product) straight on
//! GGUF blocks: int8 activations times quantized weights, with no dense copy of the weights.
//!
//! Every integer format is first brought, four rows at a time, into one normalized form: value
//! `e` of a row is `dl[e / 16] * q[e] + ml[e / 16]` with `q` an unsigned code of 2 to 6 bits
//! (Q8_0: a signed byte). The codes are unpacked once per row tile and reused by every token of
//! the batch. Activations are quantized once per product (int8, one scale per 32 values) and
//! interleaved 8 tokens x 4 bytes, so one 256-bit register holds 4 consecutive values of 8
//! tokens: a row's 4 codes are broadcast against it and `maddubs` yields the 8 tokens' partial
//! sums side by side. Codes of 4 bits or fewer let 8 such products add in 16 bits before one
//! widening, so a group of 32 values for 8 tokens costs about 19 instructions for 256
//! multiply-adds. The `ml` offsets are one small float product per row and token with the
//! activations' per-16 sums. Float formats (F16, BF16, F32) are converted to f32 inside their own
//! tile: 8 values at a time (2 rows x 4 tokens, AVX2), or 16 at a time (4 rows x 6 tokens, every
//! accumulator in one of AVX-512's 32 registers) taken in blocks of 64 rows.

// The kernels index several fixed-size arrays (rows, tokens, register tiles) in lockstep.
#![allow(clippy::needless_range_loop)]

use super::blocks::{Isa, QFormat, float_at, unpack_block};
use super::quant::SyncPtr;

/// Tokens per interleaved block (one 256-bit register of i32 lanes).
const TB: usize = 8;
/// Rows per integer tile.
const TR: usize = 4;
/// Rows and tokens per float tile (AVX2 and portable).
const FR: usize = 2;
const FT: usize = 4;
/// Rows and tokens per float tile on AVX-512 (24 of the 32 vector registers accumulate).
const FR16: usize = 4;
const FT16: usize = 6;
/// Row tiles per block of the AVX-512 float product (64 rows: 96 KiB of F16 at 768 columns).
const FLOAT_BLOCK: usize = 16;

/// Activations of a batch, quantized once for every row tile: int8 values with one scale per
/// 32, interleaved 8 tokens x 4 bytes (and their absolute values, for signed weights), each
/// token block's scales side by side, and per-16 scaled sums per token.
pub struct GemmActs {
    tokens: usize,
    groups: usize,
    il: Vec<i8>,
    ail: Vec<u8>,
    dxv: Vec<f32>,
    /// Per token block, group and half: the 8 tokens' scale x sum of their 16 values.
    sxv: Vec<f32>,
}

impl GemmActs {
    /// Quantizes `x` (tokens x cols, row-major; cols a multiple of 32); tokens are padded with
    /// zeros to a multiple of 8.
    pub fn quantize(x: &[f32], cols: usize) -> GemmActs {
        GemmActs::quantize_for(x, cols, true)
    }

    /// [`GemmActs::quantize`], with the absolute values only when `signed` (the AVX2 and
    /// portable tiles of Q8_0 weights use them).
    fn quantize_for(x: &[f32], cols: usize, signed: bool) -> GemmActs {
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
    fn at(&self, t: usize, e: usize) -> (i8, f32) {
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
struct Scratch {
    q: Vec<u8>,
    dl: Vec<f32>,
    ml: Vec<f32>,
}

impl Scratch {
    fn new(cols: usize) -> Scratch {
        Scratch {
            q: vec![0; TR * cols],
            dl: vec![0.0; TR * cols / 16],
            ml: vec![0.0; TR * cols / 16],
        }
    }

    /// Row `i`'s signed codes (Q8_0) as unsigned ones: `q + 128`, with the offset `-128 dl`
    /// that takes it back out (the VNNI tile multiplies unsigned codes by signed activations).
    fn unsigned(&mut self, i: usize, cols: usize) {
        for q in &mut self.q[i * cols..(i + 1) * cols] {
            *q ^= 0x80;
        }
        let h = i * cols / 16..(i + 1) * cols / 16;
        for (m, d) in self.ml[h.clone()].iter_mut().zip(&self.dl[h]) {
            *m = -128.0 * d;
        }
    }

    fn unpack(&mut self, f: QFormat, row: &[u8], i: usize, cols: usize) {
        let (bv, bb) = f.block();
        let (h0, n) = (i * cols / 16, bv / 16);
        #[cfg(target_arch = "x86_64")]
        if bv == 32 && super::blocks::simd() && row.len() == cols / 32 * bb {
            let (q, dl, ml) = (
                &mut self.q[i * cols..(i + 1) * cols],
                &mut self.dl[h0..h0 + cols / 16],
                &mut self.ml[h0..h0 + cols / 16],
            );
            // SAFETY: AVX2/F16C were detected; the row holds cols / 32 blocks and the
            // scratch row cols codes and cols / 16 scales and offsets.
            unsafe { x86::unpack_row32(f, row, q, dl, ml) };
            return;
        }
        for (k, b) in row.chunks_exact(bb).enumerate() {
            let q = &mut self.q[i * cols + k * bv..i * cols + (k + 1) * bv];
            let dl = &mut self.dl[h0 + k * n..h0 + (k + 1) * n];
            let ml = &mut self.ml[h0 + k * n..h0 + (k + 1) * n];
            unpack_block(f, b, q, dl, ml);
        }
    }
}

/// How an integer format's codes are multiplied: how many 4-value products add in 16 bits before
/// widening (2 x 2^bits x 127 x k must stay below 32768), whether both halves of a group of 32
/// share one scale, whether codes are signed.
#[derive(Clone, Copy)]
struct Kind {
    k: usize,
    shared: bool,
    signed: bool,
}

fn kind(f: QFormat) -> Kind {
    let (k, shared) = match f {
        QFormat::Q2K | QFormat::Q3K => (8, false),
        QFormat::Q4_0 | QFormat::Q4_1 | QFormat::Q4K => (8, true),
        QFormat::Q5_0 | QFormat::Q5_1 | QFormat::Q5K => (4, true),
        QFormat::Q6K => (2, false),
        _ => (1, true),
    };
    Kind {
        k,
        shared,
        signed: f == QFormat::Q8_0,
    }
}

/// `y[t * rows + r] = Σ_c W[r][c] x[t][c]` for `rows` x `cols` weights in `bytes` (format `f`).
pub fn gemm(f: QFormat, bytes: &[u8], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    debug_assert!(y.len() >= x.len() / cols * rows);
    gemm_on(super::blocks::isa(), f, bytes, rows, cols, x, y)
}

/// [`gemm`] on a given instruction set (at most the CPU's: the tests compare them).
pub(crate) fn gemm_on(
    isa: Isa,
    f: QFormat,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let tokens = x.len() / cols;
    let row_bytes = cols / f.block().0 * f.block().1;
    let row = |r: usize| &bytes[r * row_bytes..(r + 1) * row_bytes];
    let simd = isa >= Isa::Avx2;
    let vnni = isa >= Isa::Avx512Vnni;
    let out = SyncPtr(y.as_mut_ptr());
    let float = f.is_float();
    let wide = float && vnni;
    let tr = match (float, wide) {
        (true, true) => FR16,
        (true, false) => FR,
        _ => TR,
    };
    let tiles = rows.div_ceil(tr);
    let kd = kind(f);
    let acts = (!float).then(|| GemmActs::quantize_for(x, cols, kd.signed && !vnni));
    let work = |range: std::ops::Range<usize>| {
        let out = &out;
        // SAFETY (all writes below): each (token, row) is written by exactly one work item.
        let put = |t: usize, r: usize, v: f32| unsafe { *out.0.add(t * rows + r) = v };
        match &acts {
            Some(a) => {
                let mut s = Scratch::new(cols);
                let mut res = [[[0f32; TB]; TR]; 2];
                let blocks = tokens.div_ceil(TB);
                for tile in range {
                    let r0 = tile * TR;
                    let nr = TR.min(rows - r0);
                    for i in 0..nr {
                        s.unpack(f, row(r0 + i), i, cols);
                        if vnni && kd.signed {
                            s.unsigned(i, cols);
                        }
                    }
                    let mut tb = 0;
                    while tb < blocks {
                        let nb = if vnni { 2 } else { 1 };
                        if vnni {
                            vnni_tile(&s, a, cols, nr, tb, kd.shared, &mut res);
                        } else {
                            int_tile(&s, a, cols, nr, tb, kd, simd, &mut res[0]);
                        }
                        for (k, rb) in res.iter().enumerate().take(nb) {
                            for (i, rr) in rb.iter().enumerate().take(nr) {
                                for (lane, v) in rr.iter().enumerate() {
                                    let t = (tb + k) * TB + lane;
                                    if t < tokens {
                                        put(t, r0 + i, *v);
                                    }
                                }
                            }
                        }
                        tb += nb;
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            None if wide => {
                let mut res = [[0f32; FT16]; FR16];
                // Blocks of row tiles, each taken token group by token group: a group's
                // activations stay in L1 across the block's tiles, and the block's weights
                // stay in L2 across the groups (row tile by row tile over every token read
                // the activations from L2 at 16 bytes a multiply-add and ran no faster than
                // the AVX2 tile).
                let mut b0 = range.start;
                while b0 < range.end {
                    let b1 = (b0 + FLOAT_BLOCK).min(range.end);
                    let mut t0 = 0;
                    while t0 < tokens {
                        let nt = FT16.min(tokens - t0);
                        for tile in b0..b1 {
                            let r0 = tile * FR16;
                            let nr = FR16.min(rows - r0);
                            // A short last tile repeats its last row (computed, not stored).
                            let rows_b: [&[u8]; FR16] =
                                std::array::from_fn(|i| row(r0 + i.min(nr - 1)));
                            float_tile16(f, rows_b, x, cols, t0, nt, &mut res);
                            for (i, rr) in res.iter().enumerate().take(nr) {
                                for (t, v) in rr.iter().enumerate().take(nt) {
                                    put(t0 + t, r0 + i, *v);
                                }
                            }
                        }
                        t0 += nt;
                    }
                    b0 = b1;
                }
            }
            None => {
                let mut res = [[0f32; FT]; FR];
                for tile in range {
                    let r0 = tile * FR;
                    let nr = FR.min(rows - r0);
                    let mut t0 = 0;
                    while t0 < tokens {
                        let nt = FT.min(tokens - t0);
                        let rows_b: [&[u8]; FR] = [row(r0), row(r0 + nr - 1)];
                        float_tile(f, rows_b, x, cols, nr, t0, nt, simd, &mut res);
                        for (i, rr) in res.iter().enumerate().take(nr) {
                            for (t, v) in rr.iter().enumerate().take(nt) {
                                put(t0 + t, r0 + i, *v);
                            }
                        }
                        t0 += nt;
                    }
                }
            }
        }
    };
    if rows * cols * tokens >= super::quant::PARALLEL_MIN_WEIGHTS && tiles > 1 {
        candle_core::utils::barrier_pool().execute_chunked(tiles, work);
    } else {
        work(0..tiles);
    }
}

/// Rows `0..nr` of the scratch times token block `tb`: `res[r][lane]`, without the offsets.
#[allow(clippy::too_many_arguments)]
fn int_tile(
    s: &Scratch,
    a: &GemmActs,
    cols: usize,
    nr: usize,
    tb: usize,
    kd: Kind,
    simd: bool,
    res: &mut [[f32; TB]; TR],
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        macro_rules! go {
            ($r:literal) => {
                // SAFETY: AVX2/FMA were detected at run time; the tile's rows and block exist.
                unsafe {
                    match (kd.signed, kd.k, kd.shared) {
                        (true, _, _) => x86::int_tile::<$r, 1, true, true>(s, a, cols, tb, res),
                        (_, 8, true) => x86::int_tile::<$r, 8, true, false>(s, a, cols, tb, res),
                        (_, 8, false) => x86::int_tile::<$r, 8, false, false>(s, a, cols, tb, res),
                        (_, 4, _) => x86::int_tile::<$r, 4, true, false>(s, a, cols, tb, res),
                        _ => x86::int_tile::<$r, 2, false, false>(s, a, cols, tb, res),
                    }
                }
            };
        }
        match nr {
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
        return;
    }
    let _ = simd;
    scalar_int_tile(s, a, cols, nr, tb, kd.signed, res);
}

/// Rows `0..nr` of the scratch times token blocks `tb` and `tb + 1`, on AVX-512 VNNI:
/// `res[k][r][lane]`, offsets included.
#[allow(clippy::too_many_arguments)]
fn vnni_tile(
    s: &Scratch,
    a: &GemmActs,
    cols: usize,
    nr: usize,
    tb: usize,
    shared: bool,
    res: &mut [[[f32; TB]; TR]; 2],
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($r:literal) => {
                // SAFETY: the caller chose this tile only where AVX-512 VNNI was detected; the
                // tile's rows exist, and blocks tb and tb + 1 (activations hold an even number).
                unsafe {
                    if shared {
                        x86::vnni_tile16::<$r, true>(s, a, cols, tb, res)
                    } else {
                        x86::vnni_tile16::<$r, false>(s, a, cols, tb, res)
                    }
                }
            };
        }
        match nr {
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (s, a, cols, nr, tb, shared, res);
        unreachable!("VNNI is an x86 instruction set");
    }
}

/// The portable tile: exact integer sums per 16 values, then float scaling.
fn scalar_int_tile(
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

/// Four float rows times `nt` (1 to 6) tokens from `t0`, 16 values a step (AVX-512).
#[cfg(target_arch = "x86_64")]
fn float_tile16(
    f: QFormat,
    rows: [&[u8]; FR16],
    x: &[f32],
    cols: usize,
    t0: usize,
    nt: usize,
    res: &mut [[f32; FT16]; FR16],
) {
    macro_rules! go {
        ($t:literal) => {
            // SAFETY: AVX-512 F/VL (and AVX2, FMA, F16C) were detected at run time (the wide tile
            // is only chosen at the AVX-512 level); rows hold `cols` values, a multiple of 32;
            // tokens t0..t0 + nt exist.
            unsafe {
                match f {
                    QFormat::F16 => x86::float_tile16::<0, $t>(rows, x, cols, t0, res),
                    QFormat::BF16 => x86::float_tile16::<1, $t>(rows, x, cols, t0, res),
                    _ => x86::float_tile16::<2, $t>(rows, x, cols, t0, res),
                }
            }
        };
    }
    match nt {
        6.. => go!(6),
        5 => go!(5),
        4 => go!(4),
        3 => go!(3),
        2 => go!(2),
        _ => go!(1),
    }
}

#[allow(clippy::too_many_arguments)]
fn float_tile(
    f: QFormat,
    rows: [&[u8]; FR],
    x: &[f32],
    cols: usize,
    nr: usize,
    t0: usize,
    nt: usize,
    simd: bool,
    res: &mut [[f32; FT]; FR],
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        macro_rules! go {
            ($r:literal, $t:literal) => {
                // SAFETY: AVX2/FMA/F16C were detected at run time; rows hold `cols` values.
                unsafe { x86::float_tile::<$r, $t>(f, rows, x, cols, t0, res) }
            };
        }
        match (nr, nt) {
            (2, 4) => go!(2, 4),
            (2, 3) => go!(2, 3),
            (2, 2) => go!(2, 2),
            (2, _) => go!(2, 1),
            (_, 4) => go!(1, 4),
            (_, 3) => go!(1, 3),
            (_, 2) => go!(1, 2),
            _ => go!(1, 1),
        }
        return;
    }
    let _ = simd;
    for (i, rr) in res.iter_mut().enumerate().take(nr) {
        for (t, v) in rr.iter_mut().enumerate().take(nt) {
            let xt = &x[(t0 + t) * cols..(t0 + t + 1) * cols];
            let w: Vec<f32> = (0..cols).map(|c| float_at(f, rows[i], c)).collect();
            *v = super::dot(&w, xt);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{FR, FR16, FT, FT16, GemmActs, Scratch, TB, TR};
    use crate::engine::kernels::blocks::QFormat;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// R rows of normalized codes times one interleaved block of 8 tokens. `K`: 4-value
    /// products added in 16 bits before widening; `SH`: both halves of a group share a scale;
    /// `S`: signed codes (Q8_0), multiplied as |x| x sign(w, x) because `maddubs` wants its first
    /// operand unsigned.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn int_tile<const R: usize, const K: usize, const SH: bool, const S: bool>(
        s: &Scratch,
        a: &GemmActs,
        cols: usize,
        tb: usize,
        res: &mut [[f32; TB]; TR],
    ) {
        let groups = cols / 32;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let (q, dl) = (s.q.as_ptr(), s.dl.as_ptr());
        for g in 0..groups {
            let blk = (tb * groups + g) * 8 * 32;
            // SAFETY: block `tb` of the interleaved activations holds `groups` groups of 8 x 32
            // bytes and 8 scales per group; rows r < R of the scratch hold `cols` codes and
            // `cols / 16` scales.
            unsafe {
                let dx = _mm256_loadu_ps(a.dxv.as_ptr().add((tb * groups + g) * TB));
                let mut isum = [_mm256_setzero_si256(); R];
                for h in 0..2 {
                    let mut c = 4 * h;
                    while c < 4 * h + 4 {
                        let mut s16 = [_mm256_setzero_si256(); R];
                        for k in 0..K.min(4) {
                            let xi = blk + (c + k) * 32;
                            let x = _mm256_loadu_si256(a.il.as_ptr().add(xi) as *const __m256i);
                            let ax = if S {
                                _mm256_loadu_si256(a.ail.as_ptr().add(xi) as *const __m256i)
                            } else {
                                x
                            };
                            for r in 0..R {
                                let wp = q.add(r * cols + 32 * g + 4 * (c + k)) as *const i32;
                                let w = _mm256_set1_epi32(wp.read_unaligned());
                                let p = if S {
                                    _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x))
                                } else {
                                    _mm256_maddubs_epi16(w, x)
                                };
                                s16[r] = if k == 0 {
                                    p
                                } else {
                                    _mm256_add_epi16(s16[r], p)
                                };
                            }
                        }
                        for r in 0..R {
                            isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(s16[r], ones));
                        }
                        c += K.min(4);
                    }
                    if !SH || h == 1 {
                        // One scale per 16 values (or per 32 when the halves share it).
                        for r in 0..R {
                            let l = &*dl.add(r * cols / 16 + 2 * g + if SH { 0 } else { h });
                            let sc = _mm256_mul_ps(dx, _mm256_broadcast_ss(l));
                            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), sc, acc[r]);
                            isum[r] = _mm256_setzero_si256();
                        }
                    }
                    if !S {
                        // The offsets: each row's per-16 offset times the tokens' scaled sums.
                        let sx =
                            _mm256_loadu_ps(a.sxv.as_ptr().add(((tb * groups + g) * 2 + h) * TB));
                        for r in 0..R {
                            let m = &*s.ml.as_ptr().add(r * cols / 16 + 2 * g + h);
                            acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(m), sx, acc[r]);
                        }
                    }
                }
            }
        }
        for r in 0..R {
            // SAFETY: res rows hold 8 lanes.
            unsafe { _mm256_storeu_ps(res[r].as_mut_ptr(), acc[r]) };
        }
    }

    /// [`unpack_block`](super::unpack_block) of a whole row of a 32-value format (Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q8_0): the same codes, scales and offsets, 32 codes in a few instructions.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_row32(
        f: QFormat,
        row: &[u8],
        q: &mut [u8],
        dl: &mut [f32],
        ml: &mut [f32],
    ) {
        let bb = f.block().1;
        let nib = _mm_set1_epi8(0x0F);
        // Bit j of a 32-bit word to byte j: byte j takes word byte j / 8, then tests bit j % 8.
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let f16 = |b: *const u8| -> f32 {
            // SAFETY: the caller passes the address of a block's f16 field.
            unsafe {
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                    (b as *const u16).read_unaligned() as i32,
                )))
            }
        };
        for k in 0..row.len() / bb {
            // SAFETY: block k is inside the row; codes 32 k..32 k + 32 and scales 2 k, 2 k + 1
            // are inside the scratch row (the caller's lengths).
            unsafe {
                let b = row.as_ptr().add(k * bb);
                let qp = q.as_mut_ptr().add(32 * k);
                let d = f16(b);
                let (m, codes) = match f {
                    QFormat::Q8_0 => {
                        let v = _mm256_loadu_si256(b.add(2) as *const __m256i);
                        _mm256_storeu_si256(qp as *mut __m256i, v);
                        (0.0, None)
                    }
                    QFormat::Q4_0 => (-8.0 * d, Some(2)),
                    QFormat::Q4_1 => (f16(b.add(2)), Some(4)),
                    QFormat::Q5_0 => (-16.0 * d, Some(6)),
                    _ => (f16(b.add(2)), Some(8)),
                };
                if let Some(at) = codes {
                    let v = _mm_loadu_si128(b.add(at) as *const __m128i);
                    let lo = _mm_and_si128(v, nib);
                    let hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
                    let mut c = _mm256_set_m128i(hi, lo);
                    if matches!(f, QFormat::Q5_0 | QFormat::Q5_1) {
                        let h = (b.add(at - 4) as *const i32).read_unaligned();
                        let hb = _mm256_shuffle_epi8(_mm256_set1_epi32(h), spread);
                        let set = _mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit);
                        c = _mm256_or_si256(c, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
                    }
                    _mm256_storeu_si256(qp as *mut __m256i, c);
                }
                *dl.get_unchecked_mut(2 * k) = d;
                *dl.get_unchecked_mut(2 * k + 1) = d;
                *ml.get_unchecked_mut(2 * k) = m;
                *ml.get_unchecked_mut(2 * k + 1) = m;
            }
        }
    }

    /// Two 256-bit halves as one 512-bit register (low, high).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn cat(lo: *const u8, hi: *const u8) -> __m512i {
        // SAFETY: the caller passes 32 readable bytes at each address.
        unsafe {
            _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(lo as *const __m256i)),
                _mm256_loadu_si256(hi as *const __m256i),
                1,
            )
        }
    }

    /// R rows of unsigned codes times two blocks of 8 tokens with `vpdpbusd` on 512-bit
    /// registers (16 tokens x 4 bytes; 4 products summed into each 32-bit lane, no 16-bit
    /// saturation, so every code width takes one path; R rows' sums stay in registers). `SH`:
    /// both halves of a group share a scale. Offsets (`ml`) included.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn vnni_tile16<const R: usize, const SH: bool>(
        s: &Scratch,
        a: &GemmActs,
        cols: usize,
        tb: usize,
        res: &mut [[[f32; TB]; TR]; 2],
    ) {
        let groups = cols / 32;
        let mut acc = [_mm512_setzero_ps(); R];
        let (q, dl, ml) = (s.q.as_ptr(), s.dl.as_ptr(), s.ml.as_ptr());
        let (il, dxv, sxv) = (
            a.il.as_ptr() as *const u8,
            a.dxv.as_ptr() as *const u8,
            a.sxv.as_ptr() as *const u8,
        );
        for g in 0..groups {
            let (b0, b1) = (tb * groups + g, (tb + 1) * groups + g);
            // SAFETY: blocks tb and tb + 1 of the activations hold group g (8 x 32 code bytes,
            // 8 scales, 16 sums each); rows r < R of the scratch hold `cols` codes and `cols /
            // 16` scales and offsets.
            unsafe {
                let dx = _mm512_castsi512_ps(cat(dxv.add(4 * b0 * TB), dxv.add(4 * b1 * TB)));
                let mut isum = [_mm512_setzero_si512(); R];
                for h in 0..2 {
                    for c in 4 * h..4 * h + 4 {
                        let x = cat(il.add(b0 * 256 + c * 32), il.add(b1 * 256 + c * 32));
                        for r in 0..R {
                            let wp = q.add(r * cols + 32 * g + 4 * c) as *const i32;
                            let w = _mm512_set1_epi32(wp.read_unaligned());
                            isum[r] = _mm512_dpbusd_epi32(isum[r], w, x);
                        }
                    }
                    if !SH || h == 1 {
                        for r in 0..R {
                            let l = _mm512_set1_ps(
                                *dl.add(r * cols / 16 + 2 * g + if SH { 0 } else { h }),
                            );
                            let v = _mm512_cvtepi32_ps(isum[r]);
                            acc[r] = _mm512_fmadd_ps(v, _mm512_mul_ps(dx, l), acc[r]);
                            isum[r] = _mm512_setzero_si512();
                        }
                    }
                }
                let sx = |h: usize| {
                    _mm512_castsi512_ps(cat(
                        sxv.add(4 * (b0 * 2 + h) * TB),
                        sxv.add(4 * (b1 * 2 + h) * TB),
                    ))
                };
                if SH {
                    // One offset per 32 values: the halves' sums add first.
                    let sx = _mm512_add_ps(sx(0), sx(1));
                    for r in 0..R {
                        let m = _mm512_set1_ps(*ml.add(r * cols / 16 + 2 * g));
                        acc[r] = _mm512_fmadd_ps(m, sx, acc[r]);
                    }
                } else {
                    for h in 0..2 {
                        let sx = sx(h);
                        for r in 0..R {
                            let m = _mm512_set1_ps(*ml.add(r * cols / 16 + 2 * g + h));
                            acc[r] = _mm512_fmadd_ps(m, sx, acc[r]);
                        }
                    }
                }
            }
        }
        for r in 0..R {
            // SAFETY: res rows hold 8 lanes each.
            unsafe {
                _mm256_storeu_ps(res[0][r].as_mut_ptr(), _mm512_castps512_ps256(acc[r]));
                _mm256_storeu_ps(
                    res[1][r].as_mut_ptr(),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1)),
                );
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(f: QFormat, b: *const u8, i: usize) -> __m256 {
        // SAFETY: the caller keeps i + 8 within the row.
        unsafe {
            match f {
                QFormat::F16 => _mm256_cvtph_ps(_mm_loadu_si128(b.add(2 * i) as *const __m128i)),
                QFormat::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(
                    _mm256_cvtepu16_epi32(_mm_loadu_si128(b.add(2 * i) as *const __m128i)),
                    16,
                )),
                _ => _mm256_loadu_ps(b.add(4 * i) as *const f32),
            }
        }
    }

    /// 16 float weights from value `i` of row `b`, as f32 (`F`: 0 F16, 1 BF16, 2 F32).
    #[inline(always)]
    unsafe fn load16<const F: u8>(b: *const u8, i: usize) -> __m512 {
        // SAFETY: the caller keeps i + 16 within the row and runs with AVX-512 F enabled.
        unsafe {
            match F {
                0 => _mm512_cvtph_ps(_mm256_loadu_si256(b.add(2 * i) as *const __m256i)),
                1 => _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(b.add(2 * i) as *const __m256i)),
                    16,
                )),
                _ => _mm512_loadu_ps(b.add(4 * i) as *const f32),
            }
        }
    }

    /// 4 float rows x T f32 tokens on 512-bit registers (`F` as in [`load16`]): per 16
    /// values, four weight loads and T activation loads feed 4 T multiply-adds, every
    /// accumulator in a register.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    pub unsafe fn float_tile16<const F: u8, const T: usize>(
        rows: [&[u8]; FR16],
        x: &[f32],
        cols: usize,
        t0: usize,
        res: &mut [[f32; FT16]; FR16],
    ) {
        let mut acc = [[_mm512_setzero_ps(); T]; FR16];
        let xp = x.as_ptr();
        let wp = rows.map(|r| r.as_ptr());
        let mut c = 0;
        while c < cols {
            // SAFETY: c + 16 <= cols (cols is a multiple of 32); token t0 + t holds `cols`
            // values.
            unsafe {
                let w0 = load16::<F>(wp[0], c);
                let w1 = load16::<F>(wp[1], c);
                let w2 = load16::<F>(wp[2], c);
                let w3 = load16::<F>(wp[3], c);
                for t in 0..T {
                    let xv = _mm512_loadu_ps(xp.add((t0 + t) * cols + c));
                    acc[0][t] = _mm512_fmadd_ps(w0, xv, acc[0][t]);
                    acc[1][t] = _mm512_fmadd_ps(w1, xv, acc[1][t]);
                    acc[2][t] = _mm512_fmadd_ps(w2, xv, acc[2][t]);
                    acc[3][t] = _mm512_fmadd_ps(w3, xv, acc[3][t]);
                }
            }
            c += 16;
        }
        for r in 0..FR16 {
            for t in 0..T {
                res[r][t] = _mm512_reduce_add_ps(acc[r][t]);
            }
        }
    }

    /// R float rows x T f32 tokens.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn float_tile<const R: usize, const T: usize>(
        f: QFormat,
        rows: [&[u8]; FR],
        x: &[f32],
        cols: usize,
        t0: usize,
        res: &mut [[f32; FT]; FR],
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for c in (0..cols).step_by(8) {
            let mut w = [_mm256_setzero_ps(); R];
            for r in 0..R {
                // SAFETY: c + 8 <= cols (cols is a multiple of 32).
                w[r] = unsafe { load8(f, rows[r].as_ptr(), c) };
            }
            for t in 0..T {
                // SAFETY: token t0 + t holds `cols` values.
                let xv = unsafe { _mm256_loadu_ps(x.as_ptr().add((t0 + t) * cols + c)) };
                for r in 0..R {
                    acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
                }
            }
        }
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn bytes(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q.data().unwrap().to_vec(), deq)
    }

    /// Every instruction set this CPU runs, the portable one first.
    fn isas() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|&i| i <= crate::engine::kernels::blocks::isa())
            .collect()
    }

    /// Every format, odd row and token counts (tile remainders): the SIMD tile equals the
    /// portable one up to float rounding, and both equal candle's dequantized weights times the
    /// quantized activations (dequantized).
    #[test]
    fn every_format_matches_the_dequantized_reference() {
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::F16,
            GgmlDType::BF16,
            GgmlDType::F32,
        ] {
            let f = QFormat::of(dtype).unwrap();
            // 7 rows: a tile of 4 and one of 3; 7 and 21 tokens: one partial token block, and
            // two pairs of blocks (the VNNI tile's) with a partial one after them; 70 rows and
            // 13 tokens: a block of float tiles and a short one, split over the threads.
            for (rows, cols, tokens) in [(7, 512, 7), (7, 256, 21), (70, 256, 13)] {
                let (b, deq) = bytes(dtype, rows, cols, 11);
                let x = random(tokens * cols, 12);
                let xd: Vec<f32> = if f.is_float() {
                    x.clone()
                } else {
                    GemmActs::quantize(&x, cols).dequantized()
                };
                for isa in isas() {
                    let mut y = vec![0f32; tokens * rows];
                    gemm_on(isa, f, &b, rows, cols, &x, &mut y);
                    for t in 0..tokens {
                        for r in 0..rows {
                            let want: f32 = (0..cols)
                                .map(|c| deq[r * cols + c] * xd[t * cols + c])
                                .sum();
                            let got = y[t * rows + r];
                            assert!(
                                (got - want).abs() < 2e-3 * (1.0 + want.abs()),
                                "{dtype:?} {isa:?} token {t} row {r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 row unpack gives the portable block unpack's codes, scales and offsets, bit
    /// for bit, on random bytes (every code and high-bit pattern).
    #[test]
    fn simd_row_unpack_equals_the_block_unpack() {
        if !crate::engine::kernels::blocks::simd() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(9);
        for f in [
            QFormat::Q4_0,
            QFormat::Q4_1,
            QFormat::Q5_0,
            QFormat::Q5_1,
            QFormat::Q8_0,
        ] {
            let (cols, bb) = (256, f.block().1);
            let mut row: Vec<u8> = (0..cols / 32 * bb).map(|_| rng.random()).collect();
            for k in 0..cols / 32 {
                // Finite scales: 0x3c00 is 1.0 in f16, plus a random low mantissa.
                for at in [0, 2] {
                    row[k * bb + at] = rng.random();
                    row[k * bb + at + 1] = 0x3c;
                }
            }
            let (mut q, mut dl, mut ml) = (vec![0u8; cols], vec![0f32; 16], vec![0f32; 16]);
            // SAFETY: AVX2/F16C checked above; the lengths are those of one row.
            unsafe { x86::unpack_row32(f, &row, &mut q, &mut dl, &mut ml) };
            for k in 0..cols / 32 {
                let (mut q2, mut dl2, mut ml2) = ([0u8; 32], [0f32; 2], [0f32; 2]);
                unpack_block(f, &row[k * bb..(k + 1) * bb], &mut q2, &mut dl2, &mut ml2);
                assert_eq!(&q[32 * k..32 * k + 32], &q2, "{f:?} block {k}");
                assert_eq!(&dl[2 * k..2 * k + 2], &dl2, "{f:?} block {k}");
                assert_eq!(&ml[2 * k..2 * k + 2], &ml2, "{f:?} block {k}");
            }
        }
    }

    #[test]
    fn scalar_tile_equals_simd_tile() {
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q3K,
            GgmlDType::Q6K,
            GgmlDType::Q4_1,
            GgmlDType::Q5K,
        ] {
            let f = QFormat::of(dtype).unwrap();
            let cols = 256;
            let (b, _) = bytes(dtype, 3, cols, 3);
            let a = GemmActs::quantize(&random(11 * cols, 4), cols);
            let mut s = Scratch::new(cols);
            let rb = cols / f.block().0 * f.block().1;
            for i in 0..3 {
                s.unpack(f, &b[i * rb..(i + 1) * rb], i, cols);
            }
            let simd = crate::engine::kernels::blocks::simd();
            for tb in 0..2 {
                let (mut p, mut q) = ([[0f32; TB]; TR], [[0f32; TB]; TR]);
                scalar_int_tile(&s, &a, cols, 3, tb, f == QFormat::Q8_0, &mut p);
                int_tile(&s, &a, cols, 3, tb, kind(f), simd, &mut q);
                for (pr, qr) in p.iter().zip(&q).take(3) {
                    for (x, y) in pr.iter().zip(qr) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                            "{dtype:?}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// `cargo test --release --lib gemm::speed -- --ignored --nocapture`: GMAC/s per format,
    /// next to candle's f32 gemm on the same shape.
    #[test]
    #[ignore]
    fn gmac_per_s() {
        let tokens: usize = std::env::var("GT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let (rows, cols) = (1536, 768);
        let x: Vec<f32> = (0..tokens * cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
        let macs = (rows * cols * tokens) as f64;
        let xt = Tensor::from_vec(x.clone(), (tokens, cols), &Device::Cpu).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            let _ = xt.matmul(&w.t().unwrap()).unwrap();
        }
        eprintln!(
            "f32 gemm: {:.1} GMAC/s",
            macs * 20.0 / t.elapsed().as_secs_f64() / 1e9
        );
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::F16,
        ] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let b = q.data().unwrap().to_vec();
            let f = QFormat::of(dtype).unwrap();
            let mut y = vec![0f32; tokens * rows];
            if dtype == GgmlDType::Q4_0 {
                let t = std::time::Instant::now();
                for _ in 0..20 {
                    std::hint::black_box(GemmActs::quantize(&x, cols));
                }
                let s = t.elapsed().as_secs_f64() / 20.0;
                eprintln!("quantize activations: {:.3} ms", s * 1e3);
            }
            if !f.is_float() {
                let mut sc = Scratch::new(cols);
                let rb = cols / f.block().0 * f.block().1;
                let t = std::time::Instant::now();
                for _ in 0..20 {
                    for r in 0..rows {
                        sc.unpack(f, &b[r * rb..(r + 1) * rb], r % TR, cols);
                    }
                }
                let s = t.elapsed().as_secs_f64() / 20.0;
                eprintln!(
                    "{dtype:?} unpack: {:.2} ms per product ({:.2} ns a value, one thread)",
                    s * 1e3,
                    s * 1e9 / (rows * cols) as f64
                );
            }
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if isa > crate::engine::kernels::blocks::isa() {
                    continue;
                }
                let t = std::time::Instant::now();
                for _ in 0..20 {
                    gemm_on(isa, f, &b, rows, cols, &x, &mut y);
                }
                let s = t.elapsed().as_secs_f64() / 20.0;
                eprintln!("{dtype:?} {}: {:.1} GMAC/s", isa.name(), macs / s / 1e9);
            }
        }
    }
}
