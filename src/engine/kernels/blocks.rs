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

    /// Whether a dedicated single-token dot product exists (else every product is `qgemm`'s).
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

/// The f16 at byte `i` of `b`.
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// A Q5_0 or Q5_1 block's scale, minimum (0 for Q5_0), high-bit word and nibbles.
pub(crate) fn q5_parts(f: QFormat, b: &[u8]) -> (f32, f32, u32, &[u8]) {
    let (m, at) = match f {
        QFormat::Q5_1 => (f16_at(b, 2), 4),
        _ => (0.0, 2),
    };
    let h = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    (f16_at(b, 0), m, h, &b[at + 4..at + 20])
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
            let (d, m, at) = if f == QFormat::Q4_1 {
                (f16_at(b, 0), f16_at(b, 2), 4)
            } else {
                let d = f16_at(b, 0);
                (d, -8.0 * d, 2)
            };
            let qs = arr::<16>(b, at);
            let q = arr_mut::<32>(q);
            for j in 0..16 {
                q[j] = qs[j] & 0xF;
                q[j + 16] = qs[j] >> 4;
            }
            dl[..2].fill(d);
            ml[..2].fill(m);
        }
        QFormat::Q5_0 | QFormat::Q5_1 => {
            let (d, m, h, _) = q5_parts(f, b);
            let qs = arr::<16>(b, if f == QFormat::Q5_1 { 8 } else { 6 });
            let q = arr_mut::<32>(q);
            for j in 0..16 {
                q[j] = (qs[j] & 0xF) | ((((h >> j) & 1) as u8) << 4);
                q[j + 16] = (qs[j] >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
            }
            dl[..2].fill(d);
            ml[..2].fill(if f == QFormat::Q5_1 { m } else { -16.0 * d });
        }
        QFormat::Q8_0 => {
            arr_mut::<32>(q).copy_from_slice(arr::<32>(b, 2));
            dl[..2].fill(f16_at(b, 0));
            ml[..2].fill(0.0);
        }
        QFormat::Q2K => {
            let (scales, qs) = (arr::<16>(b, 0), arr::<64>(b, 16));
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            let q = arr_mut::<256>(q);
            for n in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        q[128 * n + 32 * j + l] = (qs[32 * n + l] >> (2 * j)) & 3;
                    }
                }
            }
            for g in 0..16 {
                dl[g] = d * (scales[g] & 0xF) as f32;
                ml[g] = -dmin * (scales[g] >> 4) as f32;
            }
        }
        QFormat::Q3K => {
            let (hmask, qs) = (arr::<32>(b, 0), arr::<64>(b, 32));
            let d = f16_at(b, 108);
            let q = arr_mut::<256>(q);
            for n in 0..2 {
                for j in 0..4 {
                    let sh = 4 * n + j;
                    for l in 0..32 {
                        let lo = (qs[32 * n + l] >> (2 * j)) & 3;
                        q[128 * n + 32 * j + l] = lo | (((hmask[l] >> sh) & 1) << 2);
                    }
                }
            }
            let s = q3k_scales(&b[96..108]);
            for g in 0..16 {
                dl[g] = d * (s[g] as i32 - 32) as f32;
                ml[g] = -4.0 * dl[g];
            }
        }
        QFormat::Q4K | QFormat::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let q = arr_mut::<256>(q);
            if f == QFormat::Q5K {
                let (qh, qs) = (arr::<32>(b, 16), arr::<128>(b, 48));
                for c in 0..4 {
                    for l in 0..32 {
                        let v = qs[32 * c + l];
                        q[64 * c + l] = (v & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4);
                        q[64 * c + 32 + l] = (v >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
                    }
                }
            } else {
                let qs = arr::<128>(b, 16);
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
        QFormat::Q6K => {
            let (ql, qh, sc) = (arr::<128>(b, 0), arr::<64>(b, 128), arr::<16>(b, 192));
            let d = f16_at(b, 208);
            let q = arr_mut::<256>(q);
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
                dl[g] = d * sc[g] as i8 as f32;
                ml[g] = -32.0 * dl[g];
            }
        }
        QFormat::F16 | QFormat::BF16 | QFormat::F32 => {
            unreachable!("float formats are not unpacked to codes")
        }
    }
}

/// `N` bytes of `b` from `at` as an array (one bounds check, then none in the loops).
#[inline]
fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().expect("block layout")
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
        QFormat::F16 => f16_at(b, 2 * i),
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

/// The instruction sets the kernels choose between, best last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2, FMA and F16C.
    Avx2,
    /// AVX2 plus AVX-512 F/BW/VL and VNNI (`vpdpbusd`, used on 256-bit registers).
    Avx512Vnni,
}

impl Isa {
    /// Its name in records and kernel labels.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// The best instruction set this CPU has, capped by `JOULEBENCH_ISA` (`scalar`, `avx2`,
/// `avx512-vnni`) when it is set: an unknown value or one the CPU lacks falls back to what the
/// CPU has, with a note on stderr.
pub fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let found = detected_isa();
        match std::env::var("JOULEBENCH_ISA") {
            Ok(v) => match [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
                .into_iter()
                .find(|i| i.name() == v.trim())
            {
                Some(i) if i <= found => i,
                Some(i) => {
                    eprintln!(
                        "JOULEBENCH_ISA={}: this CPU lacks it; using {}",
                        i.name(),
                        found.name()
                    );
                    found
                }
                None => {
                    eprintln!(
                        "JOULEBENCH_ISA={v:?} is not one of scalar, avx2, avx512-vnni; using {}",
                        found.name()
                    );
                    found
                }
            },
            Err(_) => found,
        }
    })
}

fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let vnni = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        match (avx2, vnni) {
            (true, true) => Isa::Avx512Vnni,
            (true, false) => Isa::Avx2,
            _ => Isa::Scalar,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Scalar
    }
}

/// Whether the AVX2/FMA/F16C kernels run on this CPU.
pub(crate) fn simd() -> bool {
    isa() >= Isa::Avx2
}
