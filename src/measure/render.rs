//! Human-readable rendering of a `measure` result.

use super::result::MeasureResult;
use crate::meter::Provenance;
use std::fmt::Write;

fn num(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.prec$}"))
}

/// Renders the result as a table with totals, idle, statistics and warnings.
pub fn render(r: &MeasureResult) -> String {
    let mut s = String::new();
    let status = match (r.exit_code, r.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "not run".into(),
    };
    let _ = writeln!(
        s,
        "joulebench measure: {}\n  {} run(s){}, {status}, duration {:.4} s{}",
        r.command.join(" "),
        r.runs,
        if r.warmup > 0 {
            format!(" after {} warmup", r.warmup)
        } else {
            String::new()
        },
        r.duration_s,
        if r.runs > 1 { " (median)" } else { "" },
    );
    let _ = writeln!(
        s,
        "  {:<9} {:<16} {:>12} {:>10} {:>10} {:>12} {:>11}  {:<10} method",
        "source", "domain", "energy J", "avg W", "peak W", "net J", "+/- J", "provenance"
    );
    for d in &r.domains {
        let _ = writeln!(
            s,
            "  {:<9} {:<16} {:>12} {:>10} {:>10} {:>12} {:>11}  {:<10} {}, every {} ms",
            d.source.as_str(),
            d.name,
            num(d.energy_j, 4),
            num(d.avg_power_w, 3),
            num(d.peak_power_w, 3),
            d.net_energy_j.map_or("-".into(), |v| format!("{v:.4}")),
            num(d.uncertainty_j, 4),
            d.provenance.to_string(),
            d.method,
            d.interval_ms,
        );
    }
    let t = &r.totals;
    if let Some(basis) = &t.cpu_basis {
        let label = if t.cpu_provenance == Some(Provenance::Estimated) {
            " ESTIMATED"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  CPU total: {} J{label} ({basis}){}",
            num(t.cpu_j, 4),
            t.cpu_net_j
                .map_or(String::new(), |n| format!(", net of idle {n:.4} J"))
        );
    }
    if t.gpu_j.is_some() {
        let _ = writeln!(
            s,
            "  GPU total: {} J{}",
            num(t.gpu_j, 4),
            t.gpu_net_j
                .map_or(String::new(), |n| format!(", net of idle {n:.4} J"))
        );
    }
    if let Some(p) = t.psys_j {
        let _ = writeln!(s, "  platform (psys, on its own, not added): {p:.4} J");
    }
    if let Some(i) = &r.idle {
        let _ = writeln!(
            s,
            "  idle over {:.2} s: CPU {} W{}",
            i.duration_s,
            num(i.cpu_w, 3),
            i.gpu_w.map_or(String::new(), |g| format!(", GPU {g:.3} W"))
        );
    }
    if r.runs > 1 {
        for key in ["duration_s", "cpu_j", "gpu_j"] {
            if let Some(st) = r.statistics.get(key) {
                let _ = writeln!(
                    s,
                    "  {key}: median {:.4}, mean {:.4}, sd {}, cv {}, 95% CI {}",
                    st.median,
                    st.mean,
                    num(st.sd, 4),
                    st.cv.map_or("n/a".into(), |c| format!("{:.2}%", c * 100.0)),
                    st.ci95
                        .map_or("n/a".into(), |[a, b]| format!("[{a:.4}, {b:.4}]")),
                );
            }
        }
    }
    for d in r.domains.iter().filter(|d| d.note.is_some()) {
        let _ = writeln!(
            s,
            "  note {}/{}: {}",
            d.source,
            d.name,
            d.note.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        s,
        "  meter: {} samples every {} ms, sampler used {:.3}% of one core",
        r.meter.samples,
        r.meter.interval_ms,
        r.meter.sampler_cpu_fraction * 100.0
    );
    for u in &r.meter.unavailable {
        let _ = writeln!(s, "  {u}");
    }
    for w in &r.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    s
}
