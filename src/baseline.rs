//! Saved baselines: plain copies of a run's result files under reports/baselines/NAME/, to be
//! committed or cached as CI artifacts and compared against with `baseline:NAME`.

use crate::run_dir::{read_json, write_json};
use crate::run_meta::RunMeta;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default folder of baselines.
pub const DEFAULT_DIR: &str = "reports/baselines";

/// The files a baseline keeps (those present in the run are copied).
const FILES: &[&str] = &[
    "meta.json",
    "records.jsonl",
    "summary.json",
    "summary.csv",
    "report.md",
    "config.toml",
    "idle.json",
];

/// baseline.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineInfo {
    pub name: String,
    pub saved_unix_s: f64,
    pub source: PathBuf,
}

/// Saves `run` as baseline `name` in `dir`.
pub fn save(run: &Path, name: &str, dir: &Path, force: bool) -> Result<PathBuf> {
    if !crate::names::is_component(name) {
        bail!(
            "baseline name {:?}: use letters, digits, '.', '_' and '-', not starting with '.' or \
             '-' (a baseline is a folder inside {})",
            crate::names::terminal(name),
            dir.display()
        );
    }
    for f in ["meta.json", "records.jsonl"] {
        if !run.join(f).exists() {
            bail!("{} is not a run folder: {f} is missing", run.display());
        }
    }
    let dest = dir.join(name);
    if dest.exists() {
        if !force {
            bail!(
                "baseline {name} exists in {}; pass --force to replace it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for f in FILES {
        let src = run.join(f);
        if src.exists() {
            std::fs::copy(&src, dest.join(f))
                .with_context(|| format!("cannot copy {}", src.display()))?;
            // Baselines get committed: nothing that looks like a credential goes in, even from
            // runs recorded before redaction existed.
            crate::run_dir::redact_file(&dest.join(f))
                .with_context(|| format!("cannot redact {}", dest.join(f).display()))?;
        }
    }
    write_json(
        &dest.join("baseline.json"),
        &BaselineInfo {
            name: name.into(),
            saved_unix_s: crate::clock::unix_now(),
            source: std::fs::canonicalize(run).unwrap_or_else(|_| run.to_path_buf()),
        },
    )?;
    Ok(dest)
}

/// Every baseline in `dir`: (info, meta), sorted by name.
pub fn list(dir: &Path) -> Result<Vec<(BaselineInfo, RunMeta)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if let (Ok(i), Ok(m)) = (
            read_json::<BaselineInfo>(&p.join("baseline.json")),
            read_json::<RunMeta>(&p.join("meta.json")),
        ) {
            out.push((i, m));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}
