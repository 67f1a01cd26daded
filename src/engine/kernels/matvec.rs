//! Weight matrices kept once, in their GGUF block layout, and their products: Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, F16, BF16 and F32.
//!
//! Decode (one or a few tokens) uses a dot product per row for the formats that have one here:
//! the activation vector is quantized once per product (Q8 blocks of 32 with a scaled sum for the
//! 32-value formats, Q8_K super-blocks of 256 with 16 group sums for the K formats), then each
//! row's dot product runs in integers; float rows multiply the activations directly; AVX2 where
//! the CPU has it and a portable fallback otherwise. Batches (prefill) and Q2_K/Q3_K go through
//! `gemm`'s tiled product. Rows
//! are split across candle's thread pool, so these products and candle's ops share one set of
//! threads.

use super::blocks::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, dequantize_into,
};
pub use super::blocks::{QFormat, QK_K};
use super::quant::{BlockQ8K, BlockQ81, quantize_q8_1, quantize_q8_k};
#[cfg(target_arch = "x86_64")]
use super::x86::dot as x86;
use super::{Isa, SyncPtr, gemm, isa, scalar, simd};
use std::borrow::Cow;

/// From this many tokens on, a product goes through the tiled batch kernel.
pub const GEMM_MIN_TOKENS: usize = 4;

/// A quantized weight matrix in its GGUF layout.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub format: QFormat,
    pub rows: usize,
    pub cols: usize,
    bytes: Vec<u8>,
    /// Whether the blocks are interleaved eight rows at a time ([`QMatrix::interleaved`])
    /// rather than row after row as in the file.
    interleaved: bool,
}

pub use super::GROUP;

impl QMatrix {
    /// Takes the raw GGUF bytes of a `rows` × `cols` tensor.
    pub fn from_bytes(
        format: QFormat,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<Self, String> {
        let (bv, bb) = format.block();
        if !cols.is_multiple_of(bv) {
            return Err(format!(
                "{format:?} row length {cols} is not a multiple of {bv}"
            ));
        }
        let want = rows * cols / bv * bb;
        if bytes.len() != want {
            return Err(format!(
                "{format:?} data of {} bytes does not hold {rows}x{cols} values ({want} expected)",
                bytes.len()
            ));
        }
        Ok(QMatrix {
            format,
            rows,
            cols,
            bytes,
            interleaved: false,
        })
    }

    /// The same matrix with its blocks interleaved eight rows at a time (block 0 of rows
    /// 0..8, block 1 of rows 0..8, ..., then rows 8..16), where this CPU has a kernel that
    /// reads that layout (the 32-value nibble formats on AVX2): decode's product then streams
    /// the weights from one place and shares each activation load, scale conversion and
    /// multiply-add among eight rows. Done in place, one group of rows at a time (no second
    /// copy of the matrix). Other formats, CPUs and row counts keep the file's layout.
    pub fn interleaved(mut self) -> QMatrix {
        if self.interleaved || !has_dot8(self.format, isa()) || !self.rows.is_multiple_of(GROUP) {
            return self;
        }
        let (bv, bb) = self.format.block();
        let nb = self.cols / bv;
        let row_bytes = nb * bb;
        let mut group = vec![0u8; GROUP * row_bytes];
        for chunk in self.bytes.chunks_exact_mut(GROUP * row_bytes) {
            group.copy_from_slice(chunk);
            for (k, row) in group.chunks_exact(row_bytes).enumerate() {
                for (i, b) in row.chunks_exact(bb).enumerate() {
                    let at = (i * GROUP + k) * bb;
                    chunk[at..at + bb].copy_from_slice(b);
                }
            }
        }
        self.interleaved = true;
        self
    }

    /// Whether the blocks are interleaved ([`QMatrix::interleaved`]).
    pub fn is_interleaved(&self) -> bool {
        self.interleaved
    }

    /// Row `r`'s blocks in order: borrowed from a matrix in the file's layout, gathered from
    /// an interleaved one.
    pub(crate) fn row(&self, r: usize) -> Cow<'_, [u8]> {
        let (bv, bb) = self.format.block();
        let n = self.cols / bv * bb;
        if !self.interleaved {
            return Cow::Borrowed(&self.bytes[r * n..(r + 1) * n]);
        }
        let group = &self.bytes[r / GROUP * GROUP * n..(r / GROUP + 1) * GROUP * n];
        let k = r % GROUP;
        let mut out = Vec::with_capacity(n);
        for blocks in group.chunks_exact(GROUP * bb) {
            out.extend_from_slice(&blocks[k * bb..(k + 1) * bb]);
        }
        Cow::Owned(out)
    }

    /// The raw bytes in this matrix's layout (the file's, unless [`QMatrix::interleaved`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The matrix as f32 values, row-major (tests compare it with candle's dequantization).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        if self.interleaved {
            (0..self.rows).for_each(|r| self.dequantize_row(r, &mut out));
        } else {
            dequantize_into(self.format, &self.bytes, &mut out);
        }
        out
    }

    /// Appends row `r` as f32 values (embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut Vec<f32>) {
        dequantize_into(self.format, &self.row(r), out);
    }

    /// y[b][r] = Σ_c W[r][c] · x[b][c] for each of `x.len() / cols` input vectors.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) {
        matvec_many(&[self], x, &mut [y]);
    }

    /// Which implementation a product of `tokens` tokens uses on this CPU, for the record.
    pub fn kernel_name(&self, tokens: usize) -> String {
        let isa = if simd() { "avx2" } else { "scalar" };
        let f = self.format;
        if tokens >= GEMM_MIN_TOKENS || !f.has_dot() {
            let act = if f.is_float() { "f32" } else { "q8" };
            let vnni = !f.is_float() && self::isa() >= Isa::Avx512Vnni;
            let wide = cfg!(target_arch = "x86_64") && self::isa() >= Isa::Avx512Vnni;
            let (tile, isa) = match (f.is_float(), vnni) {
                (true, _) if wide => ("4x6", "avx512"),
                (true, _) => ("3x4", isa),
                (false, true) => ("4x16", "avx512-vnni"),
                (false, false) => ("4x8", isa),
            };
            return format!("{}x{act} tiled {tile} {isa}", f.name());
        }
        let act = match f {
            f if f.is_float() => "f32",
            QFormat::Q4_1 | QFormat::Q5_1 => "q8_1",
            QFormat::Q4K | QFormat::Q5K | QFormat::Q6K => "q8_k",
            _ => "q8_0",
        };
        let vnni_dot = has_dot4(f, self::isa()) || f == QFormat::Q8_0;
        let isa = if vnni_dot && self::isa() >= Isa::Avx512Vnni {
            "avx512-vnni"
        } else {
            isa
        };
        let rows = if self.interleaved { " x8" } else { "" };
        format!("{}x{act}{rows} {isa}", f.name())
    }
}

/// Products of several matrices with one input (q, k and v; gate and up): `ys[i] = mats[i] · x`
/// for each of `x.len() / cols` input vectors. The input is quantized once per activation family
/// and every row of every matrix goes to the thread pool in one dispatch.
pub fn matvec_many(mats: &[&QMatrix], x: &[f32], ys: &mut [&mut [f32]]) {
    let Some(cols) = mats.first().map(|m| m.cols) else {
        return;
    };
    let batch = x.len() / cols;
    let dots = batch < GEMM_MIN_TOKENS && mats.iter().all(|m| m.format.has_dot() && m.cols == cols);
    if !dots {
        for (m, y) in mats.iter().zip(ys.iter_mut()) {
            if batch >= GEMM_MIN_TOKENS || !m.format.has_dot() {
                gemm::gemm_on(
                    isa(),
                    m.format,
                    &m.bytes,
                    m.rows,
                    m.cols,
                    m.interleaved,
                    x,
                    y,
                );
            } else {
                matvec_many(&[m], x, &mut [y]);
            }
        }
        return;
    }
    // 0: Q8 blocks of 32, 1: Q8_K super-blocks, 2: floats.
    let family_of = |f: QFormat| match f {
        QFormat::Q4K | QFormat::Q5K | QFormat::Q6K => 1,
        f if f.is_float() => 2,
        _ => 0,
    };
    let family = |k: usize| -> Vec<Acts> {
        if !mats.iter().any(|m| family_of(m.format) == k) {
            return Vec::new();
        }
        x.chunks_exact(cols)
            .map(|v| match k {
                1 => Acts::Q8K(quantize_q8_k(v)),
                2 => Acts::F32(v.to_vec()),
                _ => Acts::Q8(quantize_q8_1(v)),
            })
            .collect()
    };
    let acts_by = [family(0), family(1), family(2)];
    // Work items are groups of GROUP rows (a matrix's last group may be short), so an
    // interleaved matrix's groups are never split between workers.
    let mut starts = Vec::with_capacity(mats.len() + 1);
    starts.push(0);
    for m in mats {
        starts.push(starts[starts.len() - 1] + m.rows.div_ceil(GROUP));
    }
    let total = starts[mats.len()];
    let weights: usize = mats.iter().map(|m| m.rows * m.cols).sum();
    let outs: Vec<SyncPtr> = ys.iter_mut().map(|y| SyncPtr(y.as_mut_ptr())).collect();
    let isa = isa();
    let work = |range: std::ops::Range<usize>| {
        let mut i = 0;
        for g in range {
            while g >= starts[i + 1] {
                i += 1;
            }
            let m = mats[i];
            let acts = &acts_by[family_of(m.format)];
            // SAFETY: each (matrix, b, r) is written by exactly one work item (the group
            // holding row r); ys[i] holds batch x rows values.
            let put = |b: usize, r: usize, v: f32| unsafe { *outs[i].0.add(b * m.rows + r) = v };
            let r0 = (g - starts[i]) * GROUP;
            let r1 = (r0 + GROUP).min(m.rows);
            if m.interleaved {
                let (bv, bb) = m.format.block();
                let n = m.cols / bv * bb * GROUP;
                let w = &m.bytes[r0 / GROUP * n..(r0 / GROUP + 1) * n];
                for (b, xa) in acts.iter().enumerate() {
                    for (k, v) in dot8(m.format, w, xa, isa).into_iter().enumerate() {
                        put(b, r0 + k, v);
                    }
                }
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if m.format.is_float() && isa >= Isa::Avx2 {
                let row = m.cols * m.format.block().1 / m.format.block().0;
                let mut out = [0f32; GROUP];
                for (b, xa) in acts.iter().enumerate() {
                    if let Acts::F32(x) = xa {
                        let out = &mut out[..r1 - r0];
                        // SAFETY: AVX2, FMA and F16C were detected at run time.
                        unsafe { x86::float_rows(m.format, &m.bytes[r0 * row..r1 * row], x, out) };
                        for (k, v) in out.iter().enumerate() {
                            put(b, r0 + k, *v);
                        }
                    }
                }
                continue;
            }
            let mut r = r0;
            while r < r1 {
                if r + 4 <= r1 && has_dot4(m.format, isa) {
                    let rows = [m.row(r), m.row(r + 1), m.row(r + 2), m.row(r + 3)];
                    let w = [&*rows[0], &*rows[1], &*rows[2], &*rows[3]];
                    for (b, xa) in acts.iter().enumerate() {
                        if let Some(v) = dot4(m.format, w, xa, isa) {
                            for (k, v) in v.into_iter().enumerate() {
                                put(b, r + k, v);
                            }
                        }
                    }
                    r += 4;
                    continue;
                }
                let w = m.row(r);
                for (b, xa) in acts.iter().enumerate() {
                    put(b, r, dot(m.format, &w, xa, isa));
                }
                r += 1;
            }
        }
    };
    if weights >= super::PARALLEL_MIN_WEIGHTS {
        candle_core::utils::barrier_pool().execute_chunked(total, work);
    } else {
        work(0..total);
    }
}

/// Eight rows of an interleaved matrix (`w`: one group's blocks, [`QMatrix::interleaved`])
/// with one activation vector.
fn dot8(f: QFormat, w: &[u8], x: &Acts, isa: Isa) -> [f32; GROUP] {
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2
        && let Acts::Q8(x) = x
    {
        let vnni = isa >= Isa::Avx512Vnni;
        macro_rules! pick {
            ($b:ty) => {
                if vnni {
                    // SAFETY: AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C) were detected at run
                    // time.
                    unsafe { x86::rows8_vnni::<$b>(w, x) }
                } else {
                    // SAFETY: AVX2, FMA and F16C were detected at run time.
                    unsafe { x86::rows8::<$b>(w, x) }
                }
            };
        }
        match f {
            QFormat::Q8_0 if vnni => {
                // SAFETY: AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C) were detected at run time.
                return unsafe { x86::rows8_q8_0_vnni(w, x) };
            }
            QFormat::Q8_0 => {
                // SAFETY: AVX2, FMA and F16C were detected at run time.
                return unsafe { x86::rows8_q8_0(w, x) };
            }
            QFormat::Q4_0 => return pick!(BlockQ4_0),
            QFormat::Q4_1 => return pick!(BlockQ4_1),
            QFormat::Q5_0 => return pick!(BlockQ5_0),
            QFormat::Q5_1 => return pick!(BlockQ5_1),
            _ => {}
        }
    }
    // Only formats with an eight-row kernel are interleaved; this keeps the result right on
    // any other path: each row's blocks gathered, then the one-row product.
    let (bv, bb) = f.block();
    let nb = w.len() / GROUP / bb;
    let _ = bv;
    std::array::from_fn(|k| {
        let row: Vec<u8> = (0..nb)
            .flat_map(|i| {
                w[(i * GROUP + k) * bb..(i * GROUP + k + 1) * bb]
                    .iter()
                    .copied()
            })
            .collect();
        dot(f, &row, x, isa)
    })
}

/// Whether the eight-row kernel of interleaved matrices serves this format on this CPU.
pub(crate) fn has_dot8(f: QFormat, isa: Isa) -> bool {
    has_dot4(f, isa) || (cfg!(target_arch = "x86_64") && isa >= Isa::Avx2 && f == QFormat::Q8_0)
}

/// Four consecutive rows of one matrix with one activation vector, where the format has a
/// four-row kernel on this CPU (None: take the rows one at a time).
pub(crate) fn dot4(f: QFormat, w: [&[u8]; 4], x: &Acts, isa: Isa) -> Option<[f32; 4]> {
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2
        && let Acts::Q8(x) = x
    {
        let vnni = isa >= Isa::Avx512Vnni;
        macro_rules! pick {
            ($b:ty) => {
                if vnni {
                    // SAFETY: AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C) were detected at run
                    // time.
                    unsafe { x86::rows4_vnni::<$b>(w, x) }
                } else {
                    // SAFETY: AVX2, FMA and F16C were detected at run time.
                    unsafe { x86::rows4::<$b>(w, x) }
                }
            };
        }
        return match f {
            QFormat::Q4_0 => Some(pick!(BlockQ4_0)),
            QFormat::Q4_1 => Some(pick!(BlockQ4_1)),
            QFormat::Q5_0 => Some(pick!(BlockQ5_0)),
            QFormat::Q5_1 => Some(pick!(BlockQ5_1)),
            _ => None,
        };
    }
    let _ = (f, w, x, isa);
    None
}

/// Whether `dot4` has a kernel for this format on this CPU.
pub(crate) fn has_dot4(f: QFormat, isa: Isa) -> bool {
    cfg!(target_arch = "x86_64")
        && isa >= Isa::Avx2
        && matches!(
            f,
            QFormat::Q4_0 | QFormat::Q4_1 | QFormat::Q5_0 | QFormat::Q5_1
        )
}

/// Activations quantized for one format family.
pub enum Acts {
    Q8(Vec<BlockQ81>),
    Q8K(Vec<BlockQ8K>),
    /// The activations themselves, for float weights.
    F32(Vec<f32>),
}

/// One row's dot product with quantized activations.
pub fn dot(f: QFormat, w: &[u8], x: &Acts, isa: Isa) -> f32 {
    let simd = isa >= Isa::Avx2;
    match (f, x) {
        (QFormat::Q4_0, Acts::Q8(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: AVX2, FMA and F16C were detected at run time.
                return unsafe { x86::q4_0(w, x) };
            }
            scalar::q4_0(w, x)
        }
        (QFormat::Q4_1, Acts::Q8(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q4_1(w, x) };
            }
            scalar::q4_1(w, x)
        }
        (QFormat::Q5_0 | QFormat::Q5_1, Acts::Q8(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe {
                    match f {
                        QFormat::Q5_0 => x86::q5::<BlockQ5_0>(w, x),
                        _ => x86::q5::<BlockQ5_1>(w, x),
                    }
                };
            }
            scalar::q5(f, w, x)
        }
        (QFormat::Q8_0, Acts::Q8(x)) => {
            #[cfg(target_arch = "x86_64")]
            if isa >= Isa::Avx512Vnni {
                // SAFETY: AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C) were detected at run time.
                return unsafe { x86::q8_0_vnni(w, x) };
            }
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q8_0(w, x) };
            }
            scalar::q8_0(w, x)
        }
        (QFormat::Q4K, Acts::Q8K(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q4_5_k::<BlockQ4K>(w, x) };
            }
            scalar::q4_5_k::<BlockQ4K>(w, x)
        }
        (QFormat::Q5K, Acts::Q8K(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q4_5_k::<BlockQ5K>(w, x) };
            }
            scalar::q4_5_k::<BlockQ5K>(w, x)
        }
        (QFormat::Q6K, Acts::Q8K(x)) => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q6_k(w, x) };
            }
            scalar::q6_k(w, x)
        }
        (f, Acts::F32(x)) if f.is_float() => {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::float_dot(f, w, x) };
            }
            (0..x.len())
                .map(|i| super::blocks::float_at(f, w, i) * x[i])
                .sum()
        }
        _ => f32::NAN,
    }
}

/// [`dot8`] on a given instruction set (the tests compare them).
#[cfg(test)]
pub(crate) fn dot8_on(m: &QMatrix, group: &[u8], x: &Acts, isa: Isa) -> [f32; GROUP] {
    dot8(m.format, group, x, isa)
}
