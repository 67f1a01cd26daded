//! `joulebench compare` and `joulebench baseline`.

use crate::cli::{BaselineCommand, CompareArgs, CompareFormat};
use anyhow::{Result, bail};
use joulebench::compare;
use joulebench::metric::Metric;

/// The metrics named on the command line (the compared defaults when none), after checking the
/// threshold and level.
pub(super) fn parse_metrics(names: &[String], threshold: f64, alpha: f64) -> Result<Vec<Metric>> {
    if !((0.0..100.0).contains(&threshold) && alpha > 0.0 && alpha < 1.0) {
        bail!("--threshold takes a percentage in [0, 100) and --alpha a level in (0, 1)");
    }
    if names.is_empty() {
        return Ok(Metric::COMPARED.to_vec());
    }
    let mut v = Vec::new();
    for name in names {
        let Some(m) = Metric::parse(name) else {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            bail!("unknown metric {name:?}; known: {}", known.join(", "));
        };
        v.push(m);
    }
    Ok(v)
}

/// Runs `compare`; exit 0 pass, 1 regression, 2 nothing comparable.
pub fn run_compare(a: CompareArgs) -> Result<u8> {
    let metrics = parse_metrics(&a.metrics, a.threshold, a.alpha)?;
    let base = compare::load_side(&a.base, &a.baselines).map_err(anyhow::Error::msg)?;
    let cand = compare::load_side(&a.cand, &a.baselines).map_err(anyhow::Error::msg)?;
    let c = compare::compare(
        &base,
        &cand,
        &metrics,
        compare::CompareOptions {
            threshold: a.threshold / 100.0,
            alpha: a.alpha,
            allow_hardware_mismatch: a.allow_hardware_mismatch,
            allow_scope_mismatch: a.allow_scope_mismatch,
        },
    );
    let text = match a.format {
        CompareFormat::Text => compare::text(&c),
        CompareFormat::Markdown => compare::markdown(&c),
        CompareFormat::Json => serde_json::to_string_pretty(&c)? + "\n",
    };
    match &a.out {
        Some(p) => joulebench::run_dir::write_atomic(p, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
        None if matches!(a.format, CompareFormat::Json) => super::print_stdout(&text)?,
        None => super::print_text(&text)?,
    }
    if let Some(p) = &a.chart {
        joulebench::run_dir::write_atomic(p, compare::chart_svg(&c).as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(why) = &c.not_comparable {
        eprintln!(
            "joulebench: nothing comparable: {}",
            super::for_terminal(why)
        );
    }
    Ok(c.exit_code())
}

/// Runs `baseline save|list`.
pub fn run_baseline(cmd: BaselineCommand) -> Result<u8> {
    match cmd {
        BaselineCommand::Save {
            run_dir,
            name,
            baselines,
            force,
        } => {
            let dest = joulebench::baseline::save(&run_dir, &name, &baselines, force)?;
            eprintln!(
                "saved {} as baseline {name} in {}",
                run_dir.display(),
                dest.display()
            );
        }
        BaselineCommand::List { baselines } => {
            let mut s = format!(
                "{:<24} {:<17} {:<20} {:>5}  hardware\n",
                "name", "saved (UTC)", "suite", "cells"
            );
            for (i, m) in joulebench::baseline::list(&baselines)? {
                s.push_str(&format!(
                    "{:<24} {:<17} {:<20} {:>5}  {}\n",
                    i.name,
                    joulebench::clock::stamp(i.saved_unix_s as u64),
                    m.suite,
                    m.cells,
                    m.fingerprint()
                ));
            }
            super::print_text(&s)?;
        }
    }
    Ok(0)
}
