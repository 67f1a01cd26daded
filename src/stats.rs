//! Summaries of repeated measurements: median, mean, standard deviation, coefficient of variation,
//! a 95% confidence interval for the mean (Student t), and flagged (never dropped) outliers.

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

/// 95% percentile-bootstrap interval of the median, deterministic for the same input (`seed`).
pub fn bootstrap_median_ci(v: &[f64], seed: u64) -> Option<[f64; 2]> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}
