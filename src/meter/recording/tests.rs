//! Windows, bridging and peaks over recorded samples.

use super::*;
use crate::meter::mark::{Phase, Round};
use crate::meter::{DomainKind, Method, Provenance};

fn dom(name: &str) -> DomainInfo {
    DomainInfo {
        source: SourceKind::Rapl,
        name: name.into(),
        kind: DomainKind::Package,
        provenance: Provenance::Measured,
        method: Method::Counter,
        location: String::new(),
        counter_range_uj: None,
        nominal_update_ms: 1.0,
        max_power_w: None,
        note: None,
    }
}

/// 10 W: 10 µJ per µs = 10_000 µJ per ms. Samples every 10 ms.
fn rec(invalid_rows: &[usize], mark_invalid: bool) -> Recording {
    let times: Vec<u64> = (0..=100).map(|i| i * 10_000_000).collect();
    let values: Vec<u64> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if invalid_rows.contains(&i) {
                INVALID
            } else {
                t / 100
            }
        })
        .collect();
    let m = |phase: Phase, t: u64, ok: bool| MarkRead {
        mark: Mark::round(Round::Run(1), phase),
        t_ns: t,
        values: vec![ok.then_some(t / 100)],
    };
    Recording {
        domains: vec![dom("package-0")],
        times,
        values,
        marks: vec![
            m(Phase::Start, 105_000_000, true),
            m(Phase::End, 905_000_000, !mark_invalid),
        ],
        start_ns: 0,
        decimation: 1,
        ticks: 101,
        interval_ms: 10.0,
        sampler_cpu_ns: 0,
        diagnostics: vec![],
        sources: vec![],
    }
}

#[test]
fn window_energy_from_marks() {
    let r = rec(&[], false);
    let w = r.window(0, 1);
    assert!((w.duration_s() - 0.8).abs() < 1e-12);
    assert!((w.domains[0].energy_uj - 8_000_000.0).abs() < 1e-6);
    assert!((w.domains[0].avg_power_w - 10.0).abs() < 1e-9);
    assert!((w.domains[0].peak_power_w - 10.0).abs() < 1e-9);
    assert!(!w.domains[0].bridged);
}

#[test]
fn invalid_boundary_read_is_bridged_not_zero() {
    let r = rec(&[50, 90], true);
    let w = r.window(0, 1);
    assert!(w.domains[0].bridged);
    assert_eq!(w.domains[0].invalid_samples, 3);
    // Linear interpolation between 900 ms and 910 ms recovers the true value.
    assert!((w.domains[0].energy_uj - 8_000_000.0).abs() < 1e-6);
}

/// The sensor stops answering at 600 ms and never comes back: the window that ends after it
/// is unknown, not the energy up to the last read held flat to the end.
#[test]
fn a_counter_gone_before_the_window_ends_is_unknown_not_held_flat() {
    let gone: Vec<usize> = (60..=100).collect();
    let r = rec(&gone, true);
    let w = r.window(0, 1);
    assert!(
        w.domains[0].energy_uj.is_nan(),
        "{}",
        w.domains[0].energy_uj
    );
    // Nor is one that starts after it: never a measured zero.
    let mut r2 = rec(&gone, true);
    r2.marks[0].values[0] = None;
    r2.marks[0].t_ns = 700_000_000;
    assert!(r2.window(0, 1).domains[0].energy_uj.is_nan());
}

#[test]
fn trace_has_rows_for_samples_and_marks() {
    let r = rec(&[50], false);
    let mut buf = Vec::new();
    r.write_trace(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 101 + 2);
    assert!(lines.iter().any(|l| l.contains(",run1:start,")));
    let bad: Vec<&&str> = lines.iter().filter(|l| l.ends_with(",0")).collect();
    assert_eq!(bad.len(), 1);
    // The invalid sample shows its bridged value, not zero.
    assert!(bad[0].contains(",5.000000,"), "{}", bad[0]);
    let row: Vec<&str> = lines[20].split(',').collect();
    assert!(
        (row[5].parse::<f64>().unwrap() - 10.0).abs() < 1e-6,
        "{}",
        lines[20]
    );
}

/// package-0 at 10 W and its dram child at 2 W until `dram_stops_ns` (then frozen);
/// samples every 10 ms.
fn two_zone(dram_stops_ns: u64, dram_w: u64) -> Recording {
    let mut pkg = dom("package-0");
    pkg.location = "/p/intel-rapl/intel-rapl:0".into();
    let mut dram = dom("dram");
    dram.kind = DomainKind::Dram;
    dram.location = "/p/intel-rapl/intel-rapl:0/intel-rapl:0:2".into();
    let times: Vec<u64> = (0..=100).map(|i| i * 10_000_000).collect();
    let dram_at = |t: u64| t.min(dram_stops_ns) / 1000 * dram_w;
    let values: Vec<u64> = times.iter().flat_map(|&t| [t / 100, dram_at(t)]).collect();
    let m = |phase: Phase, t: u64| MarkRead {
        mark: Mark::round(Round::Run(1), phase),
        t_ns: t,
        values: vec![Some(t / 100), Some(dram_at(t))],
    };
    Recording {
        domains: vec![pkg, dram],
        times,
        values,
        marks: vec![
            m(Phase::Start, 105_000_000),
            m(Phase::End, 905_000_000),
            m(Phase::Start, 105_000_000),
            m(Phase::End, 345_000_000),
        ],
        start_ns: 0,
        decimation: 1,
        ticks: 101,
        interval_ms: 10.0,
        sampler_cpu_ns: 0,
        diagnostics: vec![],
        sources: vec![],
    }
}

/// DRAM stops counting at 400 ms while its package keeps going: a window over it has no
/// DRAM figure (and says why, naming the zone and the time); a window before it is fine.
#[test]
fn a_counter_that_stops_while_its_parent_counts_is_stuck_not_zero_watts() {
    let r = two_zone(400_000_000, 2);
    let w = r.window(0, 1);
    assert!((w.domains[0].energy_uj - 8_000_000.0).abs() < 1e-6);
    assert!(
        w.domains[1].energy_uj.is_nan(),
        "{}",
        w.domains[1].energy_uj
    );
    assert!(matches!(
        w.domains[1].lost,
        Some(Lost::Stuck {
            since_ns: 400_000_000,
            reference: 0
        })
    ));
    let lines = r.lost_lines(&w);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("intel-rapl:0:2") && lines[0].contains("0.400 s"),
        "{}",
        lines[0]
    );
    let early = r.window(2, 3);
    assert!((early.domains[1].energy_uj - 480_000.0).abs() < 1.0);
    assert_eq!(early.domains[1].lost, None);
}

/// A DRAM zone that never counted (unsupported on many client parts) reads zero watts.
#[test]
fn a_zone_that_never_advanced_is_zero_watts_not_stuck() {
    let r = two_zone(0, 2);
    let w = r.window(0, 1);
    assert_eq!(w.domains[1].energy_uj, 0.0);
    assert_eq!(w.domains[1].lost, None);
}

/// A gap between reads longer than the counter needs to wrap at the zone's maximum power
/// bounds what a hidden wrap could add; short gaps add nothing.
#[test]
fn long_gaps_bound_hidden_wraps() {
    let mut r = rec(&[], false);
    r.domains[0].counter_range_uj = Some(50_000);
    r.domains[0].max_power_w = Some(10.0); // wraps every 5 ms at most
    let w = r.window(0, 1);
    // 79 gaps of 10 ms inside the window could each hide two wraps, the 5 ms gaps at its
    // edges one each.
    let wraps = w.domains[0].lost_wrap_uj / 50_000.0;
    assert!((158.0..=161.0).contains(&wraps), "{wraps}");
    r.domains[0].max_power_w = Some(1.0); // 50 ms per wrap
    assert_eq!(r.window(0, 1).domains[0].lost_wrap_uj, 0.0);
}
