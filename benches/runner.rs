//! Metering overhead: tokens/s of a cell's generations with metering on (sampler at 10 ms over a
//! fake two-socket powercap tree plus the CPU estimate, marks at every phase boundary) against
//! metering off, interleaved in the same run. Target: on/off >= 0.99.

use criterion::{Criterion, SamplingMode};
use joulebench::engine::driver::RequestEvents;
use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::{GenerateRequest, NoObserver, text::prompt};
use joulebench::meter::fake::FakePowercap;
use joulebench::meter::mark::Round;
use joulebench::meter::sampler::{Sampler, SamplerConfig};
use joulebench::meter::select::{EstimateScope, Hardware, MeterChoice, select};
use joulebench::meter::sysfs::RealSysfs;
use joulebench::runner::cell::{Meters, SamplerEvents};
use joulebench::stats::median;
use joulebench::store::registry::{self, DEFAULT_MODEL};
use std::time::Duration;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = FakePowercap::two_socket_server(dir.path()).expect("fixture");
    let m = registry::lookup(DEFAULT_MODEL).expect("registered");
    let path = registry::resolve(m, true, &mut |s| eprintln!("{s}"))
        .expect("default model")
        .join(m.files[0].name);
    let mut model = load(
        path.to_str().expect("utf-8"),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .expect("loads");
    let tok = model.tokenizer().expect("tokenizer").clone();
    let req = GenerateRequest {
        prompts: vec![prompt::exact_tokens(&tok, 64, None).expect("prompt")],
        max_new_tokens: 32,
        ignore_eos: true,
        stop: Vec::new(),
    };
    let choice = MeterChoice::Only(vec![
        joulebench::meter::SourceKind::Rapl,
        joulebench::meter::SourceKind::Estimate,
    ]);
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("cell_generation_64_prompt_32_new");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    // Kept-open counter files, as on a real sysfs.
    let mut hw = Hardware::real(tree.root.clone());
    hw.sysfs = Box::new(RealSysfs::with_keep_open(true));
    let toks = |o: &joulebench::engine::GenerateOutput| {
        (o.prompt_tokens + o.generated_tokens()) as f64 / ((o.end_ns - o.start_ns) as f64 / 1e9)
    };
    let (mut on, mut off, mut marks) = (Vec::new(), Vec::new(), 0usize);
    // Each iteration runs one metered and one unmetered generation back to back (the order
    // alternates), so drift in the machine's speed affects both alike; criterion times the pair.
    let mut parity = false;
    g.bench_function("metered_and_unmetered_pair", |b| {
        b.iter(|| {
            parity = !parity;
            if parity {
                let o = model.generate(&req, &mut NoObserver).expect("generates");
                off.push(toks(&o));
            }
            let sel = select(&choice, &hw, None, EstimateScope::Process).expect("meters");
            let meters = Meters {
                sampler: Sampler::start(
                    sel.sources,
                    SamplerConfig {
                        interval: Duration::from_millis(10),
                        ..Default::default()
                    },
                ),
                warnings: Vec::new(),
                slowest_update_ms: 0.0,
                lost_sensor: None,
                energy_refused: false,
                child_tracker: None,
            };
            let events = SamplerEvents {
                meters: &meters,
                round: Round::Repetition(1),
            };
            let mut mk = RequestEvents {
                events: &events,
                index: 0,
            };
            let o = model.generate(&req, &mut mk).expect("generates");
            on.push(toks(&o));
            marks += meters.sampler.stop().marks.len();
            if !parity {
                let o = model.generate(&req, &mut NoObserver).expect("generates");
                off.push(toks(&o));
            }
        })
    });
    g.finish();
    c.final_summary();
    println!(
        "tokens/s with metering on {:.1}, off {:.1}: ratio {:.4} (target >= 0.99) over {} interleaved pairs, {} marks",
        median(&on),
        median(&off),
        median(&on) / median(&off),
        on.len(),
        marks
    );
}
