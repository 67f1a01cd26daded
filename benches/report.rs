//! Report speed and memory: summaries, charts and the HTML page for 10,000 records and
#![recursion_limit = "256"]
//! 1,000,000 power samples (100 cells x 100 repetitions; 10,000 trace samples per cell).
//! Targets: at most 2 s and 300 MB. The peak RSS printed is the process's high-water mark.

#[path = "../tests/common/fake_run.rs"]
mod fake_run;

use criterion::{Criterion, SamplingMode};
use std::path::Path;
use std::time::Duration;

const CELLS: usize = 100;
const REPS: usize = 100;
const SAMPLES_PER_CELL: usize = 10_000;

fn build(dir: &Path) {
    let cells = fake_run::build(
        dir,
        &fake_run::FakeRun {
            models: 10,
            profiles: CELLS / 10,
            workloads: 1,
            reps: REPS,
            samples_per_cell: SAMPLES_PER_CELL,
            provenance: "measured",
        },
    );
    assert_eq!(cells, CELLS);
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
