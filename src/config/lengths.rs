//! Synthetic request lengths (`lengths = { prompt = "lognormal(512, 256)", output = ... }`):
//! each request of a workload draws its prompt and output token counts from a distribution,
//! seeded, instead of every request having `prompt_tokens` and `new_tokens`.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A distribution of token counts. Draws are rounded and kept within 1..=`MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Always `n`.
    Fixed(f64),
    /// Uniform over `lo..=hi`.
    Uniform(f64, f64),
    /// Normal with this mean and standard deviation.
    Normal(f64, f64),
    /// Log-normal whose values (not their logarithms) have this mean and standard deviation.
    LogNormal(f64, f64),
}

/// The longest length a draw may give.
pub const MAX: usize = 1 << 20;

impl Dist {
    /// Parses `fixed(N)`, `uniform(LO, HI)`, `normal(MEAN, SD)` or `lognormal(MEAN, SD)`.
    pub fn parse(s: &str) -> Result<Dist, String> {
        let usage =
            "give fixed(N), uniform(LO, HI), normal(MEAN, SD) or lognormal(MEAN, SD) in tokens";
        let (name, rest) = s
            .trim()
            .split_once('(')
            .ok_or_else(|| format!("{s:?}: {usage}"))?;
        let args = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("{s:?}: {usage}"))?;
        let v: Vec<f64> = args
            .split(',')
            .map(|a| a.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{s:?}: the arguments must be numbers; {usage}"))?;
        let ok = |x: f64| x.is_finite() && (0.0..=MAX as f64).contains(&x);
        if !v.iter().all(|x| ok(*x)) {
            return Err(format!("{s:?}: arguments must be from 0 to {MAX}"));
        }
        let d = match (name.trim(), v.as_slice()) {
            ("fixed", [n]) if *n >= 1.0 => Dist::Fixed(*n),
            ("uniform", [a, b]) if *a >= 1.0 && a <= b => Dist::Uniform(*a, *b),
            ("normal", [m, sd]) if *m >= 1.0 => Dist::Normal(*m, *sd),
            ("lognormal", [m, sd]) if *m >= 1.0 => Dist::LogNormal(*m, *sd),
            _ => return Err(format!("{s:?}: {usage} (lengths of at least 1)")),
        };
        Ok(d)
    }

    /// One draw.
    pub fn draw(&self, rng: &mut StdRng) -> usize {
        let x = match *self {
            Dist::Fixed(n) => n,
            Dist::Uniform(a, b) => a + (b - a + 1.0) * rng.random::<f64>() - 0.5,
            Dist::Normal(m, sd) => m + sd * normal(rng),
            Dist::LogNormal(m, sd) => {
                let s2 = (1.0 + (sd / m).powi(2)).ln();
                (m.ln() - s2 / 2.0 + s2.sqrt() * normal(rng)).exp()
            }
        };
        (x.round().max(1.0) as usize).min(MAX)
    }
}

use crate::engine::arrival::normal;

impl std::fmt::Display for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dist::Fixed(n) => write!(f, "fixed({n})"),
            Dist::Uniform(a, b) => write!(f, "uniform({a}, {b})"),
            Dist::Normal(m, s) => write!(f, "normal({m}, {s})"),
            Dist::LogNormal(m, s) => write!(f, "lognormal({m}, {s})"),
        }
    }
}

impl Serialize for Dist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dist, D::Error> {
        let s = String::deserialize(d)?;
        Dist::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `lengths = { prompt = ..., output = ... }`: either may be left out (then `prompt_tokens` or
/// `new_tokens` holds for every request).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lengths {
    pub prompt: Option<Dist>,
    pub output: Option<Dist>,
}

impl Lengths {
    /// (prompt, output) tokens of `n` requests, seeded; `prompt_tokens` and `new_tokens` fill in
    /// the side without a distribution.
    pub fn draw(
        &self,
        n: usize,
        prompt_tokens: usize,
        new_tokens: usize,
        seed: u64,
    ) -> Vec<(usize, usize)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let p = self.prompt.map_or(prompt_tokens, |d| d.draw(&mut rng));
                let o = self.output.map_or(new_tokens, |d| d.draw(&mut rng));
                (p.max(1), o.max(1))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_refuse_nonsense() {
        assert_eq!(
            Dist::parse("lognormal(512, 256)").unwrap(),
            Dist::LogNormal(512.0, 256.0)
        );
        assert_eq!(
            Dist::parse(" uniform(4,8) ").unwrap(),
            Dist::Uniform(4.0, 8.0)
        );
        assert_eq!(Dist::parse("fixed(9)").unwrap(), Dist::Fixed(9.0));
        for bad in [
            "lognormal(512)",
            "gauss(1, 2)",
            "uniform(9, 4)",
            "fixed(0)",
            "normal(a, b)",
            "lognormal(1e30, 1)",
            "lognormal(5, nan)",
            "512",
        ] {
            assert!(Dist::parse(bad).is_err(), "{bad}");
        }
    }

    /// Draws have the asked-for mean and spread (10,000 draws; the bounds hold with margin).
    #[test]
    fn draws_have_the_mean_and_spread_asked_for() {
        let mut rng = StdRng::seed_from_u64(1);
        for (d, mean, sd) in [
            (Dist::LogNormal(300.0, 150.0), 300.0, 150.0),
            (Dist::Normal(200.0, 20.0), 200.0, 20.0),
            (
                Dist::Uniform(10.0, 30.0),
                20.0,
                (21f64 * 21.0 - 1.0).sqrt() / 12f64.sqrt(),
            ),
            (Dist::Fixed(7.0), 7.0, 0.0),
        ] {
            let v: Vec<f64> = (0..10_000).map(|_| d.draw(&mut rng) as f64).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
            assert!((m - mean).abs() < 0.03 * mean, "{d}: mean {m}");
            assert!((s - sd).abs() <= 0.06 * sd + 0.01, "{d}: sd {s} vs {sd}");
            assert!(v.iter().all(|x| *x >= 1.0));
        }
    }

    #[test]
    fn lengths_are_seeded_and_fill_in_the_fixed_side() {
        let l = Lengths {
            prompt: Some(Dist::Uniform(5.0, 50.0)),
            output: None,
        };
        let a = l.draw(20, 3, 16, 9);
        assert_eq!(a, l.draw(20, 3, 16, 9));
        assert_ne!(a, l.draw(20, 3, 16, 10));
        assert!(a.iter().all(|&(p, o)| (5..=50).contains(&p) && o == 16));
    }
}
