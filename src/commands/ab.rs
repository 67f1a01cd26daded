//! `joulebench ab`: the two variants of a suite alternately in one job, then the paired verdict.

use super::run::{Progress, interrupt_flag};
use crate::cli::{AbArgs, CompareFormat};
use anyhow::{Context, Result, bail};
use joulebench::config::Suite;
use joulebench::run_dir::{read_json, write_atomic};
use joulebench::run_meta::{AbSettings, RunMeta, SeqSettings};
use joulebench::runner::RunOptions;

/// Runs `ab`; exit 0 pass, 1 regression, 2 nothing conclusive or not comparable, 130
/// interrupted.
pub fn run_ab(a: AbArgs) -> Result<u8> {
    let metrics = super::compare::parse_metrics(&a.metrics, a.threshold, a.alpha)?;
    let fixed: Option<u32> = match a.pairs.trim() {
        "auto" => None,
        n => match n.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => bail!(
                "--pairs takes auto or 1 to 10000 (5 complete pairs are needed for a fixed \
                 verdict), not {n:?}"
            ),
        },
    };
    if !(2..=10_000).contains(&a.max_pairs) {
        bail!("--max-pairs takes 2 to 10000");
    }
    if let Some(m) = a.max_minutes
        && !(m.is_finite() && m > 0.0 && m <= 100_000.0)
    {
        bail!("--max-minutes takes a positive number of minutes, not {m}");
    }
    let mut suite = match (&a.config, &a.resume) {
        (Some(c), _) => Suite::load(c)?,
        (None, Some(r)) => {
            let meta: RunMeta = read_json(&r.join("meta.json"))?;
            let text = std::fs::read_to_string(r.join("config.toml"))
                .with_context(|| format!("cannot read {}", r.join("config.toml").display()))?;
            Suite::parse(&meta.config_path, &text)?
        }
        (None, None) => bail!("give a suite file, or --resume RUN_DIR"),
    };
    if a.base == a.candidate {
        eprintln!(
            "[joulebench] base and candidate are the same model ({}): an A-vs-A job measures \
             the gate's own false alarms",
            a.base
        );
    }
    let names: Vec<String> = suite.models.iter().map(|m| m.name()).collect();
    for (flag, want) in [("--base", &a.base), ("--candidate", &a.candidate)] {
        if !names.contains(want) {
            bail!(
                "{flag} {want:?} is not a model of the suite {}; its models: {}",
                suite.name,
                names.join(", ")
            );
        }
    }
    let base = suite
        .models
        .iter()
        .find(|m| m.name() == a.base)
        .cloned()
        .context("base model")?;
    let mut cand = suite
        .models
        .iter()
        .find(|m| m.name() == a.candidate)
        .cloned()
        .context("candidate model")?;
    if a.base == a.candidate {
        // The same model twice: the candidate is a copy under its own name.
        cand.alias = Some(format!("{}~candidate", a.base));
    }
    suite.models = vec![base.clone(), cand.clone()];
    let sequential = match fixed {
        Some(_) => None,
        None => {
            let groups: std::collections::BTreeSet<(String, String)> =
                joulebench::plan::plan(&suite)
                    .cells
                    .iter()
                    .map(|c| (c.profile.name.clone(), c.workload.name.clone()))
                    .collect();
            let gated = metrics
                .iter()
                .filter(|m| **m != joulebench::metric::Metric::Accuracy)
                .count();
            Some(SeqSettings {
                max_pairs: a.max_pairs,
                max_minutes: a.max_minutes,
                threshold: a.threshold / 100.0,
                alpha: a.alpha,
                metrics: metrics.iter().map(|m| m.name().to_string()).collect(),
                rows: (groups.len() * gated).max(1),
            })
        }
    };
    let mut settings = AbSettings {
        base: base.name(),
        candidate: cand.name(),
        pairs: fixed.unwrap_or(a.max_pairs),
        sequential,
    };
    // A sequential job resumes with the settings it started with: the same sequence goes on.
    if let Some(r) = &a.resume
        && let Ok(meta) = read_json::<RunMeta>(&r.join("meta.json"))
        && let Some(old) = meta.ab
        && old.sequential.is_some()
        && settings.sequential.is_some()
        && old != settings
    {
        eprintln!(
            "[joulebench] resuming the sequential job with the settings it started with \
             (at most {} pairs, threshold {}%, alpha {})",
            old.pairs,
            old.sequential.as_ref().map_or(0.0, |s| s.threshold * 100.0),
            old.sequential.as_ref().map_or(0.0, |s| s.alpha)
        );
        settings = old;
    }
    suite.repetitions = settings.pairs;
    let interrupt = interrupt_flag()?;
    let opts = RunOptions {
        out: a.out.clone(),
        resume: a.resume.clone(),
        exe: std::env::current_exe().context("cannot find the joulebench binary")?,
        shard: None,
        node_shared: false,
        ab: Some(settings.clone()),
    };
    let mut progress = Progress { bar: None };
    let out = joulebench::runner::run(&suite, &opts, &interrupt, &mut progress)?;
    if let Err(e) = joulebench::report::write_all(&out.dir, out.interrupted) {
        eprintln!("[joulebench] report: {e:#}");
    }
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let (threshold, alpha, metrics) = match &settings.sequential {
        Some(s) => (
            s.threshold,
            s.alpha,
            s.metrics
                .iter()
                .filter_map(|n| joulebench::metric::Metric::parse(n))
                .collect(),
        ),
        None => (a.threshold / 100.0, a.alpha, metrics),
    };
    let (mut rep, series) =
        joulebench::ab::analyze(&out.dir, &settings, &metrics, threshold, alpha)
            .map_err(anyhow::Error::msg)?;
    rep.stops = joulebench::ab::stops(&out.dir, &settings, &out.ab_stops);
    if let Some(w) = &out.write_failure {
        rep.warnings.push(format!("stopped: {w}"));
    }
    if out.interrupted {
        rep.warnings.push(format!(
            "interrupted: resume with joulebench ab --base {} --candidate {} --pairs {} --resume {}",
            a.base,
            a.candidate,
            if settings.sequential.is_some() {
                "auto".to_string()
            } else {
                settings.pairs.to_string()
            },
            out.dir.display()
        ));
    }
    let json = serde_json::to_string_pretty(&rep)? + "\n";
    let md = joulebench::ab::markdown(&rep);
    write_atomic(&out.dir.join("ab.json"), json.as_bytes())?;
    write_atomic(&out.dir.join("ab.md"), md.as_bytes())?;
    let charts = out.dir.join("charts");
    std::fs::create_dir_all(&charts)?;
    write_atomic(
        &charts.join("ab-pairs.svg"),
        joulebench::ab::chart_svg(&rep, &series).as_bytes(),
    )?;
    match a.format {
        CompareFormat::Json => super::print_stdout(&json)?,
        CompareFormat::Markdown => super::print_stdout(&md)?,
        CompareFormat::Text => super::print_text(&joulebench::ab::text(&rep))?,
    }
    eprintln!("results in {}", out.dir.display());
    Ok(if out.interrupted {
        130
    } else {
        rep.exit_code()
    })
}
