//! The weight kernels, one room per concern in ggml-cpu's shape: `blocks` (the GGUF block
//! formats as typed `#[repr(C)]` structs, and one normalized reading of any block), `quant`
//! (activation quantization), `matvec` (decode: one dot product per row) and `gemm` (prefill:
//! tiled products), each calling `scalar` (the portable reference) or `x86` (the intrinsics)
//! through one dispatch on the instruction set picked here at run time. The vector math of the
//! rest of a forward pass (`exp` for softmax and SiLU, attention's dot products and weighted
//! sums) sits here too, in `x86::math`, behind [`exp_in_place`], [`silu_mul`], [`dot`] and
//! [`axpy`].
//!
//! Which implementation serves what (anything not listed falls back to the row below it):
//!
//! | product | `avx512-vnni` | `avx2` | `scalar` |
//! |---|---|---|---|
//! | decode, Q4_0/Q4_1/Q5_0/Q5_1 | eight interleaved rows per activation load, `vpdpbusd` | eight interleaved rows, `maddubs` | `scalar::q4_0` ... |
//! | decode, Q8_0 | eight interleaved rows, `vpdpbusd` | eight interleaved rows, `maddubs` | `scalar::q8_0` |
//! | decode, Q4_K/Q5_K/Q6_K | (avx2) | one row | `scalar::q4_5_k`, `scalar::q6_k` |
//! | decode, F16/BF16/F32 | (avx2) | a group's rows in one call, four FMA accumulators | plain loop |
//! | prefill, integer formats (and decode of Q2_K/Q3_K) | 4 rows x 16 tokens | 4 rows x 8 tokens | `scalar::int_tile` |
//! | prefill, float formats | 4 rows x 6 tokens (AVX-512 F/VL) | 3 rows x 4 tokens, blocks of 192 rows | plain loop |

pub mod blocks;
pub mod gemm;
pub mod matvec;
pub mod quant;
pub mod scalar;
#[cfg(test)]
mod tests;
pub mod tiles;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use blocks::{QFormat, QK, QK_K};
pub use matvec::{GEMM_MIN_TOKENS, QMatrix, matvec_many};

/// Rows per group of a matrix interleaved for decode (`QMatrix::interleaved`).
pub const GROUP: usize = 8;

/// Below this many weights a product runs on the calling thread: waking the pool costs more.
pub(crate) const PARALLEL_MIN_WEIGHTS: usize = 100_000;

/// An output pointer the pool's workers share, each writing elements no other worker writes.
pub(crate) struct SyncPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only used to write disjoint elements from the pool's workers.
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// A float dot product: AVX2/FMA where the CPU has them, else [`dot_portable`].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { x86::math::dot(a, b) };
    }
    dot_portable(a, b)
}

/// `out += p * v` (attention's weighted sum of values).
pub fn axpy(out: &mut [f32], p: f32, v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { x86::math::axpy(out, p, v) };
    }
    for (o, &x) in out.iter_mut().zip(v) {
        *o += p * x;
    }
}

/// `x = e^x` for every element (softmax): eight lanes at a time on AVX2 (within 2 ulp of
/// `f32::exp`, see `x86::math::exp8`), `f32::exp` elsewhere.
pub fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { x86::math::exp_in_place(x) };
    }
    x.iter_mut().for_each(|v| *v = v.exp());
}

/// `g = silu(g) * u` (`silu(x) = x / (1 + e^-x)`), the gated feed-forward's activation.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { x86::math::silu_mul(g, u) };
    }
    for (g, &u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// A float dot product in 8 lanes (vectorizes without reassociation flags).
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
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
/// CPU has, and [`isa_note`] says so.
pub fn isa() -> Isa {
    choice().0
}

/// Why the instruction set differs from what `JOULEBENCH_ISA` asked for, if it does: the
/// loaders pass it on to their caller's progress messages (the kernels never print).
pub fn isa_note() -> Option<&'static str> {
    choice().1.as_deref()
}

fn choice() -> &'static (Isa, Option<String>) {
    use std::sync::OnceLock;
    static ISA: OnceLock<(Isa, Option<String>)> = OnceLock::new();
    ISA.get_or_init(|| {
        let found = detected_isa();
        let Ok(v) = std::env::var("JOULEBENCH_ISA") else {
            return (found, None);
        };
        match [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .find(|i| i.name() == v.trim())
        {
            Some(i) if i <= found => (i, None),
            Some(i) => (
                found,
                Some(format!(
                    "JOULEBENCH_ISA={}: this CPU lacks it; using {}",
                    i.name(),
                    found.name()
                )),
            ),
            None => (
                found,
                Some(format!(
                    "JOULEBENCH_ISA={v:?} is not one of scalar, avx2, avx512-vnni; using {}",
                    found.name()
                )),
            ),
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
