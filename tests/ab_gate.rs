//! The A/B gate's error rates on a fake powercap tree held at constant power, where a variant's
//! energy is set by its work (a fixed busy loop of about half a second here): A against A must
//! rarely be flagged, a candidate doing 5% more work must nearly always be (`--threshold 2`).
//! Its own test binary, so no other test loads the machine while it runs.
//!
//! How often the 5% is found depends on the machine's noise per pair (`noise` in ab.json), not
//! only on the gate: 10 pairs found it in 35 of 40 trials on a 2-core Intel VM (pair noise not
//! recorded; its interval widths imply 2-3.5%), and in 16 of 40 on a 2-core AMD VM whose pairs
//! vary by 6.5%. So the CI test runs 20 pairs, where a sound gate passes on both machines and a
//! broken one still fails.
//!
//! `gate_in_ci` runs 8 trials of each at 20 pairs (about five minutes); `gate_targets` is the
//! issue's full measurement at `--pairs 10`, 40 trials of each (about fifteen minutes):
//! `cargo test --release --test ab_gate -- --ignored --nocapture` (`AB_TRIALS`, `AB_PAIRS`,
//! `AB_WORK` (loop iterations), `AB_VERBOSE` change or show it). Both print the pairs' noise and
//! how many pairs a +-2% interval needs at it.

mod common;

use common::{ab_suite, jb, only_dir};
use joulebench::record::{Status, read_all};
use std::time::Duration;

/// What the trials found.
struct Gate {
    trials: usize,
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

fn gate(trials: usize, pairs: u32) -> Gate {
    let pairs: u32 = env_or("AB_PAIRS", pairs);
    let n: u64 = env_or("AB_WORK", 20_000_000);
    let t = tempfile::tempdir().unwrap();
    let (_counters, tree, _driver) = common::driven_tree(20.0, Duration::from_millis(1));
    let work = |alias: &str, n: u64| {
        format!(
            "\n[[model]]\nengine = \"command\"\nalias = \"{alias}\"\n\
             command = [\"awk\", \"BEGIN {{ s = 0; for (i = 0; i < {n}; i++) s += i; print \\\"generated 8 tokens\\\" }}\"]\n\
             tokens_regex = 'generated (?P<tokens>\\d+) tokens'\n"
        )
    };
    let models = work("a", n) + &work("a2", n) + &work("more", n + n / 20);
    let cfg = ab_suite(t.path(), &tree.root, &models);
    let verbose = std::env::var("AB_VERBOSE").is_ok();
    let mut g = Gate {
        trials,
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

/// A bounded share of the full measurement at 20 pairs, its bounds scaled to 8 trials so that a
/// sound gate rarely fails it and a broken one (flagging everything, nothing, or the wrong size
/// of change) always does. At 20 pairs and a pair noise of 7.5% (the noisier VM) one job's
/// estimate has a standard error of about 1.7%, so the 5% change is found in about 4 trials of
/// 5 (4 or more of 8: all but about 1 run in 150), the median of 8 estimates lands within 2.5%
/// of the truth in all but about 1 run in 1,000, and a false alarm (Holm-corrected p < 0.05 in
/// the bad direction) comes in at most 2.5% of trials (3 of 8: about 1 run in 1,000).
#[test]
fn gate_in_ci() {
    let g = gate(env_or("AB_TRIALS", 8), 20);
    assert!(
        g.alarms * 4 <= g.trials,
        "{} false alarms of {}",
        g.alarms,
        g.trials
    );
    assert!(g.found * 2 >= g.trials, "{} of {} found", g.found, g.trials);
    assert!((0.975..1.025).contains(&g.same_ratio), "{}", g.same_ratio);
    assert!((1.025..1.075).contains(&g.more_ratio), "{}", g.more_ratio);
}

/// The targets: A vs A flagged in at most 5% of 40 trials, 5% more work found in at
/// least 95%, and the paired interval of A vs A narrower than +-2%.
#[test]
#[ignore]
fn gate_targets() {
    let g = gate(env_or("AB_TRIALS", 40), 10);
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
