//! `joulebench merge` and `joulebench slurm`.

use crate::cli::{MergeArgs, SlurmArgs};
use anyhow::{Context, Result, bail};
use joulebench::cluster::slurm::{SlurmJobSpec, check_option, submit, write_scripts};
use joulebench::config::Suite;
use joulebench::plan::plan;

/// Runs `joulebench merge`.
pub fn run_merge(a: MergeArgs) -> Result<u8> {
    let out = joulebench::cluster::merge::merge(&a.parts, &a.out, a.allow_partial)?;
    joulebench::report::write_all(&out.dir, out.interrupted)?;
    for w in &out.warnings {
        eprintln!("[joulebench] warning: {w}");
    }
    if !out.missing.is_empty() {
        eprintln!(
            "[joulebench] {} of {} cells MISSING (listed in the report): {}",
            out.missing.len(),
            out.plan_cells,
            out.missing.join(", ")
        );
    }
    if out.fingerprints.len() > 1 {
        eprintln!(
            "[joulebench] warning: the parts ran on {} different machines; charts are drawn per \
             hardware",
            out.fingerprints.len()
        );
    }
    eprintln!(
        "merged {} parts, {} records, {} of {} cells into {}",
        out.parts,
        out.records,
        out.plan_cells - out.missing.len(),
        out.plan_cells,
        out.dir.display()
    );
    Ok(0)
}

fn absolute(p: &std::path::Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// Runs `joulebench slurm`.
pub fn run_slurm(a: SlurmArgs) -> Result<u8> {
    let suite = Suite::load(&a.config)?;
    let cells = plan(&suite).cells.len();
    if cells == 0 {
        bail!("{}: the suite has no runnable cell", a.config.display());
    }
    for (what, v) in [("--partition", &a.partition), ("--time", &a.time)] {
        if let Some(v) = v {
            check_option(what, v)?;
        }
    }
    for e in &a.sbatch_args {
        if !e.starts_with('-') || e.chars().any(char::is_control) {
            bail!("--sbatch-arg {e:?} is not an sbatch option (like --account=lab)");
        }
    }
    if a.shards as usize > cells {
        eprintln!(
            "[joulebench] warning: {} shards for {cells} cells: {} array tasks will have nothing \
             to run",
            a.shards,
            a.shards as usize - cells
        );
    }
    let out = absolute(&a.out)?;
    let base = format!(
        "slurm-{}-{}",
        joulebench::names::component(&suite.name),
        joulebench::clock::stamp(joulebench::clock::unix_now() as u64)
    );
    let job_dir = joulebench::run_dir::unique_dir(&out, &base);
    let spec = SlurmJobSpec {
        suite: suite.name.clone(),
        config_hash: suite.hash(),
        config: absolute(&a.config)?,
        exe: std::env::current_exe().context("cannot find the joulebench binary")?,
        job_dir,
        workdir: std::env::current_dir().context("cannot read the current folder")?,
        shards: a.shards,
        plan_cells: cells,
        partition: a.partition.clone(),
        time: a.time.clone(),
        gpus_per_task: a.gpus_per_task,
        shared: a.shared,
        extra: a.sbatch_args.clone(),
    };
    write_scripts(&spec)?;
    let d = spec.job_dir.display();
    eprintln!("wrote {d}/shards.sbatch, {d}/merge.sbatch and {d}/submit.sh");
    if !a.submit {
        eprintln!("review them, then submit with: {d}/submit.sh");
        println!("{d}");
        return Ok(0);
    }
    let (array, merge) = submit(&spec)?;
    eprintln!(
        "submitted array job {array} ({} shards) and merge job {merge}",
        a.shards
    );
    eprintln!("merged run will be in {d}/job-{array}/merged");
    println!("{array} {merge} {d}/job-{array}/merged");
    Ok(0)
}
