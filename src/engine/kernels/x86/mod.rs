//! The intrinsics: every function here is `unsafe` and needs the CPU features its
//! `target_feature` names, which the dispatch in the parent modules checked at run time.

pub mod dot;
pub mod gemm;
pub mod math;
pub mod quant;
pub mod unpack;

use std::arch::x86_64::*;

/// The sum of a vector's eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}
