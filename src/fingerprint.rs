//! What about the machine can change results: CPU, governor, turbo, memory, kernel.

use serde::{Deserialize, Serialize};

/// Facts recorded with every result, so results are compared only on like machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: String,
    /// CPUs this process may run on (affinity and cgroup limits applied).
    pub logical_cpus: usize,
    pub governor: Option<String>,
    /// `on`, `off`, or null when the machine does not say.
    pub turbo: Option<String>,
    pub memory_gib: Option<f64>,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Parses `MemTotal:  24576000 kB` from /proc/meminfo into GiB.
pub fn mem_total_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / (1024.0 * 1024.0))
}

/// Reads this machine's facts.
pub fn machine() -> Machine {
    let turbo = read_trim("/sys/devices/system/cpu/intel_pstate/no_turbo")
        .map(|v| if v == "1" { "off" } else { "on" }.to_string())
        .or_else(|| {
            read_trim("/sys/devices/system/cpu/cpufreq/boost")
                .map(|v| if v == "1" { "on" } else { "off" }.to_string())
        });
    Machine {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cpu_model: crate::meter::estimate::cpu_model_string(),
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        turbo,
        memory_gib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total_gib(&m)),
    }
}

/// A one-line hardware fingerprint: CPU model and count, plus the GPUs a run metered.
pub fn label(
    m: &Machine,
    sources: &std::collections::BTreeMap<String, serde_json::Value>,
) -> String {
    let gpus: Vec<String> = sources
        .get("nvml")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} x{}{}",
        m.cpu_model,
        m.logical_cpus,
        if gpus.is_empty() {
            String::new()
        } else {
            format!(" + {}", gpus.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let m = "MemTotal:       25165824 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_gib(m), Some(24.0));
        assert_eq!(mem_total_gib("nothing"), None);
    }

    #[test]
    fn machine_has_a_cpu_count() {
        assert!(machine().logical_cpus >= 1);
    }
}
