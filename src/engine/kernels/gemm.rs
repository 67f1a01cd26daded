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
//! tile: 8 values at a time (3 rows x 4 tokens, AVX2), or 16 at a time (4 rows x 6 tokens, every
//! accumulator in one of AVX-512's 32 registers) taken in blocks of 64 rows.

// The kernels index several fixed-size arrays (rows, tokens, register tiles) in lockstep.
#![allow(clippy::needless_range_loop)]

use super::blocks::{QFormat, float_at};
pub(crate) use super::tiles::{FLOAT_BLOCK, FR, FR16, FT, FT16, GemmActs, Scratch, TB, TR};
#[cfg(target_arch = "x86_64")]
use super::x86::gemm as x86;
use super::{Isa, SyncPtr};

/// How an integer format's codes are multiplied: how many 4-value products add in 16 bits before
/// widening (2 x 2^bits x 127 x k must stay below 32768), whether both halves of a group of 32
/// share one scale, whether codes are signed.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    pub(crate) k: usize,
    pub(crate) shared: bool,
    pub(crate) signed: bool,
}

pub(crate) fn kind(f: QFormat) -> Kind {
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
    gemm_on(super::isa(), f, bytes, rows, cols, false, x, y)
}

/// [`gemm`] on a given instruction set (at most the CPU's: the tests compare them), on
/// weights in the file's layout or interleaved eight rows at a time
/// (`QMatrix::interleaved`; integer formats only). Row tiles are split over the pool; each
/// work item writes only its own rows of `y`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_on(
    isa: Isa,
    f: QFormat,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    interleaved: bool,
    x: &[f32],
    y: &mut [f32],
) {
    let tokens = x.len() / cols;
    let p = Product {
        f,
        bytes,
        row_bytes: cols / f.block().0 * f.block().1,
        interleaved,
        rows,
        cols,
        tokens,
        out: SyncPtr(y.as_mut_ptr()),
        isa,
    };
    let float = f.is_float();
    let wide = float && isa >= Isa::Avx512Vnni;
    let tr = match (float, wide) {
        (true, true) => FR16,
        (true, false) => FR,
        _ => TR,
    };
    let tiles = rows.div_ceil(tr);
    let kd = kind(f);
    let acts =
        (!float).then(|| GemmActs::quantize_for(x, cols, kd.signed && isa < Isa::Avx512Vnni));
    let work = |range: std::ops::Range<usize>| match &acts {
        Some(a) => p.int_tiles(a, kd, range),
        #[cfg(target_arch = "x86_64")]
        None if wide => p.float_tiles16(x, range),
        None => p.float_tiles(x, range),
    };
    if rows * cols * tokens >= super::PARALLEL_MIN_WEIGHTS && tiles > 1 {
        candle_core::utils::barrier_pool().execute_chunked(tiles, work);
    } else {
        work(0..tiles);
    }
}

/// One product's shape, weights and output.
struct Product<'a> {
    f: QFormat,
    bytes: &'a [u8],
    row_bytes: usize,
    /// Blocks interleaved eight rows at a time (integer formats only).
    interleaved: bool,
    rows: usize,
    cols: usize,
    tokens: usize,
    out: SyncPtr,
    isa: Isa,
}

impl Product<'_> {
    /// Row `r`'s bytes (a matrix in the file's layout).
    fn row(&self, r: usize) -> &[u8] {
        &self.bytes[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Row `r`'s blocks where they lie, in either layout: the bytes from its first block on
    /// and the distance between its blocks.
    fn row_blocks(&self, r: usize) -> (&[u8], usize) {
        let bb = self.f.block().1;
        if !self.interleaved {
            return (self.row(r), bb);
        }
        let group = super::GROUP;
        let n = group * self.row_bytes;
        let start = r / group * n + r % group * bb;
        let end = ((r / group + 1) * n).min(self.bytes.len());
        (&self.bytes[start.min(end)..end], group * bb)
    }

    /// `y[t * rows + r] = v`.
    fn put(&self, t: usize, r: usize, v: f32) {
        // SAFETY: each (token, row) is written by exactly one work item, and y holds
        // tokens x rows values.
        unsafe { *self.out.0.add(t * self.rows + r) = v };
    }

    /// Integer row tiles `range` (TR rows each) times every token block.
    fn int_tiles(&self, a: &GemmActs, kd: Kind, range: std::ops::Range<usize>) {
        let (rows, cols, tokens) = (self.rows, self.cols, self.tokens);
        let vnni = self.isa >= Isa::Avx512Vnni;
        let simd = self.isa >= Isa::Avx2;
        let mut s = Scratch::new(cols);
        let mut res = [[[0f32; TB]; TR]; 2];
        let blocks = tokens.div_ceil(TB);
        for tile in range {
            let r0 = tile * TR;
            let nr = TR.min(rows - r0);
            for i in 0..nr {
                let (bytes, stride) = self.row_blocks(r0 + i);
                s.unpack_strided(self.f, bytes, stride, i, cols);
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
                                self.put(t, r0 + i, *v);
                            }
                        }
                    }
                }
                tb += nb;
            }
        }
    }

    /// Float row tiles `range` (FR16 rows each) on AVX-512. Blocks of row tiles, each taken
    /// token group by token group: a group's activations stay in L1 across the block's tiles,
    /// and the block's weights stay in L2 across the groups (row tile by row tile over every
    /// token read the activations from L2 at 16 bytes a multiply-add and ran no faster than the
    /// AVX2 tile).
    #[cfg(target_arch = "x86_64")]
    fn float_tiles16(&self, x: &[f32], range: std::ops::Range<usize>) {
        let (rows, cols, tokens) = (self.rows, self.cols, self.tokens);
        let mut res = [[0f32; FT16]; FR16];
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
                        std::array::from_fn(|i| self.row(r0 + i.min(nr - 1)));
                    float_tile16(self.f, rows_b, x, cols, t0, nt, &mut res);
                    for (i, rr) in res.iter().enumerate().take(nr) {
                        for (t, v) in rr.iter().enumerate().take(nt) {
                            self.put(t0 + t, r0 + i, *v);
                        }
                    }
                }
                t0 += nt;
            }
            b0 = b1;
        }
    }

    /// Float row tiles `range` (FR rows each) on AVX2 or portable code, in blocks of
    /// `FLOAT_BLOCK * 4` tiles taken token group by token group, as [`Product::float_tiles16`]
    /// does: a group's activations stay in L1 across the block (tile by tile over every
    /// token, each multiply-add read activations from L2 and that bound the product).
    fn float_tiles(&self, x: &[f32], range: std::ops::Range<usize>) {
        let (rows, cols, tokens) = (self.rows, self.cols, self.tokens);
        let simd = self.isa >= Isa::Avx2;
        let mut res = [[0f32; FT]; FR];
        let mut b0 = range.start;
        while b0 < range.end {
            let b1 = (b0 + 4 * FLOAT_BLOCK).min(range.end);
            let mut t0 = 0;
            while t0 < tokens {
                let nt = FT.min(tokens - t0);
                for tile in b0..b1 {
                    let r0 = tile * FR;
                    let nr = FR.min(rows - r0);
                    // A short last tile repeats its last row (computed, not stored).
                    let rows_b: [&[u8]; FR] = std::array::from_fn(|i| self.row(r0 + i.min(nr - 1)));
                    float_tile(self.f, rows_b, x, cols, nr, t0, nt, simd, &mut res);
                    for (i, rr) in res.iter().enumerate().take(nr) {
                        for (t, v) in rr.iter().enumerate().take(nt) {
                            self.put(t0 + t, r0 + i, *v);
                        }
                    }
                }
                t0 += nt;
            }
            b0 = b1;
        }
    }
}

/// Rows `0..nr` of the scratch times token block `tb`: `res[r][lane]`, without the offsets.
#[allow(clippy::too_many_arguments)]
pub(crate) fn int_tile(
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
    super::scalar::int_tile(s, a, cols, nr, tb, kd.signed, res);
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
            ($t:literal) => {
                // SAFETY: AVX2/FMA/F16C were detected at run time; rows hold `cols` values (a
                // multiple of 32); tokens t0..t0 + nt exist. A short tile's missing rows repeat
                // its last one (computed, not stored).
                unsafe {
                    match f {
                        QFormat::F16 => x86::float_tile::<0, FR, $t>(rows, x, cols, t0, res),
                        QFormat::BF16 => x86::float_tile::<1, FR, $t>(rows, x, cols, t0, res),
                        _ => x86::float_tile::<2, FR, $t>(rows, x, cols, t0, res),
                    }
                }
            };
        }
        match nt {
            4.. => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
        return;
    }
    let _ = simd;
    for (i, rr) in res.iter_mut().enumerate().take(nr) {
        for (t, v) in rr.iter_mut().enumerate().take(nt) {
            let xt = &x[(t0 + t) * cols..(t0 + t + 1) * cols];
            let w: Vec<f32> = (0..cols).map(|c| float_at(f, rows[i], c)).collect();
            *v = super::dot_portable(&w, xt);
        }
    }
}
