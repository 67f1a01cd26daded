//! The run folder on disk: its files' names, shard and host tags, JSON read and write, atomic
//! writes, unique folder names and schema versions. A leaf: it imports nothing of joulebench's
//! but redaction (what meta.json and idle.json say is `run_meta`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The suite as run.
pub const CONFIG: &str = "config.toml";
/// The fingerprint and what ran (`run_meta::RunMeta`).
pub const META: &str = "meta.json";
/// The idle baseline (`run_meta::IdleBaseline`).
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
