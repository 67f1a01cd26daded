//! One benchmark per weight format and kernel: the decode product (one token; GB/s of weights
//! read, printed next to this machine's measured read bandwidth) and the batched prefill product
//! (64 tokens; GFLOP/s), on a 2048 x 2048 matrix quantized by candle as GGUF files are. The
//! matrix (2-16 MB) stays in the last-level cache between iterations, so decode GB/s above the
//! measured DRAM read bandwidth means the kernel is not the limit at that size; below it, the
//! kernel's own speed is (compare formats with each other, and with the bandwidth line).
//!
//! `cargo bench --bench kernels` (criterion's own output has the times; the summary lines after
//! it give GB/s against bandwidth and GFLOP/s per format).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput};
use joulebench::engine::kernels::matvec::{QFormat, QMatrix};
use std::time::Instant;

/// Read bandwidth of this machine: summing a 512 MiB buffer on every engine thread.
fn bandwidth_gb_s() -> f64 {
    let n: usize = 64 << 20;
    let buf: Vec<u64> = (0..n as u64).collect();
    let threads = joulebench::engine::threads().max(1);
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            buf.chunks(n.div_ceil(threads))
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &b| a.wrapping_add(b))))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.max((n * 8) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let (rows, cols, tokens) = (2048, 2048, 64);
    let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).expect("weights");
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let mut lines = Vec::new();
    for dtype in [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
        GgmlDType::F16,
        GgmlDType::BF16,
        GgmlDType::F32,
    ] {
        let q = QTensor::quantize(&w, dtype).expect("quantizes");
        let bytes = q.data().expect("bytes").to_vec();
        let n = bytes.len();
        let f = QFormat::of(dtype).expect("a kernel format");
        let m = QMatrix::from_bytes(f, rows, cols, bytes).expect("matrix");
        let mut y = vec![0f32; tokens * rows];
        let mut g = c.benchmark_group(format!("kernel_{}", f.name()));
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(m.kernel_name(1), |b| {
            b.iter(|| m.matvec(&x[..cols], &mut y[..rows]))
        });
        g.throughput(Throughput::Elements((2 * rows * cols * tokens) as u64));
        g.bench_function(m.kernel_name(tokens), |b| b.iter(|| m.matvec(&x, &mut y)));
        g.finish();
        let mut time = |toks: usize, reps: usize| {
            let t = Instant::now();
            for _ in 0..reps {
                m.matvec(&x[..toks * cols], &mut y[..toks * rows]);
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let (dec, pre) = (time(1, 50), time(tokens, 5));
        lines.push(format!(
            "{:>5}: decode {:6.2} GB/s ({}), prefill {:6.1} GFLOP/s ({})",
            f.name(),
            n as f64 / dec / 1e9,
            m.kernel_name(1),
            (2 * rows * cols * tokens) as f64 / pre / 1e9,
            m.kernel_name(tokens)
        ));
    }
    let bw = bandwidth_gb_s();
    eprintln!(
        "\nmeasured read bandwidth: {bw:.1} GB/s ({} threads)",
        joulebench::engine::threads()
    );
    for l in lines {
        eprintln!("{l}");
    }
    c.final_summary();
}
