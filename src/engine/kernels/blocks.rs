//! GGUF weight formats and their block layouts: which formats exist, their block sizes, the
//! scale and code fields of each block, and one normalized reading of any block (codes with one
//! scale and offset per 16 values) that dequantization and the batched kernels share.

use half::f16;

/// Values per block of the 32-value formats.
pub const QK: usize = 32;

/// Values per K-format super-block.
pub const QK_K: usize = 256;

/// The block formats this module multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    F16,
    BF16,
    F32,
}

impl QFormat {
    /// From candle's dtype, when this module handles it.
    pub fn of(d: candle_core::quantized::GgmlDType) -> Option<QFormat> {
        use candle_core::quantized::GgmlDType as G;
        Some(match d {
            G::Q4_0 => QFormat::Q4_0,
            G::Q4_1 => QFormat::Q4_1,
            G::Q2K => QFormat::Q2K,
            G::Q3K => QFormat::Q3K,
            G::F16 => QFormat::F16,
            G::BF16 => QFormat::BF16,
            G::F32 => QFormat::F32,
            G::Q5_0 => QFormat::Q5_0,
            G::Q5_1 => QFormat::Q5_1,
            G::Q8_0 => QFormat::Q8_0,
            G::Q4K => QFormat::Q4K,
            G::Q5K => QFormat::Q5K,
            G::Q6K => QFormat::Q6K,
            _ => return None,
        })
    }

    /// (values, bytes) per block.
    pub fn block(self) -> (usize, usize) {
        match self {
            QFormat::Q4_0 => (QK, 18),
            QFormat::Q4_1 => (QK, 20),
            QFormat::Q2K => (QK_K, 84),
            QFormat::Q3K => (QK_K, 110),
            QFormat::F16 | QFormat::BF16 => (QK, 64),
            QFormat::F32 => (QK, 128),
            QFormat::Q5_0 => (QK, 22),
            QFormat::Q5_1 => (QK, 24),
            QFormat::Q8_0 => (QK, 34),
            QFormat::Q4K => (QK_K, 144),
            QFormat::Q5K => (QK_K, 176),
            QFormat::Q6K => (QK_K, 210),
        }
    }

    /// F16, BF16 or F32.
    pub fn is_float(self) -> bool {
        matches!(self, QFormat::F16 | QFormat::BF16 | QFormat::F32)
    }

    /// Whether a dedicated single-token dot product exists (else every product is `gemm`'s).
    pub(crate) fn has_dot(self) -> bool {
        !matches!(self, QFormat::Q2K | QFormat::Q3K)
    }

    /// Lower-case name, as in kernel names.
    pub fn name(self) -> &'static str {
        match self {
            QFormat::Q4_0 => "q4_0",
            QFormat::Q4_1 => "q4_1",
            QFormat::Q5_0 => "q5_0",
            QFormat::Q5_1 => "q5_1",
            QFormat::Q8_0 => "q8_0",
            QFormat::Q2K => "q2_k",
            QFormat::Q3K => "q3_k",
            QFormat::Q4K => "q4_k",
            QFormat::Q5K => "q5_k",
            QFormat::Q6K => "q6_k",
            QFormat::F16 => "f16",
            QFormat::BF16 => "bf16",
            QFormat::F32 => "f32",
        }
    }
}

/// A block format's layout as a `#[repr(C)]` struct of byte arrays, as llama.cpp's
/// `block_q4_0` and friends lay them out (f16 fields as their two little-endian bytes).
///
/// # Safety
/// Implementors are `#[repr(C)]` structs of `u8` arrays only: alignment 1, no padding, every
/// bit pattern valid, so any run of whole blocks in a byte slice can be viewed as blocks.
pub unsafe trait Block: Sized {
    /// The format whose block this is.
    const FORMAT: QFormat;
}

macro_rules! blocks {
    ($($(#[$doc:meta])* $name:ident ($fmt:ident, $bytes:literal) { $($(#[$fdoc:meta])* $field:ident: $n:literal),* })*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        #[repr(C)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: [u8; $n]),*
        }
        // SAFETY: a repr(C) struct of u8 arrays (the trait's contract).
        unsafe impl Block for $name {
            const FORMAT: QFormat = QFormat::$fmt;
        }
        const _: () = assert!(std::mem::size_of::<$name>() == $bytes);
        const _: () = assert!(std::mem::align_of::<$name>() == 1);
    )*};
}

blocks! {
    /// 32 values: `d * (code - 8)`.
    BlockQ4_0 (Q4_0, 18) { d: 2, /** Low nibbles are values 0..16, high nibbles 16..32. */ qs: 16 }
    /// 32 values: `d * code + m`.
    BlockQ4_1 (Q4_1, 20) { d: 2, m: 2, qs: 16 }
    /// 32 values: `d * (code - 16)`, the fifth bit of value `j` in bit `j` of `qh`.
    BlockQ5_0 (Q5_0, 22) { d: 2, qh: 4, qs: 16 }
    /// 32 values: `d * code + m`, the fifth bit of value `j` in bit `j` of `qh`.
    BlockQ5_1 (Q5_1, 24) { d: 2, m: 2, qh: 4, qs: 16 }
    /// 32 values: `d * code`, codes signed bytes.
    BlockQ8_0 (Q8_0, 34) { d: 2, qs: 32 }
    /// 256 values in 16 groups: 4-bit scale and minimum per group, 2-bit codes.
    BlockQ2K (Q2K, 84) { scales: 16, qs: 64, d: 2, dmin: 2 }
    /// 256 values in 16 groups: 6-bit scales packed in 12 bytes, 2-bit codes plus a high bit.
    BlockQ3K (Q3K, 110) { hmask: 32, qs: 64, scales: 12, d: 2 }
    /// 256 values in 8 sub-blocks: 6-bit scale and minimum each, packed in 12 bytes; nibbles.
    BlockQ4K (Q4K, 144) { d: 2, dmin: 2, scales: 12, qs: 128 }
    /// [`BlockQ4K`] with a fifth bit per value in `qh`.
    BlockQ5K (Q5K, 176) { d: 2, dmin: 2, scales: 12, qh: 32, qs: 128 }
    /// 256 values in 16 groups: signed 8-bit scales, 6-bit codes (low 4 bits in `ql`, high 2
    /// in `qh`), offset 32.
    BlockQ6K (Q6K, 210) { ql: 128, qh: 64, scales: 16, d: 2 }
}

/// The 32-value nibble formats (Q4_0, Q4_1, Q5_0, Q5_1): 16 nibble bytes, an f16 scale first,
/// then a minimum (`_1`) and 4 bytes of fifth bits (Q5), as the four-row kernels read them.
pub trait Nibbles: Block {
    /// The codes' fixed offset (-8, -16), folded into the integer sums; 0 where the block
    /// carries a minimum instead.
    const OFFSET: i16;
    /// Whether a fifth bit per value sits in [`Nibbles::qh`].
    const HIGH: bool;
    /// The 32 low nibbles (values 0..16 low, 16..32 high).
    fn qs(&self) -> &[u8; 16];
    /// The fifth bits, value `j` in bit `j` (zero for the 4-bit formats).
    fn qh(&self) -> [u8; 4] {
        [0; 4]
    }
}

impl Nibbles for BlockQ4_0 {
    const OFFSET: i16 = -8;
    const HIGH: bool = false;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Nibbles for BlockQ4_1 {
    const OFFSET: i16 = 0;
    const HIGH: bool = false;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Nibbles for BlockQ5_0 {
    const OFFSET: i16 = -16;
    const HIGH: bool = true;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
    fn qh(&self) -> [u8; 4] {
        self.qh
    }
}

impl Nibbles for BlockQ5_1 {
    const OFFSET: i16 = 0;
    const HIGH: bool = true;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
    fn qh(&self) -> [u8; 4] {
        self.qh
    }
}

/// The K formats of nibbles with 8 packed 6-bit scales and minimums (Q4_K, Q5_K).
pub trait KNibbles: Block {
    /// `(d, dmin, scales, qs)`: the f16 scale of the scales and of the minimums, the 12 packed
    /// bytes, the 128 nibble bytes.
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; 12], &[u8; 128]);
    /// Q5_K's fifth bits (bit 2c of byte l: value 64c + l; bit 2c + 1: value 64c + 32 + l).
    fn qh(&self) -> Option<&[u8; 32]>;
}

impl KNibbles for BlockQ4K {
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; 12], &[u8; 128]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    fn qh(&self) -> Option<&[u8; 32]> {
        None
    }
}

impl KNibbles for BlockQ5K {
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; 12], &[u8; 128]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    fn qh(&self) -> Option<&[u8; 32]> {
        Some(&self.qh)
    }
}

/// Whole blocks of `bytes` as typed blocks (a trailing partial block is left out).
#[inline]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: `Block` types have alignment 1 and accept every bit pattern (the trait's
    // contract), and n blocks of size_of::<B>() bytes lie inside `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// An f16 field's value.
#[inline]
pub fn f16v(h: [u8; 2]) -> f32 {
    f16::from_le_bytes(h).to_f32()
}

/// The block at the start of `bytes`.
#[inline]
pub fn block<B: Block>(bytes: &[u8]) -> &B {
    &as_blocks::<B>(bytes)[0]
}

/// A Q5_0 or Q5_1 block's scale, minimum (0 for Q5_0), high-bit word and nibbles.
pub(crate) fn q5_parts(f: QFormat, b: &[u8]) -> (f32, f32, u32, &[u8; 16]) {
    match f {
        QFormat::Q5_1 => {
            let b = block::<BlockQ5_1>(b);
            (f16v(b.d), f16v(b.m), u32::from_le_bytes(b.qh), &b.qs)
        }
        _ => {
            let b = block::<BlockQ5_0>(b);
            (f16v(b.d), 0.0, u32::from_le_bytes(b.qh), &b.qs)
        }
    }
}

/// The 5-bit value of element `j` (0..32): nibble `j` (low nibbles first) plus bit `j` of `h`.
#[inline]
pub(crate) fn q5_value(h: u32, q: &[u8], j: usize) -> u8 {
    let n = if j < 16 { q[j] & 0xF } else { q[j - 16] >> 4 };
    n | ((((h >> j) & 1) as u8) << 4)
}

/// Q4_K's 6-bit scale and minimum of sub-block `j` (0..8).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Brings one block into normalized form: `q` (its values), `dl` and `ml` (one per 16 values).
pub fn unpack_block(f: QFormat, b: &[u8], q: &mut [u8], dl: &mut [f32], ml: &mut [f32]) {
    match f {
        QFormat::Q4_0 | QFormat::Q4_1 => {
            let (d, m, qs) = if f == QFormat::Q4_1 {
                let b = block::<BlockQ4_1>(b);
                (f16v(b.d), f16v(b.m), &b.qs)
            } else {
                let b = block::<BlockQ4_0>(b);
                let d = f16v(b.d);
                (d, -8.0 * d, &b.qs)
            };
            let q = arr_mut::<32>(q);
            for j in 0..16 {
                q[j] = qs[j] & 0xF;
                q[j + 16] = qs[j] >> 4;
            }
            dl[..2].fill(d);
            ml[..2].fill(m);
        }
        QFormat::Q5_0 | QFormat::Q5_1 => {
            let (d, m, h, qs) = q5_parts(f, b);
            let q = arr_mut::<32>(q);
            for j in 0..16 {
                q[j] = (qs[j] & 0xF) | ((((h >> j) & 1) as u8) << 4);
                q[j + 16] = (qs[j] >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
            }
            dl[..2].fill(d);
            ml[..2].fill(if f == QFormat::Q5_1 { m } else { -16.0 * d });
        }
        QFormat::Q8_0 => {
            let b = block::<BlockQ8_0>(b);
            arr_mut::<32>(q).copy_from_slice(&b.qs);
            dl[..2].fill(f16v(b.d));
            ml[..2].fill(0.0);
        }
        QFormat::Q2K => unpack_q2k(block(b), arr_mut::<256>(q), dl, ml),
        QFormat::Q3K => unpack_q3k(block(b), arr_mut::<256>(q), dl, ml),
        QFormat::Q4K => unpack_q45k(block::<BlockQ4K>(b), q, dl, ml),
        QFormat::Q5K => unpack_q45k(block::<BlockQ5K>(b), q, dl, ml),
        QFormat::Q6K => unpack_q6k(block(b), arr_mut::<256>(q), dl, ml),
        QFormat::F16 | QFormat::BF16 | QFormat::F32 => {
            unreachable!("float formats are not unpacked to codes")
        }
    }
}

fn unpack_q2k(b: &BlockQ2K, q: &mut [u8; 256], dl: &mut [f32], ml: &mut [f32]) {
    let (d, dmin) = (f16v(b.d), f16v(b.dmin));
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                q[128 * n + 32 * j + l] = (b.qs[32 * n + l] >> (2 * j)) & 3;
            }
        }
    }
    for g in 0..16 {
        dl[g] = d * (b.scales[g] & 0xF) as f32;
        ml[g] = -dmin * (b.scales[g] >> 4) as f32;
    }
}

fn unpack_q3k(b: &BlockQ3K, q: &mut [u8; 256], dl: &mut [f32], ml: &mut [f32]) {
    let d = f16v(b.d);
    for n in 0..2 {
        for j in 0..4 {
            let sh = 4 * n + j;
            for l in 0..32 {
                let lo = (b.qs[32 * n + l] >> (2 * j)) & 3;
                q[128 * n + 32 * j + l] = lo | (((b.hmask[l] >> sh) & 1) << 2);
            }
        }
    }
    let s = q3k_scales(&b.scales);
    for g in 0..16 {
        dl[g] = d * (s[g] as i32 - 32) as f32;
        ml[g] = -4.0 * dl[g];
    }
}

/// Q4_K or Q5_K: nibbles, the fifth bits, and 8 packed scales and minimums.
fn unpack_q45k<B: KNibbles>(b: &B, q: &mut [u8], dl: &mut [f32], ml: &mut [f32]) {
    let (d, dmin, scales, qs) = b.parts();
    let qh = b.qh();
    let (d, dmin) = (f16v(d), f16v(dmin));
    let q = arr_mut::<256>(q);
    if let Some(qh) = qh {
        for c in 0..4 {
            for l in 0..32 {
                let v = qs[32 * c + l];
                q[64 * c + l] = (v & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4);
                q[64 * c + 32 + l] = (v >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            }
        }
    } else {
        for c in 0..4 {
            for l in 0..32 {
                q[64 * c + l] = qs[32 * c + l] & 0xF;
                q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
            }
        }
    }
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales);
        dl[2 * j..2 * j + 2].fill(d * sc as f32);
        ml[2 * j..2 * j + 2].fill(-dmin * m as f32);
    }
}

fn unpack_q6k(b: &BlockQ6K, q: &mut [u8; 256], dl: &mut [f32], ml: &mut [f32]) {
    let d = f16v(b.d);
    let (ql, qh) = (&b.ql, &b.qh);
    for n in 0..2 {
        for l in 0..32 {
            let (a, h, c) = (ql[64 * n + l], qh[32 * n + l], ql[64 * n + l + 32]);
            q[128 * n + l] = (a & 0xF) | ((h & 3) << 4);
            q[128 * n + l + 32] = (c & 0xF) | (((h >> 2) & 3) << 4);
            q[128 * n + l + 64] = (a >> 4) | (((h >> 4) & 3) << 4);
            q[128 * n + l + 96] = (c >> 4) | (((h >> 6) & 3) << 4);
        }
    }
    for g in 0..16 {
        dl[g] = d * b.scales[g] as i8 as f32;
        ml[g] = -32.0 * dl[g];
    }
}

#[inline]
fn arr_mut<const N: usize>(q: &mut [u8]) -> &mut [u8; N] {
    (&mut q[..N]).try_into().expect("block layout")
}

/// Q3_K's sixteen 6-bit scales (stored +32) from their 12 packed bytes.
fn q3k_scales(p: &[u8]) -> [u8; 16] {
    let mut s = [0u8; 16];
    for (j, v) in s.iter_mut().enumerate() {
        let low = if j < 8 { p[j] & 0xF } else { p[j - 8] >> 4 };
        let high = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
        *v = low | (high << 4);
    }
    s
}

/// One value of a float format at index `i` of a row's bytes.
#[inline]
pub fn float_at(f: QFormat, b: &[u8], i: usize) -> f32 {
    match f {
        QFormat::F16 => f16v([b[2 * i], b[2 * i + 1]]),
        QFormat::BF16 => {
            f32::from_bits((u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32) << 16)
        }
        _ => f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]),
    }
}

/// Appends the values of whole blocks of format `f`.
pub(crate) fn dequantize_into(f: QFormat, bytes: &[u8], out: &mut Vec<f32>) {
    let (bv, bb) = f.block();
    let (mut q, mut dl, mut ml) = ([0u8; QK_K], [0f32; 16], [0f32; 16]);
    for b in bytes.chunks_exact(bb) {
        if f.is_float() {
            out.extend((0..bv).map(|i| float_at(f, b, i)));
            continue;
        }
        unpack_block(f, b, &mut q, &mut dl, &mut ml);
        let signed = f == QFormat::Q8_0;
        out.extend((0..bv).map(|e| {
            let v = if signed {
                q[e] as i8 as f32
            } else {
                q[e] as f32
            };
            dl[e / 16] * v + ml[e / 16]
        }));
    }
}
