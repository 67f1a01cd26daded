//! Meter costs: one complete read of fixture (b), and the sampler's CPU use at 10 ms and 1 ms.
//!
//! The sampler figure is the sampler thread's own CPU time divided by the wall time it ran; the
//! bench prints it as a percentage of one core (median of several sessions) after criterion's
//! timing of the same sessions.

use criterion::{Criterion, SamplingMode};
use joulebench::meter::fake::FakePowercap;
use joulebench::meter::rapl::{RaplSource, discover};
use joulebench::meter::sampler::{Sampler, SamplerConfig};
use joulebench::meter::sysfs::RealSysfs;
use joulebench::meter::{EnergySource, sysfs::Sysfs};
use std::time::Duration;

fn source(tree: &FakePowercap, keep_open: bool) -> RaplSource {
    let fs: Box<dyn Sysfs> = Box::new(RealSysfs::with_keep_open(keep_open));
    let (src, _) = RaplSource::from_discovery(discover(&tree.root, fs.as_ref()))
        .expect("fixture (b) must be readable");
    src
}

fn bench_read(c: &mut Criterion, tree: &FakePowercap) {
    let mut g = c.benchmark_group("rapl_read_fixture_b");
    for (name, keep) in [("reopen_each_read", false), ("kept_open_pread", true)] {
        let mut src = source(tree, keep);
        let mut out = vec![None; src.domains().len()];
        g.bench_function(name, |b| {
            b.iter(|| {
                src.read_into(0, &mut out);
                std::hint::black_box(&out);
            })
        });
    }
    g.finish();
}

/// One sampler session of `wall` at `interval`; returns the sampler thread's CPU time.
fn session(tree: &FakePowercap, keep_open: bool, interval: Duration, wall: Duration) -> Duration {
    let src = source(tree, keep_open);
    let s = Sampler::start(
        vec![Box::new(src)],
        SamplerConfig {
            interval,
            ..Default::default()
        },
    );
    std::thread::sleep(wall);
    Duration::from_nanos(s.stop().sampler_cpu_ns)
}

/// The floor: a thread that only sleeps and wakes at `interval`, doing no reads at all.
fn bare_wakeups(interval: Duration, wall: Duration) -> Duration {
    std::thread::spawn(move || {
        let c0 = joulebench::clock::thread_cpu_ns();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < wall {
            std::thread::park_timeout(interval);
        }
        Duration::from_nanos(joulebench::clock::thread_cpu_ns() - c0)
    })
    .join()
    .unwrap_or_default()
}

fn bench_sampler(c: &mut Criterion, tree: &FakePowercap) -> Vec<(String, f64)> {
    let wall = Duration::from_millis(500);
    let mut g = c.benchmark_group("sampler_cpu_per_500ms");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut shares = Vec::new();
    for ms in [10u64, 1] {
        for variant in [
            "kept_open_pread",
            "reopen_each_read",
            "bare_wakeups_no_reads",
        ] {
            let mut fractions = Vec::new();
            let name = format!("{variant}_{ms}ms");
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let iv = Duration::from_millis(ms);
                        let cpu = match variant {
                            "kept_open_pread" => session(tree, true, iv, wall),
                            "reopen_each_read" => session(tree, false, iv, wall),
                            _ => bare_wakeups(iv, wall),
                        };
                        fractions.push(cpu.as_secs_f64() / wall.as_secs_f64());
                        total += cpu;
                    }
                    total
                })
            });
            shares.push((name, joulebench::stats::median(&fractions)));
        }
    }
    g.finish();
    shares
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = FakePowercap::two_socket_server(dir.path()).expect("fixture (b)");
    let mut c = Criterion::default().configure_from_args();
    bench_read(&mut c, &tree);
    let shares = bench_sampler(&mut c, &tree);
    c.final_summary();
    for (name, f) in shares {
        println!(
            "sampler CPU {name}: {:.3}% of one core (median over sessions)",
            f * 100.0
        );
    }
}
