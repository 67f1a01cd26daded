//! Weight matrices kept once, in their GGUF block layout, and their products: Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, F16, BF16 and F32.
//!
//! Decode (one or a few tokens) uses a dot product per row for the formats that have one here:
//! the activation vector is quantized once per product (Q8 blocks of 32 with a scaled sum for the
//! 32-value formats, Q8_K super-blocks of 256 with 16 group sums for the K formats), then each
//! row's dot product runs in integers; float rows multiply the activations directly; AVX2 where
//! the CPU has it and a portable fallback otherwise. Batches (prefill) and Q2_K/Q3_K go through
//! `qgemm`'s tiled product. Rows
//! are split across candle's thread pool, so these products and candle's ops share one set of
//! threads.

use super::blocks::{Isa, dequantize_into, f16_at, isa, q5_parts, q5_value, scale_min_k4, simd};
pub use super::blocks::{QFormat, QK_K};
use super::gemm;
use super::quant::{BlockQ81, quantize_q8_1};

/// From this many tokens on, a product goes through the tiled batch kernel.
pub const GEMM_MIN_TOKENS: usize = 4;

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
    super::quant::quantize_row_q8(&x[..n], QK_K, &mut d, &mut q, &mut s16);
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

/// A quantized weight matrix in its GGUF layout.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub format: QFormat,
    pub rows: usize,
    pub cols: usize,
    bytes: Vec<u8>,
}

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
        })
    }

    fn row(&self, r: usize) -> &[u8] {
        let (bv, bb) = self.format.block();
        let n = self.cols / bv * bb;
        &self.bytes[r * n..(r + 1) * n]
    }

    /// The raw bytes, as in the file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The matrix as f32 values, row-major (tests compare it with candle's dequantization).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        dequantize_into(self.format, &self.bytes, &mut out);
        out
    }

    /// Appends row `r` as f32 values (embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut Vec<f32>) {
        dequantize_into(self.format, self.row(r), out);
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
                (true, _) => ("2x4", isa),
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
        format!("{}x{act} {isa}", f.name())
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
                gemm::gemm(m.format, &m.bytes, m.rows, m.cols, x, y);
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
    let mut starts = Vec::with_capacity(mats.len() + 1);
    starts.push(0);
    for m in mats {
        starts.push(starts[starts.len() - 1] + m.rows);
    }
    let total = starts[mats.len()];
    let outs: Vec<super::quant::SyncPtr> = ys
        .iter_mut()
        .map(|y| super::quant::SyncPtr(y.as_mut_ptr()))
        .collect();
    let isa = isa();
    let work = |range: std::ops::Range<usize>| {
        let outs = &outs;
        let mut i = 0;
        let mut g = range.start;
        while g < range.end {
            while g >= starts[i + 1] {
                i += 1;
            }
            let (m, r) = (mats[i], g - starts[i]);
            let acts = &acts_by[family_of(m.format)];
            if g + 4 <= range.end.min(starts[i + 1]) && has_dot4(m.format, isa) {
                let w = [m.row(r), m.row(r + 1), m.row(r + 2), m.row(r + 3)];
                for (b, xa) in acts.iter().enumerate() {
                    if let Some(v) = dot4(m.format, w, xa, isa) {
                        for (k, v) in v.into_iter().enumerate() {
                            // SAFETY: as below, rows r..r + 4 belong to this work item.
                            unsafe { *outs[i].0.add(b * m.rows + r + k) = v };
                        }
                    }
                }
                g += 4;
                continue;
            }
            let w = m.row(r);
            for (b, xa) in acts.iter().enumerate() {
                let v = dot(m.format, w, xa, isa);
                // SAFETY: each (matrix, b, r) is written by exactly one work item; ys[i] holds
                // batch x rows values.
                unsafe { *outs[i].0.add(b * m.rows + r) = v };
            }
            g += 1;
        }
    };
    if total * cols >= super::quant::PARALLEL_MIN_WEIGHTS {
        candle_core::utils::barrier_pool().execute_chunked(total, work);
    } else {
        work(0..total);
    }
}

/// Four consecutive rows of one matrix with one activation vector, where the format has a
/// four-row kernel on this CPU (None: take the rows one at a time).
fn dot4(f: QFormat, w: [&[u8]; 4], x: &Acts, isa: Isa) -> Option<[f32; 4]> {
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2
        && let Acts::Q8(x) = x
    {
        let vnni = isa >= Isa::Avx512Vnni;
        macro_rules! pick {
            ($f:literal) => {
                if vnni {
                    // SAFETY: AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C) were detected at run
                    // time.
                    unsafe { x86::rows4_vnni::<$f>(w, x) }
                } else {
                    // SAFETY: AVX2, FMA and F16C were detected at run time.
                    unsafe { x86::rows4::<$f>(w, x) }
                }
            };
        }
        return match f {
            QFormat::Q4_0 => Some(pick!(0)),
            QFormat::Q4_1 => Some(pick!(1)),
            QFormat::Q5_0 => Some(pick!(3)),
            QFormat::Q5_1 => Some(pick!(4)),
            _ => None,
        };
    }
    let _ = (f, w, x, isa);
    None
}

/// Whether `dot4` has a kernel for this format on this CPU.
fn has_dot4(f: QFormat, isa: Isa) -> bool {
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
                return unsafe { x86::q5(f, w, x) };
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
        (QFormat::Q4K | QFormat::Q5K, Acts::Q8K(x)) => {
            let high = f == QFormat::Q5K;
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: as above.
                return unsafe { x86::q4_5_k(w, x, high) };
            }
            scalar::q4_5_k(w, x, high)
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

/// The portable reference kernels (exact integer sums, then float scaling).
pub mod scalar {
    use super::{BlockQ8K, QFormat, QK_K, f16_at, q5_parts, q5_value, scale_min_k4};
    use crate::engine::kernels::quant::BlockQ81;

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

    pub fn q4_1(w: &[u8], x: &[BlockQ81]) -> f32 {
        let mut sum = 0f32;
        for (b, xb) in w.chunks_exact(20).zip(x) {
            let mut si = 0i32;
            for j in 0..16 {
                si += (b[4 + j] & 0xF) as i32 * xb.qs[j] as i32;
                si += (b[4 + j] >> 4) as i32 * xb.qs[j + 16] as i32;
            }
            sum += f16_at(b, 0) * xb.d * si as f32 + f16_at(b, 2) * xb.s;
        }
        sum
    }

    pub fn q4_0(w: &[u8], x: &[BlockQ81]) -> f32 {
        let mut sum = 0f32;
        for (b, xb) in w.chunks_exact(18).zip(x) {
            let mut si = 0i32;
            for j in 0..16 {
                si += (b[2 + j] & 0xF) as i32 * xb.qs[j] as i32;
                si += (b[2 + j] >> 4) as i32 * xb.qs[j + 16] as i32;
            }
            let d = f16_at(b, 0);
            sum += d * xb.d * (si - 8 * xb.isum) as f32;
        }
        sum
    }

    pub fn q8_0(w: &[u8], x: &[BlockQ81]) -> f32 {
        let mut sum = 0f32;
        for (b, xb) in w.chunks_exact(34).zip(x) {
            let si: i32 = (0..32)
                .map(|j| b[2 + j] as i8 as i32 * xb.qs[j] as i32)
                .sum();
            sum += f16_at(b, 0) * xb.d * si as f32;
        }
        sum
    }

    /// Q4_K (`high` false) or Q5_K (`high` true) times Q8_K activations.
    pub fn q4_5_k(w: &[u8], x: &[BlockQ8K], high: bool) -> f32 {
        let (bb, qs_at) = if high { (176, 48) } else { (144, 16) };
        let mut sum = 0f32;
        for (b, xb) in w.chunks_exact(bb).zip(x) {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[qs_at..qs_at + 128]);
            let (mut si, mut mins) = (0i32, 0i32);
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, scales);
                let c = j / 2;
                let mut s = 0i32;
                for l in 0..32 {
                    let q = qs[32 * c + l];
                    let n = if j % 2 == 0 { q & 0xF } else { q >> 4 };
                    let fifth = if high && qh[l] & (1u8 << j) != 0 {
                        16
                    } else {
                        0
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

    pub fn q6_k(w: &[u8], x: &[BlockQ8K]) -> f32 {
        let mut sum = 0f32;
        for (b, xb) in w.chunks_exact(210).zip(x) {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            let mut q6 = [0u8; QK_K];
            for n in 0..2 {
                for l in 0..32 {
                    let (a, hb, c) = (ql[64 * n + l], qh[32 * n + l], ql[64 * n + l + 32]);
                    q6[128 * n + l] = (a & 0xF) | ((hb & 3) << 4);
                    q6[128 * n + l + 32] = (c & 0xF) | (((hb >> 2) & 3) << 4);
                    q6[128 * n + l + 64] = (a >> 4) | (((hb >> 4) & 3) << 4);
                    q6[128 * n + l + 96] = (c >> 4) | (((hb >> 6) & 3) << 4);
                }
            }
            let mut si = 0i32;
            for g in 0..16 {
                let s: i32 = (0..16)
                    .map(|k| q6[16 * g + k] as i32 * xb.qs[16 * g + k] as i32)
                    .sum();
                si += sc[g] as i8 as i32 * (s - 32 * xb.bsums[g] as i32);
            }
            sum += d * xb.d * si as f32;
        }
        sum
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BlockQ8K, QFormat};
    use crate::engine::kernels::quant::BlockQ81;
    use std::arch::x86_64::*;

    /// The f16 at byte `i` of `b`, converted in hardware (F16C).
    #[inline]
    #[target_feature(enable = "f16c")]
    pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
        let bits = u16::from_le_bytes([b[i], b[i + 1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// How far ahead of the block being read the kernels ask for weights: past the next 4 KiB
    /// page, where the hardware prefetchers stop (streams from memory ran 1.4-1.8x faster).
    const PREFETCH: usize = 4096;

    /// Asks for the cache lines of the `len` bytes `PREFETCH` past `p` (a hint: never faults).
    #[inline(always)]
    fn ahead(p: *const u8, len: usize) {
        let mut off = 0;
        while off < len {
            // SAFETY: prefetching is a hint and never dereferences the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + off) as *const i8) };
            off += 64;
        }
    }

    /// Q4_0 blocks times Q8 activations on two accumulators: codes 0..16 times int8, the -8
    /// offset of every code folded in once per block through the activations' exact sum.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_0(w: &[u8], x: &[BlockQ81]) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(), _mm256_setzero_ps()];
        let mut off = [0f32; 2];
        let n = x.len().min(w.len() / 18);
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        for i in 0..n {
            ahead(wp.wrapping_add(18 * i), 18);
            // SAFETY: i < n, so block i (18 bytes at 18 i) and activation block i exist.
            let (d, q4, xb) = unsafe {
                let b = wp.add(18 * i);
                (
                    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                        (b as *const u16).read_unaligned() as i32,
                    ))),
                    _mm_loadu_si128(b.add(2) as *const __m128i),
                    &*xp.add(i),
                )
            };
            // SAFETY: 32 bytes of a 32-byte array.
            let q8 = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
            let q4 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, q8), ones);
            let k = i & 1;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p), acc[k]);
            off[k] += d * xb.ds;
        }
        // SAFETY: AVX2 is enabled in this function.
        unsafe { hsum(_mm256_add_ps(acc[0], acc[1])) - 8.0 * (off[0] + off[1]) }
    }

    /// Unsigned bytes times signed bytes, summed in fours into 32-bit lanes (AVX2: two
    /// instructions on the vector multiply ports; exact, as the 16-bit pair sums these kernels
    /// form stay under 2 x 255 x 128).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot_bytes(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    /// The same sums in one `vpdpbusd`.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_bytes_vnni(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    /// `acc` plus the sums of `dot_bytes`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot_bytes_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi32(acc, dot_bytes(u, s))
    }

    /// `acc` plus the same sums, in one `vpdpbusd`.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_bytes_acc_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    /// Defines a four-row kernel (below) for one instruction set: its target features and how
    /// it sums byte products.
    macro_rules! rows4_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const F: u8>(w: [&[u8]; 4], x: &[BlockQ81]) -> [f32; 4] {
                // Q4_0 and Q5_0 codes carry a fixed offset (8, 16): folded into the integer sums
                // by starting each block's lanes at -offset x (their four activations' sum),
                // computed once per block for the four rows.
                let offset = match F {
                    0 => -8i16,
                    3 => -16,
                    _ => 0,
                };
                let ones = _mm256_set1_epi8(1);
                let neg_offset = _mm256_set1_epi16(offset);
                // Block bytes, and where its 16 nibble bytes start (Q5: after 4 high-bit bytes).
                let (bb, at) = match F {
                    0 => (18, 2),
                    1 => (20, 4),
                    3 => (22, 6),
                    _ => (24, 8),
                };
                let mask = _mm256_set1_epi8(0x0F);
                let n = w.iter().fold(x.len(), |n, r| n.min(r.len() / bb));
                let wp = w.map(|r| r.as_ptr());
                let xp = x.as_ptr();
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut off = [0f32; 4];
                for i in 0..n {
                    // SAFETY: i < n, so activation block i exists.
                    let xb = unsafe { &*xp.add(i) };
                    // SAFETY: 32 bytes of a 32-byte array.
                    let q8 = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
                    let start = if offset != 0 {
                        _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q8), neg_offset)
                    } else {
                        _mm256_setzero_si256()
                    };
                    for r in 0..4 {
                        // SAFETY: i < n, so block i of row r (bb bytes at bb i) is inside the row.
                        let b = unsafe { wp[r].add(bb * i) };
                        ahead(b, bb);
                        // SAFETY: the f16 scale (and minimum), the high-bit bytes before `at`
                        // (Q5) and the 16 nibble bytes at `at`, all inside the block.
                        let (dm, q4) = unsafe {
                            (
                                _mm_cvtph_ps(_mm_cvtsi32_si128((b as *const i32).read_unaligned())),
                                _mm_loadu_si128(b.add(at) as *const __m128i),
                            )
                        };
                        let mut q =
                            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
                        if F >= 3 {
                            // SAFETY: the 4 high-bit bytes just before the nibbles.
                            let h = unsafe { (b.add(at - 4) as *const i32).read_unaligned() };
                            q = _mm256_or_si256(q, high_bits(h));
                        }
                        let p = $dot(start, q, q8);
                        let d = _mm_cvtss_f32(dm);
                        acc[r] = _mm256_fmadd_ps(
                            _mm256_set1_ps(d * xb.d),
                            _mm256_cvtepi32_ps(p),
                            acc[r],
                        );
                        if offset == 0 {
                            // Q4_1 and Q5_1 carry a minimum.
                            off[r] += _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)) * xb.s;
                        }
                    }
                }
                // Lanes of (r0 r1 r0 r1 | ...) then (r0 r1 r2 r3 | r0 r1 r2 r3): one add
                // finishes all four.
                let h01 = _mm256_hadd_ps(acc[0], acc[1]);
                let h23 = _mm256_hadd_ps(acc[2], acc[3]);
                let h = _mm256_hadd_ps(h01, h23);
                let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                let mut out = [0f32; 4];
                // SAFETY: four floats into a four-float array.
                unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
                for (o, a) in out.iter_mut().zip(off) {
                    *o += a;
                }
                out
            }
        };
    }

    rows4_kernel!(
        /// Four rows of one 4- or 5-bit block-32 format (`F`: 0 Q4_0, 1 Q4_1, 3 Q5_0, 4 Q5_1)
        /// times the same Q8 activations: each activation block is loaded once for the four
        /// rows, and the four sums are reduced together at the end (short rows spend as much
        /// on the reduction as on blocks).
        rows4,
        "avx2,fma,f16c",
        dot_bytes_acc
    );

    rows4_kernel!(
        /// `rows4` with `vpdpbusd` (AVX-512 VNNI on 256-bit registers): the same integer sums in
        /// half the multiply-port instructions.
        rows4_vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_bytes_acc_vnni
    );

    /// A float row (F16, BF16 or F32) times f32 activations, 32 values a step on four
    /// accumulators (one would wait on its own FMA latency).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn float_dot(f: QFormat, w: &[u8], x: &[f32]) -> f32 {
        let width = if f == QFormat::F32 { 4 } else { 2 };
        let n = x.len().min(w.len() / width);
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let load = |i: usize| -> __m256 {
            // SAFETY: callers keep i + 8 <= n, inside both slices.
            unsafe {
                match f {
                    QFormat::F16 => {
                        _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i))
                    }
                    QFormat::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(
                        _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
                        16,
                    )),
                    _ => _mm256_loadu_ps(wp.add(4 * i) as *const f32),
                }
            }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            ahead(wp.wrapping_add(width * i), 32 * width);
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 <= n.
                let xv = unsafe { _mm256_loadu_ps(xp.add(i + 8 * k)) };
                *a = _mm256_fmadd_ps(load(i + 8 * k), xv, *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            let xv = unsafe { _mm256_loadu_ps(xp.add(i)) };
            acc[0] = _mm256_fmadd_ps(load(i), xv, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        // SAFETY: AVX2 is enabled in this function.
        let mut total = unsafe { hsum(s) };
        for (j, xv) in x.iter().enumerate().take(n).skip(i) {
            total += super::super::blocks::float_at(f, w, j) * xv;
        }
        total
    }

    /// Q4_1 blocks times Q8_1 activations (scale x minimum folded into the stored sums), on two
    /// accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_1(w: &[u8], x: &[BlockQ81]) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(), _mm256_setzero_ps()];
        let mut mins = [0f32; 2];
        let n = x.len().min(w.len() / 20);
        for i in 0..n {
            let b = &w[20 * i..20 * i + 20];
            ahead(b.as_ptr(), 20);
            // SAFETY: 4 scale bytes and 16 nibble bytes inside the 20-byte block; 32 bytes of a
            // 32-byte array.
            let (dm, q4, q8) = unsafe {
                (
                    _mm_cvtph_ps(_mm_cvtsi32_si128(
                        (b.as_ptr() as *const i32).read_unaligned(),
                    )),
                    _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i),
                    _mm256_loadu_si256(x[i].qs.as_ptr() as *const __m256i),
                )
            };
            let q4 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, q8), ones);
            let k = i & 1;
            let d = _mm_cvtss_f32(dm);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), _mm256_cvtepi32_ps(p), acc[k]);
            mins[k] += _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)) * x[i].s;
        }
        // SAFETY: AVX2 is enabled in this function.
        unsafe { hsum(_mm256_add_ps(acc[0], acc[1])) + mins[0] + mins[1] }
    }

    /// A Q5 block's 32 high bits as bytes: 16 where bit k of `h` is set, at byte k (to be OR-ed
    /// onto the low nibbles).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn high_bits(h: i32) -> __m256i {
        let shuf = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        // Every bit but bit k of byte k set: byte k is all ones exactly when bit k of h is.
        let bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        let set = _mm256_cmpeq_epi8(
            _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(h), shuf), bit),
            _mm256_set1_epi8(-1),
        );
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Q5_0 / Q5_1 blocks times Q8 activations, on two accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q5(f: QFormat, w: &[u8], x: &[BlockQ81]) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let q51 = f == QFormat::Q5_1;
        let (bb, at) = if q51 { (24, 4) } else { (22, 2) };
        let n = x.len().min(w.len() / bb);
        let mut acc = [_mm256_setzero_ps(), _mm256_setzero_ps()];
        let mut off = [0f32; 2];
        for i in 0..n {
            let b = &w[bb * i..bb * (i + 1)];
            ahead(b.as_ptr(), bb);
            // SAFETY: the loads stay inside the block (4 high-bit bytes at `at`, 16 nibble bytes
            // after them) and the 32 activation bytes.
            let (dm, h, q4, q8) = unsafe {
                (
                    _mm_cvtph_ps(_mm_cvtsi32_si128(
                        (b.as_ptr() as *const i32).read_unaligned(),
                    )),
                    (b.as_ptr().add(at) as *const i32).read_unaligned(),
                    _mm_loadu_si128(b.as_ptr().add(at + 4) as *const __m128i),
                    _mm256_loadu_si256(x[i].qs.as_ptr() as *const __m256i),
                )
            };
            let d = _mm_cvtss_f32(dm);
            let lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
            let q5 = _mm256_or_si256(lo, high_bits(h));
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q5, q8), ones);
            let k = i & 1;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), _mm256_cvtepi32_ps(p), acc[k]);
            off[k] += if q51 {
                _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)) * x[i].s
            } else {
                -16.0 * d * x[i].ds
            };
        }
        // SAFETY: AVX2 is enabled in this function.
        unsafe { hsum(_mm256_add_ps(acc[0], acc[1])) + off[0] + off[1] }
    }

    /// Defines the Q8_0 row kernel (below) for one instruction set.
    macro_rules! q8_0_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name(w: &[u8], x: &[BlockQ81]) -> f32 {
                let n = x.len().min(w.len() / 34);
                let one = |i: usize| {
                    let b = &w[34 * i..34 * i + 34];
                    ahead(b.as_ptr(), 34);
                    // SAFETY: 32 bytes at offset 2 of a 34-byte block; 32 bytes of a 32-byte
                    // array.
                    let (qw, qx) = unsafe {
                        (
                            _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i),
                            _mm256_loadu_si256(x[i].qs.as_ptr() as *const __m256i),
                        )
                    };
                    // |w| x sign(x, w): the byte product's first operand is unsigned.
                    let p = $dot(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
                    (_mm256_cvtepi32_ps(p), f16_at(b, 0) * x[i].d)
                };
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut i = 0;
                while i + 1 < n {
                    let (p0, s0) = one(i);
                    let (p1, s1) = one(i + 1);
                    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), p0, acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(s1), p1, acc1);
                    i += 2;
                }
                if i < n {
                    let (p0, s0) = one(i);
                    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(s0), p0, acc0);
                }
                // SAFETY: AVX2 is enabled in this function.
                unsafe { hsum(_mm256_add_ps(acc0, acc1)) }
            }
        };
    }

    q8_0_kernel!(
        /// Q8_0 blocks times Q8 activations, two blocks per step on two accumulators.
        q8_0,
        "avx2,fma,f16c",
        dot_bytes
    );

    q8_0_kernel!(
        /// `q8_0` with `vpdpbusd`: the same sums, bit for bit.
        q8_0_vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        dot_bytes_vnni
    );

    /// A K block's 12 packed bytes of 6-bit scales and mins as 8 scale bytes and 8 min bytes
    /// (the layout `scale_min_k4` reads one value at a time): sub-blocks 0-3 sit in the low 6
    /// bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 take their low 4 bits from bytes 8-11 and
    /// their top 2 from the spare bits of bytes 0-3 (scales) and 4-7 (mins).
    #[inline(always)]
    pub fn k4_scales_mins(p: &[u8]) -> (u64, u64) {
        let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let (w0, w1, w2) = (word(0), word(4), word(8));
        const LOW6: u32 = 0x3f3f_3f3f;
        const LOW4: u32 = 0x0f0f_0f0f;
        const TOP2: u32 = 0x0303_0303;
        let sc_hi = (w2 & LOW4) | (((w0 >> 6) & TOP2) << 4);
        let mn_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & TOP2) << 4);
        (
            u64::from(w0 & LOW6) | (u64::from(sc_hi) << 32),
            u64::from(w1 & LOW6) | (u64::from(mn_hi) << 32),
        )
    }

    /// A shuffle that copies 16-bit lane `j` (of the low 128 bits, broadcast to both halves) to
    /// every lane.
    #[inline(always)]
    fn word_picker(j: i32) -> __m256i {
        // SAFETY: AVX is implied by the callers' target features; set1 has no memory access.
        unsafe { _mm256_set1_epi16((((2 * j + 1) << 8) | (2 * j)) as i16) }
    }

    /// Q4_K (`high` false) or Q5_K (`high` true: 32 bytes of fifth bits before the nibbles)
    /// times Q8_K activations: scales and mins unpacked with integer word operations, the
    /// mins' term as one 16-bit multiply-add with the activations' group sums, one float
    /// accumulator across blocks (a single horizontal sum per row).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_5_k(w: &[u8], x: &[BlockQ8K], high: bool) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let sixteen = _mm256_set1_epi8(16);
        let (bb, qs_at) = if high { (176, 48) } else { (144, 16) };
        let mut acc = _mm256_setzero_ps();
        let mut accm = _mm256_setzero_ps();
        for (b, xb) in w.chunks_exact(bb).zip(x) {
            ahead(b.as_ptr(), bb);
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, mn) = k4_scales_mins(&b[4..16]);
            // Each min twice (it covers two groups of 16), times the 16 group sums.
            let mn8 = _mm_cvtsi64_si128(mn as i64);
            let mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
            // SAFETY: 16 i16 group sums.
            let bsums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
            let m = _mm256_madd_epi16(mins16, bsums);
            accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin * xb.d), _mm256_cvtepi32_ps(m), accm);
            let scales =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            // SAFETY: Q5_K's 32 high-bit bytes sit at offset 16 of its 176-byte block (unused,
            // and inside the block, for Q4_K).
            let qh = unsafe { _mm256_loadu_si256(b.as_ptr().add(16) as *const __m256i) };
            let mut isum = _mm256_setzero_si256();
            for c in 0..4 {
                // SAFETY: 32 quant bytes inside the block's 128; 32-byte slices of the 256
                // activations.
                let (q, x0, x1) = unsafe {
                    (
                        _mm256_loadu_si256(b.as_ptr().add(qs_at + 32 * c) as *const __m256i),
                        _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c) as *const __m256i),
                        _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c + 32) as *const __m256i),
                    )
                };
                let mut lo = _mm256_and_si256(q, mask);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                if high {
                    // Bit 2c of each qh byte adds 16 to the low nibble, bit 2c + 1 to the high.
                    let fifth = |bit: u8| {
                        let m = _mm256_set1_epi8(bit as i8);
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, m), m), sixteen)
                    };
                    lo = _mm256_or_si256(lo, fifth(1u8 << (2 * c)));
                    hi = _mm256_or_si256(hi, fifth(2u8 << (2 * c)));
                }
                let s1 = _mm256_shuffle_epi8(scales, word_picker(2 * c as i32));
                let s2 = _mm256_shuffle_epi8(scales, word_picker(2 * c as i32 + 1));
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s1);
                let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s2);
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(p1, p2));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(isum), acc);
        }
        // SAFETY: AVX2 is enabled in this function.
        unsafe { hsum(_mm256_sub_ps(acc, accm)) }
    }

    /// Q6_K times Q8_K activations: the 16 signed scales widened once per block and picked per
    /// group by a shuffle, the -32 offset of every value as one multiply-add of the scales with
    /// the activations' group sums, one float accumulator across blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q6_k(w: &[u8], x: &[BlockQ8K]) -> f32 {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x03);
        let mut acc = _mm256_setzero_ps();
        for (b, xb) in w.chunks_exact(210).zip(x) {
            ahead(b.as_ptr(), 210);
            let d = f16_at(b, 208);
            // SAFETY: the 16 scale bytes at 192..208 and the 16 group sums.
            let (sc16, bsums) = unsafe {
                (
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(192) as *const __m128i)),
                    _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i),
                )
            };
            let bias = _mm256_madd_epi16(sc16, bsums);
            let mut isum = _mm256_setzero_si256();
            for n in 0..2 {
                // Scales of groups 8n..8n + 8 in both halves.
                let sc = if n == 0 {
                    _mm256_permute2x128_si256(sc16, sc16, 0x00)
                } else {
                    _mm256_permute2x128_si256(sc16, sc16, 0x11)
                };
                // SAFETY: offsets stay inside the 128 ql, 64 qh and 256 activation bytes.
                let (qa, qc, qh) = unsafe {
                    (
                        _mm256_loadu_si256(b.as_ptr().add(64 * n) as *const __m256i),
                        _mm256_loadu_si256(b.as_ptr().add(64 * n + 32) as *const __m256i),
                        _mm256_loadu_si256(b.as_ptr().add(128 + 32 * n) as *const __m256i),
                    )
                };
                let hbits = |shift: i32| {
                    let h = match shift {
                        0 => qh,
                        2 => _mm256_srli_epi16(qh, 2),
                        4 => _mm256_srli_epi16(qh, 4),
                        _ => _mm256_srli_epi16(qh, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(h, m2), 4)
                };
                let quads = [
                    _mm256_or_si256(_mm256_and_si256(qa, m4), hbits(0)),
                    _mm256_or_si256(_mm256_and_si256(qc, m4), hbits(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), hbits(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qc, 4), m4), hbits(6)),
                ];
                for (k, q6) in quads.iter().enumerate() {
                    // Values 128n + 32k .. +32: groups 8n + 2k (low half) and 8n + 2k + 1.
                    let base = 128 * n + 32 * k;
                    // SAFETY: 32 activations starting at base < 256.
                    let xq =
                        unsafe { _mm256_loadu_si256(xb.qs.as_ptr().add(base) as *const __m256i) };
                    let s = _mm256_shuffle_epi8(sc, pair_picker(k));
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*q6, xq), s);
                    isum = _mm256_add_epi32(isum, p);
                }
            }
            // The -32 offset of every value, per group of 16 with its scale.
            let total = _mm256_sub_epi32(isum, _mm256_slli_epi32(bias, 5));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(total), acc);
        }
        // SAFETY: AVX2 is enabled in this function.
        unsafe { hsum(acc) }
    }

    /// For Q6_K's quad `k` (values 32k..32k + 32 of a half-block): a shuffle that puts group
    /// 2k's 16-bit scale in every lane of the low half and group 2k + 1's in the high half.
    #[inline(always)]
    fn pair_picker(k: usize) -> __m256i {
        let word = |j: usize| (((2 * j + 1) << 8) | (2 * j)) as i16;
        // SAFETY: AVX is implied by the callers' target features; no memory access.
        unsafe { _mm256_set_m128i(_mm_set1_epi16(word(2 * k + 1)), _mm_set1_epi16(word(2 * k))) }
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

    /// A matrix quantized by candle (as GGUF files are), and its raw bytes.
    fn matrix(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QMatrix {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let f = QFormat::of(dtype).unwrap();
        QMatrix::from_bytes(f, rows, cols, q.data().unwrap().to_vec()).unwrap()
    }

    /// Every format: dequantization agrees with candle's; the SIMD and scalar kernels agree
    /// exactly on the integer part (float rounding only); the product matches the dequantized
    /// weights times the dequantized activations.
    #[test]
    fn every_format_matches_candle_and_the_scalar_reference() {
        for (dtype, cols) in [
            (GgmlDType::Q4_0, 512),
            (GgmlDType::Q4_1, 544),
            (GgmlDType::Q2K, 512),
            (GgmlDType::Q3K, 768),
            (GgmlDType::F16, 96),
            (GgmlDType::BF16, 96),
            (GgmlDType::F32, 64),
            (GgmlDType::Q5_0, 576),
            (GgmlDType::Q5_1, 576),
            (GgmlDType::Q8_0, 512),
            (GgmlDType::Q4K, 512),
            (GgmlDType::Q5K, 768),
            (GgmlDType::Q6K, 768),
        ] {
            let rows = 37;
            let m = matrix(dtype, rows, cols, 7);
            let w = Tensor::from_vec(random(rows * cols, 7), (rows, cols), &Device::Cpu).unwrap();
            let theirs: Vec<f32> = QTensor::quantize(&w, dtype)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let ours = m.dequantize();
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{dtype:?}: {a} vs {b}"
                );
            }
            let x = random(2 * cols, 9);
            let mut y = vec![0f32; 2 * rows];
            m.matvec(&x, &mut y);
            for bi in 0..2 {
                let xv = &x[bi * cols..(bi + 1) * cols];
                let (acts, xd): (Acts, Vec<f32>) = match m.format {
                    f if f.is_float() => (Acts::F32(xv.to_vec()), xv.to_vec()),
                    QFormat::Q2K | QFormat::Q3K => {
                        let a = gemm::GemmActs::quantize(xv, cols);
                        (Acts::Q8(Vec::new()), a.dequantized())
                    }
                    QFormat::Q4_0
                    | QFormat::Q4_1
                    | QFormat::Q5_0
                    | QFormat::Q5_1
                    | QFormat::Q8_0 => {
                        let q = quantize_q8_1(xv);
                        let d = q
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |v| *v as f32 * b.d))
                            .collect();
                        (Acts::Q8(q), d)
                    }
                    _ => {
                        let q = quantize_q8_k(xv);
                        let d = q
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |v| *v as f32 * b.d))
                            .collect();
                        (Acts::Q8K(q), d)
                    }
                };
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|c| ours[r * cols + c] * xd[c]).sum();
                    let got = y[bi * rows + r];
                    if !m.format.has_dot() {
                        continue;
                    }
                    let scalar = dot(m.format, m.row(r), &acts, Isa::Scalar);
                    assert!(
                        (got - want).abs() < 2e-3 * (1.0 + want.abs()),
                        "{dtype:?} {bi},{r}: {got} vs {want}"
                    );
                    assert!(
                        (got - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()),
                        "{dtype:?}: simd {got} vs scalar {scalar}"
                    );
                }
            }
        }
    }

    /// The four-row kernels (and Q8_0's row kernel) give the same bits with `vpdpbusd` as with
    /// AVX2 (the integer sums are exact and the float steps run in the same order), and the
    /// scalar reference's value.
    #[test]
    fn four_row_kernels_agree_across_instruction_sets() {
        let best = isa();
        if best < Isa::Avx2 {
            eprintln!("skipped: no AVX2 here");
            return;
        }
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
        ] {
            let cols = 576;
            let four = has_dot4(QFormat::of(dtype).unwrap(), best);
            let mut m = matrix(dtype, 8, cols, 11);
            if dtype == GgmlDType::Q8_0 {
                // Codes -128 and 127 (a file may hold them; candle's quantizer never writes -128).
                let mut b = m.bytes().to_vec();
                b[2] = 0x80;
                b[3] = 0x7f;
                m = QMatrix::from_bytes(m.format, 8, cols, b).unwrap();
            }
            let mut xv = random(cols, 13);
            // Extremes: the largest activations quantize to +-127.
            xv[0] = 40.0;
            xv[1] = -40.0;
            let acts = Acts::Q8(quantize_q8_1(&xv));
            // A kernel's value for row `r` against the scalar reference (float rounding only).
            let near_scalar = |v: f32, r: usize| {
                let want = dot(m.format, m.row(r), &acts, Isa::Scalar);
                assert!(
                    (v - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{dtype:?} row {r}: {v} vs scalar {want}"
                );
            };
            for r in [0, 4] {
                let w = [m.row(r), m.row(r + 1), m.row(r + 2), m.row(r + 3)];
                if !four {
                    // One row at a time (Q8_0): the AVX2 and VNNI row kernels.
                    for (k, row) in w.iter().enumerate() {
                        let avx2 = dot(m.format, row, &acts, Isa::Avx2);
                        near_scalar(avx2, r + k);
                        if best >= Isa::Avx512Vnni {
                            let vnni = dot(m.format, row, &acts, Isa::Avx512Vnni);
                            assert_eq!(avx2.to_bits(), vnni.to_bits(), "{dtype:?} row {}", r + k);
                        }
                    }
                    continue;
                }
                let avx2 = dot4(m.format, w, &acts, Isa::Avx2).unwrap();
                for (k, v) in avx2.iter().enumerate() {
                    near_scalar(*v, r + k);
                }
                if best >= Isa::Avx512Vnni {
                    let vnni = dot4(m.format, w, &acts, Isa::Avx512Vnni).unwrap();
                    assert_eq!(
                        avx2.map(f32::to_bits),
                        vnni.map(f32::to_bits),
                        "{dtype:?} rows {r}..: avx2 {avx2:?} vs vnni {vnni:?}"
                    );
                }
            }
        }
        if best < Isa::Avx512Vnni {
            eprintln!("the VNNI kernels were not run: this CPU lacks AVX-512 VNNI");
        }
    }

    /// The word-at-a-time unpacking of a K block's scales and mins gives what the byte-wise
    /// reference gives, for every sub-block, on random and extreme bytes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn k_scales_unpack_as_the_reference_does() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut cases: Vec<[u8; 12]> = vec![[0; 12], [0xFF; 12], [0xC0; 12], [0x3F; 12]];
        for _ in 0..2000 {
            cases.push(std::array::from_fn(|_| rng.random::<u8>()));
        }
        for p in cases {
            let (sc, mn) = x86::k4_scales_mins(&p);
            for j in 0..8 {
                let (s, m) = super::super::blocks::scale_min_k4(j, &p);
                assert_eq!(((sc >> (8 * j)) & 0xFF) as u8, s, "{p:?} scale {j}");
                assert_eq!(((mn >> (8 * j)) & 0xFF) as u8, m, "{p:?} min {j}");
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(QMatrix::from_bytes(QFormat::Q4K, 2, 255, vec![]).is_err());
        assert!(QMatrix::from_bytes(QFormat::Q6K, 1, 256, vec![0; 209]).is_err());
        assert!(QMatrix::from_bytes(QFormat::Q6K, 1, 256, vec![0; 210]).is_ok());
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// `cargo test --release --lib qmatrix::speed -- --ignored --nocapture`: GB/s per format.
    #[test]
    #[ignore]
    fn gb_per_s() {
        let cols: usize = std::env::var("GC")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(768);
        let rows = std::env::var("GR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(49152 * 768 / cols);
        let reps = std::env::var("GN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_1,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::F16,
            GgmlDType::BF16,
        ] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap().to_vec();
            let n = bytes.len();
            let x: Vec<f32> = (0..cols).map(|i| (i as f32).sin()).collect();
            let mut y = vec![0f32; rows];
            let m = QMatrix::from_bytes(QFormat::of(dtype).unwrap(), rows, cols, bytes).unwrap();
            let t = std::time::Instant::now();
            for _ in 0..reps {
                m.matvec(&x, &mut y);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "{dtype:?}: {:.2} ms, {:.1} GB/s",
                s * 1e3,
                n as f64 / s / 1e9
            );
        }
    }
}

#[cfg(test)]
mod accuracy {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Error against exact f32 math (dequantized weights x unquantized activations), ours and
    /// candle's quantized matmul, on the same blocks.
    #[test]
    fn error_is_no_larger_than_candles() {
        for dtype in [
            GgmlDType::Q5_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q4K,
        ] {
            let (rows, cols) = (256, 1536);
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let deq: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let m = QMatrix::from_bytes(
                QFormat::of(dtype).unwrap(),
                rows,
                cols,
                q.data().unwrap().to_vec(),
            )
            .unwrap();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32))
                .collect();
            let mut ours = vec![0f32; rows];
            m.matvec(&x, &mut ours);
            let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
            let theirs: Vec<f32> = QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&xt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let (mut eo, mut et, mut norm) = (0f64, 0f64, 0f64);
            for r in 0..rows {
                let exact: f64 = (0..cols)
                    .map(|c| deq[r * cols + c] as f64 * x[c] as f64)
                    .sum();
                eo += (ours[r] as f64 - exact).powi(2);
                et += (theirs[r] as f64 - exact).powi(2);
                norm += exact * exact;
            }
            let (eo, et) = ((eo / norm).sqrt(), (et / norm).sqrt());
            eprintln!("{dtype:?}: relative error ours {eo:.2e}, candle {et:.2e}");
            assert!(eo <= et * 1.5 + 1e-6, "{dtype:?}: {eo} vs {et}");
        }
    }
}
