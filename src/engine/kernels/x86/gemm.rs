//! The tiles of the batched product (prefill) on AVX2 and AVX-512.

// The kernels index several fixed-size arrays (rows, tokens, register tiles) in lockstep.
#![allow(clippy::needless_range_loop)]

use super::hsum;
use crate::engine::kernels::tiles::{FR, FR16, FT, FT16, GemmActs, Scratch, TB, TR};
use std::arch::x86_64::*;

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
                    let sx = _mm256_loadu_ps(a.sxv.as_ptr().add(((tb * groups + g) * 2 + h) * TB));
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
                        let l =
                            _mm512_set1_ps(*dl.add(r * cols / 16 + 2 * g + if SH { 0 } else { h }));
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

/// 8 float weights from value `i` of row `b`, as f32 (`F`: 0 F16, 1 BF16, 2 F32).
#[inline(always)]
unsafe fn load8<const F: u8>(b: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller keeps i + 8 within the row and runs with AVX2 and F16C enabled.
    unsafe {
        match F {
            0 => _mm256_cvtph_ps(_mm_loadu_si128(b.add(2 * i) as *const __m128i)),
            1 => _mm256_castsi256_ps(_mm256_slli_epi32(
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

/// R float rows x T f32 tokens (`F` as in [`load8`]): per 8 values, R weight loads and T
/// activation loads feed R T multiply-adds (3 x 4: 12 accumulators of the 16 registers).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn float_tile<const F: u8, const R: usize, const T: usize>(
    rows: [&[u8]; FR],
    x: &[f32],
    cols: usize,
    t0: usize,
    res: &mut [[f32; FT]; FR],
) {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let xp = x.as_ptr();
    let wp = rows.map(|r| r.as_ptr());
    let mut c = 0;
    while c < cols {
        let mut w = [_mm256_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: c + 8 <= cols (cols is a multiple of 32).
            w[r] = unsafe { load8::<F>(wp[r], c) };
        }
        for t in 0..T {
            // SAFETY: token t0 + t holds `cols` values.
            let xv = unsafe { _mm256_loadu_ps(xp.add((t0 + t) * cols + c)) };
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
            }
        }
        c += 8;
    }
    for r in 0..R {
        for t in 0..T {
            res[r][t] = hsum(acc[r][t]);
        }
    }
}
