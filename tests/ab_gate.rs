//! The A/B gate's error rates on a fake powercap tree held at constant power, where a variant's
//! energy is set by its work (a fixed busy loop: about 0.2 s a repetition in CI, half a second
//! for the full measurement): A against A must
//! rarely be flagged, a candidate doing 5% more work must nearly always be (`--threshold 2`).
//! Other tests may run beside it: the bounds follow the noise the same jobs measured.
//!
//! How often the 5% is found depends on the machine's noise per pair (`noise` in ab.json), not
//! only on the gate: 10 pairs found it in 35 of 40 trials on a 2-core Intel VM (pair noise not
//! recorded; its interval widths imply 2-3.5%), and in 16 of 40 on a 2-core AMD VM whose pairs
//! vary by 6.5%. So the CI test runs 20 pairs, where a sound gate passes on both machines and a
//! broken one still fails.
//!
//! `gate_in_ci` runs 8 trials of each at 20 pairs (about two minutes); `gate_targets` is the
//! issue's full measurement at `--pairs 10`, 40 trials of each (about fifteen minutes):
//! `cargo test --release --test tests ab_gate:: -- --ignored --nocapture` (`AB_TRIALS`, `AB_PAIRS`,
//! `AB_WORK` (loop iterations), `AB_VERBOSE` change or show it). Both print the pairs' noise and
//! how many pairs a +-2% interval needs at it.

use crate::common;

use crate::common::{ab_suite, jb, only_dir};
use joulebench::record::{Status, read_all};
use std::time::Duration;

/// What the trials found.
struct Gate {
    trials: usize,
    pairs: u32,
    alarms: usize,
    found: usize,
    /// Median over the A-vs-A jobs: the paired interval's width, and the width of the same
    /// job's two halves compared unpaired (`compare`'s bootstrap of the ratio of medians).
    paired_width: f64,
    unpaired_width: f64,
    same_ratio: f64,
    more_ratio: f64,
    /// Median over the A-vs-A jobs of the pairs' noise (the robust standard deviation of their
    /// log ratios, `noise` in ab.json): what no interval over that many pairs can beat.
    pair_sd: f64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A `command` model running an awk loop of `n` iterations (its energy follows its work).
fn busy_loop_model(alias: &str, n: u64) -> String {
    format!(
        "\n[[model]]\nengine = \"command\"\nalias = \"{alias}\"\n\
         command = [\"awk\", \"BEGIN {{ s = 0; for (i = 0; i < {n}; i++) s += i; print \\\"generated 8 tokens\\\" }}\"]\n\
         tokens_regex = 'generated (?P<tokens>\\d+) tokens'\n"
    )
}

fn gate(trials: usize, pairs: u32, work: u64) -> Gate {
    let pairs: u32 = env_or("AB_PAIRS", pairs);
    let n: u64 = env_or("AB_WORK", work);
    let t = tempfile::tempdir().unwrap();
    let (_counters, tree, _driver) = common::driven_tree(20.0, Duration::from_millis(1));
    let work = busy_loop_model;
    let models = work("a", n) + &work("a2", n) + &work("more", n + n / 20);
    let cfg = ab_suite(t.path(), &tree.root, &models);
    let verbose = std::env::var("AB_VERBOSE").is_ok();
    let mut g = Gate {
        trials,
        pairs,
        alarms: 0,
        found: 0,
        paired_width: 0.0,
        unpaired_width: 0.0,
        same_ratio: 0.0,
        more_ratio: 0.0,
        pair_sd: 0.0,
    };
    let (mut pw, mut uw, mut sr, mut mr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sds = Vec::new();
    for i in 0..trials {
        for cand in ["a2", "more"] {
            let out = t.path().join(format!("out-{cand}-{i}"));
            let o = jb()
                .arg("ab")
                .arg(&cfg)
                .args(["--base", "a", "--candidate", cand])
                .args(["--pairs", &pairs.to_string(), "--threshold", "2"])
                .args(["--metric", "j_per_request", "--format", "json"])
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            let rep: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
            let row = &rep["rows"][0];
            if verbose {
                eprintln!("{cand}: {row}");
            }
            assert_eq!(row["provenance"], "measured", "{row}");
            assert_eq!(row["pairs"], pairs, "{row}");
            let regressed = o.status.code() == Some(1);
            let ratio = row["stats"]["ratio"].as_f64().unwrap_or(f64::NAN);
            if cand == "a2" {
                g.alarms += regressed as usize;
                sr.push(ratio);
                let ci = &row["stats"]["ci"];
                pw.push(ci[1].as_f64().unwrap_or(f64::NAN) - ci[0].as_f64().unwrap_or(f64::NAN));
                sds.push(row["noise"].as_f64().unwrap_or(f64::NAN));
                // The same job's two halves, compared as two separate runs would be.
                let run = only_dir(&out);
                let recs = read_all(&run.join("records.jsonl")).unwrap().0;
                let side = |v: &str| -> Vec<f64> {
                    recs.iter()
                        .filter(|r| r.status == Status::Ok && r.ab_variant.as_deref() == Some(v))
                        .filter_map(|r| r.energy_per_request_joules)
                        .collect()
                };
                let (_, ci) =
                    joulebench::compare::ratio_ci(&side("base"), &side("candidate"), 0.05, 7)
                        .unwrap();
                uw.push(ci[1] - ci[0]);
            } else {
                g.found += regressed as usize;
                mr.push(ratio);
            }
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    g.paired_width = median(pw);
    g.unpaired_width = median(uw);
    g.same_ratio = median(sr);
    g.more_ratio = median(mr);
    g.pair_sd = median(sds);
    let floor =
        2.0 * joulebench::stats::t95(pairs as usize - 1) * g.pair_sd / f64::from(pairs).sqrt();
    eprintln!(
        "A vs A: the pairs vary by {:.2}% (median robust sd); a t interval over {pairs} such \
         pairs is {:.1}% wide, and +-2% needs about {} pairs",
        g.pair_sd * 100.0,
        floor * 100.0,
        joulebench::ab::pairs_needed(g.pair_sd, 0.02).map_or("-".into(), |n| n.to_string())
    );
    eprintln!(
        "A vs A: {} of {trials} flagged (median ratio {:.4}; median 95% interval width: paired \
         {:.1}%, the same job's halves unpaired {:.1}%); 5% more work: {} of {trials} found \
         (median ratio {:.4})",
        g.alarms,
        g.same_ratio,
        g.paired_width * 100.0,
        g.unpaired_width * 100.0,
        g.found,
        g.more_ratio
    );
    g
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26, error < 1.5e-7).
fn phi(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The largest k with P(Binomial(n, p) < k) <= tail: fewer than k successes would be that rare.
fn binomial_floor(n: usize, p: f64, tail: f64) -> usize {
    let mut cdf = 0.0;
    for k in 0..=n {
        let mut c = 1.0;
        for i in 0..k {
            c *= (n - i) as f64 / (i + 1) as f64;
        }
        let pk = c * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32);
        if cdf + pk > tail {
            return k;
        }
        cdf += pk;
    }
    n
}

/// What a sound gate does at the noise these jobs measured, for `trials` trials of `pairs`
/// pairs: (the fewest 5% changes it finds but once in 1,000 runs, how far the median of the
/// trials' estimates strays but once in 15,000). One job's estimate has a standard error of
/// about noise / sqrt(0.955 pairs) (Hodges-Lehmann's efficiency); the change is found when the
/// estimate clears both the threshold and about 1.96 standard errors; the median of the trials'
/// estimates has a standard error of about 1.25 / sqrt(trials) times one job's.
fn sound_gate_bounds(noise: f64, pairs: u32, trials: usize) -> (usize, f64) {
    let se = noise / (0.955 * f64::from(pairs)).sqrt();
    let bar = (1.96 * se).max(1.02f64.ln());
    // At most 95%: stalls that a robust noise figure does not see can still hide a change.
    let power = phi((1.05f64.ln() - bar) / se).min(0.95);
    let floor = binomial_floor(trials, power, 0.001);
    let tol = (4.0 * 1.2533 * se / (trials as f64).sqrt()).max(0.025);
    eprintln!(
        "a sound gate at a pair noise of {:.2}% and {pairs} pairs: finds the 5% in about {:.0}% \
         of trials (at least {floor} of {trials} but once in 1,000 runs); medians within {:.1}%",
        noise * 100.0,
        power * 100.0,
        tol * 100.0
    );
    (floor, tol)
}

/// A bounded share of the full measurement: 8 trials of each at 20 pairs (about two minutes),
/// judged against what a sound gate does at the noise the same jobs measured, so that a sound
/// gate rarely fails it on a quiet or a noisy machine and a broken one (flagging everything,
/// nothing, or the wrong size of change) fails it. False alarms (Holm-corrected p < 0.05 in the
/// bad direction: at most 2.5% of trials) may be at most 2 of 8 (3 or more: about 1 run in
/// 1,000). At a pair noise of 6.5% a sound gate finds the 5% change in about 85% of trials; at
/// 9% (this AMD VM on a bad hour) in about 65%, so the floor on what is found follows the noise
/// (past about 10% no floor is safe in 8 trials: only the false alarms and the medians are
/// judged then), and the median estimates must sit within 2.5% of 1.00 and 1.05 (wider when the
/// noise is: 4 standard errors of a median of 8).
#[test]
fn gate_in_ci() {
    let g = gate(env_or("AB_TRIALS", 8), 20, 8_000_000);
    let (floor, tol) = sound_gate_bounds(g.pair_sd, g.pairs, g.trials);
    assert!(
        g.alarms * 4 <= g.trials,
        "{} false alarms of {}",
        g.alarms,
        g.trials
    );
    assert!(
        g.found >= floor,
        "{} of {} found (a sound gate finds at least {floor})",
        g.found,
        g.trials
    );
    assert!((g.same_ratio.ln()).abs() <= tol, "A vs A {}", g.same_ratio);
    assert!(
        (g.more_ratio.ln() - 1.05f64.ln()).abs() <= tol,
        "5% more work {}",
        g.more_ratio
    );
}

#[test]
fn the_sound_gate_bounds_follow_the_noise() {
    assert!((phi(0.0) - 0.5).abs() < 1e-7);
    assert!((phi(1.96) - 0.975).abs() < 1e-4);
    assert!((phi(-1.0) - 0.158_655).abs() < 1e-5);
    // Binomial(8, 0.5): P(X < 1) = 1/256 > 0.001, so the floor is 0; P(X < 2) = 9/256.
    assert_eq!(binomial_floor(8, 0.5, 0.001), 0);
    assert_eq!(binomial_floor(8, 0.5, 0.01), 1);
    assert_eq!(binomial_floor(8, 1.0, 0.001), 8);
    // Quiet machine: most trials find the change (at most 95% assumed), medians within 2.5%.
    let (quiet, tol) = sound_gate_bounds(0.02, 20, 8);
    assert_eq!(quiet, 5);
    assert_eq!(tol, 0.025);
    // Noisier: fewer required, wider medians.
    let (noisy, wide) = sound_gate_bounds(0.09, 20, 8);
    assert!(noisy < quiet && noisy >= 1, "{noisy}");
    assert!(wide > 0.03, "{wide}");
}

/// The targets: A vs A flagged in at most 5% of 40 trials, 5% more work found in at
/// least 95%, and the paired interval of A vs A narrower than +-2%.
#[test]
#[ignore]
fn gate_targets() {
    let g = gate(env_or("AB_TRIALS", 40), 10, 20_000_000);
    assert!(
        g.alarms * 20 <= g.trials,
        "{} false alarms of {}",
        g.alarms,
        g.trials
    );
    assert!(
        g.found * 100 >= g.trials * 95,
        "{} of {} found",
        g.found,
        g.trials
    );
    assert!(g.paired_width < 0.04, "paired width {}", g.paired_width);
}

/// One sequential job's outcome: its exit code, the pairs it used, when its row was decided,
/// the row's verdict and the pairs' noise.
struct SeqJob {
    code: Option<i32>,
    pairs: u64,
    decided_at: Option<u64>,
    verdict: String,
    noise: f64,
    /// The sample standard deviation of the pairs' log ratios the sequence used.
    sd: f64,
}

/// The gate's suite (the same busy-loop variants as `gate`) and a runner of `--pairs auto`
/// jobs against it.
fn seq_jobs(work: u64) -> (tempfile::TempDir, impl Fn(&str, u32) -> SeqJob) {
    let n: u64 = env_or("AB_WORK", work);
    let t = tempfile::tempdir().unwrap();
    let (counters, tree, driver) = common::driven_tree(20.0, Duration::from_millis(1));
    let loop_of = busy_loop_model;
    let models = loop_of("a", n)
        + &loop_of("a2", n)
        + &loop_of("more", n + n / 20)
        + &loop_of("clear", n + 3 * n / 10);
    let cfg = ab_suite(t.path(), &tree.root, &models);
    let dir = t.path().to_path_buf();
    let verbose = std::env::var("AB_VERBOSE").is_ok();
    let keep = (counters, tree, driver);
    let run = move |cand: &str, max_pairs: u32| {
        let _ = &keep;
        let out = dir.join(format!("out-{cand}"));
        let o = jb()
            .arg("ab")
            .arg(&cfg)
            .args(["--base", "a", "--candidate", cand, "--threshold", "2"])
            .args(["--max-pairs", &max_pairs.to_string()])
            .args(["--metric", "j_per_request", "--format", "json", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let rep: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
        let row = &rep["rows"][0];
        assert_eq!(rep["design"], "sequential", "{rep}");
        assert_eq!(row["provenance"], "measured", "{row}");
        let job = SeqJob {
            code: o.status.code(),
            pairs: rep["stops"][0]["pairs"].as_u64().unwrap_or(0),
            decided_at: row["sequence"]["decided_at"].as_u64(),
            verdict: row["verdict"].as_str().unwrap_or("").to_string(),
            noise: row["noise"].as_f64().unwrap_or(f64::NAN),
            sd: row["sequence"]["sd"].as_f64().unwrap_or(f64::NAN),
        };
        if verbose {
            eprintln!(
                "{cand}: exit {:?}, {} pairs, decided at {:?}, {}, noise {:.2}%",
                job.code,
                job.pairs,
                job.decided_at,
                job.verdict,
                job.noise * 100.0
            );
        }
        let _ = std::fs::remove_dir_all(&out);
        job
    };
    (t, run)
}

/// The pairs a fixed design needs to rule out a 2% regression when there is none, at pair noise
/// `sd`: two one-sided tests at 5% with 80% power ((1.645 + 1.282) sd / ln 1.02)^2.
fn fixed_tost_pairs(sd: f64) -> f64 {
    ((1.645 + 1.282) * sd / 1.02f64.ln()).powi(2)
}

/// What a sound sequential gate finds of a 30% change by 8 pairs when the pairs' log ratios
/// have standard deviation `sd` (the sample one, which the sequence uses: a stalled pair
/// widens it): the chance that the mean clears the sequence's half-width at 8 pairs (at most
/// 95%).
fn clear_change_power(sd: f64) -> f64 {
    let t = joulebench::stats::sequential::critical_t(8, 0.05, 1.0);
    let se = sd / 8f64.sqrt();
    phi((1.3f64.ln() - 1.02f64.ln()) / se - t).min(0.95)
}

/// `--pairs auto` in CI, a bounded share: 4 A-vs-A jobs with a 24-pair budget (none may be
/// flagged more than once: the anytime false-alarm rate is at most 5% per job, far less in
/// practice, so 2 of 4 is about 1 run in 300) and 4 jobs with 30% more work, which a sound gate
/// finds by 8 pairs nearly always at these machines' noise (the floor follows the noise the
/// jobs measured, as `gate_in_ci`'s does).
#[test]
fn sequential_gate_in_ci() {
    let trials: usize = env_or("AB_TRIALS", 4);
    let (_t, run) = seq_jobs(8_000_000);
    let (mut alarms, mut found_early, mut noises, mut sds) = (0, 0, Vec::new(), Vec::new());
    for _ in 0..trials {
        let same = run("a2", 24);
        assert!(matches!(same.code, Some(0..=2)), "exit {:?}", same.code);
        alarms += (same.code == Some(1)) as usize;
        noises.push(same.noise);
        assert!(
            same.pairs <= 24 && same.pairs % 2 == 0,
            "{} pairs",
            same.pairs
        );
        let clear = run("clear", 24);
        found_early += (clear.code == Some(1) && clear.pairs <= 8) as usize;
        sds.push(clear.sd);
    }
    let floor = binomial_floor(trials, clear_change_power(median(sds.clone())), 0.001);
    eprintln!(
        "sequential A vs A: {alarms} of {trials} flagged (pair noise {:.2}%); 30% more work \
         found by 8 pairs in {found_early} of {trials} (sd of its pairs {:.2}%; a sound gate: at \
         least {floor})",
        median(noises) * 100.0,
        median(sds) * 100.0
    );
    assert!(alarms <= 1, "{alarms} false alarms of {trials}");
    assert!(
        found_early >= floor,
        "{found_early} of {trials} found by 8 pairs"
    );
}

/// The targets for `--pairs auto` (`--threshold 2`, `--max-pairs 200`), 40 trials of
/// each: A vs A flagged in at most 5%; 5% more work found in at least 95% (median and 90th
/// percentile of the pairs used printed); 30% more work found after at most 8 pairs in at least
/// 95%; A vs A decided unchanged within 1.5x the pairs a fixed design needs at the job's noise
/// (two one-sided tests, 80% power), and the median pairs used against that number.
/// `cargo test --release --test tests ab_gate::sequential_targets -- --ignored --nocapture`.
#[test]
#[ignore]
fn sequential_targets() {
    let trials: usize = env_or("AB_TRIALS", 40);
    let max: u32 = env_or("AB_MAX_PAIRS", 200);
    let (_t, run) = seq_jobs(4_000_000);
    let (mut alarms, mut found5, mut found30) = (0usize, 0usize, 0usize);
    let (mut used5, mut used30, mut used_same, mut noises) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut within, mut ratio_to_fixed) = (0usize, Vec::new());
    for i in 0..trials {
        let same = run("a2", max);
        alarms += (same.code == Some(1)) as usize;
        noises.push(same.noise);
        let fixed = fixed_tost_pairs(same.noise);
        let at = same.decided_at.filter(|_| same.verdict == "unchanged");
        within += at.is_some_and(|p| p as f64 <= 1.5 * fixed) as usize;
        ratio_to_fixed.push(at.map_or(f64::INFINITY, |p| p as f64 / fixed));
        used_same.push(same.pairs as f64);
        let more = run("more", max);
        found5 += (more.code == Some(1)) as usize;
        used5.push(more.pairs as f64);
        let clear = run("clear", max);
        found30 += (clear.code == Some(1) && clear.pairs <= 8) as usize;
        used30.push(clear.pairs as f64);
        eprintln!(
            "trial {i}: A vs A exit {:?} after {} pairs (decided unchanged at {:?}; fixed needs \
             {fixed:.0} at {:.2}%); 5%: exit {:?} after {}; 30%: exit {:?} after {}",
            same.code,
            same.pairs,
            at,
            same.noise * 100.0,
            more.code,
            more.pairs,
            clear.code,
            clear.pairs
        );
    }
    let pct = |v: &[f64], q: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let sd = median(noises.clone());
    eprintln!(
        "pair noise (robust sd of the A-vs-A jobs): median {:.2}%, range {:.2}-{:.2}%",
        sd * 100.0,
        pct(&noises, 0.0) * 100.0,
        pct(&noises, 1.0) * 100.0
    );
    eprintln!(
        "A vs A: {alarms} of {trials} flagged; decided unchanged within 1.5x the fixed design's \
         pairs in {within} of {trials}; pairs used to that decision / fixed pairs: median {:.2}; \
         pairs used: median {:.0}, p90 {:.0}",
        median(ratio_to_fixed),
        pct(&used_same, 0.5),
        pct(&used_same, 0.9)
    );
    eprintln!(
        "5% more work: found in {found5} of {trials}; pairs used: median {:.0}, p90 {:.0}",
        pct(&used5, 0.5),
        pct(&used5, 0.9)
    );
    eprintln!(
        "30% more work: found by 8 pairs in {found30} of {trials}; pairs used: median {:.0}, max {:.0}",
        pct(&used30, 0.5),
        pct(&used30, 1.0)
    );
    assert!(alarms * 20 <= trials, "{alarms} false alarms");
    assert!(found5 * 100 >= trials * 95, "5%: {found5}");
    assert!(found30 * 100 >= trials * 95, "30%: {found30}");
}
