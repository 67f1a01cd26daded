//! Matrix-vector products on GGUF Q4_1 weights for decode, where candle only has scalar code.
//!
//! Activations are quantized to Q8_1 (32 int8 with a scale and a scaled sum), then each weight
//! row's dot product is Σ d_w·d_x·Σ(q4·q8) + m_w·s_x, with AVX2 where the CPU has it. Rows are
//! split across candle's own thread pool so decode and candle's ops share one set of threads.

use half::f16;

/// Below this many weights a matvec runs on the calling thread: waking the pool costs more.
pub(crate) const PARALLEL_MIN_WEIGHTS: usize = 600_000;

/// Elements per block.
pub const QK: usize = 32;

/// One Q4_1 block as stored in GGUF: scale, minimum, 32 4-bit values (low nibbles are
/// elements 0..16, high nibbles 16..32).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ41 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// One Q8_1 block of activations: scale, scale × sum of values, 32 int8 values.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ81 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
    /// The exact integer sum of `qs` (formats with a fixed offset use it instead of `s`).
    pub isum: i32,
}

/// A Q4_1 weight matrix, `rows` × `cols`, row-major in blocks.
#[derive(Debug, Clone)]
pub struct Q41Matrix {
    pub rows: usize,
    pub cols: usize,
    blocks: Vec<BlockQ41>,
}

impl Q41Matrix {
    /// Parses raw GGUF Q4_1 bytes (20 bytes per block).
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, String> {
        if cols % QK != 0 {
            return Err(format!("Q4_1 row length {cols} is not a multiple of {QK}"));
        }
        let n = rows * cols / QK;
        if bytes.len() != n * 20 {
            return Err(format!(
                "Q4_1 data of {} bytes does not hold {rows}x{cols} values ({} bytes expected)",
                bytes.len(),
                n * 20
            ));
        }
        let blocks = bytes
            .chunks_exact(20)
            .map(|c| {
                let mut qs = [0u8; 16];
                qs.copy_from_slice(&c[4..20]);
                BlockQ41 {
                    d: f16::from_le_bytes([c[0], c[1]]),
                    m: f16::from_le_bytes([c[2], c[3]]),
                    qs,
                }
            })
            .collect();
        Ok(Q41Matrix { rows, cols, blocks })
    }

    /// Quantizes f32 rows (as GGUF would), for synthetic models and tests.
    pub fn quantize(rows: usize, cols: usize, w: &[f32]) -> Self {
        let blocks = w
            .chunks_exact(QK)
            .map(|x| {
                let (mn, mx) = x
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                        (a.min(v), b.max(v))
                    });
                let d = (mx - mn) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut qs = [0u8; 16];
                for j in 0..16 {
                    let q0 = (((x[j] - mn) * id + 0.5) as u8).min(15);
                    let q1 = (((x[j + 16] - mn) * id + 0.5) as u8).min(15);
                    qs[j] = q0 | (q1 << 4);
                }
                BlockQ41 {
                    d: f16::from_f32(d),
                    m: f16::from_f32(mn),
                    qs,
                }
            })
            .collect();
        Q41Matrix { rows, cols, blocks }
    }

    /// The matrix as f32 values, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for b in &self.blocks {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            let mut vals = [0f32; QK];
            for j in 0..16 {
                vals[j] = (b.qs[j] & 0x0F) as f32 * d + m;
                vals[j + 16] = (b.qs[j] >> 4) as f32 * d + m;
            }
            out.extend_from_slice(&vals);
        }
        out
    }

    fn row(&self, r: usize) -> &[BlockQ41] {
        let n = self.cols / QK;
        &self.blocks[r * n..(r + 1) * n]
    }

    /// y[b][r] = Σ_c W[r][c] · x[b][c] for each of `x.len() / cols` input vectors.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) {
        let batch = x.len() / self.cols;
        debug_assert_eq!(y.len(), batch * self.rows);
        let xq: Vec<Vec<BlockQ81>> = x.chunks_exact(self.cols).map(quantize_q8_1).collect();
        let rows = self.rows;
        let out = SyncPtr(y.as_mut_ptr());
        let work = |range: std::ops::Range<usize>| {
            let out = &out;
            for r in range {
                let w = self.row(r);
                for (b, xb) in xq.iter().enumerate() {
                    // SAFETY: each (b, r) is written by exactly one work item.
                    unsafe { *out.0.add(b * rows + r) = dot(w, xb) };
                }
            }
        };
        if rows * self.cols >= PARALLEL_MIN_WEIGHTS {
            candle_core::utils::barrier_pool().execute_chunked(rows, work);
        } else {
            work(0..rows);
        }
    }
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
            }
        })
        .collect()
}

/// The portable dot product of one Q4_1 row with Q8_1 activations.
pub fn dot_scalar(w: &[BlockQ41], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.iter().zip(x) {
        let mut si = 0i32;
        for j in 0..16 {
            si += (wb.qs[j] & 0x0F) as i32 * xb.qs[j] as i32;
            si += (wb.qs[j] >> 4) as i32 * xb.qs[j + 16] as i32;
        }
        sum += si as f32 * wb.d.to_f32() * xb.d + wb.m.to_f32() * xb.s;
    }
    sum
}

#[inline]
fn dot(w: &[BlockQ41], x: &[BlockQ81]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked once at run time).
            return unsafe { x86::dot_avx2(w, x) };
        }
    }
    dot_scalar(w, x)
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Which implementation `matvec` uses on this CPU, for the record.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return "q4_1xq8_1 avx2";
        }
    }
    "q4_1xq8_1 scalar"
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BlockQ41, BlockQ81};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(w: &[BlockQ41], x: &[BlockQ81]) -> f32 {
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut accs = [_mm256_setzero_ps(), _mm256_setzero_ps()];
        let mut mins = [0f32; 2];
        for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
            // Two accumulators: consecutive blocks do not wait on each other's sums.
            let k = i & 1;
            // SAFETY: 16 and 32 bytes are read from arrays of exactly that size.
            let (q4, q8) = unsafe {
                (
                    _mm_loadu_si128(wb.qs.as_ptr() as *const __m128i),
                    _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i),
                )
            };
            let both = _mm256_set_m128i(_mm_srli_epi16(q4, 4), q4);
            let q4 = _mm256_and_si256(both, mask);
            let p16 = _mm256_maddubs_epi16(q4, q8);
            let p32 = _mm256_madd_epi16(p16, ones);
            let dm = _mm_cvtph_ps(_mm_set1_epi32(
                (wb.d.to_bits() as u32 | ((wb.m.to_bits() as u32) << 16)) as i32,
            ));
            let d = _mm_cvtss_f32(dm);
            let m = _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1));
            accs[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p32), accs[k]);
            mins[k] += m * xb.s;
        }
        let acc = _mm256_add_ps(accs[0], accs[1]);
        let mins = mins[0] + mins[1];
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s) + mins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn quantize_dequantize_is_close() {
        let w = random(4 * 64, 1);
        let q = Q41Matrix::quantize(4, 64, &w);
        for (a, b) in w.iter().zip(q.dequantize()) {
            assert!((a - b).abs() <= 2.0 / 15.0 / 2.0 + 1e-3, "{a} {b}");
        }
    }

    #[test]
    fn matvec_matches_dequantized_reference() {
        let (rows, cols) = (130, 576);
        let q = Q41Matrix::quantize(rows, cols, &random(rows * cols, 2));
        let dense = q.dequantize();
        let x = random(2 * cols, 3);
        let mut y = vec![0f32; 2 * rows];
        q.matvec(&x, &mut y);
        for b in 0..2 {
            // The reference uses the same Q8_1 activations, dequantized, and their stored sums
            // (f16, as llama.cpp stores them, which the minimum term uses): the kernel must match
            // it up to float rounding.
            let blocks = quantize_q8_1(&x[b * cols..(b + 1) * cols]);
            let xq: Vec<f32> = blocks
                .iter()
                .flat_map(|blk| blk.qs.iter().map(move |q| *q as f32 * blk.d))
                .collect();
            for r in 0..rows {
                let stored_sums: f32 = q
                    .row(r)
                    .iter()
                    .zip(&blocks)
                    .map(|(w, xb)| w.m.to_f32() * (xb.s - xb.d * xb.isum as f32))
                    .sum();
                let want: f32 =
                    (0..cols).map(|c| dense[r * cols + c] * xq[c]).sum::<f32>() + stored_sums;
                let got = y[b * rows + r];
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{b},{r}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn simd_and_scalar_agree() {
        let cols = 256;
        let q = Q41Matrix::quantize(3, cols, &random(3 * cols, 4));
        let xq = quantize_q8_1(&random(cols, 5));
        for r in 0..3 {
            let a = dot_scalar(q.row(r), &xq);
            let b = dot(q.row(r), &xq);
            assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_wrong_sizes() {
        assert!(Q41Matrix::from_bytes(2, 33, &[]).is_err());
        assert!(Q41Matrix::from_bytes(2, 32, &[0u8; 39]).is_err());
        assert!(Q41Matrix::from_bytes(2, 32, &[0u8; 40]).is_ok());
    }
}
