//! The sequential design of an A/B job (`--pairs auto`): the job looks at its pairs after every
//! ABBA block and stops a (profile, workload) as soon as each of its gated rows is decided,
//! without raising the false-alarm rate however often it looks.
//!
//! Per row, the pairs' log ratios (candidate / base) feed a confidence sequence for their mean
//! ([`crate::stats::sequential`]: the Gaussian-mixture sequential t test), at level
//! `alpha / rows` so that the intervals of every row of the job hold together (Bonferroni over
//! the rows the job could gate, fixed before the first pair). A row is decided at a look when
//! its running interval lies
//! - wholly beyond the threshold on the bad side: regressed;
//! - wholly beyond it on the good side: improved;
//! - with its bad end inside the threshold: unchanged (a regression of that size is ruled out).
//!
//! The final verdicts use Holm's step-down on each row's anytime p-value (the smallest level at
//! which its sequence, at some look, lay beyond the threshold): at least as many rows as the
//! intervals decide, the family-wise error still at most alpha. Accuracy rows are not
//! sequential (a deterministic engine scores the same items in every pair): they are judged by
//! McNemar's test as in the fixed design and never hold a job open.

use crate::compare::Verdict;
use crate::stats::sequential::Sequence;
use serde::{Deserialize, Serialize};

/// One look at a row: the pairs used so far, the running interval of the ratio (`None` while
/// the pairs are too few to exclude any ratio), the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    pub pairs: usize,
    pub ci: Option<[f64; 2]>,
    pub verdict: Verdict,
}

/// The ratio interval of a log-ratio interval, `None` while unbounded.
fn ratio_ci([lo, hi]: [f64; 2]) -> Option<[f64; 2]> {
    (lo.is_finite() && hi.is_finite()).then(|| [lo.exp(), hi.exp()])
}

/// A row's confidence sequence over the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeqRow {
    /// The level of its interval: the job's alpha over the rows it could gate.
    pub level: f64,
    /// The running interval of the ratio candidate / base at the last look (`None` while
    /// unbounded).
    pub ci: Option<[f64; 2]>,
    /// Anytime p-values of "not worse than the threshold" and "not better than it".
    pub p_worse: f64,
    pub p_better: f64,
    /// The pairs at the first look that decided the row.
    pub decided_at: Option<usize>,
    /// The standard deviation of the pairs' log ratios that the sequence used (not robust:
    /// a stalled pair widens the interval, which keeps it valid on a machine that stalls).
    pub sd: Option<f64>,
    /// The interval's decision at the last look (before Holm's step-down).
    pub verdict: Verdict,
    /// Every look, one per ABBA block (and one at the last pair).
    pub looks: Vec<Look>,
    /// For an undecided row: about how many pairs a decision would take at the pairs' standard
    /// deviation if their mean stayed where it is.
    pub pairs_to_decide: Option<usize>,
}

/// The decision of an interval `[lo, hi]` of log ratios.
pub fn decide(lo: f64, hi: f64, lower_better: bool, threshold: f64) -> Verdict {
    let (up, down) = ((1.0 + threshold).ln(), (1.0 - threshold).ln());
    // In the bad direction: up for lower-is-better metrics, down otherwise.
    let (beyond_bad, beyond_good, bad_end_inside) = if lower_better {
        (lo > up, hi < down, hi <= up)
    } else {
        (hi < down, lo > up, lo >= down)
    };
    if beyond_bad {
        Verdict::Regressed
    } else if beyond_good {
        Verdict::Improved
    } else if bad_end_inside {
        Verdict::Unchanged
    } else {
        Verdict::Inconclusive
    }
}

/// The confidence sequence of one row from its pairs `(pair, base, candidate)` in pair order,
/// at level `level`; `None` with fewer than 2 usable pairs. A look is taken after every even
/// pair (the end of an ABBA block) and after the last one.
pub fn trace(
    pairs: &[(u32, f64, f64)],
    lower_better: bool,
    threshold: f64,
    level: f64,
) -> Option<SeqRow> {
    let mut seq = Sequence::new(level);
    let (up, down) = ((1.0 + threshold).ln(), (1.0 - threshold).ln());
    let (mut p_worse, mut p_better) = (1f64, 1f64);
    let mut looks = Vec::new();
    let mut decided_at = None;
    let usable: Vec<(u32, f64)> = pairs
        .iter()
        .filter(|(_, b, c)| b.is_finite() && c.is_finite() && *b > 0.0 && *c > 0.0)
        .map(|(p, b, c)| (*p, (c / b).ln()))
        .collect();
    if usable.len() < 2 {
        return None;
    }
    let mut last = [f64::NEG_INFINITY, f64::INFINITY];
    for (i, &(pair, x)) in usable.iter().enumerate() {
        seq.push(x);
        if seq.n < 2 {
            continue;
        }
        // The sequence holds at every count at once: intersecting at each is valid, and the
        // p-values are their running minima.
        last = seq.look();
        let (pw, pb) = if lower_better {
            (seq.p_above(up), seq.p_below(down))
        } else {
            (seq.p_below(down), seq.p_above(up))
        };
        p_worse = p_worse.min(pw);
        p_better = p_better.min(pb);
        if pair % 2 == 0 || i + 1 == usable.len() {
            let verdict = decide(last[0], last[1], lower_better, threshold);
            if verdict != Verdict::Inconclusive && decided_at.is_none() {
                decided_at = Some(seq.n);
            }
            looks.push(Look {
                pairs: seq.n,
                ci: ratio_ci(last),
                verdict,
            });
        }
    }
    let verdict = decide(last[0], last[1], lower_better, threshold);
    let pairs_to_decide = if verdict == Verdict::Inconclusive {
        seq.sd().and_then(|sd| {
            // The nearest decision: beyond a bound the mean is past, else the bad end inside.
            let m = seq.mean;
            let room = if m > up {
                m - up
            } else if m < down {
                down - m
            } else if lower_better {
                up - m
            } else {
                m - down
            };
            seq.count_for(sd, room)
        })
    } else {
        None
    };
    Some(SeqRow {
        level,
        ci: ratio_ci(last),
        p_worse,
        p_better,
        decided_at,
        sd: seq.sd(),
        verdict,
        looks,
        pairs_to_decide,
    })
}

/// Whether every row is decided by its interval (what lets a job stop).
pub fn all_decided<'a>(rows: impl IntoIterator<Item = &'a SeqRow>) -> bool {
    rows.into_iter().all(|r| r.verdict != Verdict::Inconclusive)
}

/// Final verdicts of sequential rows: Holm's step-down over the rows' anytime p-values of
/// "not worse" (a regression) and, apart, of "not better" (an improvement); a row neither
/// keeps its interval's decision (unchanged or undecided).
pub fn judge(rows: &[&SeqRow], alpha: f64) -> Vec<Verdict> {
    let worse = crate::stats::holm(&rows.iter().map(|r| r.p_worse).collect::<Vec<_>>());
    let better = crate::stats::holm(&rows.iter().map(|r| r.p_better).collect::<Vec<_>>());
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            if worse[i] < alpha {
                Verdict::Regressed
            } else if better[i] < alpha {
                Verdict::Improved
            } else if r.verdict == Verdict::Unchanged {
                Verdict::Unchanged
            } else {
                Verdict::Inconclusive
            }
        })
        .collect()
}

/// Why a (profile, workload) of a sequential job stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every gated row was decided.
    Decided,
    /// The `--max-pairs` budget ran out.
    MaxPairs,
    /// The `--max-minutes` budget ran out.
    MaxMinutes,
    Interrupted,
    Failed,
}

impl StopReason {
    pub fn text(self) -> &'static str {
        match self {
            StopReason::Decided => "every gated row was decided",
            StopReason::MaxPairs => "the pairs budget (--max-pairs) ran out",
            StopReason::MaxMinutes => "the time budget (--max-minutes) ran out",
            StopReason::Interrupted => "interrupted",
            StopReason::Failed => "a variant failed",
        }
    }
}

/// How one (profile, workload) of the job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    pub profile: String,
    pub workload: String,
    pub pairs: u32,
    pub reason: StopReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(ratios: &[f64]) -> Vec<(u32, f64, f64)> {
        ratios
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32 + 1, 10.0, 10.0 * r))
            .collect()
    }

    #[test]
    fn decisions_follow_the_interval_and_the_direction() {
        let t = 0.02;
        let l = |x: f64| x.ln();
        // Lower is better (energy): above +2% is a regression.
        assert_eq!(decide(l(1.03), l(1.08), true, t), Verdict::Regressed);
        assert_eq!(decide(l(0.90), l(0.97), true, t), Verdict::Improved);
        assert_eq!(decide(l(0.95), l(1.01), true, t), Verdict::Unchanged);
        assert_eq!(decide(l(0.99), l(1.03), true, t), Verdict::Inconclusive);
        // Higher is better (tokens/s): below -2% is a regression.
        assert_eq!(decide(l(0.90), l(0.97), false, t), Verdict::Regressed);
        assert_eq!(decide(l(1.03), l(1.08), false, t), Verdict::Improved);
        assert_eq!(decide(l(0.99), l(1.05), false, t), Verdict::Unchanged);
        assert_eq!(decide(l(0.97), l(1.01), false, t), Verdict::Inconclusive);
    }

    #[test]
    fn a_clear_change_is_decided_early_and_looks_narrow() {
        // 30% more energy with a few percent of scatter: decided within 8 pairs.
        let r: Vec<f64> = (0..40)
            .map(|i| 1.3 * (1.0 + 0.03 * ((i * 7 % 5) as f64 - 2.0) / 2.0))
            .collect();
        let s = trace(&pairs(&r), true, 0.02, 0.05).unwrap();
        assert_eq!(s.verdict, Verdict::Regressed);
        assert!(s.decided_at.unwrap() <= 8, "{:?}", s.decided_at);
        assert!(s.p_worse < 0.05);
        // One look per block; the running interval never widens.
        assert_eq!(s.looks.len(), 20);
        for w in s.looks.windows(2) {
            let [a, b] = w[0].ci.unwrap_or([0.0, f64::INFINITY]);
            let [c, d] = w[1].ci.unwrap_or([0.0, f64::INFINITY]);
            assert!(c >= a && d <= b, "{w:?}");
        }
        assert!(s.looks[0].ci.is_none(), "two pairs exclude nothing");
        assert!(s.looks[3..].iter().all(|l| l.ci.is_some()));
        // Higher is better: the same ratios are an improvement.
        let s = trace(&pairs(&r), false, 0.02, 0.05).unwrap();
        assert_eq!(s.verdict, Verdict::Improved);
        assert_eq!(judge(&[&s], 0.05), vec![Verdict::Improved]);
    }

    #[test]
    fn noise_without_change_is_undecided_until_enough_pairs_then_unchanged() {
        // Scatter of about 6% around 1.00: ten pairs cannot rule out a 2% regression.
        let r: Vec<f64> = (0..400)
            .map(|i| (0.06 * ((i * 37 % 11) as f64 - 5.0) / 3.2).exp())
            .collect();
        let few = trace(&pairs(&r[..10]), true, 0.02, 0.05).unwrap();
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert_eq!(judge(&[&few], 0.05), vec![Verdict::Inconclusive]);
        let need = few.pairs_to_decide.unwrap();
        assert!((30..=400).contains(&need), "{need}");
        let many = trace(&pairs(&r), true, 0.02, 0.05).unwrap();
        assert_eq!(many.verdict, Verdict::Unchanged, "{:?}", many.ci);
        assert!(many.decided_at.unwrap() > 10);
        assert_eq!(judge(&[&many], 0.05), vec![Verdict::Unchanged]);
        // An odd last pair still gets its look.
        let odd = trace(&pairs(&r[..11]), true, 0.02, 0.05).unwrap();
        assert_eq!(odd.looks.last().unwrap().pairs, 11);
        // Unusable values are skipped; fewer than two usable pairs give nothing.
        assert!(trace(&[(1, 1.0, 1.0), (2, 0.0, 1.0)], true, 0.02, 0.05).is_none());
    }

    #[test]
    fn holm_steps_down_across_rows() {
        // Two rows, both clearly regressed: both flagged; a third undecided row stays undecided.
        let bad: Vec<f64> = (0..12).map(|i| 1.2 + 0.01 * (i % 3) as f64).collect();
        let flat: Vec<f64> = (0..12)
            .map(|i| 1.0 + 0.08 * ((i % 4) as f64 - 1.5))
            .collect();
        let a = trace(&pairs(&bad), true, 0.02, 0.05 / 3.0).unwrap();
        let b = trace(&pairs(&bad), true, 0.02, 0.05 / 3.0).unwrap();
        let c = trace(&pairs(&flat), true, 0.02, 0.05 / 3.0).unwrap();
        assert_eq!(
            judge(&[&a, &b, &c], 0.05),
            vec![
                Verdict::Regressed,
                Verdict::Regressed,
                Verdict::Inconclusive
            ]
        );
        assert!(!all_decided([&a, &b, &c]));
        assert!(all_decided([&a, &b]));
    }
}
