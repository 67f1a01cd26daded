//! `joulebench merge`: shards of one suite become one run folder, as if it had been one run.
//! Every part must come from the same suite (config hash); no cell may come from two parts;
//! cells no part measured are listed. The output depends only on the parts' contents, so merging
//! the same parts twice gives identical files.

use crate::config::Suite;
use crate::plan::plan;
use crate::record::{self, Record, Status};
use crate::run_dir::{read_json, write_json};
use crate::run_meta::{PartInfo, RunMeta};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a merge did.
#[derive(Debug)]
pub struct MergeOutcome {
    pub dir: PathBuf,
    pub plan_cells: usize,
    pub parts: usize,
    pub records: usize,
    /// Cell ids no part measured.
    pub missing: Vec<String>,
    /// Cells with fewer good repetitions than the suite asks for, and no failure recorded.
    pub incomplete: Vec<String>,
    /// Distinct hardware fingerprints among the parts.
    pub fingerprints: Vec<String>,
    pub warnings: Vec<String>,
    /// Some part was interrupted: the summaries say so.
    pub interrupted: bool,
    /// The merged folder's lock, held until the caller has written the report.
    pub lock: crate::run_dir::RunLock,
}

struct Part {
    path: PathBuf,
    name: String,
    meta: RunMeta,
    text: String,
    records: Vec<Record>,
    idle_w: Option<f64>,
    interrupted: bool,
}

fn load_part(path: &Path, warnings: &mut Vec<String>) -> Result<Part> {
    if !path.join("meta.json").exists() {
        bail!(
            "{} is not a run folder: meta.json is missing (give the shards' run folders, \
             for example reports/<job>/shards/*)",
            path.display()
        );
    }
    let meta: RunMeta = read_json(&path.join("meta.json"))?;
    let text = std::fs::read_to_string(path.join("config.toml"))
        .with_context(|| format!("cannot read {}", path.join("config.toml").display()))?;
    let actual = {
        use sha2::{Digest, Sha256};
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    if actual != meta.config_hash {
        bail!(
            "{}: config.toml does not match the hash meta.json recorded for it ({} vs {}): the \
             suite file was changed after the run, so its records cannot be trusted to belong \
             to it",
            path.display(),
            &actual[..12],
            &meta.config_hash[..12.min(meta.config_hash.len())]
        );
    }
    let (mut records, w) = record::read_all(&path.join("records.jsonl"))
        .with_context(|| format!("cannot read {}", path.join("records.jsonl").display()))?;
    warnings.extend(w);
    let tag = meta.host_tag();
    for r in &mut records {
        if r.host.is_none() {
            r.host = Some(tag.clone());
        }
    }
    let idle_w = read_json::<crate::run_meta::IdleBaseline>(&path.join("idle.json"))
        .ok()
        .and_then(|i| i.total_w);
    let interrupted =
        read_json::<crate::run_dir::SummaryFlags>(&path.join(crate::run_dir::SUMMARY))
            .is_ok_and(|d| d.interrupted);
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    Ok(Part {
        path: path.to_path_buf(),
        name,
        meta,
        text,
        records,
        idle_w,
        interrupted,
    })
}

fn shard_key(p: &Part) -> (u32, String) {
    (
        p.meta.shard.as_ref().map_or(u32::MAX, |s| s.index),
        p.name.clone(),
    )
}

/// `out`, created and locked, when it is new or empty.
fn out_is_usable(out: &Path) -> Result<crate::run_dir::RunLock> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let lock = crate::run_dir::lock(out)?;
    match std::fs::read_dir(out) {
        Ok(d) => {
            if d.flatten().any(|e| e.file_name() != crate::run_dir::LOCK) {
                bail!(
                    "{} exists and is not empty: give a new folder to --out",
                    out.display()
                );
            }
            Ok(lock)
        }
        Err(e) => bail!("cannot use {} as --out: {e}", out.display()),
    }
}

fn copy_if_exists(from: &Path, to: &Path) -> Result<()> {
    match std::fs::read(from) {
        Ok(b) => crate::run_dir::write_atomic(to, &b)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", to.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot read {}: {e}", from.display()),
    }
}

/// Merges shard run folders into `out`. Fails, writing nothing, when the parts come from
/// different suites, a cell or shard appears twice, or (without `allow_partial`) cells are missing.
pub fn merge(paths: &[PathBuf], out: &Path, allow_partial: bool) -> Result<MergeOutcome> {
    if paths.is_empty() {
        bail!("nothing to merge: give the shards' run folders");
    }
    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    let mut parts = Vec::new();
    // A part still being written (a shard running, a resume) is refused; a read-only part
    // cannot be locked and is read as it is.
    let mut part_locks = Vec::new();
    for p in paths {
        let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if !seen.insert(canon) {
            bail!("{} is given twice", p.display());
        }
        match crate::run_dir::lock(p) {
            Ok(l) => part_locks.push(l),
            Err(e) if e.downcast_ref::<crate::run_dir::FolderBusy>().is_some() => {
                return Err(e.context(format!("the part {} is still being written", p.display())));
            }
            Err(_) => {}
        }
        parts.push(load_part(p, &mut warnings)?);
    }
    parts.sort_by_key(shard_key);
    one_suite_one_shard_each(&parts, &mut warnings)?;
    let suite = Suite::parse(&parts[0].meta.config_path, &parts[0].text)
        .with_context(|| format!("the suite kept in {}", parts[0].path.display()))?;
    let the_plan = plan(&suite);
    let owner = owners(&parts, &the_plan)?;
    let missing: Vec<String> = the_plan
        .cells
        .iter()
        .filter(|c| !owner.contains_key(&c.index))
        .map(|c| c.id.clone())
        .collect();
    if !missing.is_empty() && !allow_partial {
        bail!(
            "{} of {} cells were measured by no part: {} (a failed shard? pass --allow-partial \
             to merge anyway and list them as missing)",
            missing.len(),
            the_plan.cells.len(),
            missing.join(", ")
        );
    }
    let incomplete = incomplete_cells(&parts, &the_plan, &owner, &suite, &mut warnings);
    different_builds(&parts, &mut warnings);
    let fingerprints: Vec<String> = parts
        .iter()
        .map(|p| p.meta.fingerprint())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lock = out_is_usable(out)?;
    let meta = merged_meta(&parts, &the_plan, &owner, &missing, &warnings);
    let records = write_merged(out, &parts, &the_plan, &owner, &meta)?;
    drop(part_locks);
    Ok(MergeOutcome {
        lock,
        interrupted: parts.iter().any(|p| p.interrupted),
        dir: out.to_path_buf(),
        plan_cells: the_plan.cells.len(),
        parts: parts.len(),
        records,
        missing,
        incomplete,
        fingerprints,
        warnings,
    })
}

/// Refuses parts of different suites and a shard given twice; notes different shard counts.
fn one_suite_one_shard_each(parts: &[Part], warnings: &mut Vec<String>) -> Result<()> {
    let hash = parts[0].meta.config_hash.clone();
    if let Some(odd) = parts.iter().find(|p| p.meta.config_hash != hash) {
        bail!(
            "{} ran a different suite (config hash {}) than {} (hash {}): merge only the shards \
             of one suite",
            odd.path.display(),
            &odd.meta.config_hash[..12.min(odd.meta.config_hash.len())],
            parts[0].path.display(),
            &hash[..12.min(hash.len())]
        );
    }
    let counts: BTreeSet<u32> = parts
        .iter()
        .filter_map(|p| p.meta.shard.as_ref().map(|s| s.count))
        .collect();
    if counts.len() > 1 {
        warnings.push(format!(
            "the parts were split into different shard counts ({counts:?}); merged by cell"
        ));
    }
    for w in parts.windows(2) {
        if let (Some(a), Some(b)) = (&w[0].meta.shard, &w[1].meta.shard)
            && a.index == b.index
            && a.count == b.count
        {
            bail!(
                "shard {}/{} appears twice ({} and {}): a resubmitted shard? merge one of them",
                a.index,
                a.count,
                w[0].path.display(),
                w[1].path.display()
            );
        }
    }
    Ok(())
}

/// Which part measured each cell (by plan index); a cell from two parts, or a record of a cell
/// the plan does not have, is an error.
fn owners(parts: &[Part], the_plan: &crate::plan::Plan) -> Result<BTreeMap<usize, usize>> {
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    for (pi, p) in parts.iter().enumerate() {
        for r in &p.records {
            match the_plan.cells.get(r.cell_index) {
                Some(c) if c.id == r.cell => {}
                _ => bail!(
                    "{}: record of cell {} (index {}) is not in the suite's plan",
                    p.path.display(),
                    r.cell,
                    r.cell_index
                ),
            }
            if let Some(&other) = owner.get(&r.cell_index)
                && other != pi
            {
                bail!(
                    "cell {} was measured by both {} and {}: merge only one of them",
                    r.cell,
                    parts[other].path.display(),
                    p.path.display()
                );
            }
            owner.insert(r.cell_index, pi);
        }
    }
    Ok(owner)
}

/// Cells with fewer good repetitions than the suite asks for and no failure to explain it.
fn incomplete_cells(
    parts: &[Part],
    the_plan: &crate::plan::Plan,
    owner: &BTreeMap<usize, usize>,
    suite: &Suite,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut incomplete = Vec::new();
    for c in &the_plan.cells {
        let Some(&pi) = owner.get(&c.index) else {
            continue;
        };
        let rs = parts[pi].records.iter().filter(|r| r.cell_index == c.index);
        let (ok, failed) = rs.fold((BTreeSet::new(), 0), |(mut ok, f), r| {
            if r.status == Status::Ok {
                ok.extend(r.repetition);
                (ok, f)
            } else {
                (ok, f + 1)
            }
        });
        if failed == 0 && (ok.len() as u32) < suite.repetitions {
            incomplete.push(c.id.clone());
            warnings.push(format!(
                "cell {} has {} of {} repetitions (its shard stopped early?)",
                c.id,
                ok.len(),
                suite.repetitions
            ));
        }
    }
    incomplete
}

/// Notes parts that ran different joulebench builds.
fn different_builds(parts: &[Part], warnings: &mut Vec<String>) {
    let builds: BTreeSet<String> = parts
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                p.meta.joulebench_version,
                p.meta
                    .git_commit
                    .as_deref()
                    .map_or(String::new(), |c| format!(" ({c})"))
            )
        })
        .collect();
    if builds.len() > 1 {
        warnings.push(format!(
            "the parts ran different joulebench builds: {}",
            builds.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
}

/// The merged folder's meta.json: the first part's, with every part's facts and what is
/// missing.
fn merged_meta(
    parts: &[Part],
    the_plan: &crate::plan::Plan,
    owner: &BTreeMap<usize, usize>,
    missing: &[String],
    warnings: &[String],
) -> crate::run_meta::RunMeta {
    let infos: Vec<PartInfo> = parts
        .iter()
        .enumerate()
        .map(|(pi, p)| PartInfo {
            dir: p.name.clone(),
            shard: p.meta.shard.clone(),
            node: p.meta.host_tag().node,
            fingerprint: p.meta.fingerprint(),
            machine: p.meta.machine.clone(),
            sources: p.meta.sources.clone(),
            started_unix_s: p.meta.started_unix_s,
            cells: the_plan
                .cells
                .iter()
                .filter(|c| owner.get(&c.index) == Some(&pi))
                .map(|c| c.id.clone())
                .collect(),
            records: p.records.len(),
            idle_w: p.idle_w,
        })
        .collect();
    let mut meta = parts[0].meta.clone();
    meta.started_unix_s = parts
        .iter()
        .map(|p| p.meta.started_unix_s)
        .fold(f64::INFINITY, f64::min);
    meta.command_line = std::iter::once("joulebench merge".to_string())
        .chain(parts.iter().map(|p| p.name.clone()))
        .collect();
    meta.cells = the_plan.cells.len();
    meta.shard = None;
    meta.parts = infos;
    meta.missing_cells = missing.to_vec();
    meta.merge_warnings = warnings.to_vec();
    meta
}

/// Writes the merged folder: config, meta, idle baseline, records in plan order, each cell's
/// trace and log. Returns the number of records.
fn write_merged(
    out: &Path,
    parts: &[Part],
    the_plan: &crate::plan::Plan,
    owner: &BTreeMap<usize, usize>,
    meta: &crate::run_meta::RunMeta,
) -> Result<usize> {
    for sub in ["traces", "logs"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("cannot create {}", out.join(sub).display()))?;
    }
    crate::run_dir::write_atomic(&out.join("config.toml"), parts[0].text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    write_json(&out.join("meta.json"), meta)?;
    if let Some(p) = parts.iter().find(|p| p.path.join("idle.json").exists()) {
        copy_if_exists(&p.path.join("idle.json"), &out.join("idle.json"))?;
    }
    let mut all: Vec<&Record> = parts.iter().flat_map(|p| p.records.iter()).collect();
    all.sort_by(|a, b| {
        (a.cell_index, a.repetition.is_none(), a.repetition)
            .cmp(&(b.cell_index, b.repetition.is_none(), b.repetition))
            .then(a.unix_time_s.total_cmp(&b.unix_time_s))
    });
    let mut lines = String::new();
    for r in &all {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    crate::run_dir::write_atomic(&out.join("records.jsonl"), lines.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write records.jsonl in {}: {e}", out.display()))?;
    for (ci, &pi) in owner {
        let id = &the_plan.cells[*ci].id;
        let p = &parts[pi].path;
        copy_if_exists(
            &p.join("traces").join(format!("{id}.csv")),
            &out.join("traces").join(format!("{id}.csv")),
        )?;
        copy_if_exists(
            &p.join("logs").join(format!("{id}.stderr.log")),
            &out.join("logs").join(format!("{id}.stderr.log")),
        )?;
    }
    Ok(all.len())
}
