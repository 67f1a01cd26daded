//! NVML behind its trait: a counter GPU, a polling-only GPU, no library, visibility, busy GPUs.

use joulebench::clock::monotonic_ns;
use joulebench::meter::fake::{FakeGpu, FakeNvml, MissingNvml};
use joulebench::meter::nvml::{GpuError, GpuLibrary, NvmlSource};
use joulebench::meter::select::{EstimateScope, Hardware, MeterChoice, select};
use joulebench::meter::sysfs::RealSysfs;
use joulebench::meter::{EnergySource, Method, SourceKind};
use std::sync::atomic::Ordering;

#[test]
fn counter_gpu_reads_millijoules_at_edges() {
    let gpu = FakeGpu::with_counter("NVIDIA A100-SXM4-80GB", "GPU-1111");
    let energy = gpu.energy_mj.clone().unwrap();
    let lib = FakeNvml::new(vec![gpu]);
    let mut src = NvmlSource::open(&lib, None, true).unwrap();
    assert_eq!(src.domains()[0].method, Method::Counter);
    assert_eq!(src.domains()[0].name, "gpu0");
    let facts = &src.facts()[0];
    assert_eq!(facts.uuid, "GPU-1111");
    assert_eq!(facts.driver_version, "550.54.15");
    assert_eq!(facts.power_limit_w, Some(300.0));
    let mut v = [None];
    src.read_into(monotonic_ns(), &mut v);
    assert_eq!(v[0], Some(0));
    energy.fetch_add(1_500, Ordering::SeqCst);
    src.read_into(monotonic_ns(), &mut v);
    assert_eq!(v[0], Some(1_500_000), "1.5 J in µJ");
}

#[test]
fn polling_gpu_integrates_with_the_trapezoid_rule_and_labels_averaging() {
    let old = FakeGpu::polling_only("Tesla P100", "GPU-2222", (6, 0));
    let new = FakeGpu::polling_only("NVIDIA GeForce RTX 3090", "GPU-3333", (8, 6));
    let (p_old, p_new) = (old.power_mw.clone(), new.power_mw.clone());
    let lib = FakeNvml::new(vec![old, new]);
    let t0 = monotonic_ns();
    let mut src = NvmlSource::open(&lib, None, true).unwrap();
    assert_eq!(
        src.domains()[0].method,
        Method::PolledPower { averaged: false }
    );
    assert_eq!(
        src.domains()[1].method,
        Method::PolledPower { averaged: true }
    );
    assert!(
        src.domains()[1]
            .note
            .as_deref()
            .unwrap()
            .contains("average")
    );
    // Set both to 200 W, read 1 s (by the clock passed in) after the first reading.
    let mut v = [None, None];
    src.read_into(t0 + 10_000_000, &mut v);
    let base = v;
    p_old.store(200_000, Ordering::SeqCst);
    p_new.store(200_000, Ordering::SeqCst);
    src.read_into(t0 + 1_010_000_000, &mut v);
    for d in 0..2 {
        let j = (v[d].unwrap() - base[d].unwrap()) as f64 / 1e6;
        // Trapezoid between 100 W and 200 W over 1 s = 150 J.
        assert!((j - 150.0).abs() < 1e-3, "gpu{d}: {j}");
    }
    // A failed power read is invalid, not zero, and the next one bridges the gap.
    p_old.store(u32::MAX, Ordering::SeqCst);
    src.read_into(t0 + 2_010_000_000, &mut v);
    assert_eq!(v[0], None);
    p_old.store(200_000, Ordering::SeqCst);
    let before = base[0].unwrap() + 150_000_000;
    src.read_into(t0 + 3_010_000_000, &mut v);
    let j = (v[0].unwrap() - before) as f64 / 1e6;
    assert!((j - 400.0).abs() < 1e-3, "bridged over 2 s at 200 W: {j}");
    assert!(src.diagnostics()[0].contains("gpu0"));
}

#[test]
fn cuda_visible_devices_limits_the_metered_gpus() {
    let lib = FakeNvml::new(vec![
        FakeGpu::with_counter("A", "GPU-aaaa"),
        FakeGpu::with_counter("B", "GPU-bbbb"),
    ]);
    let src = NvmlSource::open(&lib, Some("GPU-bbbb"), false).unwrap();
    assert_eq!(src.domains().len(), 1);
    assert_eq!(src.domains()[0].name, "gpu1");
    let err = match NvmlSource::open(&lib, Some(""), true) {
        Err(e) => e,
        Ok(_) => panic!("no GPU visible"),
    };
    assert!(err.contains("no GPU is visible"));
}

#[test]
fn busy_gpu_and_grace_hopper_are_called_out() {
    let mut g = FakeGpu::with_counter("NVIDIA GH200 480GB", "GPU-9999");
    g.pids = vec![4242];
    let src = NvmlSource::open(&FakeNvml::new(vec![g]), None, true).unwrap();
    assert!(src.warnings.iter().any(|w| w.contains("4242")));
    assert!(
        src.domains()[0]
            .note
            .as_deref()
            .unwrap()
            .contains("module scope")
    );
}

fn hw_with(gpu: fn() -> Result<Box<dyn GpuLibrary>, GpuError>) -> Hardware {
    let root = std::path::PathBuf::from("/nonexistent/powercap");
    Hardware {
        sysfs: Box::new(RealSysfs::for_root(&root)),
        powercap_root: root,
        gpu: Box::new(gpu),
        cuda_visible_devices: None,
        cuda_order_pci: true,
    }
}

#[test]
fn no_library_is_unavailable_never_a_failure_in_auto() {
    let hw = hw_with(|| {
        let lib: Box<dyn GpuLibrary> = Box::new(MissingNvml);
        lib.device_count()?;
        Ok(lib)
    });
    let sel = select(&MeterChoice::Auto, &hw, None, EstimateScope::Process).unwrap();
    let nvml = sel
        .unavailable
        .iter()
        .find(|u| u.source == SourceKind::Nvml)
        .unwrap();
    assert!(
        nvml.reason.contains("NVML library not found"),
        "{}",
        nvml.reason
    );
    // Without RAPL the CPU falls back to the labelled estimate.
    assert!(sel.has_estimates());
    // Asking for NVML explicitly is an error that says why.
    let err = match select(
        &MeterChoice::Only(vec![SourceKind::Nvml]),
        &hw,
        None,
        EstimateScope::Process,
    ) {
        Err(e) => e,
        Ok(_) => panic!("explicit nvml must fail"),
    };
    assert!(
        err.contains("nvml unavailable: NVML library not found"),
        "{err}"
    );
}

#[test]
fn auto_selects_a_fake_gpu_next_to_the_estimate() {
    let hw = hw_with(|| {
        Ok(
            Box::new(FakeNvml::new(vec![FakeGpu::with_counter("A", "GPU-a")]))
                as Box<dyn GpuLibrary>,
        )
    });
    let sel = select(&MeterChoice::Auto, &hw, Some(100.0), EstimateScope::Process).unwrap();
    let kinds: Vec<SourceKind> = sel.sources.iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, [SourceKind::Nvml, SourceKind::Estimate]);
}

#[test]
fn short_windows_are_called_out_for_slow_counters() {
    let src = NvmlSource::open(
        &FakeNvml::new(vec![FakeGpu::with_counter("A", "GPU-a")]),
        None,
        true,
    )
    .unwrap();
    let w = joulebench::measure::result::short_window_warnings(src.domains(), 0.2);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("nvml/gpu0"));
    assert!(joulebench::measure::result::short_window_warnings(src.domains(), 2.0).is_empty());
}

#[test]
fn throttling_gpus_are_reported() {
    let g = FakeGpu::with_counter("A", "GPU-a");
    let throttle = g.throttle.clone();
    let src = NvmlSource::open(&FakeNvml::new(vec![g]), None, true).unwrap();
    assert!(src.health().is_empty());
    throttle
        .lock()
        .unwrap()
        .push("hardware thermal slowdown".into());
    let h = src.health();
    assert_eq!(h.len(), 1);
    assert!(h[0].contains("GPU 0") && h[0].contains("thermal"), "{h:?}");
}
