//! `[slo]`: latency deadlines a configuration must meet (`joulebench frontier` and the report
//! pick the cheapest configuration that does).

use serde::{Deserialize, Serialize};

/// Deadlines, milliseconds (absent: not constrained).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub itl_p90_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
}

impl Slo {
    /// The `[slo]` table of a suite's text, if it has one.
    pub fn from_suite_text(text: &str) -> Result<Option<Slo>, String> {
        #[derive(Deserialize)]
        struct Loose {
            slo: Option<toml::Value>,
        }
        let loose: Loose = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(v) = loose.slo else {
            return Ok(None);
        };
        let slo: Slo = v.try_into().map_err(|e| format!("[slo]: {e}"))?;
        slo.check()?;
        Ok(Some(slo))
    }

    /// Deadlines must be positive, finite numbers of milliseconds.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in self.named() {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0 && v <= 3.6e6)
            {
                return Err(format!(
                    "{name} {v}: give milliseconds above 0, at most an hour"
                ));
            }
        }
        Ok(())
    }

    fn named(&self) -> [(&'static str, Option<f64>); 3] {
        [
            ("itl_p90_ms", self.itl_p90_ms),
            ("ttft_p90_ms", self.ttft_p90_ms),
            ("tpot_p50_ms", self.tpot_p50_ms),
        ]
    }

    /// Whether any deadline is given.
    pub fn any(&self) -> bool {
        self.named().iter().any(|(_, v)| v.is_some())
    }

    /// The figures the deadlines bound, with their names: ITL p90, TTFT p90, TPOT p50 (ms).
    pub fn bounds(&self) -> [(&'static str, Option<f64>); 3] {
        self.named()
    }

    /// One line, for titles.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .named()
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{} <= {v} ms", &n[..n.len() - 3])))
            .collect();
        if parts.is_empty() {
            "no deadline".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_tables_parse_from_a_suite_and_nonsense_is_refused() {
        let s = Slo::from_suite_text(
            "[suite]\nname = \"x\"\n[slo]\nitl_p90_ms = 50\nttft_p90_ms = 800.5\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.itl_p90_ms, s.ttft_p90_ms, s.tpot_p50_ms),
            (Some(50.0), Some(800.5), None)
        );
        assert!(
            Slo::from_suite_text("[suite]\nname = \"x\"\n")
                .unwrap()
                .is_none()
        );
        assert!(Slo::from_suite_text("[slo]\nitl_p90 = 5\n").is_err());
        assert!(Slo::from_suite_text("[slo]\nitl_p90_ms = -5\n").is_err());
        assert!(Slo::from_suite_text("slo = 5\n").is_err());
    }
}
