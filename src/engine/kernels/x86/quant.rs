//! The row quantizer of the activations on AVX2.

use std::arch::x86_64::*;

/// See [`crate::engine::kernels::quant::quantize_row_q8`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_row_q8(x: &[f32], per: usize, d: &mut [f32], q: &mut [i8], s16: &mut [i32]) {
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
                    let s4 =
                        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
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
