//! The answer first: per workload the most efficient cell (and whether it is a clear winner),
//! the spread between the best and the worst, models ranked; per evaluation task what a joule
//! buys (the most correct answers per kJ, the most accurate, and what the difference costs);
//! and the warnings that change what a reader may conclude. Synthetic models (random weights)
//! answer only when nothing else does; beside real models they get a note of their own. Pure:
//! summaries and records in, plain text lines out.

use super::summary::{CellSummary, SummaryDoc};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use crate::stats::median;
use std::collections::BTreeMap;

/// One workload's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub workload: String,
    pub cell: String,
    pub model: String,
    /// Energy per generated token (J), median over repetitions, and its 95% interval.
    pub j_per_token: f64,
    pub ci95: Option<[f64; 2]>,
    /// The runner-up, when its interval overlaps the best one's (no clear winner).
    pub tied_with: Option<String>,
    /// The least efficient cell of the workload and how many times the best it spends.
    pub worst: Option<(String, f64)>,
    pub cells: usize,
    pub estimated: bool,
    /// A synthetic model (random weights): only when no real model answers.
    pub synthetic: bool,
}

/// The headline of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headline {
    pub best: Vec<Best>,
    /// Models from the least to the most energy per token (median over their cells, relative
    /// to the best model): (model, median J/token, times the best).
    pub models: Vec<(String, f64, f64)>,
    /// Warnings that change conclusions, most serious first.
    pub warnings: Vec<String>,
    /// With several workloads: the least and the most energy per token over every usable cell.
    pub overall: Option<Overall>,
    /// Per evaluation task: what a joule buys.
    pub evals: Vec<EvalAnswer>,
    /// Synthetic cells left out of the answers beside real models: what they would have said.
    pub synthetic_note: Option<String>,
}

/// One evaluation task's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalAnswer {
    /// `task (variant, metric)`, and the machine where cells ran on several.
    pub task: String,
    /// The cell with the most correct answers per kJ: (cell, correct/kJ, accuracy).
    pub efficient: (String, f64, f64),
    /// The most accurate cell: (cell, accuracy, its 95% interval).
    pub accurate: (String, f64, [f64; 2]),
    /// When the two differ: what the accuracy difference costs.
    pub cost: Option<Cost>,
    pub cells: usize,
    pub estimated: bool,
}

/// What the most accurate cell's extra accuracy costs over the most efficient one's.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Accuracy points gained (percentage points).
    pub points: f64,
    /// Times the energy per item.
    pub energy_ratio: f64,
    /// Joules per extra correct answer: the difference in energy over the difference in
    /// correct answers on the same items.
    pub j_per_extra_correct: Option<f64>,
    /// McNemar's exact p on the items the two disagree on (None: not the same items).
    pub p: Option<f64>,
}

/// The extremes over every usable cell: (cell, J/token) each, and how many cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Overall {
    pub least: (String, f64),
    pub most: (String, f64),
    pub cells: usize,
}

fn unstable(c: &CellSummary) -> bool {
    c.warnings.iter().any(|w| w.starts_with("UNSTABLE"))
}

/// Repetitions that disagree too much for a median to be more than rough: energy per token
/// with a coefficient of variation above 0.25, or a 95% interval whose ends are more than 2x
/// apart.
fn noisy(c: &CellSummary) -> bool {
    [
        Metric::JPerToken,
        Metric::JPerDecodeToken,
        Metric::JPerRequest,
    ]
    .iter()
    .filter_map(|m| c.metrics.get(m.name()))
    .any(|s| {
        let wide = s
            .bootstrap_ci95
            .or(s.ci95)
            .is_some_and(|[lo, hi]| lo > 0.0 && hi / lo > 2.0);
        s.cv.is_some_and(|cv| cv > 0.25) || wide
    })
}

/// Builds the headline from the summaries and the records they came from.
pub fn headline(doc: &SummaryDoc, records: &[Record]) -> Headline {
    let hardware: std::collections::BTreeSet<Option<&str>> =
        doc.cells.iter().map(|c| c.hardware.as_deref()).collect();
    let mixed = hardware.len() > 1;
    // Cells that answer: finished repetitions, a positive J/token, stable, generation (an
    // evaluation's tokens are read, not generated: it answers in `evals`).
    let answering: Vec<&CellSummary> = doc
        .cells
        .iter()
        .filter(|c| {
            c.repetitions_ok > 0
                && c.eval.is_none()
                && c.energy_per_token_joules
                    .is_some_and(|v| v > 0.0 && v.is_finite())
                && !unstable(c)
        })
        .collect();
    // Synthetic models answer only a run of synthetic models: beside real ones, a note.
    let any_real = answering.iter().any(|c| !c.synthetic);
    let (usable, synthetic): (Vec<&CellSummary>, Vec<&CellSummary>) = answering
        .into_iter()
        .partition(|c| !(any_real && c.synthetic));
    let mut groups: BTreeMap<(usize, String), Vec<&CellSummary>> = BTreeMap::new();
    for c in &usable {
        let mut key = c.workload.clone();
        if mixed {
            key.push_str(&format!(
                " on {}",
                c.hardware.as_deref().unwrap_or("unknown hardware")
            ));
        }
        let first = doc
            .cells
            .iter()
            .position(|d| d.workload == c.workload)
            .unwrap_or(0);
        groups.entry((first, key)).or_default().push(c);
    }
    // The figure and interval the summary table prints in its `mJ/token` column.
    let ci = |c: &CellSummary| c.metric(Metric::JPerToken).and_then(|s| s.bootstrap_ci95);
    let mut best = Vec::new();
    for ((_, workload), mut cs) in groups {
        let v = |c: &CellSummary| {
            c.metric(Metric::JPerToken)
                .map(|s| s.median)
                .or(c.energy_per_token_joules)
                .unwrap_or(f64::INFINITY)
        };
        cs.sort_by(|a, b| v(a).total_cmp(&v(b)).then(a.cell_index.cmp(&b.cell_index)));
        let b = cs[0];
        let b_ci = ci(b);
        let tied_with = cs.get(1).and_then(|r| {
            let (Some([_, bh]), Some([rl, _])) = (b_ci, ci(r)) else {
                return None;
            };
            (rl <= bh).then(|| r.cell.clone())
        });
        let worst = (cs.len() > 1).then(|| {
            let w = cs[cs.len() - 1];
            (w.cell.clone(), v(w) / v(b))
        });
        best.push(Best {
            workload,
            cell: b.cell.clone(),
            model: b.model.clone(),
            j_per_token: v(b),
            ci95: b_ci,
            tied_with,
            worst,
            cells: cs.len(),
            estimated: b.provenance == Some(Provenance::Estimated),
            synthetic: b.synthetic,
        });
    }
    let mut by_model: Vec<(String, f64)> = Vec::new();
    for c in &usable {
        if !by_model.iter().any(|(m, _)| m == &c.model) {
            let v: Vec<f64> = usable
                .iter()
                .filter(|d| d.model == c.model)
                .filter_map(|d| d.energy_per_token_joules)
                .collect();
            by_model.push((c.model.clone(), median(&v)));
        }
    }
    by_model.sort_by(|a, b| a.1.total_cmp(&b.1));
    let top = by_model.first().map_or(1.0, |m| m.1);
    let models = if by_model.len() > 1 && !mixed {
        by_model.into_iter().map(|(m, v)| (m, v, v / top)).collect()
    } else {
        Vec::new()
    };
    let overall = if best.len() > 1 && !mixed {
        let v = |c: &&CellSummary| c.energy_per_token_joules.unwrap_or(f64::INFINITY);
        let lo = usable.iter().min_by(|a, b| v(a).total_cmp(&v(b)));
        let hi = usable.iter().max_by(|a, b| v(a).total_cmp(&v(b)));
        lo.zip(hi).map(|(l, h)| Overall {
            least: (l.cell.clone(), v(l)),
            most: (h.cell.clone(), v(h)),
            cells: usable.len(),
        })
    } else {
        None
    };
    Headline {
        best,
        models,
        warnings: warnings(doc),
        overall,
        evals: eval_answers(doc, records, mixed),
        synthetic_note: synthetic_note(&synthetic),
    }
}

/// The note on synthetic cells left out of the answers: the least energy per token among them.
fn synthetic_note(cells: &[&CellSummary]) -> Option<String> {
    let v = |c: &&&CellSummary| c.energy_per_token_joules.unwrap_or(f64::INFINITY);
    let least = cells.iter().min_by(|a, b| v(a).total_cmp(&v(b)))?;
    Some(format!(
        "{} synthetic cell{} (random weights in real shapes: cost without output) {} left out of \
         the answers; the least energy per token among them is {} at {}.",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" },
        if cells.len() == 1 { "is" } else { "are" },
        least.cell,
        mj(v(&least))
    ))
}

/// Per evaluation task (and variant and metric): the most correct answers per kJ, the most
/// accurate, and what the accuracy difference costs in energy.
fn eval_answers(doc: &SummaryDoc, records: &[Record], mixed: bool) -> Vec<EvalAnswer> {
    let mut groups: BTreeMap<(usize, String), Vec<&CellSummary>> = BTreeMap::new();
    for (i, c) in doc.cells.iter().enumerate() {
        let Some(e) = c.eval.as_ref().filter(|_| c.repetitions_ok > 0) else {
            continue;
        };
        let mut key = format!("{} ({}, {})", e.task, e.variant, e.metric);
        if mixed {
            key.push_str(&format!(
                " on {}",
                c.hardware.as_deref().unwrap_or("unknown hardware")
            ));
        }
        let first = groups
            .keys()
            .find(|(_, k)| *k == key)
            .map_or(i, |(f, _)| *f);
        groups.entry((first, key)).or_default().push(c);
    }
    let med = |c: &CellSummary, m: Metric| c.metric(m).map(|s| s.median).filter(|v| v.is_finite());
    let acc = |c: &CellSummary| c.eval.as_ref().map_or(0.0, |e| e.accuracy);
    let mut out = Vec::new();
    for ((_, task), cs) in groups {
        let with_energy: Vec<&&CellSummary> = cs
            .iter()
            .filter(|c| {
                med(c, Metric::CorrectPerKj).is_some() && med(c, Metric::JPerItem).is_some()
            })
            .collect();
        let Some(eff) = with_energy.iter().copied().max_by(|a, b| {
            let (x, y) = (med(a, Metric::CorrectPerKj), med(b, Metric::CorrectPerKj));
            x.unwrap_or(0.0)
                .total_cmp(&y.unwrap_or(0.0))
                .then(b.cell_index.cmp(&a.cell_index))
        }) else {
            continue;
        };
        let Some(top) = cs.iter().copied().max_by(|a, b| {
            acc(a)
                .total_cmp(&acc(b))
                .then(b.cell_index.cmp(&a.cell_index))
        }) else {
            continue;
        };
        let cost = (top.cell_index != eff.cell_index && acc(top) > acc(eff))
            .then(|| {
                let (je, jt) = (med(eff, Metric::JPerItem)?, med(top, Metric::JPerItem)?);
                let n = top.eval.as_ref()?.n as f64;
                let extra =
                    (top.eval.as_ref()?.correct as f64) - (eff.eval.as_ref()?.correct as f64);
                Some(Cost {
                    points: (acc(top) - acc(eff)) * 100.0,
                    energy_ratio: jt / je,
                    j_per_extra_correct: (extra > 0.0
                        && top.eval.as_ref()?.n == eff.eval.as_ref()?.n)
                        .then(|| (jt - je) * n / extra),
                    p: paired_p(records, eff.cell_index, top.cell_index),
                })
            })
            .flatten();
        let e = top.eval.as_ref().expect("grouped cells have eval figures");
        out.push(EvalAnswer {
            task,
            efficient: (
                eff.cell.clone(),
                med(eff, Metric::CorrectPerKj).unwrap_or(0.0),
                acc(eff),
            ),
            accurate: (top.cell.clone(), e.accuracy, e.accuracy_ci),
            cost,
            cells: cs.len(),
            estimated: eff.provenance == Some(Provenance::Estimated),
        });
    }
    out
}

/// McNemar's exact p between two evaluation cells on the items both scored (their first good
/// repetitions); None when they did not score the same items.
fn paired_p(records: &[Record], a: usize, b: usize) -> Option<f64> {
    let items = |cell: usize| -> Option<BTreeMap<u64, bool>> {
        let e = records
            .iter()
            .find(|r| r.cell_index == cell && r.status == Status::Ok && r.eval.is_some())?
            .eval
            .as_ref()?;
        Some(e.items.iter().map(|i| (i.doc_id, i.correct)).collect())
    };
    let (x, y) = (items(a)?, items(b)?);
    if x.len() != y.len() || x.keys().any(|d| !y.contains_key(d)) {
        return None;
    }
    let lost = x.iter().filter(|(d, r)| **r && !y[*d]).count();
    let won = x.iter().filter(|(d, r)| !**r && y[*d]).count();
    Some(crate::stats::mcnemar_exact(lost, won))
}

/// What a reader must know before drawing a conclusion.
fn warnings(doc: &SummaryDoc) -> Vec<String> {
    let n = doc.cells.len();
    let mut w = Vec::new();
    if doc.interrupted {
        w.push("The run was interrupted: only the repetitions that finished are counted.".into());
    }
    let count = |p: Provenance| doc.cells.iter().filter(|c| c.provenance == Some(p)).count();
    let (est, measured) = (count(Provenance::Estimated), count(Provenance::Measured));
    if est > 0 && measured == 0 {
        w.push(
            "Every energy figure is ESTIMATED (no sensor: a CPU-time model). Compare them with \
             each other only, never with measured figures."
                .into(),
        );
    } else if est > 0 {
        w.push(format!(
            "{est} of {n} cells have ESTIMATED energy (no sensor) next to {measured} with \
             measured energy: do not rank those against each other."
        ));
    }
    let contaminated: Vec<&str> = doc
        .cells
        .iter()
        .filter(|c| {
            c.warnings
                .iter()
                .any(|w| w.contains("its energy is contaminated"))
        })
        .map(|c| c.cell.as_str())
        .collect();
    if !contaminated.is_empty() {
        let (reps, total, worst) = contamination(doc);
        w.push(format!(
            "{} of {n} cells ran while other processes used much of the machine ({reps} of \
             {total} repetitions; at worst {worst:.0}% of its CPUs): their energy is \
             CONTAMINATED (it includes other work): {}.",
            contaminated.len(),
            list(&contaminated)
        ));
    }
    for inv in thread_inversions(doc) {
        w.push(inv);
    }
    let noisy: Vec<&str> = doc
        .cells
        .iter()
        .filter(|c| !unstable(c) && noisy(c))
        .map(|c| c.cell.as_str())
        .collect();
    if !noisy.is_empty() {
        w.push(format!(
            "{} NOISY (the repetitions' energy per token or per request varies by more \
             than a quarter, or the 95% interval spans more than 2x): read those medians as \
             rough: {}.",
            cells(noisy.len(), "are"),
            list(&noisy)
        ));
    }
    let failed: Vec<&str> = doc
        .cells
        .iter()
        .filter(|c| c.repetitions_ok == 0)
        .map(|c| c.cell.as_str())
        .collect();
    if !failed.is_empty() {
        w.push(format!(
            "{} of {n} cells have no finished repetition (failed): {}.",
            failed.len(),
            list(&failed)
        ));
    }
    let partial: Vec<&str> = doc
        .cells
        .iter()
        .filter(|c| c.repetitions_ok > 0 && !c.failures.is_empty())
        .map(|c| c.cell.as_str())
        .collect();
    if !partial.is_empty() {
        w.push(format!(
            "{} lost repetitions to failures: {}.",
            cells(partial.len(), ""),
            list(&partial)
        ));
    }
    let unst: Vec<&str> = doc
        .cells
        .iter()
        .filter(|c| unstable(c))
        .map(|c| c.cell.as_str())
        .collect();
    if !unst.is_empty() {
        w.push(format!(
            "{} UNSTABLE (short steady window or batch not reached) and are left out \
             of the answers above: {}.",
            cells(unst.len(), "are"),
            list(&unst)
        ));
    }
    let synth = doc.cells.iter().filter(|c| c.synthetic).count();
    if synth > 0 {
        w.push(format!(
            "{synth} of {n} cells ran synthetic models (random weights in real shapes): their \
             energy is the shape's, not a real model's output quality."
        ));
    }
    let hardware: std::collections::BTreeSet<Option<&str>> =
        doc.cells.iter().map(|c| c.hardware.as_deref()).collect();
    if hardware.len() > 1 {
        w.push(format!(
            "Cells ran on {} different machines: answers are given per machine.",
            hardware.len()
        ));
    }
    for x in &doc.warnings {
        if x.contains("MISSING") || x.contains("different hardware") || x.contains("shared") {
            w.push(x.clone());
        }
    }
    w
}

/// "1 cell is" / "3 cells are" (`verb` "are"), or "1 cell" / "3 cells" (`verb` "").
/// The contaminated repetitions, every finished repetition, and the largest share of the
/// machine other processes used in one repetition (percent, at most 100), from the cells'
/// warnings (`... (55% of the machine) during this repetition: its energy is contaminated
/// (repetition 1, 3)`).
fn contamination(doc: &SummaryDoc) -> (usize, usize, f64) {
    let (mut reps, mut worst) = (0, 0f64);
    for c in &doc.cells {
        let mut hit = std::collections::BTreeSet::new();
        for w in c
            .warnings
            .iter()
            .filter(|w| w.contains("its energy is contaminated"))
        {
            if let Some(p) = w
                .split("% of the machine")
                .next()
                .and_then(|s| s.rsplit('(').next())
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                worst = worst.max(p.min(100.0));
            }
            let which = w.rsplit('(').next().unwrap_or("");
            if which.starts_with("every repetition") {
                hit.extend(1..=c.repetitions_ok as u32);
            } else if let Some(list) = which.strip_prefix("repetition ") {
                hit.extend(
                    list.trim_end_matches(')')
                        .split(", ")
                        .filter_map(|r| r.parse::<u32>().ok()),
                );
            } else {
                // One repetition's warning without the summary's note of which.
                hit.insert(0);
            }
        }
        reps += hit.len().min(c.repetitions_ok.max(1));
    }
    let total = doc.cells.iter().map(|c| c.repetitions_ok).sum();
    (reps, total, worst)
}

/// A cell that decodes slower with more threads than the same model and workload with fewer
/// (median decode tokens/s lower by more than 5%): a busy machine during one of them, or a
/// model too small to gain from threads. Synthetic models (flagged on their own) are left out.
fn thread_inversions(doc: &SummaryDoc) -> Vec<String> {
    let speed = |c: &CellSummary| {
        c.metric(Metric::DecodeTokensPerS)
            .map(|s| s.median)
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let mut out = Vec::new();
    for (i, a) in doc.cells.iter().enumerate() {
        for b in &doc.cells[i + 1..] {
            let (Some(ea), Some(eb)) = (&a.engine, &b.engine) else {
                continue;
            };
            if a.synthetic
                || b.synthetic
                || a.model != b.model
                || a.workload != b.workload
                || a.hardware != b.hardware
                || ea.device != eb.device
                || ea.threads == eb.threads
            {
                continue;
            }
            let (few, many) = if ea.threads < eb.threads {
                (a, b)
            } else {
                (b, a)
            };
            let (Some(sf), Some(sm)) = (speed(few), speed(many)) else {
                continue;
            };
            if sm < 0.95 * sf {
                let t = |c: &CellSummary| c.engine.as_ref().map_or(0, |e| e.threads);
                out.push(format!(
                    "THREADS INVERTED: {} decoded slower at {} threads than {} at {} ({:.1} vs \
                     {:.1} tokens/s): the machine was busy during one of them, or the model is \
                     too small to gain from more threads; do not read a thread count's effect \
                     from these two.",
                    many.cell,
                    t(many),
                    few.cell,
                    t(few),
                    sm,
                    sf
                ));
            }
        }
    }
    out
}

fn cells(n: usize, verb: &str) -> String {
    match (n, verb) {
        (1, "are") => "1 cell is".into(),
        (1, _) => "1 cell".into(),
        (n, "") => format!("{n} cells"),
        (n, v) => format!("{n} cells {v}"),
    }
}

fn list(v: &[&str]) -> String {
    if v.len() <= 5 {
        v.join(", ")
    } else {
        format!("{} and {} more", v[..5].join(", "), v.len() - 5)
    }
}

/// `1.23 mJ/token` style text for a J value.
pub fn mj(v: f64) -> String {
    format!("{} mJ/token", super::charts::style::tick(v * 1e3))
}

impl Headline {
    /// The line across workloads, when there are several.
    pub fn overall_sentence(&self) -> Option<String> {
        let Overall {
            least: (lc, lv),
            most: (hc, hv),
            cells: n,
        } = self.overall.as_ref()?;
        Some(format!(
            "Across all {n} cells (different workloads: prompts and lengths differ, compare with \
             care): the least energy per token is {lc} at {}, the most {hc} at {} ({:.2}x).",
            mj(*lv),
            mj(*hv),
            hv / lv
        ))
    }
}

impl EvalAnswer {
    /// The answer as one sentence.
    pub fn sentence(&self) -> String {
        let pct = |a: f64| format!("{:.1}%", a * 100.0);
        let (ec, ekj, eacc) = &self.efficient;
        let (tc, tacc, [lo, hi]) = &self.accurate;
        let est = if self.estimated {
            " (ESTIMATED energy)"
        } else {
            ""
        };
        let mut s = format!("{}: ", self.task);
        if ec == tc {
            s.push_str(&format!(
                "{ec} is both the most accurate ({}, 95% interval {}-{}) and gives the most \
                 correct answers per kJ ({}){est}",
                pct(*tacc),
                pct(*lo),
                pct(*hi),
                super::charts::style::tick(*ekj)
            ));
        } else {
            s.push_str(&format!(
                "the most correct answers per kJ: {ec} ({} at {} accuracy){est}; the most \
                 accurate: {tc} ({}, 95% interval {}-{})",
                super::charts::style::tick(*ekj),
                pct(*eacc),
                pct(*tacc),
                pct(*lo),
                pct(*hi)
            ));
            if let Some(c) = &self.cost {
                s.push_str(&format!(
                    ", {:.1} points more accurate for {:.2}x the energy per item",
                    c.points, c.energy_ratio
                ));
                if let Some(j) = c.j_per_extra_correct {
                    s.push_str(&format!(
                        " ({} J per extra correct answer)",
                        super::charts::style::tick(j)
                    ));
                }
                match c.p {
                    Some(p) if p >= 0.05 => s.push_str(&format!(
                        "; on these items the difference is not significant (McNemar p = {p:.2})"
                    )),
                    Some(p) if p < 0.001 => s.push_str(" (McNemar p < 0.001)"),
                    Some(p) => s.push_str(&format!(" (McNemar p = {p:.3})")),
                    None => {}
                }
            }
        }
        s.push_str(&format!(" [{} cells].", self.cells));
        s
    }
}

impl Best {
    /// The answer as one sentence.
    pub fn sentence(&self) -> String {
        let mut s = format!(
            "{}: {} at {}",
            self.workload,
            self.cell,
            mj(self.j_per_token)
        );
        if let Some([a, b]) = self.ci95 {
            s.push_str(&format!(
                " (95% interval {}-{})",
                super::charts::style::tick(a * 1e3),
                super::charts::style::tick(b * 1e3)
            ));
        }
        if self.estimated {
            s.push_str(", ESTIMATED");
        }
        if self.synthetic {
            s.push_str(", a SYNTHETIC model (random weights)");
        }
        match &self.worst {
            Some((w, r)) => s.push_str(&format!(
                "; the least efficient of {} cells, {w}, spends {r:.2}x as much",
                self.cells
            )),
            None => s.push_str(" (the only cell)"),
        }
        if let Some(t) = &self.tied_with {
            s.push_str(&format!(". Not a clear winner: {t}'s interval overlaps it"));
        }
        s.push('.');
        s
    }
}

/// The headline as Markdown (escaped), for the top of report.md.
pub fn markdown(h: &Headline) -> String {
    use super::markdown::md_escape;
    let mut s = String::from("## Headline\n\n");
    if h.best.is_empty() && h.evals.is_empty() {
        s.push_str("No cell has a usable energy per token (see the warnings).\n");
    }
    for b in &h.best {
        s.push_str(&format!("- {}\n", md_escape(&b.sentence())));
    }
    if !h.evals.is_empty() {
        s.push_str("\nWhat a joule buys:\n\n");
        for e in &h.evals {
            s.push_str(&format!("- {}\n", md_escape(&e.sentence())));
        }
    }
    if let Some(n) = &h.synthetic_note {
        s.push_str(&format!("\n{}\n", md_escape(n)));
    }
    if let Some(o) = h.overall_sentence() {
        s.push_str(&format!("\n{}\n", md_escape(&o)));
    }
    if !h.models.is_empty() {
        let ranked: Vec<String> = h
            .models
            .iter()
            .map(|(m, v, r)| format!("{m} {} ({r:.2}x)", mj(*v)))
            .collect();
        s.push_str(&format!(
            "\nModels, least energy per token first: {}.\n",
            md_escape(&ranked.join("; "))
        ));
    }
    if !h.warnings.is_empty() {
        s.push_str("\n**Before drawing conclusions:**\n\n");
        for w in &h.warnings {
            s.push_str(&format!("- {}\n", md_escape(w)));
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_stay_short() {
        assert_eq!(list(&["a", "b"]), "a, b");
        assert_eq!(
            list(&["a", "b", "c", "d", "e", "f", "g"]),
            "a, b, c, d, e and 2 more"
        );
        assert_eq!(mj(0.00125), "1.25 mJ/token");
    }
}
