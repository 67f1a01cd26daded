//! A labelled estimate for machines without a CPU energy sensor:
//! E = CPU time of the measured processes × active power per CPU + idle power × wall time.
//! Every figure it produces is marked ESTIMATED and carries this formula and its inputs.

use super::{DomainInfo, DomainKind, EnergySource, InvalidReads, Method, Provenance, SourceKind};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Share of TDP a package draws when idle, in this model.
pub const IDLE_FRACTION: f64 = 0.2;
/// TDP assumed when neither `--tdp-w` nor the table knows the CPU.
pub const DEFAULT_TDP_W: f64 = 65.0;

/// Known CPUs: model-string fragment, TDP in watts, hardware threads per package.
const TDP_TABLE: &[(&str, f64, u32)] = &[
    ("EPYC 9654", 360.0, 192),
    ("EPYC 9554", 360.0, 128),
    ("EPYC 7763", 280.0, 128),
    ("EPYC 7713", 225.0, 128),
    ("EPYC 7543", 225.0, 64),
    ("EPYC 7R13", 280.0, 96),
    ("Xeon(R) Platinum 8480", 350.0, 112),
    ("Xeon(R) Platinum 8380", 270.0, 80),
    ("Xeon(R) Platinum 8375C", 300.0, 64),
    ("Xeon(R) Platinum 8259CL", 210.0, 48),
    ("Xeon(R) Gold 6338", 205.0, 64),
    ("Xeon(R) CPU @ 2.20GHz", 205.0, 56),
    ("Core(TM) i9-13900K", 125.0, 32),
    ("Core(TM) i7-12700", 65.0, 20),
    ("Core(TM) i7-1185G7", 28.0, 8),
    ("Ryzen 9 7950X", 170.0, 32),
    ("Ryzen 7 5800X", 105.0, 16),
    ("Neoverse-V2", 250.0, 72),
];

/// The estimate's model and every input it uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateModel {
    pub cpu_model: String,
    pub tdp_w: f64,
    /// `--tdp-w`, `table: <entry>`, or `default`.
    pub tdp_source: String,
    pub package_threads: u32,
    pub visible_cpus: u32,
    pub idle_fraction: f64,
    pub active_w_per_cpu: f64,
    pub idle_w: f64,
    pub formula: String,
}

impl EstimateModel {
    /// Builds the model for `cpu_model`, using `tdp_override` when given.
    pub fn new(cpu_model: &str, tdp_override: Option<f64>, visible_cpus: u32) -> Self {
        let visible_cpus = visible_cpus.max(1);
        let hit = TDP_TABLE
            .iter()
            .filter(|(k, _, _)| cpu_model.contains(k))
            .max_by_key(|(k, _, _)| k.len());
        let (tdp_w, tdp_source, package_threads) = match (tdp_override, hit) {
            (Some(t), Some((_, _, th))) => (t, "--tdp-w".to_string(), *th),
            (Some(t), None) => (t, "--tdp-w".to_string(), visible_cpus),
            (None, Some((k, t, th))) => (*t, format!("table: {k}"), *th),
            (None, None) => (DEFAULT_TDP_W, "default".to_string(), visible_cpus),
        };
        let package_threads = package_threads.max(1);
        let active_w_per_cpu = tdp_w * (1.0 - IDLE_FRACTION) / package_threads as f64;
        let share = (visible_cpus as f64 / package_threads as f64).min(1.0);
        let idle_w = tdp_w * IDLE_FRACTION * share;
        let formula = format!(
            "E = cpu_time_s x {active_w_per_cpu:.3} W + wall_s x {idle_w:.3} W, where \
             {active_w_per_cpu:.3} W = TDP {tdp_w} W x (1 - {IDLE_FRACTION}) / {package_threads} \
             threads and {idle_w:.3} W = TDP x {IDLE_FRACTION} x {visible_cpus}/{package_threads} \
             visible CPUs (TDP from {tdp_source})"
        );
        EstimateModel {
            cpu_model: cpu_model.to_string(),
            tdp_w,
            tdp_source,
            package_threads,
            visible_cpus,
            idle_fraction: IDLE_FRACTION,
            active_w_per_cpu,
            idle_w,
            formula,
        }
    }

    /// The model for this machine.
    pub fn for_this_machine(tdp_override: Option<f64>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Self::new(&cpu_model_string(), tdp_override, cpus)
    }

    /// Estimated microjoules for `cpu_ns` of CPU time over `wall_ns`.
    pub fn energy_uj(&self, cpu_ns: u64, wall_ns: u64) -> f64 {
        (cpu_ns as f64 * self.active_w_per_cpu + wall_ns as f64 * self.idle_w) / 1e3
    }
}

/// The CPU's model string from /proc/cpuinfo, or "unknown CPU".
pub fn cpu_model_string() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Hardware", "CPU part"] {
        for line in info.lines() {
            if let Some((k, v)) = line.split_once(':')
                && k.trim() == key
                && !v.trim().is_empty()
            {
                return v.trim().to_string();
            }
        }
    }
    "unknown CPU".into()
}

/// A clock of CPU time spent by the work being measured.
pub trait CpuClock: Send {
    /// Cumulative CPU nanoseconds, or None if it cannot be read.
    fn cpu_ns(&mut self) -> Option<u64>;
    /// What is counted, for the record.
    fn scope(&self) -> &'static str;
}

/// CPU time of joulebench's child process tree: every reaped descendant (getrusage) plus the
/// live child set through [`ChildTreeCpu::tracker`], whose own reaped children /proc counts.
pub struct ChildTreeCpu {
    live: Arc<AtomicI32>,
    last: u64,
    tick_ns: u64,
}

impl ChildTreeCpu {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ChildTreeCpu {
            live: Arc::new(AtomicI32::new(0)),
            last: 0,
            tick_ns: if hz > 0 {
                1_000_000_000 / hz as u64
            } else {
                10_000_000
            },
        }
    }

    /// A handle to set the PID of the running child (0 when none).
    pub fn tracker(&self) -> Arc<AtomicI32> {
        Arc::clone(&self.live)
    }
}

impl Default for ChildTreeCpu {
    fn default() -> Self {
        Self::new()
    }
}

/// Reaped children's CPU time in nanoseconds.
pub fn reaped_children_cpu_ns() -> u64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// utime + stime + cutime + cstime of a live process, in clock ticks.
pub fn proc_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 .. cstime 17 (1-based, whole line).
    let get = |i: usize| f.get(i - 3).and_then(|s| s.parse::<i64>().ok());
    Some(
        [get(14)?, get(15)?, get(16)?, get(17)?]
            .iter()
            .map(|v| (*v).max(0) as u64)
            .sum(),
    )
}

impl CpuClock for ChildTreeCpu {
    fn cpu_ns(&mut self) -> Option<u64> {
        let reaped = reaped_children_cpu_ns();
        let pid = self.live.load(Ordering::Relaxed);
        let live = if pid > 0 {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| proc_stat_ticks(&s))
                .map_or(0, |t| t * self.tick_ns)
        } else {
            0
        };
        // A child being reaped moves from `live` into `reaped`; never go backwards meanwhile.
        self.last = self.last.max(reaped + live);
        Some(self.last)
    }

    fn scope(&self) -> &'static str {
        "CPU time of the measured command and its descendants"
    }
}

/// CPU time of this whole process and its reaped children (for in-process work).
#[derive(Default)]
pub struct ProcessCpu;

impl CpuClock for ProcessCpu {
    fn cpu_ns(&mut self) -> Option<u64> {
        Some(crate::clock::process_cpu_ns() + reaped_children_cpu_ns())
    }

    fn scope(&self) -> &'static str {
        "CPU time of the joulebench process and its reaped children"
    }
}

/// Busy CPU time of the whole machine from /proc/stat (`cpu` line), in nanoseconds.
pub fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy * 1_000_000_000 / hz)
}

/// CPU time of every process on the machine (an external server, whoever started it).
#[derive(Default)]
pub struct MachineCpu;

impl CpuClock for MachineCpu {
    fn cpu_ns(&mut self) -> Option<u64> {
        machine_busy_ns()
    }

    fn scope(&self) -> &'static str {
        "CPU time of every process on the machine (/proc/stat)"
    }
}

/// The estimate as an energy source with one domain, `cpu`.
pub struct EstimateSource {
    model: EstimateModel,
    clock: Box<dyn CpuClock>,
    domains: Vec<DomainInfo>,
    t0_ns: u64,
    cpu0_ns: Option<u64>,
    last_uj: u64,
    invalid: InvalidReads,
}

impl EstimateSource {
    /// Starts the estimate at `now_ns` with the given model and CPU clock.
    pub fn new(model: EstimateModel, mut clock: Box<dyn CpuClock>, now_ns: u64) -> Self {
        let cpu0_ns = clock.cpu_ns();
        let domains = vec![DomainInfo {
            source: SourceKind::Estimate,
            name: "cpu".into(),
            kind: DomainKind::CpuEstimate,
            provenance: Provenance::Estimated,
            method: Method::Estimate,
            location: model.cpu_model.clone(),
            counter_range_uj: None,
            nominal_update_ms: 10.0,
            max_power_w: None,
            note: Some(format!("ESTIMATED: {}", model.formula)),
        }];
        EstimateSource {
            model,
            clock,
            domains,
            t0_ns: now_ns,
            cpu0_ns,
            last_uj: 0,
            invalid: InvalidReads::new(1),
        }
    }

    /// The model and its inputs.
    pub fn model(&self) -> &EstimateModel {
        &self.model
    }
}

impl EnergySource for EstimateSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Estimate
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read_into(&mut self, now_ns: u64, out: &mut [Option<u64>]) {
        let Some(cpu) = self.clock.cpu_ns() else {
            self.invalid
                .record(0, || "CPU time could not be read".into());
            out[0] = None;
            return;
        };
        let cpu0 = *self.cpu0_ns.get_or_insert(cpu);
        let uj = self
            .model
            .energy_uj(cpu.saturating_sub(cpu0), now_ns.saturating_sub(self.t0_ns));
        self.last_uj = self.last_uj.max(uj as u64);
        out[0] = Some(self.last_uj);
    }

    fn diagnostics(&self) -> Vec<String> {
        self.invalid.lines(&self.domains)
    }

    fn describe(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.model).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("cpu_time_scope".into(), self.clock.scope().into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedCpu(Arc<std::sync::atomic::AtomicU64>);
    impl CpuClock for FixedCpu {
        fn cpu_ns(&mut self) -> Option<u64> {
            Some(self.0.load(Ordering::Relaxed))
        }
        fn scope(&self) -> &'static str {
            "test"
        }
    }

    #[test]
    fn table_default_and_override() {
        let m = EstimateModel::new("AMD EPYC 7763 64-Core Processor", None, 4);
        assert_eq!(m.tdp_w, 280.0);
        assert_eq!(m.package_threads, 128);
        assert!((m.active_w_per_cpu - 280.0 * 0.8 / 128.0).abs() < 1e-9);
        assert!((m.idle_w - 280.0 * 0.2 * 4.0 / 128.0).abs() < 1e-9);
        let d = EstimateModel::new("Mystery CPU", None, 2);
        assert_eq!(d.tdp_source, "default");
        assert_eq!(d.tdp_w, DEFAULT_TDP_W);
        // A fully busy package draws its TDP in this model.
        assert!((d.active_w_per_cpu * 2.0 + d.idle_w - DEFAULT_TDP_W).abs() < 1e-9);
        let o = EstimateModel::new("Mystery CPU", Some(100.0), 2);
        assert_eq!(o.tdp_source, "--tdp-w");
        assert!(o.formula.contains("100"));
    }

    #[test]
    fn estimate_follows_formula() {
        let cpu = Arc::new(std::sync::atomic::AtomicU64::new(5_000_000_000));
        let m = EstimateModel::new("Mystery CPU", Some(50.0), 1);
        let mut s = EstimateSource::new(m.clone(), Box::new(FixedCpu(cpu.clone())), 1_000);
        let mut out = [None];
        // 2 s of wall time, 1.5 s of CPU time.
        cpu.store(6_500_000_000, Ordering::Relaxed);
        s.read_into(1_000 + 2_000_000_000, &mut out);
        let want = 1.5 * m.active_w_per_cpu + 2.0 * m.idle_w;
        let got = out[0].unwrap() as f64 / 1e6;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert_eq!(s.domains()[0].provenance, Provenance::Estimated);
    }

    #[test]
    fn parses_proc_stat_with_spaces_in_name() {
        let line = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        assert_eq!(proc_stat_ticks(line), Some(13));
        assert_eq!(proc_stat_ticks("garbage"), None);
    }

    #[test]
    fn child_tree_counts_a_busy_child() {
        let mut c = ChildTreeCpu::new();
        let before = c.cpu_ns().unwrap();
        let st = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(st.success());
        assert!(c.cpu_ns().unwrap() > before);
    }
}
