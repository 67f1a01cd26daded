//! The suite runner: an idle baseline, then every cell in a child process of joulebench itself
//! (so threads, affinity and environment apply cleanly and a crash stays in its cell), records
//! appended as they are measured, and summaries written from the records.

pub mod ab;
pub mod cell;
pub mod child;
pub mod figures;
pub mod idle;

use crate::cluster::shard::{Shard, ShardInfo, SlurmJob};
use crate::config::Suite;
use crate::meter::select::{EstimateScope, Hardware, select};
use crate::plan::{Cell, plan};
use crate::record::{self, Status};
use crate::run_dir::{self, RUN_SCHEMA_VERSION, read_json, write_json};
use crate::run_meta::RunMeta;
use anyhow::{Context, Result, bail};
use child::{ChildEnd, run_child};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Progress of a run, as it happens; every hook defaults to nothing.
pub trait RunObserver {
    fn started(&mut self, _dir: &Path, _cells: usize, _todo: usize) {}
    fn phase(&mut self, _what: &str) {}
    fn cell_started(&mut self, _cell: &Cell, _position: usize, _of: usize) {}
    fn cell_finished(&mut self, _cell: &Cell, _failure: Option<&str>) {}
}

/// How to run.
pub struct RunOptions {
    /// Parent folder of run folders (default reports/).
    pub out: PathBuf,
    /// Continue this run folder instead of starting a new one.
    pub resume: Option<PathBuf>,
    /// The joulebench binary to start cells with.
    pub exe: PathBuf,
    /// Run only this shard's cells (`run --shard I/N`).
    pub shard: Option<crate::cluster::shard::Shard>,
    /// The node is not held exclusively: mark every record so.
    pub node_shared: bool,
    /// An A/B job: the suite holds just the two variants and `pairs` repetitions each, run
    /// alternately by two long-lived cell processes per (profile, workload).
    pub ab: Option<crate::run_meta::AbSettings>,
}

/// What a run did.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub interrupted: bool,
    pub failed_cells: Vec<String>,
    /// The suite stopped because results could not be written (what could not, and why).
    pub write_failure: Option<String>,
    /// The folder's lock, held until the caller has written the report.
    pub lock: crate::run_dir::RunLock,
    /// A sequential A/B job: how each (profile, workload) ended.
    pub ab_stops: Vec<crate::ab::Stop>,
}

/// Resolves every `hf:` model of the suite before any cell runs (downloading what the cache
/// lacks), so cells never wait on the network and meta.json says which commit was measured.
fn hub_sources(
    suite: &Suite,
    obs: &mut dyn RunObserver,
) -> Result<BTreeMap<String, serde_json::Value>> {
    use crate::store::hub::{Freshness, HubId, resolve};
    let mut out = BTreeMap::new();
    for m in &suite.models {
        let Some(spec) = m.weights() else { continue };
        let Some(id) = HubId::parse(&spec) else {
            continue;
        };
        let id = id.map_err(anyhow::Error::msg)?;
        let mut log = |s: &str| obs.phase(s);
        let (_, src) = resolve(&id, true, Freshness::CacheFirst, &mut log)
            .with_context(|| format!("model {}", m.name()))?;
        out.insert(m.name(), serde_json::to_value(src)?);
    }
    Ok(out)
}

/// Fetches every registered model and data set the suite names that the cache lacks, before any
/// cell runs: the download shows on the terminal (not only in a cell's log), and no cell's time
/// includes it.
fn fetch_registered(suite: &Suite, obs: &mut dyn RunObserver) -> Result<()> {
    use crate::store::registry;
    let mut wanted: Vec<(&'static registry::RegisteredModel, String)> = Vec::new();
    for m in &suite.models {
        if let Some(r) = m.weights().as_deref().and_then(registry::lookup) {
            wanted.push((r, format!("model {}", m.name())));
        }
    }
    for w in &suite.workloads {
        if let Some(r) = w.dataset.as_deref().and_then(registry::dataset) {
            wanted.push((r, format!("workload {}", w.name)));
        }
    }
    for (r, who) in wanted {
        if registry::is_cached(r) {
            continue;
        }
        obs.phase(&format!(
            "fetching {} for {who}: {} (once; cached after)",
            r.id,
            registry::source_line(r)
        ));
        let mut log = |s: &str| obs.phase(s);
        registry::resolve(r, true, &mut log).with_context(|| who.clone())?;
    }
    Ok(())
}

/// Fetches every evaluation workload's data and draws its items once, so every model of the
/// suite scores the same documents (they are written into the plan).
pub fn draw_eval_items(p: &mut crate::plan::Plan, obs: &mut dyn RunObserver) -> Result<()> {
    let mut drawn: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in &mut p.cells {
        let w = &mut c.workload;
        let Some(t) = w.task_ref() else { continue };
        if !drawn.contains_key(&w.name) {
            let mut log = |s: &str| obs.phase(s);
            let (_, docs) = t
                .draw(w.items, w.seed.unwrap_or(0), true, &mut log)
                .with_context(|| format!("workload {}: task {} {}", w.name, t.task, t.variant))?;
            drawn.insert(w.name.clone(), docs);
        }
        w.eval_docs = drawn.get(&w.name).cloned();
    }
    Ok(())
}

/// Appends the failed record of `cell`; says why when it cannot be written.
fn record_failure(
    dir: &Path,
    suite: &Suite,
    meta: &RunMeta,
    cell: &Cell,
    why: &str,
) -> Option<String> {
    let mut r = cell::failed_record(suite, cell, why.to_string());
    r.host = Some(meta.host_tag());
    let path = dir.join(run_dir::RECORDS);
    record::append(&path, &r)
        .err()
        .map(|e| format!("cannot append to {}: {e}", path.display()))
}

/// Repetitions of each cell already recorded as done.
fn done_reps(dir: &Path) -> Result<Vec<BTreeSet<u32>>> {
    let (recs, _) = record::read_all(&dir.join(run_dir::RECORDS))?;
    let mut done: Vec<BTreeSet<u32>> = Vec::new();
    for r in recs.iter().filter(|r| r.status == Status::Ok) {
        if done.len() <= r.cell_index {
            done.resize(r.cell_index + 1, BTreeSet::new());
        }
        if let Some(rep) = r.repetition {
            done[r.cell_index].insert(rep);
        }
    }
    Ok(done)
}

fn git_commit() -> Option<String> {
    option_env!("JOULEBENCH_GIT_COMMIT").map(str::to_string)
}

fn new_run_dir(suite: &Suite, out: &Path, shard: Option<Shard>) -> Result<PathBuf> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let mut base = format!(
        "{}-{}",
        crate::names::component(&suite.name),
        crate::clock::stamp(crate::clock::unix_now() as u64)
    );
    if let Some(s) = shard {
        base.push_str(&format!("-shard-{}-of-{}", s.index, s.count));
    }
    let dir = crate::run_dir::unique_dir(out, &base);
    std::fs::create_dir_all(dir.join("traces"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("the output folder {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(dir)
}

/// Runs (or resumes) a suite. Fails before the first cell when the output folder is not
/// writable or the meters do not answer.
pub fn run(
    suite: &Suite,
    opts: &RunOptions,
    interrupt: &AtomicBool,
    obs: &mut dyn RunObserver,
) -> Result<RunOutcome> {
    // What cells start and leave behind is reparented here, not to init (see `procs`).
    crate::procs::become_subreaper();
    let mut p = plan(suite);
    if p.cells.is_empty() {
        bail!("the suite has no runnable cell (every model/workload pair was skipped)");
    }
    draw_eval_items(&mut p, obs)?;
    fetch_registered(suite, obs)?;
    // Keys the cells will send: known here too, so the failures this process records (a
    // cell's stderr tail) are redacted as well.
    for m in &suite.models {
        if let crate::engine::spec::EngineSpec::Openai(o) = &m.engine
            && let Some(k) = &o.api_key_env
        {
            crate::redact::register_env(k);
        }
    }
    let root = suite
        .powercap_root
        .clone()
        .unwrap_or_else(|| crate::meter::rapl::DEFAULT_POWERCAP_ROOT.into());
    let hw = Hardware::real(root);
    let sel = select(&suite.meter, &hw, suite.tdp_w, EstimateScope::Process)
        .map_err(|e| anyhow::anyhow!("the meters do not answer: {e}"))?;
    if suite.strict && sel.has_estimates() {
        bail!(
            "strict: no measured source covers the CPU ({}); refusing to report estimates",
            sel.unavailable
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let (dir, meta, lock) = match &opts.resume {
        Some(d) => {
            // Before anything is read: another process may be appending to it.
            let lock = run_dir::lock(d)?;
            (d.clone(), resumable(d, suite, opts, obs)?, lock)
        }
        None => {
            let dir = new_run_dir(suite, &opts.out, opts.shard)?;
            let lock = run_dir::lock(&dir)?;
            std::fs::write(dir.join(run_dir::CONFIG), &suite.text)?;
            let meta = new_meta(suite, opts, &sel, p.cells.len(), obs)?;
            write_json(&dir.join(run_dir::META), &meta)?;
            (dir, meta, lock)
        }
    };
    if let Some(n) = lock.note() {
        obs.phase(&n);
    }
    let shard = meta.shard.as_ref().map(|s| Shard {
        index: s.index,
        count: s.count,
    });
    let mine: Vec<&Cell> = p
        .cells
        .iter()
        .filter(|c| shard.is_none_or(|s| s.owns(c.index)))
        .collect();
    drop(sel);
    // Cell processes read their cell from the plan, never planning again themselves.
    write_json(&dir.join(run_dir::PLAN), &p)?;
    let done = done_reps(&dir)?;
    let todo: Vec<(&Cell, Vec<u32>)> = mine
        .iter()
        .map(|&c| {
            let have = done.get(c.index).cloned().unwrap_or_default();
            let missing: Vec<u32> = (1..=suite.repetitions)
                .filter(|r| !have.contains(r))
                .collect();
            (c, missing)
        })
        .filter(|(_, m)| !m.is_empty())
        .collect();
    obs.started(&dir, mine.len(), todo.len());
    if let Some(s) = shard {
        obs.phase(&format!(
            "shard {s}: {} of the plan's {} cells",
            mine.len(),
            p.cells.len()
        ));
    }
    if !dir.join(run_dir::IDLE).exists() && suite.idle_seconds > 0.0 {
        obs.phase(&format!(
            "idle baseline ({} s, nothing loaded)",
            suite.idle_seconds
        ));
        for w in idle::idle_baseline(&dir, suite, &hw, interrupt)? {
            obs.phase(&format!("warning: {w}"));
        }
    }
    let out = match &opts.ab {
        Some(ab) => ab::run_pairs(&dir, suite, &meta, ab, &todo, &opts.exe, interrupt, obs)?,
        None => run_cells(&dir, suite, &meta, &todo, &opts.exe, interrupt, obs)?,
    };
    Ok(RunOutcome {
        dir,
        interrupted: out.interrupted,
        failed_cells: out.failed,
        write_failure: out.write_failure,
        lock,
        ab_stops: out.ab_stops,
    })
}

/// The meta.json of a run folder that `--resume` may continue with this suite and options:
/// not a merged folder, the same kind of job (A/B or not), shard, suite and Hub commits. A torn
/// last record line is cut.
fn resumable(
    d: &Path,
    suite: &Suite,
    opts: &RunOptions,
    obs: &mut dyn RunObserver,
) -> Result<RunMeta> {
    let meta: RunMeta = read_json(&d.join(run_dir::META))?;
    if !meta.parts.is_empty() {
        bail!(
            "{} was merged from {} parts and cannot be resumed: run the missing shard \
             (joulebench run CONFIG --shard I/N) and merge again",
            d.display(),
            meta.parts.len()
        );
    }
    if meta.ab != opts.ab {
        bail!(
            "{} {}; resume it with the command that started it{}",
            d.display(),
            match &meta.ab {
                Some(a) => format!(
                    "is an A/B job ({} vs {}, {} pairs)",
                    a.candidate,
                    a.base,
                    a.pairs_flag()
                ),
                None => "is an ordinary run, not an A/B job".into(),
            },
            match &meta.ab {
                Some(a) => format!(
                    " (joulebench ab CONFIG --base {} --candidate {} --pairs {} \
                     --resume {})",
                    a.base,
                    a.candidate,
                    a.pairs_flag(),
                    d.display()
                ),
                None => " (joulebench run --resume)".into(),
            }
        );
    }
    let had = meta.shard.as_ref().map(|s| Shard {
        index: s.index,
        count: s.count,
    });
    if opts.shard.is_some() && opts.shard != had {
        bail!(
            "{} is {}; resume it without --shard or with the same shard",
            d.display(),
            had.map_or("not a shard".to_string(), |s| format!("shard {s}"))
        );
    }
    if meta.config_hash != suite.hash() {
        bail!(
            "{} was run with a different suite (hash {} vs {}): resume with its own \
             config.toml, or start a new run",
            d.display(),
            &meta.config_hash[..12],
            &suite.hash()[..12]
        );
    }
    same_hub_commits(d, &meta, &hub_sources(suite, obs)?)?;
    if record::repair(&d.join(run_dir::RECORDS))? {
        obs.phase("cut a torn last line from records.jsonl");
    }
    Ok(meta)
}

/// Refuses a resume where the Hub cache now resolves a model to another commit than the run
/// measured.
fn same_hub_commits(
    d: &Path,
    meta: &RunMeta,
    now: &BTreeMap<String, serde_json::Value>,
) -> Result<()> {
    for (name, was) in &meta.model_sources {
        let commit = |v: &serde_json::Value| v["commit"].as_str().unwrap_or("").to_string();
        if let Some(is) = now.get(name)
            && commit(is) != commit(was)
        {
            bail!(
                "{} measured {name} at commit {} of {}; the cache now resolves {} to \
                 {}: resume with that commit (hf:{}@{}/...) or start a new run",
                d.display(),
                commit(was),
                was["repo"].as_str().unwrap_or(""),
                was["revision"].as_str().unwrap_or(""),
                commit(is),
                was["repo"].as_str().unwrap_or(""),
                commit(was)
            );
        }
    }
    Ok(())
}

/// meta.json of a new run: the fingerprint, the sources and RAPL domain map the meters found,
/// the shard, the Hub commits.
fn new_meta(
    suite: &Suite,
    opts: &RunOptions,
    sel: &crate::meter::select::Selection,
    cells: usize,
    obs: &mut dyn RunObserver,
) -> Result<RunMeta> {
    Ok(RunMeta {
        schema_version: RUN_SCHEMA_VERSION,
        suite: suite.name.clone(),
        config_path: std::fs::canonicalize(&suite.path).unwrap_or_else(|_| suite.path.clone()),
        config_hash: suite.hash(),
        started_unix_s: crate::clock::unix_now(),
        joulebench_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(),
        command_line: std::env::args().collect(),
        machine: crate::fingerprint::machine(),
        sources: sel
            .sources
            .iter()
            .map(|s| (s.kind().to_string(), s.describe()))
            .collect(),
        rapl_domains: sel
            .zones
            .iter()
            .map(|z| crate::run_meta::RaplDomain {
                zone: z.zone.clone(),
                name: z.raw_name.clone(),
                domain: z.domain.clone(),
                status: z.status.clone(),
            })
            .collect(),
        unavailable: sel.unavailable.clone(),
        cells,
        repetitions: suite.repetitions,
        shard: opts.shard.map(|s| ShardInfo {
            index: s.index,
            count: s.count,
            plan_cells: cells,
            node_shared: opts.node_shared,
            slurm: SlurmJob::from_env(),
        }),
        parts: Vec::new(),
        missing_cells: Vec::new(),
        merge_warnings: Vec::new(),
        measured_domains: sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| format!("{}/{}", d.source, d.name))
            .collect(),
        allow_partial: suite.allow_partial,
        model_sources: hub_sources(suite, obs)?,
        ab: opts.ab.clone(),
    })
}

/// Runs each cell's missing repetitions in its own process, in order, with the cooldowns;
/// stops at an interrupt or when results cannot be written.
fn run_cells(
    dir: &Path,
    suite: &Suite,
    meta: &RunMeta,
    todo: &[(&Cell, Vec<u32>)],
    exe: &Path,
    interrupt: &AtomicBool,
    obs: &mut dyn RunObserver,
) -> Result<ab::LoopOutcome> {
    let mut failed = Vec::new();
    let mut write_failure: Option<String> = None;
    let mut interrupted = interrupt.load(Ordering::Relaxed);
    for (pos, (cell, reps)) in todo.iter().enumerate() {
        if interrupted {
            break;
        }
        if pos > 0 && suite.cooldown_seconds > 0.0 {
            obs.phase(&format!("cooldown {} s", suite.cooldown_seconds));
            if !crate::clock::sleep_unless(
                Duration::from_secs_f64(suite.cooldown_seconds),
                interrupt,
            ) {
                interrupted = true;
                break;
            }
        }
        obs.cell_started(cell, pos, todo.len());
        match run_child(dir, suite, cell, reps, exe, interrupt)? {
            ChildEnd::Done => obs.cell_finished(cell, None),
            ChildEnd::Interrupted => {
                interrupted = true;
                obs.cell_finished(cell, Some("interrupted"));
            }
            ChildEnd::Failed(why) => {
                if let Some(w) = record_failure(dir, suite, meta, cell, &why) {
                    write_failure = Some(w);
                }
                failed.push(cell.id.clone());
                obs.cell_finished(cell, Some(&why));
            }
            ChildEnd::WriteFailed(why) => {
                obs.cell_finished(cell, Some(&why));
                failed.push(cell.id.clone());
                write_failure = Some(why);
            }
        }
        if let Some(w) = &write_failure {
            obs.phase(&format!(
                "stopping: results cannot be written ({w}); what is recorded is kept, resume \
                 with run --resume once there is space"
            ));
            break;
        }
        interrupted |= interrupt.load(Ordering::Relaxed);
    }
    Ok(ab::LoopOutcome {
        interrupted,
        failed,
        write_failure,
        ab_stops: Vec::new(),
    })
}
