//! The run folder on disk: its files' names and formats (meta.json, idle.json, the parts of a
//! merged folder, shard and host tags), JSON read and write, atomic writes, unique folder names
//! and schema versions. A leaf: it knows the formats, not who writes them.

use crate::fingerprint::Machine;
use crate::meter::rapl::ZoneStatus;
use crate::meter::{Provenance, Unavailable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The suite as run.
pub const CONFIG: &str = "config.toml";
/// The fingerprint and what ran ([`RunMeta`]).
pub const META: &str = "meta.json";
/// The idle baseline ([`IdleBaseline`]).
pub const IDLE: &str = "idle.json";
/// The cells to run, written by the parent for the cell processes.
pub const PLAN: &str = "plan.json";
/// One record per repetition.
pub const RECORDS: &str = "records.jsonl";
/// Per-cell summaries.
pub const SUMMARY: &str = "summary.json";

/// `traces/<cell>.csv`: every power sample and mark of a cell.
pub fn trace_path(dir: &Path, cell_id: &str) -> PathBuf {
    dir.join("traces").join(format!("{cell_id}.csv"))
}

/// `logs/<cell>.<what>`: a cell's stderr (`stderr.log`), server log or command output.
pub fn log_path(dir: &Path, cell_id: &str, what: &str) -> PathBuf {
    dir.join("logs").join(format!("{cell_id}.{what}"))
}

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
    /// Each energy source's facts (GPU name, UUID, driver, power limit; estimate model; powercap
    /// root), by source kind.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// The RAPL domain map.
    pub rapl_domains: Vec<RaplDomain>,
    pub unavailable: Vec<Unavailable>,
    pub cells: usize,
    pub repetitions: u32,
    /// Set when this run is one shard of a suite (`run --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Set when this run folder was merged from shards: each part's facts, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartInfo>,
    /// Cells of the plan no part measured (merged with `--allow-partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_cells: Vec<String>,
    /// What the merge noticed (incomplete cells, parts from different joulebench builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_warnings: Vec<String>,
    /// The measured domains (`rapl/package-0`, `nvml/gpu0`) the suite started with: a cell
    /// that finds one of them gone does not silently measure with less.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measured_domains: Vec<String>,
    /// `run --allow-partial`: labelled partial totals instead of unknown ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// Models from the Hugging Face Hub, by model name: repository, revision, the commit it
    /// resolved to when the run started, and each file's hash (`engine::hub::ModelSource`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_sources: BTreeMap<String, serde_json::Value>,
    /// Set when this run folder is an A/B job (`joulebench ab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbSettings>,
}

/// What an A/B job compares: two model names of the suite and the pairs asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbSettings {
    pub base: String,
    pub candidate: String,
    pub pairs: u32,
}

impl RunMeta {
    /// The hardware fingerprint: what must match for results to be compared.
    pub fn fingerprint(&self) -> String {
        crate::fingerprint::label(&self.machine, &self.sources)
    }

    /// The tag this run's records carry.
    pub fn host_tag(&self) -> HostTag {
        let slurm_node = self
            .shard
            .as_ref()
            .and_then(|s| s.slurm.as_ref())
            .and_then(|j| j.node.clone());
        HostTag {
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
    pub provenance: Provenance,
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
    write_atomic(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Reads JSON, naming the file on failure.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What a reader of summary.json needs without the report's types: whether the run was cut short.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SummaryFlags {
    #[serde(default)]
    pub interrupted: bool,
}

/// One powercap zone of the RAPL domain map, as meta.json keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaplDomain {
    pub zone: String,
    /// Contents of the zone's `name` file.
    pub name: String,
    /// The domain joulebench reports it as (`package-0`, `dram-1`, `psys`).
    pub domain: String,
    pub status: ZoneStatus,
}

/// One merged part, as meta.json of the merged folder keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The part's folder name (not its path: merges elsewhere give the same files).
    pub dir: String,
    pub shard: Option<ShardInfo>,
    pub node: Option<String>,
    pub fingerprint: String,
    pub machine: Machine,
    pub sources: BTreeMap<String, serde_json::Value>,
    pub started_unix_s: f64,
    /// Cells this part measured, in plan order.
    pub cells: Vec<String>,
    pub records: usize,
    /// Its idle baseline (each node has its own; records subtract their own node's).
    pub idle_w: Option<f64>,
}

/// What Slurm says about the job a run belongs to (from its environment variables).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmJob {
    pub job_id: Option<String>,
    pub array_job_id: Option<String>,
    pub array_task_id: Option<String>,
    pub node: Option<String>,
    pub partition: Option<String>,
    pub cluster: Option<String>,
}

/// meta.json's account of a sharded run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// Cells of the whole plan (this shard runs about cells / count of them).
    pub plan_cells: usize,
    /// The node may run other work at the same time (`slurm --shared`): RAPL then bills it too.
    pub node_shared: bool,
    pub slurm: Option<SlurmJob>,
}

/// Where a record was measured; merged runs keep it per record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTag {
    /// Host name (Slurm node name when under Slurm).
    pub node: Option<String>,
    /// The hardware fingerprint: only records with equal fingerprints are compared.
    pub fingerprint: String,
    /// `I/N` of the shard that measured it.
    pub shard: Option<String>,
    /// True when the node was not held exclusively: its energy may include other jobs.
    pub node_shared: bool,
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Every text file joulebench writes is redacted (reports quote records, logs and errors).
    let redacted = std::str::from_utf8(bytes).ok().map(crate::redact::text);
    let bytes = redacted.as_ref().map_or(bytes, |t| t.as_bytes());
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        // Never a .tmp left behind (a full disk), and the error names the file.
        let _ = std::fs::remove_file(&tmp);
        std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
    })
}

/// Rewrites `path` redacted (see [`crate::redact`]), if it holds anything to redact.
pub fn redact_file(path: &Path) -> std::io::Result<()> {
    let raw = std::fs::read(path)?;
    let s = String::from_utf8_lossy(&raw);
    if let std::borrow::Cow::Owned(clean) = crate::redact::text(&s) {
        write_atomic(path, clean.as_bytes())?;
    }
    Ok(())
}

/// `parent/base`, or `parent/base-2`, `-3`, … when that exists already.
pub fn unique_dir(parent: &Path, base: &str) -> PathBuf {
    let mut dir = parent.join(base);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = parent.join(format!("{base}-{n}"));
    }
    dir
}

/// The last `n` lines of a process's output, preceded by its panic message if a backtrace
/// pushed that out of the tail.
pub fn tail_text(text: &str, n: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    let start = v.len().saturating_sub(n);
    let mut out: Vec<&str> = Vec::new();
    if let Some(p) = v[..start].iter().position(|l| l.contains("panicked at")) {
        out.extend(v[p..(p + 2).min(start)].iter().copied());
        out.push("...");
    }
    out.extend(&v[start..]);
    out.join("\n")
}

/// [`tail_text`] of a file (empty when it cannot be read).
pub fn file_tail(path: &Path, n: usize) -> String {
    tail_text(&std::fs::read_to_string(path).unwrap_or_default(), n)
}
