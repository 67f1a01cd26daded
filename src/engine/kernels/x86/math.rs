//! Vector math for the non-matrix parts of a forward pass (AVX2 and FMA): `exp` over eight
//! lanes, and the loops of attention and the gated feed-forward that use it.

use super::hsum;
use std::arch::x86_64::*;

/// `e^x` in eight lanes: `x = n ln 2 + r` with `|r| <= ln 2 / 2` (ln 2 in two parts, so `r` is
/// exact), `e^r` by Cephes' degree-7 polynomial for `expf`, and `2^n` added to the exponent
/// bits. Within 2 ulp of `f32::exp` over the range where either is a normal number; inputs
/// are clamped to [-87.3, 88.7] (results near `f32::MIN_POSITIVE` and `f32::MAX` instead of
/// 0 and infinity); NaN stays NaN.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(88.7), x);
    let x = _mm256_max_ps(_mm256_set1_ps(-87.3), x);
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    // 2^n: n + 127 in the exponent field (n is in [-126, 128] after the clamp; 2^128 is
    // split in two so the field never overflows).
    let n = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32(n, 1);
    let pow = |k: __m256i| {
        _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(k, _mm256_set1_epi32(127)),
            23,
        ))
    };
    _mm256_mul_ps(_mm256_mul_ps(p, pow(half)), pow(_mm256_sub_epi32(n, half)))
}

/// `x = e^x` for every element.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_in_place(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
    }
    for v in chunks.into_remainder() {
        *v = v.exp();
    }
}

/// `g = silu(g) * u` (`silu(x) = x / (1 + e^-x)`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu_mul(g: &mut [f32], u: &[f32]) {
    let n = g.len().min(u.len());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
            let uv = _mm256_loadu_ps(u.as_ptr().add(i));
            _mm256_storeu_ps(g.as_mut_ptr().add(i), _mm256_mul_ps(s, uv));
        }
        i += 8;
    }
    for (g, &u) in g[i..n].iter_mut().zip(&u[i..n]) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `Σ a[i] b[i]` on four FMA accumulators.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load below): i + 8 <= n, inside both slices.
    unsafe {
        while i + 32 <= n {
            for (k, s) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *s = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(j)),
                    _mm256_loadu_ps(b.as_ptr().add(j)),
                    *s,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                acc[0],
            );
            i += 8;
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s)
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

/// `out += p * v`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn axpy(out: &mut [f32], p: f32, v: &[f32]) {
    let n = out.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices.
        unsafe {
            let o = _mm256_loadu_ps(out.as_ptr().add(i));
            let r = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v.as_ptr().add(i)), o);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), r);
        }
        i += 8;
    }
    for (o, &x) in out[i..n].iter_mut().zip(&v[i..n]) {
        *o += p * x;
    }
}
