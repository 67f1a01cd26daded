//! What a joule buys: accuracy on an evaluation task and the energy of every item, from the
//! meters read at each item's start (so the items' energies add up to the window's), and
//! `joulebench eval` (`session`), one task on one model metered like `measure`.

pub mod session;

use crate::engine::driver::{ItemOutput, Output};
use crate::engine::text::eval::{TaskRef, wilson};
use crate::meter::Provenance;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::Recording;
use crate::meter::totals::totals_with;
use crate::record::{EvalFigures, EvalItem};

/// The energy (CPU + GPU, joules) over marks `a`..`b` of `rec`, where every domain the total
/// needs was read at both edges.
pub fn window_j(rec: &Recording, a: usize, b: usize, allow_partial: bool) -> Option<f64> {
    let w = rec.window(a, b);
    let per: Vec<Option<f64>> = w
        .domains
        .iter()
        .map(|d| d.energy_uj.is_finite().then_some(d.energy_uj / 1e6))
        .collect();
    totals_with(&rec.domains, &per, allow_partial)
        .cpu_plus_gpu()
        .map(|j| j.0)
}

/// Each item's span (seconds) and energy: from its start mark to the next item's start (the
/// last item: to its end), so the spans tile the pass and their energies add up to its
/// window's. `outputs` are requests `first..` of `round`.
pub fn item_energy(
    rec: &Recording,
    round: Round,
    first: usize,
    n: usize,
    allow_partial: bool,
) -> Vec<(f64, Option<f64>)> {
    let mark = |i: usize, phase: Phase| rec.mark_index(Mark::request(round, first + i, phase));
    (0..n)
        .map(|i| {
            let a = mark(i, Phase::Start);
            let b = if i + 1 < n {
                mark(i + 1, Phase::Start)
            } else {
                mark(i, Phase::End)
            };
            match (a, b) {
                (Some(a), Some(b)) if b > a => {
                    let s = rec.marks[b].t_ns.saturating_sub(rec.marks[a].t_ns) as f64 / 1e9;
                    (s, window_j(rec, a, b, allow_partial))
                }
                _ => (0.0, None),
            }
        })
        .collect()
}

/// An evaluation's figures from its items and their spans: accuracy with its Wilson
/// interval, and the energy per item, per correct answer and per kJ where every item's energy
/// was measured.
pub fn figures(
    task: &TaskRef,
    metric: &str,
    items: &[&ItemOutput],
    spans: &[(f64, Option<f64>)],
    provenance: Option<Provenance>,
) -> EvalFigures {
    let n = items.len();
    let correct = items.iter().filter(|i| i.correct).count();
    let accuracy = if n > 0 {
        correct as f64 / n as f64
    } else {
        0.0
    };
    let mc: Vec<usize> = items
        .iter()
        .filter(|i| !i.loglik.is_empty())
        .map(|i| i.loglik.len())
        .collect();
    let chance = (!mc.is_empty() && mc.len() == n)
        .then(|| mc.iter().map(|c| 1.0 / *c as f64).sum::<f64>() / n as f64);
    let total_j = (n > 0)
        .then(|| spans.iter().map(|s| s.1).sum::<Option<f64>>())
        .flatten();
    let j_per_item = total_j.map(|t| t / n as f64);
    let secs: f64 = spans.iter().map(|s| s.0).sum();
    EvalFigures {
        task: task.task.clone(),
        variant: task.variant.clone(),
        metric: metric.to_string(),
        n,
        correct,
        accuracy,
        accuracy_ci: wilson(correct, n).unwrap_or([0.0, 1.0]),
        chance,
        total_j,
        j_per_item,
        j_per_correct: total_j.filter(|_| correct > 0).map(|t| t / correct as f64),
        correct_per_kj: total_j
            .filter(|t| *t > 0.0)
            .map(|t| correct as f64 / t * 1e3),
        accuracy_per_joule: j_per_item.filter(|j| *j > 0.0).map(|j| accuracy / j),
        provenance: total_j.and(provenance),
        items_per_s: if secs > 0.0 { n as f64 / secs } else { 0.0 },
        tokens: items.iter().map(|i| i.tokens).sum(),
        shared_tokens: items.iter().map(|i| i.shared).sum(),
        items: items
            .iter()
            .zip(spans)
            .map(|(i, (s, j))| EvalItem {
                doc_id: i.doc_id,
                gold: i.gold,
                choice: i.choice,
                loglik: i.loglik.clone(),
                answer: i.answer.clone(),
                reference: i.reference.clone(),
                correct: i.correct,
                tokens: i.tokens,
                generated: i.generated,
                s: *s,
                j: *j,
            })
            .collect(),
    }
}

/// Removes every energy figure (the repetition's energy is not reported): accuracy stays.
pub fn clear_energy(f: &mut EvalFigures) {
    f.total_j = None;
    f.j_per_item = None;
    f.j_per_correct = None;
    f.correct_per_kj = None;
    f.accuracy_per_joule = None;
    f.provenance = None;
    for i in &mut f.items {
        i.j = None;
    }
}

/// A repetition's evaluation figures: its items are the pass's outputs, requests `0..` of
/// `round`.
pub fn repetition(
    task: &TaskRef,
    metric: &str,
    outputs: &[Output],
    rec: &Recording,
    round: Round,
    allow_partial: bool,
    provenance: Option<Provenance>,
) -> Option<EvalFigures> {
    let items: Vec<&ItemOutput> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Item(i) => Some(i),
            _ => None,
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    let spans = item_energy(rec, round, 0, items.len(), allow_partial);
    Some(figures(task, metric, &items, &spans, provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(correct: bool, choices: usize) -> ItemOutput {
        ItemOutput {
            doc_id: 0,
            loglik: vec![-1.0; choices],
            choice: Some(0),
            gold: Some(if correct { 0 } else { 1 }),
            answer: None,
            reference: None,
            correct,
            tokens: 10,
            shared: 4,
            generated: 0,
            start_ns: 0,
            end_ns: 1,
        }
    }

    #[test]
    fn figures_divide_the_items_energy_and_keep_unknown_unknown() {
        let t = TaskRef {
            task: "arc_easy".into(),
            variant: "rc_0shot".into(),
        };
        let items = [item(true, 4), item(false, 4), item(true, 2), item(true, 4)];
        let refs: Vec<&ItemOutput> = items.iter().collect();
        let spans = vec![(1.0, Some(2.0)); 4];
        let f = figures(&t, "acc_raw", &refs, &spans, Some(Provenance::Measured));
        assert_eq!((f.n, f.correct), (4, 3));
        assert_eq!(f.total_j, Some(8.0));
        assert_eq!(f.j_per_item, Some(2.0));
        assert!((f.j_per_correct.unwrap() - 8.0 / 3.0).abs() < 1e-12);
        assert!((f.correct_per_kj.unwrap() - 375.0).abs() < 1e-9);
        assert!((f.accuracy_per_joule.unwrap() - 0.375).abs() < 1e-12);
        assert!((f.chance.unwrap() - (0.25 * 3.0 + 0.5) / 4.0).abs() < 1e-12);
        assert_eq!(f.items_per_s, 1.0);
        assert!(f.accuracy_ci[0] < 0.75 && f.accuracy_ci[1] > 0.75);
        // One item without a measured energy: no per-item figure at all, never a smaller one.
        let mut spans = spans;
        spans[2].1 = None;
        let f = figures(&t, "acc_raw", &refs, &spans, Some(Provenance::Measured));
        assert_eq!((f.total_j, f.j_per_item, f.provenance), (None, None, None));
        assert_eq!(f.items[2].j, None);
        assert_eq!(f.accuracy, 0.75);
    }
}
