//! Open-loop arrivals of a server workload (`request_rate`, `arrival`, `burstiness`,
//! `max_concurrency`, `duration_s`, `seed`): when each request is sent, drawn from a seeded
//! Poisson or gamma process as serving benchmarks do, instead of a closed loop where a stream
//! sends its next request the moment the last one ends.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Requests per second: a finite rate, or `"inf"` (closed loop: every stream sends its next
/// request as soon as the last one ends).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestRate {
    PerSecond(f64),
    Infinite,
}

impl Serialize for RequestRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestRate::PerSecond(r) => s.serialize_f64(*r),
            RequestRate::Infinite => s.serialize_str("inf"),
        }
    }
}

impl<'de> Deserialize<'de> for RequestRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RequestRate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Int(i64),
            Text(String),
        }
        let bad = |what: &str| {
            serde::de::Error::custom(format!(
                "request_rate {what}: give requests per second (> 0, at most {MAX_RATE}) or \"inf\" \
                 for a closed loop"
            ))
        };
        let r = match Raw::deserialize(d)? {
            Raw::Num(v) => v,
            Raw::Int(v) => v as f64,
            Raw::Text(t) if matches!(t.trim(), "inf" | "infinity" | "Inf") => {
                return Ok(RequestRate::Infinite);
            }
            Raw::Text(t) => return Err(bad(&format!("{t:?}"))),
        };
        if r.is_infinite() && r > 0.0 {
            return Ok(RequestRate::Infinite);
        }
        if !(r > 0.0 && r <= MAX_RATE) {
            return Err(bad(&format!("{r}")));
        }
        Ok(RequestRate::PerSecond(r))
    }
}

/// The highest finite rate a suite may ask for (a million requests per second).
pub const MAX_RATE: f64 = 1e6;

/// The inter-arrival distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with shape `burstiness` (1 is Poisson; below 1 burstier, above 1 more even).
    Gamma,
}

/// An open-loop schedule's settings, as the record states them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    pub request_rate_per_s: f64,
    pub process: Process,
    /// Gamma shape (1 for Poisson): the gaps' coefficient of variation is 1 / sqrt(burstiness).
    pub burstiness: f64,
    /// Requests in flight at most; a request due while all are busy waits for one.
    pub max_concurrency: usize,
    pub seed: u64,
}

impl Arrivals {
    /// When each of `n` requests is due, in ns after the pass starts (the first at 0), for
    /// repetition `round` (each repetition draws its own gaps from the same seed).
    pub fn schedule(&self, n: usize, round: u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mean = 1.0 / self.request_rate_per_s;
        let mut t = 0f64;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 {
                t += match self.process {
                    Process::Poisson => exponential(&mut rng) * mean,
                    Process::Gamma => gamma(&mut rng, self.burstiness) * mean / self.burstiness,
                };
            }
            out.push((t * 1e9).min(u64::MAX as f64 / 2.0) as u64);
        }
        out
    }

    /// One line for plans and summaries.
    pub fn describe(&self) -> String {
        let rate = format!("{:.4}", self.request_rate_per_s);
        let rate = rate.trim_end_matches('0').trim_end_matches('.');
        format!(
            "{rate} req/s ({}), at most {} in flight",
            self.process_text(),
            self.max_concurrency
        )
    }

    /// `Poisson` or `gamma, burstiness B`.
    pub fn process_text(&self) -> String {
        match self.process {
            Process::Poisson => "Poisson".to_string(),
            Process::Gamma => format!("gamma, burstiness {}", self.burstiness),
        }
    }
}

/// A unit-mean exponential draw.
fn exponential(rng: &mut StdRng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A gamma draw of shape `k` and scale 1 (Marsaglia and Tsang; shapes below 1 by boosting).
fn gamma(rng: &mut StdRng, k: f64) -> f64 {
    if k < 1.0 {
        let u = 1.0 - rng.random::<f64>();
        return gamma(rng, k + 1.0) * u.powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(a: &Arrivals, n: usize, round: u64) -> Vec<f64> {
        a.schedule(n, round)
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 1e9)
            .collect()
    }

    fn mean_cv(v: &[f64]) -> (f64, f64) {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (m, var.sqrt() / m)
    }

    fn arrivals(rate: f64, process: Process, burstiness: f64) -> Arrivals {
        Arrivals {
            request_rate_per_s: rate,
            process,
            burstiness,
            max_concurrency: 8,
            seed: 7,
        }
    }

    /// The gaps' mean is 1 / rate and their coefficient of variation 1 / sqrt(burstiness),
    /// within bounds that hold for 20,000 draws (standard errors of about 1% and 2%).
    #[test]
    fn gaps_have_the_rate_and_dispersion_asked_for() {
        for (process, k) in [
            (Process::Poisson, 1.0),
            (Process::Gamma, 0.25),
            (Process::Gamma, 1.0),
            (Process::Gamma, 4.0),
        ] {
            let a = arrivals(20.0, process, k);
            let (m, cv) = mean_cv(&gaps(&a, 20_001, 0));
            assert!(
                (m - 0.05).abs() < 0.05 * 0.06,
                "{process:?} {k}: mean gap {m}"
            );
            let want = 1.0 / f64::sqrt(k);
            assert!(
                (cv - want).abs() < want * 0.08,
                "{process:?} {k}: cv {cv} vs {want}"
            );
        }
    }

    #[test]
    fn schedules_are_seeded_per_repetition() {
        let a = arrivals(5.0, Process::Poisson, 1.0);
        assert_eq!(a.schedule(50, 3), a.schedule(50, 3));
        assert_ne!(a.schedule(50, 3), a.schedule(50, 4));
        let s = a.schedule(50, 3);
        assert_eq!(s[0], 0);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        let b = Arrivals { seed: 8, ..a };
        assert_ne!(b.schedule(50, 3), s);
    }

    #[test]
    fn rates_parse_as_numbers_or_inf_and_nonsense_is_refused() {
        #[derive(Deserialize)]
        struct W {
            r: RequestRate,
        }
        let p = |s: &str| toml::from_str::<W>(&format!("r = {s}")).map(|w| w.r);
        assert_eq!(p("2.5").unwrap(), RequestRate::PerSecond(2.5));
        assert_eq!(p("3").unwrap(), RequestRate::PerSecond(3.0));
        assert_eq!(p("\"inf\"").unwrap(), RequestRate::Infinite);
        assert_eq!(p("inf").unwrap(), RequestRate::Infinite);
        for bad in ["0", "-1", "nan", "\"fast\"", "1e9"] {
            let e = p(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("request_rate"), "{bad}: {e}");
        }
    }
}
