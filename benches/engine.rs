//! Engine speed on the default model (SmolLM2-135M-Instruct Q4_1), 64-token prompt, 64 new
//! tokens, at the machine's thread count (2 here): prefill and decode tokens per second for
//! joulebench's plan (dense prefill, SIMD Q4_1 decode) against candle's two plain paths (its
//! quantized matmul; everything dequantized to f32), and the process's peak RSS.
//!
//! Criterion times one whole generation per iteration; the tokens/s lines printed after it are
//! medians over those generations.

use criterion::{Criterion, SamplingMode};
use joulebench::engine::models::llama::CandleLlama;
use joulebench::engine::models::llama::{Matmul, MatmulPlan};
use joulebench::engine::models::{LoadOptions, load_llama as load};
use joulebench::engine::{GenerateRequest, InferenceBackend, NoObserver, text::prompt};
use joulebench::stats::median;
use joulebench::store::registry::{self, DEFAULT_MODEL};
use std::time::Duration;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn model(plan: MatmulPlan) -> CandleLlama {
    let m = registry::lookup(DEFAULT_MODEL).expect("registered");
    let dir = registry::resolve(m, true, &mut |s| eprintln!("{s}")).expect("default model");
    let path = dir.join(m.files[0].name);
    let opts = LoadOptions {
        matmul: plan,
        ..Default::default()
    };
    load(path.to_str().expect("utf-8 path"), &opts, &mut |_| {}).expect("loads")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let plans = [
        (
            "joulebench_dense_prefill_simd_decode",
            MatmulPlan::default(),
        ),
        (
            "candle_quantized",
            MatmulPlan {
                prefill: Matmul::Candle,
                decode: Matmul::Candle,
            },
        ),
        (
            "candle_dequantized_f32",
            MatmulPlan {
                prefill: Matmul::Dense,
                decode: Matmul::Dense,
            },
        ),
    ];
    let mut lines = Vec::new();
    let mut rss_after_default = f64::NAN;
    let mut g = c.benchmark_group("smollm2_q4_1_64_prompt_64_new");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for (name, plan) in plans {
        let mut m = model(plan);
        let tok = m.tokenizer().expect("tokenizer").clone();
        let p = prompt::exact_tokens(&tok, 64, None).expect("prompt");
        let req = GenerateRequest {
            prompts: vec![p],
            max_new_tokens: 64,
            ignore_eos: true,
            stop: Vec::new(),
        };
        let (mut pre, mut dec) = (Vec::new(), Vec::new());
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = m.generate(&req, &mut NoObserver).expect("generates");
                pre.push(64.0 / ((out.first_token_ns - out.start_ns) as f64 / 1e9));
                dec.push(63.0 / ((out.end_ns - out.first_token_ns) as f64 / 1e9));
            })
        });
        if name.starts_with("joulebench") {
            rss_after_default = peak_rss_mib();
        }
        lines.push(format!(
            "{name}: prefill {:.1} tok/s, decode {:.1} tok/s (medians of {} generations; {} threads; {} / {})",
            median(&pre),
            median(&dec),
            pre.len(),
            m.info().engine.threads,
            m.info().engine.prefill_matmul,
            m.info().engine.decode_matmul,
        ));
    }
    g.finish();
    c.final_summary();
    for l in lines {
        println!("{l}");
    }
    println!(
        "peak RSS after the joulebench plan (model loaded and run): {rss_after_default:.0} MiB"
    );
}
