//! Row dot products (decode) on AVX2 and AVX-512 VNNI.

use super::hsum;
use crate::engine::kernels::blocks::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, KNibbles, Nibbles, QFormat, as_blocks,
};
use crate::engine::kernels::quant::{BlockQ8K, BlockQ81};
use std::arch::x86_64::*;
use std::mem::size_of;
use std::ptr::from_ref;

/// An f16 field's value, converted in hardware (F16C).
#[inline]
#[target_feature(enable = "f16c")]
fn f16c(h: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(h) as i32),
    ))
}

/// Asks for the cache lines of the block `PREFETCH` bytes past `b` (a hint: never faults).
#[inline(always)]
fn ahead_of<B: Block>(b: *const B) {
    ahead(b.cast(), size_of::<B>());
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
    let blocks = as_blocks::<BlockQ4_0>(w);
    let n = x.len().min(blocks.len());
    let (wp, xp) = (blocks.as_ptr(), x.as_ptr());
    for i in 0..n {
        ahead_of(wp.wrapping_add(i));
        // SAFETY: i < n, so block i and activation block i exist; 16 bytes of a 16-byte array.
        let (b, xb) = unsafe { (&*wp.add(i), &*xp.add(i)) };
        let d = f16c(b.d);
        // SAFETY: 16 bytes of a 16-byte array.
        let q4 = unsafe { _mm_loadu_si128(b.qs.as_ptr() as *const __m128i) };
        // SAFETY: 32 bytes of a 32-byte array.
        let q8 = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
        let q4 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, q8), ones);
        let k = i & 1;
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(p), acc[k]);
        off[k] += d * xb.ds;
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) - 8.0 * (off[0] + off[1])
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
        pub unsafe fn $name<B: Nibbles>(w: [&[u8]; 4], x: &[BlockQ81]) -> [f32; 4] {
            // Q4_0 and Q5_0 codes carry a fixed offset (8, 16): folded into the integer sums
            // by starting each block's lanes at -offset x (their four activations' sum),
            // computed once per block for the four rows.
            let ones = _mm256_set1_epi8(1);
            let neg_offset = _mm256_set1_epi16(B::OFFSET);
            let mask = _mm256_set1_epi8(0x0F);
            let rows = w.map(as_blocks::<B>);
            let n = rows.iter().fold(x.len(), |n, r| n.min(r.len()));
            let wp = rows.map(|r| r.as_ptr());
            let xp = x.as_ptr();
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut off = [0f32; 4];
            for i in 0..n {
                // SAFETY: i < n, so activation block i exists.
                let xb = unsafe { &*xp.add(i) };
                // SAFETY: 32 bytes of a 32-byte array.
                let q8 = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
                let start = if B::OFFSET != 0 {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q8), neg_offset)
                } else {
                    _mm256_setzero_si256()
                };
                for r in 0..4 {
                    // SAFETY: i < n, so block i of row r exists.
                    let b = unsafe { &*wp[r].add(i) };
                    ahead_of(from_ref(b));
                    // SAFETY: the block's first 4 bytes (its f16 scale, then its minimum or
                    // the next 2 bytes, unused) and its 16 nibble bytes.
                    let (dm, q4) = unsafe {
                        (
                            _mm_cvtph_ps(_mm_cvtsi32_si128(
                                (from_ref(b) as *const i32).read_unaligned(),
                            )),
                            _mm_loadu_si128(b.qs().as_ptr() as *const __m128i),
                        )
                    };
                    let mut q =
                        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
                    if B::HIGH {
                        q = _mm256_or_si256(q, high_bits(i32::from_le_bytes(b.qh())));
                    }
                    let p = $dot(start, q, q8);
                    let d = _mm_cvtss_f32(dm);
                    acc[r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(d * xb.d),
                        _mm256_cvtepi32_ps(p),
                        acc[r],
                    );
                    if B::OFFSET == 0 {
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
    /// Four rows of one 4- or 5-bit block-32 format (`B`: Q4_0, Q4_1, Q5_0 or Q5_1 blocks)
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
    float_row(f, w, x)
}

/// Consecutive float rows (`w`: `out.len()` rows of `x.len()` values, in the file's layout)
/// times f32 activations: [`float_dot`]'s loop run over the rows in one call, so the weights
/// stream from memory without a call and a dispatch between rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn float_rows(f: QFormat, w: &[u8], x: &[f32], out: &mut [f32]) {
    let width = if f == QFormat::F32 { 4 } else { 2 };
    let row = x.len() * width;
    for (o, w) in out.iter_mut().zip(w.chunks_exact(row)) {
        *o = float_row(f, w, x);
    }
}

#[inline(always)]
fn float_row(f: QFormat, w: &[u8], x: &[f32]) -> f32 {
    let width = if f == QFormat::F32 { 4 } else { 2 };
    let n = x.len().min(w.len() / width);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let load = |i: usize| -> __m256 {
        // SAFETY: callers keep i + 8 <= n, inside both slices; the callers enabled AVX2 and
        // F16C.
        unsafe {
            match f {
                QFormat::F16 => _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
                QFormat::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(
                    _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
                    16,
                )),
                _ => _mm256_loadu_ps(wp.add(4 * i) as *const f32),
            }
        }
    };
    // SAFETY: the callers enabled AVX2 and FMA; every load below stays inside both slices.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            ahead(wp.wrapping_add(width * i), 32 * width);
            for (k, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(xp.add(i + 8 * k));
                *a = _mm256_fmadd_ps(load(i + 8 * k), xv, *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            let xv = _mm256_loadu_ps(xp.add(i));
            acc[0] = _mm256_fmadd_ps(load(i), xv, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(s);
        for (j, xv) in x.iter().enumerate().take(n).skip(i) {
            total += crate::engine::kernels::blocks::float_at(f, w, j) * xv;
        }
        total
    }
}

/// Q4_1 blocks times Q8_1 activations (scale x minimum folded into the stored sums), on two
/// accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_1(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(), _mm256_setzero_ps()];
    let mut mins = [0f32; 2];
    let blocks = as_blocks::<BlockQ4_1>(w);
    let n = x.len().min(blocks.len());
    for i in 0..n {
        let b = &blocks[i];
        ahead_of(from_ref(b));
        // SAFETY: the block's 4 scale and minimum bytes and 16 nibble bytes; 32 bytes of a
        // 32-byte array.
        let (dm, q4, q8) = unsafe {
            (
                _mm_cvtph_ps(_mm_cvtsi32_si128(
                    (from_ref(b) as *const i32).read_unaligned(),
                )),
                _mm_loadu_si128(b.qs.as_ptr() as *const __m128i),
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
    hsum(_mm256_add_ps(acc[0], acc[1])) + mins[0] + mins[1]
}

/// A Q5 block's 32 high bits as bytes: 16 where bit k of `h` is set, at byte k (to be OR-ed
/// onto the low nibbles).
#[inline]
#[target_feature(enable = "avx2")]
fn high_bits(h: i32) -> __m256i {
    let shuf = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    // Every bit but bit k of byte k set: byte k is all ones exactly when bit k of h is.
    let bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    let set = _mm256_cmpeq_epi8(
        _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(h), shuf), bit),
        _mm256_set1_epi8(-1),
    );
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Q5_0 / Q5_1 blocks (`B`) times Q8 activations, on two accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5<B: Nibbles>(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let blocks = as_blocks::<B>(w);
    let n = x.len().min(blocks.len());
    let mut acc = [_mm256_setzero_ps(), _mm256_setzero_ps()];
    let mut off = [0f32; 2];
    for i in 0..n {
        let b = &blocks[i];
        ahead_of(from_ref(b));
        // SAFETY: the block's first 4 bytes (scale, then minimum or fifth bits), its 16
        // nibble bytes and the 32 activation bytes.
        let (dm, q4, q8) = unsafe {
            (
                _mm_cvtph_ps(_mm_cvtsi32_si128(
                    (from_ref(b) as *const i32).read_unaligned(),
                )),
                _mm_loadu_si128(b.qs().as_ptr() as *const __m128i),
                _mm256_loadu_si256(x[i].qs.as_ptr() as *const __m256i),
            )
        };
        let h = i32::from_le_bytes(b.qh());
        let d = _mm_cvtss_f32(dm);
        let lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
        let q5 = _mm256_or_si256(lo, high_bits(h));
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q5, q8), ones);
        let k = i & 1;
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), _mm256_cvtepi32_ps(p), acc[k]);
        off[k] += if B::OFFSET == 0 {
            _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)) * x[i].s
        } else {
            -16.0 * d * x[i].ds
        };
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) + off[0] + off[1]
}

/// Defines the Q8_0 row kernel (below) for one instruction set.
macro_rules! q8_0_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[u8], x: &[BlockQ81]) -> f32 {
            let blocks = as_blocks::<BlockQ8_0>(w);
            let n = x.len().min(blocks.len());
            let one = |i: usize| {
                let b = &blocks[i];
                ahead_of(from_ref(b));
                // SAFETY: 32 bytes of the block's 32 codes and of the activations' 32.
                let (qw, qx) = unsafe {
                    (
                        _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(x[i].qs.as_ptr() as *const __m256i),
                    )
                };
                // |w| x sign(x, w): the byte product's first operand is unsigned.
                let p = $dot(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
                (_mm256_cvtepi32_ps(p), f16c(b.d) * x[i].d)
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
            hsum(_mm256_add_ps(acc0, acc1))
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

/// Q4_K or Q5_K blocks (`B`; Q5_K: 32 bytes of fifth bits before the nibbles) times Q8_K
/// activations: scales and mins unpacked with integer word operations, the mins' term as one
/// 16-bit multiply-add with the activations' group sums, one float accumulator across blocks
/// (a single horizontal sum per row).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_5_k<B: KNibbles>(w: &[u8], x: &[BlockQ8K]) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (b, xb) in as_blocks::<B>(w).iter().zip(x) {
        ahead_of(from_ref(b));
        let (d, dmin, scales, qs) = b.parts();
        let (d, dmin) = (f16c(d), f16c(dmin));
        let (sc, mn) = k4_scales_mins(scales);
        // Each min twice (it covers two groups of 16), times the 16 group sums.
        let mn8 = _mm_cvtsi64_si128(mn as i64);
        let mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
        // SAFETY: 16 i16 group sums.
        let bsums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
        let m = _mm256_madd_epi16(mins16, bsums);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin * xb.d), _mm256_cvtepi32_ps(m), accm);
        let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let qh = b.qh().map(|qh| {
            // SAFETY: 32 bytes of a 32-byte array.
            unsafe { _mm256_loadu_si256(qh.as_ptr() as *const __m256i) }
        });
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY: 32 quant bytes inside the block's 128; 32-byte slices of the 256
            // activations.
            let (q, x0, x1) = unsafe {
                (
                    _mm256_loadu_si256(qs.as_ptr().add(32 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c + 32) as *const __m256i),
                )
            };
            let mut lo = _mm256_and_si256(q, mask);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            if let Some(qh) = qh {
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
    hsum(_mm256_sub_ps(acc, accm))
}

/// Q6_K times Q8_K activations: the 16 signed scales widened once per block and picked per
/// group by a shuffle, the -32 offset of every value as one multiply-add of the scales with
/// the activations' group sums, one float accumulator across blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q6_k(w: &[u8], x: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in as_blocks::<BlockQ6K>(w).iter().zip(x) {
        ahead_of(from_ref(b));
        let d = f16c(b.d);
        // SAFETY: the block's 16 scale bytes and the 16 group sums.
        let (sc16, bsums) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr() as *const __m128i)),
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
            // SAFETY: offsets stay inside the 128 ql and 64 qh bytes.
            let (qa, qc, qh) = unsafe {
                (
                    _mm256_loadu_si256(b.ql.as_ptr().add(64 * n) as *const __m256i),
                    _mm256_loadu_si256(b.ql.as_ptr().add(64 * n + 32) as *const __m256i),
                    _mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i),
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
                let xq = unsafe { _mm256_loadu_si256(xb.qs.as_ptr().add(base) as *const __m256i) };
                let s = _mm256_shuffle_epi8(sc, pair_picker(k));
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*q6, xq), s);
                isum = _mm256_add_epi32(isum, p);
            }
        }
        // The -32 offset of every value, per group of 16 with its scale.
        let total = _mm256_sub_epi32(isum, _mm256_slli_epi32(bias, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(total), acc);
    }
    hsum(acc)
}

/// For Q6_K's quad `k` (values 32k..32k + 32 of a half-block): a shuffle that puts group
/// 2k's 16-bit scale in every lane of the low half and group 2k + 1's in the high half.
#[inline(always)]
fn pair_picker(k: usize) -> __m256i {
    let word = |j: usize| (((2 * j + 1) << 8) | (2 * j)) as i16;
    // SAFETY: AVX is implied by the callers' target features; no memory access.
    unsafe { _mm256_set_m128i(_mm_set1_epi16(word(2 * k + 1)), _mm_set1_epi16(word(2 * k))) }
}

/// Eight rows' 32-bit lane sums reduced to one vector of the eight row sums, rows in order.
#[inline]
#[target_feature(enable = "avx2")]
fn row_sums8(p: [__m256i; 8]) -> __m256i {
    let h0 = _mm256_hadd_epi32(p[0], p[1]);
    let h1 = _mm256_hadd_epi32(p[2], p[3]);
    let h2 = _mm256_hadd_epi32(p[4], p[5]);
    let h3 = _mm256_hadd_epi32(p[6], p[7]);
    let (h01, h23) = (_mm256_hadd_epi32(h0, h1), _mm256_hadd_epi32(h2, h3));
    _mm256_add_epi32(
        _mm256_permute2x128_si256(h01, h23, 0x20),
        _mm256_permute2x128_si256(h01, h23, 0x31),
    )
}

/// The first two 16-bit words of eight blocks at `p + offsets` (their f16 scales, then a
/// minimum or two code bytes), gathered: the eight first words in row order in the low 128
/// bits, the eight second words in the high 128 bits.
///
/// # Safety
/// Each of the eight addresses must hold 4 readable bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn heads8(p: *const i32, offsets: __m256i) -> __m256i {
    // SAFETY: the caller's contract (scale = 1 keeps the byte offsets as given).
    let heads = unsafe { _mm256_i32gather_epi32::<1>(p, offsets) };
    _mm256_permute4x64_epi64(
        _mm256_packus_epi32(
            _mm256_and_si256(heads, _mm256_set1_epi32(0xffff)),
            _mm256_srli_epi32(heads, 16),
        ),
        0b11_01_10_00,
    )
}

/// Defines an eight-row kernel (below) for one instruction set: its target features and how
/// it sums byte products.
macro_rules! rows8_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $name<B: Nibbles>(w: &[u8], x: &[BlockQ81]) -> [f32; 8] {
            let ones = _mm256_set1_epi8(1);
            let neg_offset = _mm256_set1_epi16(B::OFFSET);
            let mask = _mm256_set1_epi8(0x0F);
            let size = size_of::<B>();
            let groups = as_blocks::<B>(w);
            let n = x.len().min(groups.len() / 8);
            let (gp, xp) = (groups.as_ptr(), x.as_ptr());
            // Byte offsets of the eight blocks' first 4 bytes (f16 scale, then the minimum
            // or 2 code bytes).
            let lane_offsets = _mm256_mullo_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(size as i32),
            );
            let (mut acc, mut mins) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for i in 0..n {
                // SAFETY: i < n, so blocks 8i..8i + 8 and activation block i exist.
                let (b, xb) = unsafe { (gp.add(8 * i), &*xp.add(i)) };
                ahead(b.cast(), 8 * size);
                // SAFETY: 32 bytes of a 32-byte array.
                let q8 = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
                let start = if B::OFFSET != 0 {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q8), neg_offset)
                } else {
                    _mm256_setzero_si256()
                };
                let row = |k: usize| -> __m256i {
                    // SAFETY: k < 8: block 8i + k exists.
                    let blk = unsafe { &*b.add(k) };
                    // SAFETY: the block's 16 nibble bytes.
                    let q4 = unsafe { _mm_loadu_si128(blk.qs().as_ptr() as *const __m128i) };
                    let mut q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q4, 4), q4), mask);
                    if B::HIGH {
                        q = _mm256_or_si256(q, high_bits(i32::from_le_bytes(blk.qh())));
                    }
                    $dot(start, q, q8)
                };
                // Eight rows' lane sums reduced to one vector of eight row sums, rows in order.
                let s = row_sums8(std::array::from_fn(row));
                // SAFETY: each of the eight blocks holds at least 4 bytes.
                let packed = unsafe { heads8(b.cast(), lane_offsets) };
                let d = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
                acc = _mm256_fmadd_ps(
                    _mm256_mul_ps(d, _mm256_set1_ps(xb.d)),
                    _mm256_cvtepi32_ps(s),
                    acc,
                );
                if B::OFFSET == 0 {
                    // Q4_1 and Q5_1 carry a minimum.
                    let m = _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1));
                    mins = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), mins);
                }
            }
            let mut out = [0f32; 8];
            // SAFETY: eight floats into an eight-float array.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(acc, mins)) };
            out
        }
    };
}

rows8_kernel!(
    /// Eight rows of one 4- or 5-bit block-32 format (`B`) times the same Q8 activations, the
    /// rows' blocks interleaved (block `i` of rows 0..8, then block `i + 1` of each, as
    /// `QMatrix::interleaved` lays them out): the weights stream from one place, each
    /// activation block is loaded once for eight rows, and the eight rows' integer sums are
    /// reduced into one vector, so the scales, the float conversion and the multiply-add are
    /// one vector operation for eight rows instead of one per row.
    rows8,
    "avx2,fma,f16c",
    dot_bytes_acc
);

rows8_kernel!(
    /// `rows8` with `vpdpbusd` (AVX-512 VNNI on 256-bit registers).
    rows8_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_bytes_acc_vnni
);

/// Defines the eight-row Q8_0 kernel (below) for one instruction set.
macro_rules! rows8_q8_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[u8], x: &[BlockQ81]) -> [f32; 8] {
            let size = size_of::<BlockQ8_0>();
            let groups = as_blocks::<BlockQ8_0>(w);
            let n = x.len().min(groups.len() / 8);
            let (gp, xp) = (groups.as_ptr(), x.as_ptr());
            let lane_offsets = _mm256_mullo_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(size as i32),
            );
            let mut acc = _mm256_setzero_ps();
            for i in 0..n {
                // SAFETY: i < n, so blocks 8i..8i + 8 and activation block i exist.
                let (b, xb) = unsafe { (gp.add(8 * i), &*xp.add(i)) };
                ahead(b.cast(), 8 * size);
                // SAFETY: 32 bytes of a 32-byte array.
                let qx = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
                let row = |k: usize| -> __m256i {
                    // SAFETY: k < 8: block 8i + k exists; 32 bytes of its 32 codes.
                    let qw = unsafe {
                        _mm256_loadu_si256((*b.add(k)).qs.as_ptr() as *const __m256i)
                    };
                    // |w| x sign(x, w): the byte product's first operand is unsigned.
                    $dot(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw))
                };
                let s = row_sums8(std::array::from_fn(row));
                // SAFETY: each of the eight blocks holds at least 4 bytes.
                let packed = unsafe { heads8(b.cast(), lane_offsets) };
                let d = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
                acc = _mm256_fmadd_ps(
                    _mm256_mul_ps(d, _mm256_set1_ps(xb.d)),
                    _mm256_cvtepi32_ps(s),
                    acc,
                );
            }
            let mut out = [0f32; 8];
            // SAFETY: eight floats into an eight-float array.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
            out
        }
    };
}

rows8_q8_kernel!(
    /// Eight interleaved Q8_0 rows times the same Q8 activations (as `rows8`).
    rows8_q8_0,
    "avx2,fma,f16c",
    dot_bytes
);

rows8_q8_kernel!(
    /// `rows8_q8_0` with `vpdpbusd`.
    rows8_q8_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_bytes_vnni
);
