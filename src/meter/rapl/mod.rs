//! RAPL energy counters through Linux powercap (Intel and AMD CPUs).
//!
//! The powercap folder lists every zone flat and also nests subzones inside their parent, next to
//! counter-less control-type folders. Discovery walks both, keys zones by their folder name
//! (`intel-rapl:0:1`), counts each once, and builds the domain tree from the names.

use super::sysfs::CounterFile;
use super::{DomainInfo, DomainKind, EnergySource, InvalidReads, Method, Provenance, SourceKind};
use std::path::PathBuf;

mod discover;
use discover::OpenCounter;
pub use discover::{
    Discovery, Interface, ZoneId, ZoneReport, ZoneStatus, discover, permission_remedy,
};

/// Where Linux exposes powercap zones.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Power assumed when a zone states no maximum, to size the read interval against wraps.
const ASSUMED_MAX_POWER_W: f64 = 1000.0;

/// Headroom over a zone's stated maximum power before a counter step is called impossible.
const POWER_HEADROOM: f64 = 4.0;

/// What one counter read added.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The energy since the last read was counted (a wrap, if any, was a plausible one).
    Counted(u64),
    /// The counter did something no power could explain (stepped back, or jumped past what the
    /// zone can draw): the interval was bridged at the last known power. `bridged_uj` is that
    /// estimate, `why` says what happened.
    Bridged {
        total: u64,
        bridged_uj: u64,
        why: String,
    },
}

/// Unwraps a counter that wraps at `range`, keeping a u64 running total. A decrease is a wrap
/// only when the energy it implies over the elapsed time is a power the zone can draw (its
/// constraint × [`POWER_HEADROOM`], else [`ASSUMED_MAX_POWER_W`] × the headroom); otherwise it
/// is a reset or a glitch, and so is a forward jump beyond that power.
#[derive(Debug, Clone)]
pub struct CounterUnwrap {
    range: Option<u64>,
    max_power_w: f64,
    last: u64,
    last_ns: u64,
    total: u64,
    /// Recent (time, running total) of counted reads, to bridge at the power over the last
    /// ~100 ms rather than over one (possibly microseconds-short, noisy) interval.
    recent: std::collections::VecDeque<(u64, u64)>,
}

/// How far back the bridging power looks.
const BRIDGE_SPAN_NS: u64 = 100_000_000;

impl CounterUnwrap {
    /// Starts from a first raw reading taken at `t_ns`; the total starts at zero.
    pub fn new(first: u64, range: Option<u64>, max_power_w: Option<f64>, t_ns: u64) -> Self {
        CounterUnwrap {
            range,
            max_power_w: max_power_w.unwrap_or(ASSUMED_MAX_POWER_W) * POWER_HEADROOM,
            last: first,
            last_ns: t_ns,
            total: 0,
            recent: std::collections::VecDeque::from([(t_ns, 0)]),
        }
    }

    /// Power over the last ~100 ms of counted reads (W), if two reads span any time.
    fn recent_power_w(&self) -> Option<f64> {
        let &(t1, e1) = self.recent.back()?;
        let &(t0, e0) = self
            .recent
            .iter()
            .rev()
            .find(|(t, _)| t1.saturating_sub(*t) >= BRIDGE_SPAN_NS)
            .or_else(|| self.recent.front())?;
        (t1 > t0).then(|| (e1 - e0) as f64 / 1e6 / ((t1 - t0) as f64 / 1e9))
    }

    fn remember(&mut self, t_ns: u64) {
        self.recent.push_back((t_ns, self.total));
        // Keep one read older than the span, and at most a bounded number.
        while self.recent.len() > 2
            && (self.recent.len() > 4096 || t_ns.saturating_sub(self.recent[1].0) >= BRIDGE_SPAN_NS)
        {
            self.recent.pop_front();
        }
    }

    /// Feeds one raw reading taken at `t_ns`; returns what it added, or why the reading is
    /// invalid (then nothing changes).
    pub fn update(&mut self, raw: u64, t_ns: u64) -> Result<Step, String> {
        if let Some(r) = self.range
            && raw > r
        {
            return Err(format!("value {raw} above max_energy_range_uj {r}"));
        }
        let elapsed_s = t_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        // The most energy the zone could have used since the last read, over at least 100 ms:
        // a counter that lags a few update periods and then catches up is not a glitch.
        let possible_uj = self.max_power_w * elapsed_s.max(0.1) * 1e6;
        let delta = match self.range {
            _ if raw >= self.last => Some(raw - self.last),
            Some(r) => Some(r - self.last + raw),
            None => None,
        };
        let step = match delta {
            Some(d) if (d as f64) <= possible_uj => {
                self.total = self.total.saturating_add(d);
                self.remember(t_ns);
                Step::Counted(self.total)
            }
            _ => {
                let power_w = self.recent_power_w().unwrap_or(0.0);
                let bridged_uj = (power_w * elapsed_s * 1e6) as u64;
                self.total = self.total.saturating_add(bridged_uj);
                self.remember(t_ns);
                let why = match (delta, self.range) {
                    (_, _) if raw < self.last && self.range.is_none() => format!(
                        "counter went back from {} to {raw} and no max_energy_range_uj is known: \
                         treated as a reset",
                        self.last
                    ),
                    (Some(d), _) if raw < self.last => format!(
                        "counter went back from {} to {raw}: as a wrap that would be {:.1} J in \
                         {:.3} s ({:.0} W), more than the zone can draw, so a reset or glitch",
                        self.last,
                        d as f64 / 1e6,
                        elapsed_s,
                        d as f64 / 1e6 / elapsed_s.max(1e-9)
                    ),
                    (Some(d), _) => format!(
                        "counter jumped from {} to {raw}: {:.1} J in {:.3} s is more than the \
                         zone can draw, so a glitch",
                        self.last,
                        d as f64 / 1e6,
                        elapsed_s
                    ),
                    (None, _) => format!("counter went from {} to {raw}", self.last),
                };
                Step::Bridged {
                    total: self.total,
                    bridged_uj,
                    why: format!(
                        "{why}; the {elapsed_s:.3} s since the last read bridged at {power_w:.1} W \
                         (the last ~100 ms)"
                    ),
                }
            }
        };
        self.last = raw;
        self.last_ns = t_ns;
        Ok(step)
    }

    /// The running total in microjoules.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// The RAPL energy source: every usable zone, unwrapped on every read.
pub struct RaplSource {
    domains: Vec<DomainInfo>,
    counters: Vec<Box<dyn CounterFile>>,
    unwraps: Vec<CounterUnwrap>,
    invalid: InvalidReads,
    max_interval_ms: Option<f64>,
    root: PathBuf,
}

impl RaplSource {
    /// Builds the source from a discovery; `Err` carries the reason when nothing is usable.
    pub fn from_discovery(mut d: Discovery) -> Result<(RaplSource, Vec<ZoneReport>), String> {
        if let Some(reason) = d.unavailable.take() {
            return Err(reason);
        }
        let mut domains = Vec::new();
        let mut counters = Vec::new();
        let mut unwraps = Vec::new();
        let mut max_interval_ms: Option<f64> = None;
        for OpenCounter {
            zone,
            file: c,
            first,
            max_power_uw,
        } in d.counters.drain(..)
        {
            let z = &d.zones[zone];
            let watts = max_power_uw.map_or(ASSUMED_MAX_POWER_W, |p| p as f64 / 1e6);
            domains.push(zone_domain(z, domain_note(z.kind), Some(watts)));
            if let Some(r) = z.counter_range_uj {
                // µJ / W = µs; read at least twice per shortest wrap period.
                let half_wrap_ms = r as f64 / watts / 1000.0 / 2.0;
                max_interval_ms =
                    Some(max_interval_ms.map_or(half_wrap_ms, |m| m.min(half_wrap_ms)));
            }
            unwraps.push(CounterUnwrap::new(
                first,
                z.counter_range_uj,
                max_power_uw.map(|p| p as f64 / 1e6),
                crate::clock::monotonic_ns(),
            ));
            counters.push(c);
        }
        // A package or DRAM zone that exists but cannot be read stays in the domain list, every
        // read of it invalid: a CPU total that needs it is then unknown, never a smaller number
        // that looks like an improvement. (Zones another interface covers are duplicates.)
        for z in &d.zones {
            let ZoneStatus::Unavailable(why) = &z.status else {
                continue;
            };
            if !matches!(z.kind, DomainKind::Package | DomainKind::Dram)
                || domains.iter().any(|x| x.name == z.domain)
            {
                continue;
            }
            domains.push(zone_domain(
                z,
                Some(format!(
                    "unreadable ({why}): totals that include it are unknown"
                )),
                None,
            ));
            unwraps.push(CounterUnwrap::new(0, None, None, 0));
            counters.push(Box::new(Unreadable(why.clone())));
        }
        let invalid = InvalidReads::new(domains.len());
        Ok((
            RaplSource {
                domains,
                counters,
                unwraps,
                invalid,
                max_interval_ms,
                root: d.root,
            },
            d.zones,
        ))
    }
}

/// The domain a zone's counter is reported as.
fn zone_domain(z: &ZoneReport, note: Option<String>, max_power_w: Option<f64>) -> DomainInfo {
    DomainInfo {
        source: SourceKind::Rapl,
        name: z.domain.clone(),
        kind: z.kind,
        provenance: Provenance::Measured,
        method: Method::Counter,
        location: z.path.display().to_string(),
        counter_range_uj: z.counter_range_uj,
        nominal_update_ms: 1.0,
        max_power_w,
        note,
    }
}

/// A zone's counter that could not be opened: every read fails with why.
struct Unreadable(String);

impl CounterFile for Unreadable {
    fn read_u64(&mut self) -> std::io::Result<u64> {
        Err(std::io::Error::other(self.0.clone()))
    }
}

fn domain_note(kind: DomainKind) -> Option<String> {
    match kind {
        DomainKind::Core | DomainKind::Uncore => {
            Some("inside its package; not added to any total".into())
        }
        DomainKind::Dram => {
            Some("separate from the package (nested in sysfs only); added to the CPU total".into())
        }
        DomainKind::Psys => Some(
            "whole platform (roughly package + dram + more); reported on its own, not added".into(),
        ),
        DomainKind::Other => Some("unknown RAPL domain; reported, not added".into()),
        _ => None,
    }
}

impl EnergySource for RaplSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Rapl
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read_into(&mut self, now_ns: u64, out: &mut [Option<u64>]) {
        for (i, c) in self.counters.iter_mut().enumerate() {
            out[i] = match c.read_u64() {
                Ok(raw) => match self.unwraps[i].update(raw, now_ns) {
                    Ok(Step::Counted(total)) => Some(total),
                    // A bridged interval is not a measurement: the read is marked invalid, so
                    // every window across it says so and widens its uncertainty, and the
                    // running total carries the bridged estimate for the reads after it.
                    Ok(Step::Bridged { why, .. }) => {
                        let path = &self.domains[i].location;
                        self.invalid
                            .record(i, || format!("{path}/energy_uj: {why}"));
                        None
                    }
                    Err(why) => {
                        self.invalid.record(i, || why);
                        None
                    }
                },
                Err(e) => {
                    let path = &self.domains[i].location;
                    self.invalid.record(i, || format!("{path}/energy_uj: {e}"));
                    None
                }
            };
        }
    }

    fn diagnostics(&self) -> Vec<String> {
        self.invalid.lines(&self.domains)
    }

    fn max_read_interval_ms(&self) -> Option<f64> {
        self.max_interval_ms
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "powercap_root": self.root.display().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zone_names_parse() {
        let z = ZoneId::parse("intel-rapl:0:1").unwrap();
        assert_eq!(z.interface, Interface::Msr);
        assert_eq!(z.path, vec![0, 1]);
        assert_eq!(z.parent().unwrap().dir_name(), "intel-rapl:0");
        assert_eq!(
            ZoneId::parse("intel-rapl-mmio:0").unwrap().interface,
            Interface::Mmio
        );
        let t = ZoneId::parse("intel-rapl-tpmi:1:0").unwrap();
        assert_eq!((t.interface, t.path.clone()), (Interface::Tpmi, vec![1, 0]));
        assert_eq!(t.dir_name(), "intel-rapl-tpmi:1:0");
        assert!(ZoneId::parse("intel-rapl-tpmi").is_none());
        assert!(ZoneId::parse("intel-rapl").is_none());
        assert!(ZoneId::parse("intel-rapl:").is_none());
        assert!(ZoneId::parse("intel-rapl:x").is_none());
        assert!(ZoneId::parse("dtpm:0").is_none());
    }

    const S: u64 = 1_000_000_000;

    fn counted(s: Result<Step, String>) -> u64 {
        match s {
            Ok(Step::Counted(t)) => t,
            other => panic!("expected a counted step, got {other:?}"),
        }
    }

    #[test]
    fn unwrap_handles_one_wrap_and_exact_range() {
        let range = 1_000;
        let mut u = CounterUnwrap::new(900, Some(range), None, 0);
        assert_eq!(counted(u.update(950, S)), 50);
        assert_eq!(counted(u.update(1_000, 2 * S)), 100); // exactly at the range
        assert_eq!(counted(u.update(30, 3 * S)), 130); // wrapped
        assert_eq!(counted(u.update(30, 4 * S)), 130);
        assert!(u.update(1_001, 5 * S).is_err());
        assert_eq!(u.total(), 130);
        assert_eq!(counted(u.update(40, 6 * S)), 140);
    }

    #[test]
    fn a_decrease_without_a_range_is_a_reset_bridged_at_the_last_power() {
        let mut u = CounterUnwrap::new(500, None, None, 0);
        assert_eq!(counted(u.update(700, S)), 200);
        match u.update(100, 2 * S) {
            Ok(Step::Bridged {
                total, bridged_uj, ..
            }) => assert_eq!((total, bridged_uj), (400, 200)),
            other => panic!("{other:?}"),
        }
        assert_eq!(counted(u.update(150, 3 * S)), 450);
    }

    /// 30 W read every 10 ms; the counter steps back 2 J once (a reset or a glitch).
    #[test]
    fn a_backward_step_is_not_a_wrap_when_no_power_explains_it() {
        let range = 262_143_328_850;
        let step = 300_000; // 30 W x 10 ms
        let mut raw = 50_000_000_000u64;
        let mut u = CounterUnwrap::new(raw, Some(range), Some(100.0), 0);
        let mut t = 0;
        for _ in 0..10 {
            raw += step;
            t += 10_000_000;
            counted(u.update(raw, t));
        }
        raw -= 2_000_000;
        t += 10_000_000;
        let Ok(Step::Bridged {
            total,
            bridged_uj,
            why,
        }) = u.update(raw, t)
        else {
            panic!("a 2 J step back at 30 W was taken for a wrap");
        };
        assert!(bridged_uj.abs_diff(step) <= 1, "{bridged_uj}");
        assert!(why.contains("went back"), "{why}");
        assert_eq!(total, 11 * step);
        raw += step;
        assert_eq!(counted(u.update(raw, t + 10_000_000)), 12 * step);
    }

    /// A zone whose counter really wraps at 60 J while its range file says 262 kJ: each wrap
    /// would add ~262 kJ; it is bridged instead, and the figures stay near the truth.
    #[test]
    fn a_range_file_larger_than_the_real_wrap_point_is_caught() {
        let (real, file) = (60_000_000u64, 262_143_328_850u64);
        let step = 300_000;
        let mut raw = 0u64;
        let mut u = CounterUnwrap::new(raw, Some(file), None, 0);
        let (mut bridged, mut t) = (0, 0u64);
        for _ in 0..1_000 {
            raw = (raw + step) % real;
            t += 10_000_000;
            if let Step::Bridged { .. } = u.update(raw, t).unwrap() {
                bridged += 1;
            }
        }
        assert_eq!(bridged, 5, "one per real wrap");
        let truth = 1_000 * step;
        assert!(
            u.total().abs_diff(truth) <= 5 * step,
            "{} vs {truth}",
            u.total()
        );
    }

    #[test]
    fn true_wraps_at_high_power_are_counted() {
        let range = 60_000_000; // a 60 J counter at 400 W wraps every 0.15 s
        let step = 4_000_000; // 400 W x 10 ms
        let mut raw = 0u64;
        let mut u = CounterUnwrap::new(raw, Some(range), Some(500.0), 0);
        for k in 1..=100u64 {
            raw = (raw + step) % range;
            assert_eq!(counted(u.update(raw, k * 10_000_000)), k * step);
        }
    }

    #[test]
    fn a_forward_jump_beyond_any_power_is_a_glitch() {
        let mut u = CounterUnwrap::new(1_000, Some(1 << 40), Some(50.0), 0);
        assert_eq!(counted(u.update(501_000, 10_000_000)), 500_000);
        let Ok(Step::Bridged { total, .. }) = u.update(900_000_000_000, 20_000_000) else {
            panic!("a 900 kJ jump in 10 ms was counted");
        };
        assert_eq!(total, 1_000_000);
    }

    proptest! {
        #[test]
        fn unwrapped_total_equals_true_energy(
            range in 1_000u64..10_000_000,
            start_frac in 0.0f64..1.0,
            steps in proptest::collection::vec(0u64..1_000_000, 1..50),
        ) {
            // Every step is below the range, so at most one wrap hides between reads; one read
            // a second keeps every step a plausible power.
            let start = (range as f64 * start_frac) as u64;
            let mut u = CounterUnwrap::new(start, Some(range), None, 0);
            let mut truth = 0u64;
            let mut raw = start;
            for (k, s) in steps.into_iter().enumerate() {
                let s = s % range;
                truth += s;
                raw = (raw + s) % range;
                prop_assert_eq!(counted(u.update(raw, (k as u64 + 1) * S)), truth);
            }
        }
    }
}
