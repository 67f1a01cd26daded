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

/// Unwraps a counter that wraps at `range`, keeping a u64 running total.
#[derive(Debug, Clone)]
pub struct CounterUnwrap {
    range: Option<u64>,
    last: u64,
    total: u64,
}

impl CounterUnwrap {
    /// Starts from a first raw reading; the total starts at zero.
    pub fn new(first: u64, range: Option<u64>) -> Self {
        CounterUnwrap {
            range,
            last: first,
            total: 0,
        }
    }

    /// Feeds one raw reading; returns the running total, or why the reading is invalid.
    pub fn update(&mut self, raw: u64) -> Result<u64, String> {
        let delta = match self.range {
            Some(r) if raw > r => {
                return Err(format!("value {raw} above max_energy_range_uj {r}"));
            }
            Some(r) if raw < self.last => r - self.last + raw,
            None if raw < self.last => {
                self.last = raw;
                return Err(format!(
                    "counter went back from {} to {raw} and no max_energy_range_uj is known; \
                     energy in this interval is lost",
                    self.last
                ));
            }
            _ => raw - self.last,
        };
        self.last = raw;
        self.total = self.total.saturating_add(delta);
        Ok(self.total)
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
            domains.push(DomainInfo {
                source: SourceKind::Rapl,
                name: z.domain.clone(),
                kind: z.kind,
                provenance: Provenance::Measured,
                method: Method::Counter,
                location: z.path.display().to_string(),
                counter_range_uj: z.counter_range_uj,
                nominal_update_ms: 1.0,
                note: domain_note(z.kind),
            });
            if let Some(r) = z.counter_range_uj {
                let watts = max_power_uw.map_or(ASSUMED_MAX_POWER_W, |p| p as f64 / 1e6);
                // µJ / W = µs; read at least twice per shortest wrap period.
                let half_wrap_ms = r as f64 / watts / 1000.0 / 2.0;
                max_interval_ms =
                    Some(max_interval_ms.map_or(half_wrap_ms, |m| m.min(half_wrap_ms)));
            }
            unwraps.push(CounterUnwrap::new(first, z.counter_range_uj));
            counters.push(c);
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

    fn read_into(&mut self, _now_ns: u64, out: &mut [Option<u64>]) {
        for (i, c) in self.counters.iter_mut().enumerate() {
            out[i] = match c.read_u64() {
                Ok(raw) => match self.unwraps[i].update(raw) {
                    Ok(total) => Some(total),
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
        assert!(ZoneId::parse("intel-rapl").is_none());
        assert!(ZoneId::parse("intel-rapl:").is_none());
        assert!(ZoneId::parse("intel-rapl:x").is_none());
        assert!(ZoneId::parse("dtpm:0").is_none());
    }

    #[test]
    fn unwrap_handles_one_wrap_and_exact_range() {
        let range = 1_000;
        let mut u = CounterUnwrap::new(900, Some(range));
        assert_eq!(u.update(950).unwrap(), 50);
        assert_eq!(u.update(1_000).unwrap(), 100); // exactly at the range
        assert_eq!(u.update(30).unwrap(), 130); // wrapped
        assert_eq!(u.update(30).unwrap(), 130);
        assert!(u.update(1_001).is_err());
        assert_eq!(u.total(), 130);
        assert_eq!(u.update(40).unwrap(), 140);
    }

    #[test]
    fn unwrap_without_range_refuses_to_guess() {
        let mut u = CounterUnwrap::new(500, None);
        assert_eq!(u.update(700).unwrap(), 200);
        assert!(u.update(100).is_err());
        assert_eq!(u.update(150).unwrap(), 250);
    }

    proptest! {
        #[test]
        fn unwrapped_total_equals_true_energy(
            range in 1_000u64..10_000_000,
            start_frac in 0.0f64..1.0,
            steps in proptest::collection::vec(0u64..1_000_000, 1..50),
        ) {
            // Every step is below the range, so at most one wrap hides between reads.
            let start = (range as f64 * start_frac) as u64;
            let mut u = CounterUnwrap::new(start, Some(range));
            let mut truth = 0u64;
            let mut raw = start;
            for s in steps {
                let s = s % range;
                truth += s;
                raw = (raw + s) % range;
                prop_assert_eq!(u.update(raw).unwrap(), truth);
            }
        }
    }
}
