//! `joulebench frontier RUN_DIR`: the cheapest configuration meeting the deadlines, per model.

use crate::cli::{CompareFormat, FrontierArgs};
use anyhow::{Context, Result, bail};
use joulebench::frontier::{self, Slo};

pub fn run_frontier(a: FrontierArgs) -> Result<u8> {
    let records = a.dir.join("records.jsonl");
    if !records.exists() {
        bail!(
            "{} is not a run folder: records.jsonl is missing",
            a.dir.display()
        );
    }
    let (recs, _) = joulebench::record::read_all(&records)
        .with_context(|| format!("cannot read {}", records.display()))?;
    let suite_text = std::fs::read_to_string(a.dir.join(joulebench::run_dir::CONFIG)).ok();
    let from_suite = match &suite_text {
        Some(t) => Slo::from_suite_text(t).map_err(|e| {
            anyhow::anyhow!("{}: {e}", a.dir.join(joulebench::run_dir::CONFIG).display())
        })?,
        None => None,
    }
    .unwrap_or_default();
    let slo = Slo {
        itl_p90_ms: a.itl_p90_ms.or(from_suite.itl_p90_ms),
        ttft_p90_ms: a.ttft_p90_ms.or(from_suite.ttft_p90_ms),
        tpot_p50_ms: a.tpot_p50_ms.or(from_suite.tpot_p50_ms),
    };
    slo.check().map_err(anyhow::Error::msg)?;
    let points = frontier::points(&recs);
    if points.is_empty() {
        bail!(
            "{}: no completed repetition to choose from",
            records.display()
        );
    }
    let choices = frontier::analyze(&points, &slo);
    let chart = a
        .chart
        .clone()
        .unwrap_or_else(|| a.dir.join("charts").join("frontier.svg"));
    if let Some(parent) = chart.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&chart, frontier::chart_svg(&points, &choices, &slo))
        .with_context(|| format!("cannot write {}", chart.display()))?;
    let text = match a.format {
        CompareFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({"slo": slo, "models": choices}))?
                + "\n"
        }
        _ => frontier::markdown(&choices, &slo),
    };
    match &a.out {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => super::print_stdout(&text)?,
    }
    eprintln!("chart at {}", chart.display());
    Ok(if choices.iter().all(|c| c.best.is_some()) {
        0
    } else {
        1
    })
}
