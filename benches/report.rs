//! Report speed and memory: summaries, charts and the HTML page for 10,000 records and
#![recursion_limit = "256"]
//! 1,000,000 power samples (100 cells x 100 repetitions; 10,000 trace samples per cell).
//! Targets: at most 2 s and 300 MB. The peak RSS printed is the process's high-water mark.

use criterion::{Criterion, SamplingMode};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const CELLS: usize = 100;
const REPS: usize = 100;
const SAMPLES_PER_CELL: usize = 10_000;

fn record(cell: usize, rep: usize) -> serde_json::Value {
    let x = 1.0 + 0.03 * (((cell * 31 + rep * 17) % 13) as f64 / 13.0 - 0.5);
    serde_json::json!({
        "schema_version": 1, "suite": "bench", "cell": format!("model{}__p{}__w", cell / 10, cell % 10),
        "cell_index": cell, "model": format!("model{}", cell / 10), "model_spec": "synthetic:llama-tiny",
        "profile": format!("p{}", cell % 10), "workload": "w", "kind": "generate", "repetition": rep + 1,
        "status": "ok", "error": null, "unix_time_s": 1.0,
        "model_info": {"id": "m", "family": "f", "architecture": "llama", "parameters": 1, "quantization": "F32",
            "synthetic": true, "path": null, "vocab_size": 10, "context_length": 10, "eos_token_ids": [],
            "engine": {"backend": "candle", "device": "cpu", "threads": 1 + cell % 4, "prefill_matmul": "d",
            "decode_matmul": "d", "weights_dtype": "f32"}},
        "synthetic": true, "batch": 1, "inner_iterations": 1, "prompt_tokens": 64, "generated_tokens": 32,
        "ttft_s": 0.1 * x, "tpot_s": 0.01 * x, "e2e_s": 0.4 * x, "itl_p50_s": 0.01, "itl_p90_s": 0.011,
        "itl_p99_s": 0.012, "itls_ms": (0..31).map(|i| 10.0 + (i % 5) as f64 * 0.2).collect::<Vec<_>>(),
        "prefill_tokens_per_s": 640.0 / x, "decode_tokens_per_s": 100.0 / x,
        "energy": {"provenance": "measured", "scope": "cpu", "methods": ["rapl: counter"], "interval_ms": 10.0,
            "prefill_j": 2.0 * x, "decode_j": 6.0 * x, "request_j": 8.0 * x, "prefill_net_j": 1.0, "decode_net_j": 3.0,
            "request_net_j": 4.0, "j_per_prefill_token": 2.0 * x / 64.0, "j_per_decode_token": 6.0 * x / 32.0,
            "j_per_request": 8.0 * x, "tokens_per_j": 4.0 / x, "wh_per_1000_queries": 2.2 * x,
            "j_per_prefill_token_net": 0.01, "j_per_decode_token_net": 0.1, "avg_power_w": 20.0, "peak_power_w": 25.0,
            "uncertainty_j": 0.01, "uncertainty_basis": "b", "invalid_samples": 0,
            "domains": [{"source": "rapl", "name": "package-0", "prefill_j": 2.0, "decode_j": 6.0, "total_j": 8.0}]},
        "energy_per_token_joules": 0.25 * x, "energy_per_request_joules": 8.0 * x, "avg_power_watts": 20.0,
        "gco2e_per_1000_queries": null, "warnings": []
    })
}

fn build(dir: &Path) {
    std::fs::create_dir_all(dir.join("traces")).expect("folder");
    let mut recs =
        std::io::BufWriter::new(std::fs::File::create(dir.join("records.jsonl")).expect("records"));
    for c in 0..CELLS {
        for r in 0..REPS {
            writeln!(recs, "{}", record(c, r)).expect("write");
        }
        let id = format!("model{}__p{}__w", c / 10, c % 10);
        let mut t = std::io::BufWriter::new(
            std::fs::File::create(dir.join("traces").join(format!("{id}.csv"))).expect("trace"),
        );
        writeln!(t, "t_s,event,source,domain,energy_j,power_w,valid").expect("write");
        let per_rep = SAMPLES_PER_CELL / REPS;
        for i in 0..SAMPLES_PER_CELL {
            let ts = i as f64 * 0.004;
            if i % per_rep == 0 {
                let rep = i / per_rep + 1;
                writeln!(
                    t,
                    "{ts:.6},r{rep}.0:start,rapl,package-0,{:.6},,1",
                    ts * 20.0
                )
                .expect("write");
                writeln!(
                    t,
                    "{:.6},r{rep}.0:first,rapl,package-0,{:.6},,1",
                    ts + 0.1,
                    (ts + 0.1) * 20.0
                )
                .expect("write");
                writeln!(
                    t,
                    "{:.6},r{rep}.0:end,rapl,package-0,{:.6},,1",
                    ts + 0.38,
                    (ts + 0.38) * 20.0
                )
                .expect("write");
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
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    build(dir.path());
    let before = peak_rss_mib();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("report_10k_records_1m_samples");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    let mut times = Vec::new();
    g.bench_function("summaries_charts_html", |b| {
        b.iter(|| {
            let t = std::time::Instant::now();
            let doc = joulebench::report::write_all(dir.path(), false).expect("report");
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(doc.cells.len(), CELLS);
        })
    });
    g.finish();
    c.final_summary();
    println!(
        "report for {} records and {} samples: median {:.3} s over {} builds; peak RSS {:.0} MiB (before {:.0} MiB)",
        CELLS * REPS,
        CELLS * SAMPLES_PER_CELL,
        joulebench::stats::median(&times),
        times.len(),
        peak_rss_mib(),
        before
    );
}
