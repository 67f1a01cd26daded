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
    /// Why the run stopped early (a full disk), kept so a later `report` says it again.
    #[serde(default)]
    pub stopped: Option<String>,
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

/// The lock file of a run folder: who holds it (PID and command line) while a run, resume,
/// merge or report writes into the folder.
pub const LOCK: &str = "joulebench.lock";

/// An advisory `flock` on a run folder's lock file, held for as long as this value lives. A
/// second writer is refused at once; a lock left by a process that no longer runs (a `kill -9`,
/// a lost node) is free to the kernel and taken over, with a note.
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    path: PathBuf,
    /// Who held it before, when its holder did not release it (a PID and command line).
    pub taken_over: Option<String>,
}

/// Another process is writing to the folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "{dir} is in use by another joulebench ({holder}); wait for it to finish or stop it, \
     then run this again"
)]
pub struct FolderBusy {
    pub dir: String,
    pub holder: String,
}

/// The lock of run folder `dir` (for a run, a resume, a merge, a report): refused with
/// [`FolderBusy`] when another process holds it.
pub fn lock(dir: &Path) -> anyhow::Result<RunLock> {
    use anyhow::Context;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK);
    // Bounded: a holder that unlinks the file between our open and flock makes us retry.
    for _ in 0..20 {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let mut prior = String::new();
        let _ = (&file).take(4096).read_to_string(&mut prior);
        let prior = prior.trim().to_string();
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(anyhow::anyhow!("cannot lock {}: {e}", path.display()));
            }
            let holder = if prior.is_empty() {
                "a process that has not yet said who it is".into()
            } else {
                crate::redact::text(&prior).into_owned()
            };
            return Err(FolderBusy {
                dir: dir.display().to_string(),
                holder,
            }
            .into());
        }
        // The file we locked must still be the one at the path (not unlinked by a holder
        // that just finished).
        let same = std::fs::metadata(&path)
            .ok()
            .zip(file.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if !same {
            continue;
        }
        let me = format!(
            "PID {}: {}",
            std::process::id(),
            std::env::args()
                .map(|a| crate::names::terminal(&a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.write_all(me.as_bytes())?;
        file.sync_all()?;
        return Ok(RunLock {
            file,
            path,
            taken_over: (!prior.is_empty()).then(|| crate::redact::text(&prior).into_owned()),
        });
    }
    anyhow::bail!(
        "cannot hold the lock file {}: it keeps being replaced",
        path.display()
    )
}

impl RunLock {
    /// The note for the user when a stale lock was taken over.
    pub fn note(&self) -> Option<String> {
        self.taken_over.as_ref().map(|h| {
            format!(
                "the folder's lock was left by {h}, which no longer runs: taken over (its \
                 records are kept; a torn last line is cut)"
            )
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so no process locks a file that is about to vanish.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}
