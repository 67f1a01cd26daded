//! `joulebench compare BASE CAND`: per cell and metric, the ratio CAND/BASE of medians with a
//! seeded bootstrap interval, and a verdict. A regression is beyond the threshold *and*
//! significant; runs from different hardware, or estimated against measured, are not compared.

use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status, read_all};
use crate::run_dir::read_json;
use crate::run_meta::RunMeta;
use crate::stats::{median, quantile};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod render;
pub use render::{chart_svg, markdown, text};

/// Repetitions below which a side is too thin to judge.
pub const MIN_REPETITIONS: usize = 3;
/// Bootstrap resamples of the ratio of medians.
pub const RESAMPLES: usize = 4000;

/// A comparison's verdict for one cell and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    Inconclusive,
}

/// The ratio of medians and its bootstrap interval at level `1 - alpha`.
pub fn ratio_ci(base: &[f64], cand: &[f64], alpha: f64, seed: u64) -> Option<(f64, [f64; 2])> {
    let mb = median(base);
    if base.is_empty() || cand.is_empty() || mb == 0.0 {
        return None;
    }
    let ratio = median(cand) / mb;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ratios = Vec::with_capacity(RESAMPLES);
    let (mut b, mut c) = (vec![0f64; base.len()], vec![0f64; cand.len()]);
    for _ in 0..RESAMPLES {
        for x in b.iter_mut() {
            *x = base[rng.random_range(0..base.len())];
        }
        for x in c.iter_mut() {
            *x = cand[rng.random_range(0..cand.len())];
        }
        let m = median(&b);
        if m != 0.0 {
            ratios.push(median(&c) / m);
        }
    }
    Some((
        ratio,
        [
            quantile(&ratios, alpha / 2.0),
            quantile(&ratios, 1.0 - alpha / 2.0),
        ],
    ))
}

/// The verdict for one metric: beyond `threshold` (a fraction) in the bad direction and
/// significant (the interval excludes 1) is a regression.
pub fn judge(
    base: &[f64],
    cand: &[f64],
    threshold: f64,
    alpha: f64,
    seed: u64,
    lower_better: bool,
) -> (Verdict, Option<(f64, [f64; 2])>) {
    if base.len() < MIN_REPETITIONS || cand.len() < MIN_REPETITIONS {
        return (Verdict::Inconclusive, ratio_ci(base, cand, alpha, seed));
    }
    let Some((r, [lo, hi])) = ratio_ci(base, cand, alpha, seed) else {
        return (Verdict::Inconclusive, None);
    };
    let (worse, better) = if lower_better {
        (
            r > 1.0 + threshold && lo > 1.0,
            r < 1.0 - threshold && hi < 1.0,
        )
    } else {
        (
            r < 1.0 - threshold && hi < 1.0,
            r > 1.0 + threshold && lo > 1.0,
        )
    };
    let v = if worse {
        Verdict::Regressed
    } else if better {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    };
    (v, Some((r, [lo, hi])))
}

/// Each side's items (doc id -> right or not) from the first record with an evaluation, in
/// the order of the items both sides scored; None unless both scored the same items.
pub fn accuracy_pairs(brs: &[&Record], crs: &[&Record]) -> Option<(Vec<bool>, Vec<bool>)> {
    let items = |rs: &[&Record]| -> std::collections::BTreeMap<u64, bool> {
        rs.iter()
            .find_map(|r| r.eval.as_ref())
            .map(|e| e.items.iter().map(|i| (i.doc_id, i.correct)).collect())
            .unwrap_or_default()
    };
    let (b, c) = (items(brs), items(crs));
    let shared: Vec<u64> = b.keys().filter(|d| c.contains_key(d)).copied().collect();
    if shared.is_empty() || shared.len() != b.len() || shared.len() != c.len() {
        return None;
    }
    Some((
        shared.iter().map(|d| b[d]).collect(),
        shared.iter().map(|d| c[d]).collect(),
    ))
}

/// Accuracy's verdict: the same items on both sides, paired (an item right on one side and
/// wrong on the other is what can change); beyond the threshold downward *and* significant by
/// McNemar's exact test is a regression. Repetitions of a deterministic engine score the same,
/// so the items, not the repetitions, carry the uncertainty.
fn judge_accuracy(
    brs: &[&Record],
    crs: &[&Record],
    o: CompareOptions,
    seed: u64,
) -> (Verdict, Option<(f64, [f64; 2])>) {
    let Some((bv, cv)) = accuracy_pairs(brs, crs) else {
        return (Verdict::Inconclusive, None);
    };
    let Some((r, ci, p)) = crate::stats::paired_accuracy(&bv, &cv, o.alpha, seed) else {
        return (Verdict::Inconclusive, None);
    };
    let significant = p < o.alpha;
    let v = if significant && r < 1.0 - o.threshold {
        Verdict::Regressed
    } else if significant && r > 1.0 + o.threshold {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    };
    (v, Some((r, ci)))
}

/// A loaded side of a comparison.
pub struct Side {
    pub label: String,
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub records: Vec<Record>,
}

/// Loads a run folder, or `baseline:NAME` from `baselines`.
pub fn load_side(spec: &str, baselines: &Path) -> Result<Side, String> {
    let dir = match spec.strip_prefix("baseline:") {
        Some(name) => baselines.join(name),
        None => PathBuf::from(spec),
    };
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a run folder (or saved baseline)",
            dir.display()
        ));
    }
    let meta: RunMeta = read_json(&dir.join("meta.json")).map_err(|e| e.to_string())?;
    let path = dir.join("records.jsonl");
    if !path.exists() {
        return Err(format!("{} is missing", path.display()));
    }
    let (records, _) = read_all(&path).map_err(|e| e.to_string())?;
    crate::record::check_unique(&path, &records)?;
    Ok(Side {
        label: spec.to_string(),
        dir,
        meta,
        records,
    })
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub profile: String,
    pub workload: String,
    pub metric: String,
    pub base_median: Option<f64>,
    pub cand_median: Option<f64>,
    pub n_base: usize,
    pub n_cand: usize,
    pub ratio: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub verdict: Verdict,
    pub provenance: Option<Provenance>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub base: String,
    pub cand: String,
    pub base_fingerprint: String,
    pub cand_fingerprint: String,
    pub base_started_unix_s: f64,
    pub threshold: f64,
    pub alpha: f64,
    pub rows: Vec<Row>,
    pub unmatched: Vec<String>,
    /// Why nothing could be compared (exit 2), if so.
    pub not_comparable: Option<String>,
    pub warnings: Vec<String>,
}

impl Comparison {
    /// 0 pass, 1 a regression, 2 nothing comparable or nothing conclusive.
    pub fn exit_code(&self) -> u8 {
        if self.not_comparable.is_some() || self.nothing_conclusive() {
            2
        } else if self.rows.iter().any(|r| r.verdict == Verdict::Regressed) {
            1
        } else {
            0
        }
    }
}

impl Comparison {
    /// True when no row has a verdict (no rows, or every one inconclusive).
    pub fn nothing_conclusive(&self) -> bool {
        self.rows.iter().all(|r| r.verdict == Verdict::Inconclusive)
    }
}

type Key = (String, String, String);

fn by_cell(recs: &[Record]) -> BTreeMap<Key, Vec<&Record>> {
    let mut m: BTreeMap<Key, Vec<&Record>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.status == Status::Ok) {
        m.entry((r.model.clone(), r.profile.clone(), r.workload.clone()))
            .or_default()
            .push(r);
    }
    m
}

pub(crate) fn provenance(rs: &[&Record]) -> Option<Provenance> {
    if rs.iter().any(|r| {
        r.energy
            .as_ref()
            .is_some_and(|e| e.provenance == Provenance::Estimated)
    }) {
        Some(Provenance::Estimated)
    } else if rs.iter().any(|r| r.energy.is_some()) {
        Some(Provenance::Measured)
    } else {
        None
    }
}

fn seed(k: &Key, metric: &str) -> u64 {
    format!("{}|{}|{}|{metric}", k.0, k.1, k.2)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// What a comparison judges and what it lets through.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Relative change that counts (0.05 = 5%).
    pub threshold: f64,
    /// Significance level of the intervals.
    pub alpha: f64,
    /// Compare cells measured on different hardware anyway.
    pub allow_hardware_mismatch: bool,
    /// Compare cells whose energy covers different things (scope, domains, methods) anyway.
    pub allow_scope_mismatch: bool,
}

/// What a cell's energy covers: its scope, the domains whose energy it adds, and how each
/// source was read. Two sides compare only when these agree: a total that lost its DRAM (or a
/// GPU) reads as an improvement that is not one.
pub(crate) fn coverage(rs: &[&Record]) -> Option<String> {
    let e = rs.iter().find_map(|r| r.energy.as_ref())?;
    let mut domains: Vec<String> = e
        .domains
        .iter()
        .filter(|d| d.total_j.is_some())
        .map(|d| format!("{}/{}", d.source, d.name))
        .collect();
    domains.sort();
    let mut partial: Vec<String> = rs
        .iter()
        .filter_map(|r| r.energy.as_ref())
        .flat_map(|e| e.partial_missing.clone())
        .collect();
    partial.sort();
    partial.dedup();
    Some(format!(
        "scope {}; domains {}; methods {}{}",
        e.scope,
        domains.join(", "),
        e.methods.join(", "),
        if partial.is_empty() {
            String::new()
        } else {
            format!("; PARTIAL (without {})", partial.join(", "))
        }
    ))
}

fn key_text(k: &Key) -> String {
    format!("{} / {} / {}", k.0, k.1, k.2)
}

/// Compares two loaded sides.
pub fn compare(base: &Side, cand: &Side, metrics: &[Metric], o: CompareOptions) -> Comparison {
    let (fb, fc) = (base.meta.fingerprint(), cand.meta.fingerprint());
    let mut c = Comparison {
        schema_version: 1,
        base: base.label.clone(),
        cand: cand.label.clone(),
        base_fingerprint: fb.clone(),
        cand_fingerprint: fc.clone(),
        base_started_unix_s: base.meta.started_unix_s,
        threshold: o.threshold,
        alpha: o.alpha,
        rows: Vec::new(),
        unmatched: Vec::new(),
        not_comparable: None,
        warnings: Vec::new(),
    };
    let (bm, cm) = (by_cell(&base.records), by_cell(&cand.records));
    for k in bm
        .keys()
        .filter(|k| !cm.contains_key(*k))
        .chain(cm.keys().filter(|k| !bm.contains_key(*k)))
    {
        c.unmatched.push(key_text(k));
    }
    let mut mismatched: Vec<String> = Vec::new();
    for (k, brs) in &bm {
        let Some(crs) = cm.get(k) else { continue };
        let (hb, hc) = (hardware(base, brs), hardware(cand, crs));
        if hb != hc {
            if !o.allow_hardware_mismatch {
                mismatched.push(format!("{}: {hb} vs {hc}", key_text(k)));
                continue;
            }
            let w = format!("hardware differs ({hb} vs {hc}); compared anyway");
            if !c.warnings.contains(&w) {
                c.warnings.push(w);
            }
        }
        match comparable(k, (base, brs), (cand, crs), o.allow_scope_mismatch) {
            Err(why) => {
                c.not_comparable = Some(why);
                c.rows.clear();
                return c;
            }
            Ok(Some(w)) => c.warnings.push(w),
            Ok(None) => {}
        }
        c.rows.extend(rows(k, brs, crs, metrics, o));
    }
    if !mismatched.is_empty() {
        if c.rows.is_empty() && c.not_comparable.is_none() {
            c.not_comparable = Some(if fb != fc {
                format!(
                    "hardware fingerprints differ: {fb} vs {fc} (pass --allow-hardware-mismatch \
                     to compare anyway)"
                )
            } else {
                format!(
                    "hardware fingerprints differ for every shared cell ({}); pass \
                     --allow-hardware-mismatch to compare anyway",
                    mismatched.join("; ")
                )
            });
            return c;
        }
        c.warnings.push(format!(
            "not compared, measured on different hardware: {}",
            mismatched.join("; ")
        ));
    }
    if c.rows.is_empty() && c.not_comparable.is_none() {
        c.not_comparable = Some("no cell (model, profile, workload) appears in both runs".into());
    }
    c
}

/// The hardware a cell was measured on. Checked per cell: a merged run's cells may come from
/// different machines (their records keep their part's fingerprint); a single run has one, in
/// meta.json.
fn hardware(side: &Side, rs: &[&Record]) -> String {
    if side.meta.parts.is_empty() {
        return side.meta.fingerprint();
    }
    rs.iter()
        .find_map(|r| r.host.as_ref().map(|h| h.fingerprint.clone()))
        .unwrap_or_else(|| side.meta.fingerprint())
}

/// Whether a cell's two sides measured the same kind of energy: `Err` says why not (estimated
/// against measured, or different coverage without `allow_scope`); `Ok(Some)` is the warning
/// of a coverage difference compared anyway.
fn comparable(
    k: &Key,
    (base, brs): (&Side, &[&Record]),
    (cand, crs): (&Side, &[&Record]),
    allow_scope: bool,
) -> Result<Option<String>, String> {
    let (pb, pc) = (provenance(brs), provenance(crs));
    if pb != pc {
        return Err(format!(
            "{}: energy is {} in {} but {} in {}; estimates are only compared with estimates",
            key_text(k),
            pb.map_or("missing".into(), |p| format!("{p:?}").to_lowercase()),
            base.label,
            pc.map_or("missing".into(), |p| format!("{p:?}").to_lowercase()),
            cand.label
        ));
    }
    let (wb, wc) = (coverage(brs), coverage(crs));
    if wb == wc {
        return Ok(None);
    }
    let what = format!(
        "{}: the energy covers different things ({}: {}; {}: {})",
        key_text(k),
        base.label,
        wb.as_deref().unwrap_or("nothing"),
        cand.label,
        wc.as_deref().unwrap_or("nothing")
    );
    if !allow_scope {
        return Err(format!(
            "{what}; a total that lost or gained a domain is not a change in efficiency \
             (pass --allow-scope-mismatch to compare anyway)"
        ));
    }
    Ok(Some(format!(
        "{what}; compared anyway (--allow-scope-mismatch)"
    )))
}

/// One row per metric either side has, judged.
fn rows(
    k: &Key,
    brs: &[&Record],
    crs: &[&Record],
    metrics: &[Metric],
    o: CompareOptions,
) -> Vec<Row> {
    let mut out = Vec::new();
    for &m in metrics {
        let bv: Vec<f64> = brs.iter().filter_map(|r| m.read(r)).collect();
        let cv: Vec<f64> = crs.iter().filter_map(|r| m.read(r)).collect();
        if bv.is_empty() && cv.is_empty() {
            continue;
        }
        let (verdict, rc) = if m == Metric::Accuracy {
            judge_accuracy(brs, crs, o, seed(k, m.name()))
        } else {
            judge(
                &bv,
                &cv,
                o.threshold,
                o.alpha,
                seed(k, m.name()),
                m.lower_is_better(),
            )
        };
        out.push(Row {
            model: k.0.clone(),
            profile: k.1.clone(),
            workload: k.2.clone(),
            metric: m.name().to_string(),
            base_median: (!bv.is_empty()).then(|| median(&bv)),
            cand_median: (!cv.is_empty()).then(|| median(&cv)),
            n_base: bv.len(),
            n_cand: cv.len(),
            ratio: rc.map(|x| x.0),
            ci: rc.map(|x| x.1),
            verdict,
            // Latency, throughput and accuracy are measured whatever the energy source.
            provenance: if m.is_energy() {
                provenance(brs)
            } else {
                Some(Provenance::Measured)
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded normal noise (Box-Muller).
    fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
        let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn sample(rng: &mut StdRng, mean: f64) -> Vec<f64> {
        (0..10).map(|_| normal(rng, mean, 0.03 * mean)).collect()
    }

    #[test]
    fn false_regressions_stay_below_five_percent() {
        let mut rng = StdRng::seed_from_u64(11);
        let regressed = (0..200u64)
            .filter(|i| {
                let (b, c) = (sample(&mut rng, 1.0), sample(&mut rng, 1.0));
                judge(&b, &c, 0.05, 0.05, *i, true).0 == Verdict::Regressed
            })
            .count();
        assert!(regressed <= 10, "{regressed} of 200");
    }

    #[test]
    fn a_ten_percent_shift_is_detected() {
        let mut rng = StdRng::seed_from_u64(12);
        let found = (0..200u64)
            .filter(|i| {
                let (b, c) = (sample(&mut rng, 1.0), sample(&mut rng, 1.1));
                judge(&b, &c, 0.05, 0.05, *i, true).0 == Verdict::Regressed
            })
            .count();
        assert!(found >= 190, "{found} of 200");
    }

    #[test]
    fn direction_thin_data_and_determinism() {
        let b = vec![10.0, 10.1, 9.9, 10.0, 10.05];
        let c = vec![8.0, 8.1, 7.9, 8.0, 8.05];
        assert_eq!(judge(&b, &c, 0.05, 0.05, 1, true).0, Verdict::Improved);
        assert_eq!(judge(&b, &c, 0.05, 0.05, 1, false).0, Verdict::Regressed);
        assert_eq!(
            judge(&b[..2], &c[..2], 0.05, 0.05, 1, true).0,
            Verdict::Inconclusive
        );
        assert_eq!(ratio_ci(&b, &c, 0.05, 7), ratio_ci(&b, &c, 0.05, 7));
        // Significant but within the threshold is unchanged.
        let c2: Vec<f64> = b.iter().map(|v| v * 1.02).collect();
        assert_eq!(judge(&b, &c2, 0.05, 0.05, 1, true).0, Verdict::Unchanged);
    }
}
