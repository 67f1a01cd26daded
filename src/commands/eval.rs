//! `joulebench eval`.

use super::{EXIT_CANNOT_MEASURE, Progress, print_stdout};
use crate::cli::EvalArgs;
use anyhow::{Context, Result};
use joulebench::engine::text::eval::TaskRef;
use joulebench::eval::session::{EvalOptions, EvalResult, evaluate};
use joulebench::meter::select::Hardware;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Runs `joulebench eval`: exit 0, 130 when interrupted (what was scored is reported), 2 when
/// nothing could be measured or a result could not be written.
pub fn run_eval(a: EvalArgs) -> Result<u8> {
    if let Some(t) = a.threads {
        joulebench::engine::configure_threads(t as usize);
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupt))
            .context("cannot install the Ctrl-C handler")?;
    }
    let task = TaskRef {
        variant: a
            .variant
            .clone()
            .unwrap_or_else(|| TaskRef::default_variant(&a.task).to_string()),
        task: a.task.clone(),
    };
    let opts = EvalOptions {
        model: a.model.clone(),
        task,
        items: a.items.map(|n| n as usize),
        seed: a.seed,
        metric: a.metric,
        meter: a.meter.clone(),
        interval: Duration::from_secs_f64(a.interval_ms / 1e3),
        tdp_w: a.sensors.tdp_w,
        strict: a.strict,
        allow_partial: a.allow_partial,
        idle: Duration::from_secs_f64(a.idle_s),
        offline: a.offline,
    };
    let hw = Hardware::real(a.sensors.powercap_root.clone());
    let r = evaluate(&opts, &hw, &interrupt, &mut Progress)?;
    let json = serde_json::to_string_pretty(&r)? + "\n";
    let mut failed = false;
    match a.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => print_stdout(&json)?,
        Some(p) => {
            if let Err(e) = joulebench::run_dir::write_atomic(p, json.as_bytes()) {
                eprintln!("error: cannot write {}: {e}", p.display());
                failed = true;
            }
        }
        None => {}
    }
    eprint!("{}", render(&r));
    Ok(if failed {
        EXIT_CANNOT_MEASURE
    } else if r.interrupted {
        130
    } else {
        0
    })
}

/// The result for a terminal.
fn render(r: &EvalResult) -> String {
    let est = match r.energy.provenance {
        Some(joulebench::meter::Provenance::Estimated) => " [ESTIMATED]",
        _ => "",
    };
    let j = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.4} {unit}"));
    let mut s = format!(
        "{} on {} {} ({} items, {}): accuracy {:.1}% [{:.1}, {:.1}] (chance {})\n",
        r.model.id,
        r.task,
        r.variant,
        r.n,
        r.metric,
        r.accuracy * 100.0,
        r.accuracy_ci[0] * 100.0,
        r.accuracy_ci[1] * 100.0,
        r.chance
            .map_or("n/a".into(), |c| format!("{:.1}%", c * 100.0)),
    );
    s.push_str(&format!(
        "energy {}{est}: {} per item, {} per correct answer, {} correct per kJ, accuracy per \
         joule {}; {:.2} items/s\n",
        j(r.energy.total_j, "J"),
        j(r.j_per_item, "J"),
        j(r.j_per_correct, "J"),
        r.correct_per_kj.map_or("n/a".into(), |v| format!("{v:.2}")),
        r.accuracy_per_joule
            .map_or("n/a".into(), |v| format!("{v:.4}")),
        r.items_per_s
    ));
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    super::for_terminal(&s)
}
