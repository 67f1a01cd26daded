//! The weight kernels: GGUF block formats, activation quantization, the decode product (one
//! dot product per row) and the batched prefill product, each with a portable implementation
//! and x86 intrinsics where the CPU has them.

pub mod blocks;
pub mod gemm;
pub mod matvec;
pub mod quant;

/// A float dot product in 8 lanes (vectorizes without reassociation flags).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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
