//! A run folder written without running anything: records of `models x profiles x workloads`
//! cells with `reps` repetitions each and a power trace per cell, for report tests and benches
//! that need a thousand cells in seconds. Figures vary by model, profile and repetition so
//! charts have something to show; every record is a valid current record.

use std::io::Write;
use std::path::Path;

/// What to build.
pub struct FakeRun {
    pub models: usize,
    pub profiles: usize,
    pub workloads: usize,
    pub reps: usize,
    /// Power samples per cell in its trace (0: no traces).
    pub samples_per_cell: usize,
    pub provenance: &'static str,
}

const FORMATS: [&str; 4] = ["Q4_0", "Q4_K_M", "Q8_0", "F16"];

/// The cell id of (model, profile, workload).
pub fn cell_id(m: usize, p: usize, w: usize) -> String {
    format!("model{m}__p{p}__w{w}")
}

pub fn record(
    f: &FakeRun,
    index: usize,
    m: usize,
    p: usize,
    w: usize,
    rep: usize,
) -> serde_json::Value {
    let jitter = 1.0 + 0.03 * (((index * 31 + rep * 17) % 13) as f64 / 13.0 - 0.5);
    // Bigger models and fewer threads spend more per token.
    let scale = (1.0 + m as f64 * 0.6) * (1.0 + 0.5 / (1 + p) as f64) * (1.0 + 0.1 * w as f64);
    let x = jitter * scale;
    let threads = 1 + p;
    serde_json::json!({
        "schema_version": 1, "suite": "fake", "cell": cell_id(m, p, w),
        "cell_index": index, "model": format!("model{m}"), "model_spec": "synthetic:llama-tiny",
        "profile": format!("p{p}"), "workload": format!("w{w}"), "kind": "generate",
        "repetition": rep + 1, "status": "ok", "error": null, "unix_time_s": 1.0 + index as f64,
        "model_info": {"id": format!("model{m}"), "family": "llama", "architecture": "llama",
            "parameters": 135_000_000u64 * (1 + m as u64), "quantization": FORMATS[m % FORMATS.len()],
            "synthetic": true, "path": null, "vocab_size": 10, "context_length": 10, "eos_token_ids": [],
            "engine": {"backend": "candle", "device": "cpu", "threads": threads, "prefill_matmul": "q",
            "decode_matmul": "q", "weights_dtype": "q"}},
        "synthetic": true, "batch": 1, "inner_iterations": 1, "prompt_tokens": 64, "generated_tokens": 32,
        "ttft_s": 0.1 * x, "tpot_s": 0.01 * x, "e2e_s": 0.4 * x, "itl_p50_s": 0.01 * x, "itl_p90_s": 0.011 * x,
        "itl_p99_s": 0.012 * x, "itls_ms": (0..31).map(|i| 10.0 * x + (i % 5) as f64 * 0.2).collect::<Vec<_>>(),
        "prefill_tokens_per_s": 640.0 / x, "decode_tokens_per_s": 100.0 / x,
        "energy": {"provenance": f.provenance, "scope": "cpu", "methods": ["rapl: counter"], "interval_ms": 10.0,
            "prefill_j": 2.0 * x, "decode_j": 6.0 * x, "request_j": 8.0 * x, "prefill_net_j": 1.0 * x,
            "decode_net_j": 3.0 * x, "request_net_j": 4.0 * x, "j_per_prefill_token": 2.0 * x / 64.0,
            "j_per_decode_token": 6.0 * x / 32.0, "j_per_request": 8.0 * x, "tokens_per_j": 4.0 / x,
            "wh_per_1000_queries": 2.2 * x, "j_per_prefill_token_net": 0.01 * x, "j_per_decode_token_net": 0.1 * x,
            "avg_power_w": 20.0, "peak_power_w": 25.0, "uncertainty_j": 0.01, "uncertainty_basis": "b",
            "invalid_samples": 0,
            "domains": [{"source": "rapl", "name": "package-0", "prefill_j": 2.0 * x, "decode_j": 6.0 * x,
                "total_j": 8.0 * x}]},
        "energy_per_token_joules": 0.25 * x, "energy_per_request_joules": 8.0 * x, "avg_power_watts": 20.0,
        "gco2e_per_1000_queries": null, "warnings": []
    })
}

/// Writes records.jsonl and traces/ into `dir`; returns the number of cells.
pub fn build(dir: &Path, f: &FakeRun) -> usize {
    std::fs::create_dir_all(dir.join("traces")).expect("folder");
    let mut recs =
        std::io::BufWriter::new(std::fs::File::create(dir.join("records.jsonl")).expect("records"));
    let mut index = 0;
    for m in 0..f.models {
        for p in 0..f.profiles {
            for w in 0..f.workloads {
                for r in 0..f.reps {
                    writeln!(recs, "{}", record(f, index, m, p, w, r)).expect("write");
                }
                if f.samples_per_cell > 0 {
                    trace(dir, &cell_id(m, p, w), f);
                }
                index += 1;
            }
        }
    }
    index
}

fn trace(dir: &Path, id: &str, f: &FakeRun) {
    let mut t = std::io::BufWriter::new(
        std::fs::File::create(dir.join("traces").join(format!("{id}.csv"))).expect("trace"),
    );
    writeln!(t, "t_s,event,source,domain,energy_j,power_w,valid").expect("write");
    let per_rep = (f.samples_per_cell / f.reps.max(1)).max(1);
    for i in 0..f.samples_per_cell {
        let ts = i as f64 * 0.004;
        if i % per_rep == 0 {
            let rep = i / per_rep + 1;
            for (dt, ev) in [(0.0, "start"), (0.1, "first"), (0.38, "end")] {
                writeln!(
                    t,
                    "{:.6},r{rep}.0:{ev},rapl,package-0,{:.6},,1",
                    ts + dt,
                    (ts + dt) * 20.0
                )
                .expect("write");
            }
        }
        writeln!(
            t,
            "{ts:.6},sample,rapl,package-0,{:.6},{:.3},1",
            ts * 20.0,
            20.0 + (i % 9) as f64
        )
        .expect("write");
    }
}
