//! Unpacking a whole row of a 32-value format into the tiled product's normalized codes.

use crate::engine::kernels::blocks::QFormat;
use std::arch::x86_64::*;

/// [`unpack_block`](crate::engine::kernels::blocks::unpack_block) of a whole row of a 32-value format (Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0): the same codes, scales and offsets, 32 codes in a few instructions. The
/// row's `q.len() / 32` blocks lie `stride` bytes apart in `row` (the block size in the file's
/// layout; eight blocks in a matrix interleaved eight rows at a time).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn unpack_row32(
    f: QFormat,
    row: &[u8],
    stride: usize,
    q: &mut [u8],
    dl: &mut [f32],
    ml: &mut [f32],
) {
    let bb = f.block().1;
    let blocks = q.len() / 32;
    assert!(blocks == 0 || (blocks - 1) * stride + bb <= row.len());
    let nib = _mm_set1_epi8(0x0F);
    // Bit j of a 32-bit word to byte j: byte j takes word byte j / 8, then tests bit j % 8.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
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
    for k in 0..blocks {
        // SAFETY: block k is inside `row` (asserted above); codes 32 k..32 k + 32 and scales
        // 2 k, 2 k + 1 are inside the scratch row (the caller's lengths).
        unsafe {
            let b = row.as_ptr().add(k * stride);
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
