//! `joulebench ab`: two variants of a suite measured alternately in one job, judged on their
//! paired differences. Repetitions run in ABBA blocks (A B B A A B B A ...), so a drift that is
//! linear over a block cancels in it; pair `i` is repetition `i` of the base and of the
//! candidate. Per pair the log ratio candidate/base; per (cell, metric) Wilcoxon's signed-rank
//! test on them (exact, distribution-free: a shared machine's odd slow or fast repetition does
//! not swamp it as it does a t test), the Hodges-Lehmann ratio with its interval, Holm's
//! correction across every row of the job (the false-alarm rate is per job, not per row), and
//! a verdict as `compare` gives one: regressed = beyond the threshold in the bad direction
//! *and* significant after correction.

use crate::compare::Verdict;
use crate::meter::Provenance;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(test)]
use crate::stats::signed_rank_counts;
pub use crate::stats::{Paired, holm, paired};

/// Complete pairs below which a row is not judged.
pub const MIN_PAIRS: usize = 5;

/// Which side of the comparison a repetition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Base,
    Candidate,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Base => "base",
            Variant::Candidate => "candidate",
        }
    }
}

/// The order of the job's repetitions for `pairs` pairs: `(variant, pair)` with pairs from 1,
/// in ABBA blocks (odd pairs base first, even pairs candidate first).
pub fn schedule(pairs: u32) -> Vec<(Variant, u32)> {
    (1..=pairs)
        .flat_map(|p| {
            if p % 2 == 1 {
                [(Variant::Base, p), (Variant::Candidate, p)]
            } else {
                [(Variant::Candidate, p), (Variant::Base, p)]
            }
        })
        .collect()
}

/// The ABBA block a pair belongs to (1-based).
pub fn block_of(pair: u32) -> u32 {
    pair.div_ceil(2)
}

/// The drift of one variant across the job: (max - min) / min of its per-block means, from
/// `(pair, value)`; `None` with fewer than two blocks.
pub fn drift(values: &[(u32, f64)]) -> Option<f64> {
    let mut blocks: std::collections::BTreeMap<u32, (f64, usize)> = Default::default();
    for &(p, v) in values.iter().filter(|(_, v)| v.is_finite() && *v > 0.0) {
        let e = blocks.entry(block_of(p)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    if blocks.len() < 2 {
        return None;
    }
    let means: Vec<f64> = blocks.values().map(|(s, n)| s / *n as f64).collect();
    let (lo, hi) = means
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &m| (a.min(m), b.max(m)));
    Some(hi / lo - 1.0)
}

/// One row of the job's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbRow {
    pub profile: String,
    pub workload: String,
    pub metric: String,
    pub pairs: usize,
    pub stats: Option<Paired>,
    /// The p-value after Holm's correction across every row.
    pub p_holm: Option<f64>,
    pub verdict: Verdict,
    /// What interleaving removed: the base variant's range across blocks.
    pub base_drift: Option<f64>,
    pub provenance: Option<Provenance>,
    /// The machine's noise per pair in this job: a robust standard deviation (1.4826 x the
    /// median absolute deviation) of the pairs' log ratios; one stalled pair barely moves it.
    #[serde(default)]
    pub noise: Option<f64>,
    /// About how many pairs a 95% interval no wider than +-threshold needs at that noise.
    #[serde(default)]
    pub pairs_needed: Option<usize>,
    /// A sequential job's confidence sequence for the row (its looks, its decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SeqRow>,
}

/// The whole job's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbReport {
    pub schema_version: u32,
    pub suite: String,
    pub base: String,
    pub candidate: String,
    pub run_dir: String,
    pub pairs_requested: u32,
    pub threshold: f64,
    pub alpha: f64,
    pub rows: Vec<AbRow>,
    /// Why nothing could be judged (exit 2), if so.
    pub not_comparable: Option<String>,
    pub warnings: Vec<String>,
    /// "fixed" (`--pairs N`) or "sequential" (`--pairs auto`).
    #[serde(default = "fixed_design")]
    pub design: String,
    /// A sequential job's budgets: the most pairs per (profile, workload) and minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pairs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_minutes: Option<f64>,
    /// A sequential job: how each (profile, workload) ended and after how many pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stops: Vec<Stop>,
}

fn fixed_design() -> String {
    "fixed".into()
}

/// ab.json's schema: 2 added the sequential design (rows' `sequence`, `design`, `stops`).
pub const SCHEMA_VERSION: u32 = 2;

impl AbReport {
    /// 0 pass, 1 a regression, 2 nothing comparable or nothing conclusive (a sequential job:
    /// any gated row left undecided).
    pub fn exit_code(&self) -> u8 {
        let undecided = self.design == "sequential"
            && self.rows.iter().any(|r| r.verdict == Verdict::Inconclusive);
        if self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
            && self.not_comparable.is_none()
        {
            1
        } else if self.not_comparable.is_some()
            || undecided
            || self.rows.iter().all(|r| r.verdict == Verdict::Inconclusive)
        {
            2
        } else {
            0
        }
    }
}

/// Verdicts for rows whose statistics are filled: Holm across all judged rows, then threshold
/// and direction per row. `lower_better[i]` says the direction of row i's metric.
pub fn judge_rows(rows: &mut [AbRow], lower_better: &[bool], threshold: f64, alpha: f64) {
    let judged: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].stats.as_ref().is_some_and(|s| s.n >= MIN_PAIRS))
        .collect();
    let ps: Vec<f64> = judged
        .iter()
        .map(|&i| rows[i].stats.as_ref().map_or(1.0, |s| s.p))
        .collect();
    let adj = holm(&ps);
    for r in rows.iter_mut() {
        r.verdict = Verdict::Inconclusive;
        r.p_holm = None;
    }
    for (k, &i) in judged.iter().enumerate() {
        let Some(s) = rows[i].stats.as_ref() else {
            continue;
        };
        let significant = adj[k] < alpha;
        let (worse, better) = if lower_better[i] {
            (s.ratio > 1.0 + threshold, s.ratio < 1.0 - threshold)
        } else {
            (s.ratio < 1.0 - threshold, s.ratio > 1.0 + threshold)
        };
        rows[i].p_holm = Some(adj[k]);
        rows[i].verdict = match (significant, worse, better) {
            (true, true, _) => Verdict::Regressed,
            (true, _, true) => Verdict::Improved,
            _ => Verdict::Unchanged,
        };
    }
}

/// Warnings for rows judged unchanged whose interval still reaches beyond the threshold in the
/// bad direction: the job passes them, but it could not rule out a regression of that size
/// (on a machine whose runs stall now and then, 10 pairs often cannot).
pub fn unresolved(rows: &[AbRow], lower_better: &[bool], threshold: f64) -> Vec<String> {
    rows.iter()
        .zip(lower_better)
        .filter(|(r, _)| r.verdict == Verdict::Unchanged)
        .filter_map(|(r, &lower)| {
            let s = r.stats.as_ref()?;
            let bad = if lower { s.ci[1] } else { s.ci[0] };
            let beyond = if lower {
                bad > 1.0 + threshold
            } else {
                bad < 1.0 - threshold
            };
            beyond.then(|| {
                let need = match (r.noise, r.pairs_needed) {
                    (Some(sd), Some(n)) => format!(
                        " (this job's pairs vary by {:.1}% (robust sd): about {n} pairs for an \
                         interval within +-{:.1}%)",
                        sd * 100.0,
                        threshold * 100.0
                    ),
                    _ => String::new(),
                };
                format!(
                    "{} / {} / {}: unchanged, but its interval reaches {} ({} pairs): a \
                     regression beyond {:.1}% is not ruled out; more pairs (--pairs) narrow it{need}",
                    r.profile,
                    r.workload,
                    r.metric,
                    render::pct(bad),
                    s.n,
                    threshold * 100.0
                )
            })
        })
        .collect()
}

/// The robust standard deviation of the pairs' log ratios (1.4826 x their median absolute
/// deviation from the median); `None` with fewer than 3 pairs.
pub fn pair_noise(stats: &Paired) -> Option<f64> {
    let logs: Vec<f64> = stats
        .pair_ratios
        .iter()
        .filter(|r| r.is_finite() && **r > 0.0)
        .map(|r| r.ln())
        .collect();
    if logs.len() < 3 {
        return None;
    }
    let m = crate::stats::median(&logs);
    let dev: Vec<f64> = logs.iter().map(|x| (x - m).abs()).collect();
    Some(1.4826 * crate::stats::median(&dev))
}

/// The smallest number of pairs whose 95% interval (Student t on the log ratios) has a half
/// width no larger than `threshold` when each pair's log ratio varies by `noise`; `None` when
/// the noise is not positive or would need more than 100,000 pairs.
pub fn pairs_needed(noise: f64, threshold: f64) -> Option<usize> {
    let h = (1.0 + threshold).ln();
    if !(noise.is_finite() && noise > 0.0 && h > 0.0) {
        return None;
    }
    (MIN_PAIRS..=100_000).find(|&n| crate::stats::t95(n - 1) * noise / (n as f64).sqrt() <= h)
}

/// Base values per row key (`profile|workload|metric`), by pair: what the chart draws as the
/// base's drift.
pub type BaseSeries = Vec<(String, Vec<(u32, f64)>)>;

/// Judges the A/B run folder `dir` from its records: the rows of every (profile, workload) and
/// metric, Holm-corrected, and the base's series for the chart.
pub fn analyze(
    dir: &std::path::Path,
    ab: &crate::run_meta::AbSettings,
    metrics: &[crate::metric::Metric],
    threshold: f64,
    alpha: f64,
) -> Result<(AbReport, BaseSeries), String> {
    use crate::record::{Status, read_all};
    let meta: crate::run_meta::RunMeta =
        crate::run_dir::read_json(&dir.join(crate::run_dir::META)).map_err(|e| e.to_string())?;
    let (records, _) = read_all(&dir.join(crate::run_dir::RECORDS)).map_err(|e| e.to_string())?;
    let seq = ab.sequential.as_ref();
    let mut rep = AbReport {
        design: if seq.is_some() { "sequential" } else { "fixed" }.into(),
        max_pairs: seq.map(|s| s.max_pairs),
        max_minutes: seq.and_then(|s| s.max_minutes),
        stops: Vec::new(),
        schema_version: SCHEMA_VERSION,
        suite: meta.suite.clone(),
        base: ab.base.clone(),
        candidate: ab.candidate.clone(),
        run_dir: dir.display().to_string(),
        pairs_requested: ab.pairs,
        threshold,
        alpha,
        rows: Vec::new(),
        not_comparable: None,
        warnings: Vec::new(),
    };
    for f in records.iter().filter(|r| r.status == Status::Failed) {
        rep.warnings.push(format!(
            "{} failed: {}",
            f.cell,
            f.error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    let mut lower_better = Vec::new();
    let mut series = Vec::new();
    for ((profile, workload), [b, c]) in &by_cell(&records) {
        if let Some(why) = not_comparable(profile, workload, b, c) {
            rep.not_comparable = Some(why);
        }
        for &m in metrics {
            let level = seq.map(|s| s.level());
            let Some((row, base_values)) =
                row_of(profile, workload, m, (b, c), (threshold, alpha, level))
            else {
                continue;
            };
            series.push((format!("{profile}|{workload}|{}", m.name()), base_values));
            rep.rows.push(row);
            lower_better.push(m.lower_is_better());
        }
    }
    if seq.is_some() {
        judge_sequential(&mut rep, &lower_better, threshold, alpha);
    } else {
        judge_rows(&mut rep.rows, &lower_better, threshold, alpha);
        let open = unresolved(&rep.rows, &lower_better, threshold);
        rep.warnings.extend(open);
    }
    if rep.not_comparable.is_some() {
        for r in &mut rep.rows {
            r.verdict = Verdict::Inconclusive;
        }
    }
    if rep.rows.is_empty() && rep.not_comparable.is_none() {
        rep.not_comparable = Some("no repetition of either variant completed".into());
    }
    if seq.is_some() {
        return Ok((rep, series));
    }
    significance_floor(&mut rep, alpha);
    if rep
        .rows
        .iter()
        .any(|r| r.stats.as_ref().is_none_or(|s| s.n < MIN_PAIRS))
    {
        rep.warnings.push(format!(
            "rows with fewer than {MIN_PAIRS} complete pairs are inconclusive"
        ));
    }
    Ok((rep, series))
}

/// The good records of each (profile, workload): the base's, then the candidate's.
type ByCell<'a> = BTreeMap<(String, String), [Vec<&'a crate::record::Record>; 2]>;

fn by_cell(records: &[crate::record::Record]) -> ByCell<'_> {
    let mut cells: ByCell = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.status == crate::record::Status::Ok)
    {
        let side = match r.ab_variant.as_deref() {
            Some("base") => 0,
            Some("candidate") => 1,
            _ => continue,
        };
        cells
            .entry((r.profile.clone(), r.workload.clone()))
            .or_default()[side]
            .push(r);
    }
    cells
}

/// Why the two variants' energy cannot be compared (estimated against measured, different
/// coverage), if so.
fn not_comparable(
    profile: &str,
    workload: &str,
    b: &[&crate::record::Record],
    c: &[&crate::record::Record],
) -> Option<String> {
    let mut why = None;
    let (pb, pc) = (crate::compare::provenance(b), crate::compare::provenance(c));
    if pb != pc {
        why = Some(format!(
            "{profile} / {workload}: the base's energy is {} but the candidate's is {}; \
             estimates are only compared with estimates",
            pb.map_or("missing".into(), |p| format!("{p:?}").to_lowercase()),
            pc.map_or("missing".into(), |p| format!("{p:?}").to_lowercase()),
        ));
    }
    let (wb, wc) = (crate::compare::coverage(b), crate::compare::coverage(c));
    if wb != wc {
        why = Some(format!(
            "{profile} / {workload}: the energy covers different things (base: {}; \
             candidate: {})",
            wb.as_deref().unwrap_or("nothing"),
            wc.as_deref().unwrap_or("nothing")
        ));
    }
    why
}

/// The row of metric `m` for one (profile, workload) and the base's values by pair (None when
/// neither variant has the metric).
fn row_of(
    profile: &str,
    workload: &str,
    m: crate::metric::Metric,
    (b, c): (&[&crate::record::Record], &[&crate::record::Record]),
    (threshold, alpha, level): (f64, f64, Option<f64>),
) -> Option<(AbRow, Vec<(u32, f64)>)> {
    let by_pair = |rs: &[&crate::record::Record]| -> BTreeMap<u32, f64> {
        rs.iter()
            .filter_map(|r| Some((r.ab_pair.or(r.repetition)?, m.read(r)?)))
            .collect()
    };
    let (bv, cv) = (by_pair(b), by_pair(c));
    if bv.is_empty() && cv.is_empty() {
        return None;
    }
    let pairs: Vec<(u32, f64, f64)> = bv
        .iter()
        .filter_map(|(p, x)| cv.get(p).map(|y| (*p, *x, *y)))
        .collect();
    let base_values: Vec<(u32, f64)> = bv.iter().map(|(p, v)| (*p, *v)).collect();
    let (stats, noise) = if m == crate::metric::Metric::Accuracy {
        // A deterministic engine scores the same in every pair: the items are the sample
        // (McNemar's exact test on the items the variants disagree on, as `compare` does).
        (accuracy_stats(b, c, alpha), None)
    } else {
        let s = paired(&pairs, alpha);
        let noise = s.as_ref().and_then(pair_noise);
        (s, noise)
    };
    let sequence = match level {
        Some(level) if m != crate::metric::Metric::Accuracy => {
            sequential::trace(&pairs, m.lower_is_better(), threshold, level)
        }
        _ => None,
    };
    let row = AbRow {
        sequence,
        noise,
        pairs_needed: noise.and_then(|sd| pairs_needed(sd, threshold)),
        profile: profile.to_string(),
        workload: workload.to_string(),
        metric: m.name().to_string(),
        pairs: stats.as_ref().map_or(0, |s| s.n),
        stats,
        p_holm: None,
        verdict: Verdict::Inconclusive,
        base_drift: drift(&base_values),
        provenance: crate::compare::provenance(b),
    };
    Some((row, base_values))
}

/// A sequential job's verdicts: Holm's step-down over the sequential rows' anytime p-values
/// (`sequential::judge`), accuracy rows judged apart as in the fixed design, and a warning per
/// row left undecided with its noise and the pairs a decision would have needed.
fn judge_sequential(rep: &mut AbReport, lower_better: &[bool], threshold: f64, alpha: f64) {
    let (seq_idx, other_idx): (Vec<usize>, Vec<usize>) =
        (0..rep.rows.len()).partition(|&i| rep.rows[i].metric != "accuracy");
    let mut others: Vec<AbRow> = other_idx.iter().map(|&i| rep.rows[i].clone()).collect();
    let others_lower: Vec<bool> = other_idx.iter().map(|&i| lower_better[i]).collect();
    judge_rows(&mut others, &others_lower, threshold, alpha);
    for (k, &i) in other_idx.iter().enumerate() {
        rep.rows[i].verdict = others[k].verdict;
        rep.rows[i].p_holm = others[k].p_holm;
    }
    let with_seq: Vec<usize> = seq_idx
        .iter()
        .copied()
        .filter(|&i| rep.rows[i].sequence.is_some())
        .collect();
    let seqs: Vec<&SeqRow> = with_seq
        .iter()
        .filter_map(|&i| rep.rows[i].sequence.as_ref())
        .collect();
    let verdicts = sequential::judge(&seqs, alpha);
    for &i in &seq_idx {
        rep.rows[i].verdict = Verdict::Inconclusive;
        rep.rows[i].p_holm = None;
    }
    for (k, &i) in with_seq.iter().enumerate() {
        rep.rows[i].verdict = verdicts[k];
    }
    for &i in &seq_idx {
        let r = &rep.rows[i];
        if r.verdict != Verdict::Inconclusive {
            continue;
        }
        let used = r
            .sequence
            .as_ref()
            .and_then(|s| s.looks.last())
            .map_or(0, |l| l.pairs);
        let noise = r.noise.map_or(String::new(), |sd| {
            format!("its pairs vary by {:.1}% (robust sd); ", sd * 100.0)
        });
        let need = r
            .sequence
            .as_ref()
            .and_then(|s| s.pairs_to_decide)
            .map_or("a decision needs more pairs than 100,000".into(), |n| {
                format!("about {n} pairs would decide it if its mean held")
            });
        rep.warnings.push(format!(
            "{} / {} / {}: undecided after {used} pairs: not enough pairs to decide at this \
             machine's noise ({noise}{need}; raise --max-pairs or --max-minutes)",
            r.profile, r.workload, r.metric
        ));
    }
}

/// Whether the pairs so far decide every gated row of one (profile, workload) of the
/// sequential job in `dir`: what lets the job stop it. False while no row has 2 pairs.
pub fn group_decided(
    dir: &std::path::Path,
    ab: &crate::run_meta::AbSettings,
    profile: &str,
    workload: &str,
) -> bool {
    let Some(seq) = ab.sequential.as_ref() else {
        return false;
    };
    let Ok((records, _)) = crate::record::read_all(&dir.join(crate::run_dir::RECORDS)) else {
        return false;
    };
    let cells = by_cell(&records);
    let Some((b, c)) = cells
        .get(&(profile.to_string(), workload.to_string()))
        .map(|[b, c]| (b, c))
    else {
        return false;
    };
    // A metric that one side never reports (or never positive) gets no usable pairs however
    // long the job runs: once 4 pairs are complete, it does not hold the job open.
    let complete = complete_pairs(dir, profile, workload);
    let mut rows = Vec::new();
    for m in seq
        .metrics
        .iter()
        .filter_map(|n| crate::metric::Metric::parse(n))
    {
        if m == crate::metric::Metric::Accuracy {
            continue;
        }
        if let Some((row, _)) = row_of(
            profile,
            workload,
            m,
            (b, c),
            (seq.threshold, seq.alpha, Some(seq.level())),
        ) {
            match row.sequence {
                Some(s) => rows.push(s),
                None if complete >= 4 => {}
                None => return false,
            }
        }
    }
    !rows.is_empty() && sequential::all_decided(&rows)
}

/// How each (profile, workload) of a sequential job ended: what the loop said (`seen`), else
/// (a resumed job with nothing left to run) what its records show. Empty for a fixed job.
pub fn stops(dir: &std::path::Path, ab: &crate::run_meta::AbSettings, seen: &[Stop]) -> Vec<Stop> {
    let Some(seq) = ab.sequential.as_ref() else {
        return Vec::new();
    };
    let Ok((records, _)) = crate::record::read_all(&dir.join(crate::run_dir::RECORDS)) else {
        return seen.to_vec();
    };
    let mut out = Vec::new();
    for (profile, workload) in by_cell(&records).keys() {
        if let Some(s) = seen
            .iter()
            .find(|s| &s.profile == profile && &s.workload == workload)
        {
            out.push(s.clone());
            continue;
        }
        let pairs = complete_pairs(dir, profile, workload);
        let reason = if group_decided(dir, ab, profile, workload) {
            StopReason::Decided
        } else if pairs >= seq.max_pairs {
            StopReason::MaxPairs
        } else {
            StopReason::Interrupted
        };
        out.push(Stop {
            profile: profile.clone(),
            workload: workload.clone(),
            pairs,
            reason,
        });
    }
    for s in seen {
        if !out
            .iter()
            .any(|o| o.profile == s.profile && o.workload == s.workload)
        {
            out.push(s.clone());
        }
    }
    out
}

/// The complete pairs (both variants' repetitions recorded good) of one (profile, workload)
/// in the run folder `dir`.
pub fn complete_pairs(dir: &std::path::Path, profile: &str, workload: &str) -> u32 {
    let Ok((records, _)) = crate::record::read_all(&dir.join(crate::run_dir::RECORDS)) else {
        return 0;
    };
    let cells = by_cell(&records);
    let Some([b, c]) = cells.get(&(profile.to_string(), workload.to_string())) else {
        return 0;
    };
    let pairs = |rs: &[&crate::record::Record]| -> std::collections::BTreeSet<u32> {
        rs.iter()
            .filter_map(|r| r.ab_pair.or(r.repetition))
            .collect()
    };
    pairs(b).intersection(&pairs(c)).count() as u32
}

/// Accuracy's row over the items both variants scored: `n` items, the ratio of accuracies
/// with its paired bootstrap interval, McNemar's exact p.
pub fn accuracy_stats(
    b: &[&crate::record::Record],
    c: &[&crate::record::Record],
    alpha: f64,
) -> Option<Paired> {
    let (bv, cv) = crate::compare::accuracy_pairs(b, c)?;
    let (ratio, ci, p) = crate::stats::paired_accuracy(&bv, &cv, alpha, 0x0ab_acc)?;
    Some(Paired {
        n: bv.len(),
        ratio,
        ci,
        geo_ratio: ratio,
        p,
        pair_ratios: Vec::new(),
    })
}

/// The exact signed-rank test cannot go below 2 / 2^n: with few pairs and many rows, Holm's
/// correction may leave no row able to reach significance. Then the job says nothing:
/// inconclusive, not unchanged.
fn significance_floor(rep: &mut AbReport, alpha: f64) {
    let judged: Vec<usize> = rep
        .rows
        .iter()
        .filter_map(|r| r.stats.as_ref())
        .filter(|s| s.n >= MIN_PAIRS)
        .map(|s| s.n)
        .collect();
    let Some(&n) = judged.iter().max() else {
        return;
    };
    let floor = 2.0 / 2f64.powi(n.min(60) as i32) * judged.len() as f64;
    if floor >= alpha {
        for r in &mut rep.rows {
            r.verdict = Verdict::Inconclusive;
        }
        rep.warnings.push(format!(
            "with {n} pairs and {} rows no change can be significant at alpha {alpha} after \
             Holm's correction (the smallest corrected p is {floor:.3}): use more pairs or \
             fewer metrics",
            judged.len()
        ));
    }
}

mod render;
pub mod sequential;
#[cfg(test)]
mod tests;

pub use render::{chart_svg, markdown, text};
pub use sequential::{SeqRow, Stop, StopReason};
