//! The run folder's shared files: meta.json (fingerprint) and idle.json (baseline).

use crate::fingerprint::Machine;
use crate::meter::Unavailable;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of meta.json, idle.json and summary.json.
pub const RUN_SCHEMA_VERSION: u32 = 1;

/// meta.json: what ran where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub schema_version: u32,
    pub suite: String,
    /// The suite file as given (relative model paths resolve against its folder).
    pub config_path: PathBuf,
    pub config_hash: String,
    pub started_unix_s: f64,
    pub joulebench_version: String,
    pub git_commit: Option<String>,
    pub command_line: Vec<String>,
    pub machine: Machine,
    /// Each energy source's facts (GPU name, UUID, driver, power limit; estimate model; powercap root).
    pub sources: serde_json::Value,
    /// The RAPL domain map: zone, name, domain, status.
    pub rapl_domains: serde_json::Value,
    pub unavailable: Vec<Unavailable>,
    pub cells: usize,
    pub repetitions: u32,
    /// Set when this run is one shard of a suite (`run --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardInfo>,
    /// Set when this run folder was merged from shards: each part's facts, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::merge::PartInfo>,
    /// Cells of the plan no part measured (merged with `--allow-partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_cells: Vec<String>,
    /// What the merge noticed (incomplete cells, parts from different joulebench builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_warnings: Vec<String>,
}

impl RunMeta {
    /// The hardware fingerprint: what must match for results to be compared.
    pub fn fingerprint(&self) -> String {
        crate::fingerprint::label(&self.machine, &self.sources)
    }

    /// The tag this run's records carry.
    pub fn host_tag(&self) -> crate::shard::HostTag {
        let slurm_node = self
            .shard
            .as_ref()
            .and_then(|s| s.slurm.as_ref())
            .and_then(|j| j.node.clone());
        crate::shard::HostTag {
            node: slurm_node.or_else(|| self.machine.hostname.clone()),
            fingerprint: self.fingerprint(),
            shard: self
                .shard
                .as_ref()
                .map(|s| format!("{}/{}", s.index, s.count)),
            node_shared: self.shard.as_ref().is_some_and(|s| s.node_shared),
        }
    }
}

/// idle.json: power with nothing loaded, measured before the first cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub schema_version: u32,
    pub duration_s: f64,
    /// CPU total + GPU total, what records subtract.
    pub total_w: Option<f64>,
    pub cpu_w: Option<f64>,
    pub gpu_w: Option<f64>,
    pub domains: Vec<IdleDomainW>,
    pub provenance: crate::meter::Provenance,
}

/// Idle power of one domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleDomainW {
    pub source: String,
    pub name: String,
    pub power_w: Option<f64>,
}

/// Writes JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)? + "\n";
    crate::measure::write_atomic(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads JSON, naming the file on failure.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
