//! Summaries of repeated measurements: median, mean, standard deviation, coefficient of variation,
//! a 95% confidence interval for the mean (Student t), and flagged (never dropped) outliers; and
//! paired comparisons (Wilcoxon signed-rank, Hodges-Lehmann, Holm) for `joulebench ab`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A summary of one figure over repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1); null for fewer than two values.
    pub sd: Option<f64>,
    /// sd / mean; null when undefined.
    pub cv: Option<f64>,
    /// 95% confidence interval of the mean, Student t with n - 1 degrees of freedom.
    pub ci95: Option<[f64; 2]>,
    pub min: f64,
    pub max: f64,
    /// Indices of values outside Tukey's fences (1.5 IQR); flagged, still included above.
    pub outliers: Vec<usize>,
    /// 95% percentile-bootstrap interval of the median (seeded), where computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_ci95: Option<[f64; 2]>,
}

/// Resamples used by [`bootstrap_median_ci`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Above this many values the median's interval is the order-statistic one (see
/// [`bootstrap_median_ci`]): a 200,000-record report would otherwise resample for minutes.
pub const BOOTSTRAP_MAX_N: usize = 1000;

/// 95% percentile-bootstrap interval of the median, deterministic for the same input (`seed`);
/// above [`BOOTSTRAP_MAX_N`] values, the binomial order-statistic interval (the bootstrap's
/// large-sample limit, exact in coverage without resampling).
pub fn bootstrap_median_ci(v: &[f64], seed: u64) -> Option<[f64; 2]> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    if v.len() > BOOTSTRAP_MAX_N {
        // Large samples: the binomial order-statistic interval of the median, which the
        // percentile bootstrap converges to, in one sort instead of 2,000 resamples of n.
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let half = 1.959_963_984_540_054 * n.sqrt() / 2.0;
        let lo = ((n / 2.0 - half).floor() as usize).clamp(1, v.len()) - 1;
        let hi = ((n / 2.0 + half).ceil() as usize).clamp(1, v.len()) - 1;
        return Some([v[lo], v[hi]]);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut meds = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut buf = vec![0f64; v.len()];
    let n = v.len();
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for b in buf.iter_mut() {
            *b = v[rng.random_range(0..n)];
        }
        meds.push(median_in_place(&mut buf));
    }
    Some([quantile(&meds, 0.025), quantile(&meds, 0.975)])
}

/// [`summarize`] plus the bootstrap interval of the median.
pub fn summarize_bootstrap(values: &[f64], seed: u64) -> Option<Summary> {
    let mut s = summarize(values)?;
    s.bootstrap_ci95 = bootstrap_median_ci(values, seed);
    Some(s)
}

/// The median of `v` (NaN-free input expected); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The median of `v`, reordering it (linear time; for resampling loops).
pub fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// Linear-interpolated quantile `q` in [0, 1]; NaN when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Two-sided Student t critical value for 95% with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64).map_or(f64::NAN, |t| t.inverse_cdf(0.975))
}

/// Summarizes finite values; returns None when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let (sd, cv, ci95) = if n >= 2 {
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let half = t95(n - 1) * sd / (n as f64).sqrt();
        let cv = (mean != 0.0).then(|| sd / mean.abs());
        (Some(sd), cv, Some([mean - half, mean + half]))
    } else {
        (None, None, None)
    };
    let outliers = if n >= 4 {
        let (q1, q3) = (quantile(&v, 0.25), quantile(&v, 0.75));
        let iqr = q3 - q1;
        let (lo, hi) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
        values
            .iter()
            .enumerate()
            .filter(|(_, x)| x.is_finite() && (**x < lo || **x > hi))
            .map(|(i, _)| i)
            .collect()
    } else {
        Vec::new()
    };
    Some(Summary {
        n,
        median: median(&v),
        mean,
        sd,
        cv,
        ci95,
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        outliers,
        bootstrap_ci95: None,
    })
}

/// Paired statistics of two variants' values, pair by pair (`joulebench ab`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Complete pairs (both values positive and finite).
    pub n: usize,
    /// The ratio candidate / base: exp of the Hodges-Lehmann estimate of the pairs' log ratios
    /// (the median of their Walsh averages), robust to the odd repetition a noisy machine
    /// slows or speeds up.
    pub ratio: f64,
    /// Its distribution-free interval at level 1 - alpha (from the signed-rank distribution).
    pub ci: [f64; 2],
    /// The ratio of the two variants' geometric means over the complete pairs (exp of the
    /// mean log ratio): what a table of geometric means would show; not robust, so the
    /// verdict goes by `ratio`.
    #[serde(default)]
    pub geo_ratio: f64,
    /// Two-sided p-value of "no change" (Wilcoxon's signed-rank test, exact).
    pub p: f64,
    /// Each pair's ratio, in pair order.
    pub pair_ratios: Vec<f64>,
}

/// How many subsets of the ranks 1..=n sum to each total: the exact null distribution of
/// Wilcoxon's signed-rank statistic (times 2^n).
pub fn signed_rank_counts(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut c = vec![0f64; max + 1];
    c[0] = 1.0;
    for r in 1..=n {
        for s in (r..=max).rev() {
            c[s] += c[s - r];
        }
    }
    c
}

/// Paired statistics of `pairs` = (pair index, base value, candidate value): Wilcoxon's
/// signed-rank test on the log ratios and the Hodges-Lehmann ratio with its interval.
pub fn paired(pairs: &[(u32, f64, f64)], alpha: f64) -> Option<Paired> {
    let mut ok: Vec<(u32, f64)> = pairs
        .iter()
        .filter(|(_, b, c)| b.is_finite() && c.is_finite() && *b > 0.0 && *c > 0.0)
        .map(|&(i, b, c)| (i, (c / b).ln()))
        .collect();
    ok.sort_by_key(|x| x.0);
    let n = ok.len();
    if !(2..=1000).contains(&n) {
        return None;
    }
    let d: Vec<f64> = ok.iter().map(|x| x.1).collect();
    let mut walsh = Vec::with_capacity(n * (n + 1) / 2);
    for i in 0..n {
        for j in i..n {
            walsh.push((d[i] + d[j]) / 2.0);
        }
    }
    walsh.sort_by(f64::total_cmp);
    let m = walsh.len();
    let hl = if m % 2 == 1 {
        walsh[m / 2]
    } else {
        (walsh[m / 2 - 1] + walsh[m / 2]) / 2.0
    };
    // The statistic: the sum of the ranks of |d| over the positive d (zeros count half).
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| d[a].abs().total_cmp(&d[b].abs()));
    let mut w_plus = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let r = (rank + 1) as f64;
        if d[i] > 0.0 {
            w_plus += r;
        } else if d[i] == 0.0 {
            w_plus += r / 2.0;
        }
    }
    let counts = signed_rank_counts(n);
    let total: f64 = counts.iter().sum();
    let cdf = |w: f64| -> f64 {
        counts
            .iter()
            .enumerate()
            .take_while(|(s, _)| (*s as f64) <= w + 1e-9)
            .map(|(_, c)| c)
            .sum::<f64>()
            / total
    };
    let lower = cdf(w_plus);
    let upper = 1.0 - cdf(w_plus - 1.0);
    let p = (2.0 * lower.min(upper)).min(1.0);
    // The largest c with P(W <= c) <= alpha/2 sets the interval's order statistics.
    let mut acc = 0.0;
    let mut c_star: Option<usize> = None;
    for (s, &c) in counts.iter().enumerate() {
        acc += c / total;
        if acc <= alpha / 2.0 {
            c_star = Some(s);
        } else {
            break;
        }
    }
    // 0-based: the (c*+1)-th smallest and largest Walsh averages (Hollander & Wolfe).
    let k = c_star.map_or(0, |c| c.min(m / 2));
    Some(Paired {
        n,
        ratio: hl.exp(),
        ci: [walsh[k].exp(), walsh[m - 1 - k].exp()],
        geo_ratio: (d.iter().sum::<f64>() / n as f64).exp(),
        p: p.clamp(0.0, 1.0),
        pair_ratios: d.iter().map(|x| x.exp()).collect(),
    })
}

/// McNemar's exact test: the two-sided p of `b` against `c` discordant pairs (the binomial
/// of b + c trials at 1/2).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), in logs so a large n does not underflow.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0f64;
    let mut tail = 0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Accuracy of a candidate against a base on the same items (`base[i]`, `cand[i]`: item i
/// right or not): the ratio of accuracies, its interval from a seeded paired bootstrap over
/// items (1 - alpha), and McNemar's exact p on the items the two disagree on.
pub fn paired_accuracy(
    base: &[bool],
    cand: &[bool],
    alpha: f64,
    seed: u64,
) -> Option<(f64, [f64; 2], f64)> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let n = base.len();
    if n == 0 || cand.len() != n {
        return None;
    }
    let acc = |v: &[bool], idx: &mut dyn Iterator<Item = usize>| {
        let (mut k, mut m) = (0usize, 0usize);
        for i in idx {
            k += usize::from(v[i]);
            m += 1;
        }
        k as f64 / m.max(1) as f64
    };
    let (ab, ac) = (acc(base, &mut (0..n)), acc(cand, &mut (0..n)));
    if ab <= 0.0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ratios = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let b = acc(base, &mut idx.iter().copied());
        let c = acc(cand, &mut idx.iter().copied());
        if b > 0.0 {
            ratios.push(c / b);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let ci = [
        quantile(&ratios, alpha / 2.0),
        quantile(&ratios, 1.0 - alpha / 2.0),
    ];
    let b = (0..n).filter(|&i| base[i] && !cand[i]).count();
    let c = (0..n).filter(|&i| !base[i] && cand[i]).count();
    Some((ac / ab, ci, mcnemar_exact(b, c)))
}

/// Holm's step-down adjustment: adjusted p-values in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

pub mod sequential;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Above the bootstrap's size limit the median's interval is the order-statistic one: it
    /// covers the true median about 95% of the time, like the bootstrap below the limit.
    #[test]
    fn large_sample_median_intervals_cover_95_percent() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(5);
        let (trials, n) = (400, BOOTSTRAP_MAX_N * 2);
        let mut covered = 0;
        for t in 0..trials {
            // Exponential with rate 1: median ln 2.
            let v: Vec<f64> = (0..n).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
            let [lo, hi] = bootstrap_median_ci(&v, t).unwrap();
            assert!(lo <= median(&v) && median(&v) <= hi);
            covered += usize::from(lo <= std::f64::consts::LN_2 && std::f64::consts::LN_2 <= hi);
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.92..=0.985).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn known_values() {
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.n, 8);
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.median, 4.5);
        assert!((s.sd.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        // t(7, 0.975) = 2.364624...
        assert!((t95(7) - 2.364_624_25).abs() < 1e-6);
        let half = 2.364_624_25 * s.sd.unwrap() / 8f64.sqrt();
        assert!((s.ci95.unwrap()[1] - (5.0 + half)).abs() < 1e-6);
    }

    #[test]
    fn outliers_are_flagged_not_dropped() {
        let s = summarize(&[10.0, 10.1, 9.9, 10.0, 10.2, 30.0]).unwrap();
        assert_eq!(s.outliers, vec![5]);
        assert_eq!(s.n, 6);
        assert_eq!(s.max, 30.0);
    }

    #[test]
    fn single_value_and_empty() {
        let s = summarize(&[3.0]).unwrap();
        assert_eq!((s.median, s.sd, s.ci95), (3.0, None, None));
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
    }

    #[test]
    fn median_in_place_matches_median() {
        for v in [
            vec![3.0, 1.0, 2.0],
            vec![4.0, 1.0, 3.0, 2.0],
            vec![5.0],
            vec![2.0, 2.0, 1.0, 9.0, 7.0, 7.0],
        ] {
            let mut w = v.clone();
            assert_eq!(median_in_place(&mut w), median(&v));
        }
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_median() {
        let v: Vec<f64> = (0..20).map(|i| 10.0 + (i % 7) as f64 * 0.1).collect();
        let a = bootstrap_median_ci(&v, 1).unwrap();
        assert_eq!(Some(a), bootstrap_median_ci(&v, 1));
        let m = median(&v);
        assert!(a[0] <= m && m <= a[1]);
        assert!(bootstrap_median_ci(&[1.0], 1).is_none());
    }

    proptest! {
        #[test]
        fn summary_invariants(v in proptest::collection::vec(-1e6f64..1e6, 2..40)) {
            let s = summarize(&v).unwrap();
            prop_assert!(s.min <= s.median && s.median <= s.max);
            prop_assert!(s.min <= s.mean + 1e-6 && s.mean <= s.max + 1e-6);
            let [lo, hi] = s.ci95.unwrap();
            prop_assert!(lo <= s.mean + 1e-9 && s.mean <= hi + 1e-9);
            prop_assert!(s.sd.unwrap() >= 0.0);
        }
    }

    #[test]
    fn mcnemar_and_paired_accuracy_hold_known_values() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 0 of 6 discordant pairs one way: p = 2 / 2^6.
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        assert!((mcnemar_exact(3, 3) - 1.0).abs() < 1e-12);
        let base = [true, true, true, true, false, false, true, true];
        let (r, ci, p) = paired_accuracy(&base, &base, 0.05, 1).unwrap();
        assert_eq!((r, p), (1.0, 1.0));
        assert!(ci[0] <= 1.0 && ci[1] >= 1.0);
        let worse = [false, false, false, false, false, false, true, true];
        let (r, ci, p) = paired_accuracy(&base, &worse, 0.05, 1).unwrap();
        assert!((r - 2.0 / 6.0).abs() < 1e-12 && ci[1] < 1.0, "{r} {ci:?}");
        // Four items right only in the base, none only in the candidate: p = 2 / 2^4.
        assert!((p - 0.125).abs() < 1e-12, "{p}");
    }
}
