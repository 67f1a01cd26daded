//! Every figure summarized per cell, as one enum: its name in files, its unit, which direction is
//! better, how to read it from a record, and how tables print it. Summaries, the Markdown, CSV
//! and HTML tables, charts and `compare` all go through it.

use crate::record::Record;
use std::fmt;

/// A figure of a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// The headline's figure: the request's energy over its generated tokens (input tokens for
    /// embeddings); at concurrency above 1 the steady window's, in an open loop the whole run's.
    JPerToken,
    JPerPrefillToken,
    JPerDecodeToken,
    JPerRequest,
    TokensPerJ,
    WhPer1000Queries,
    PrefillJ,
    DecodeJ,
    RequestJ,
    RequestNetJ,
    JPerPrefillTokenNet,
    JPerDecodeTokenNet,
    AvgPowerW,
    PeakPowerW,
    UncertaintyJ,
    TtftS,
    TpotS,
    ItlP50S,
    ItlP90S,
    ItlP99S,
    E2eS,
    PrefillTokensPerS,
    DecodeTokensPerS,
    Gco2ePer1000Queries,
    SteadyJPerToken,
    SteadyTokensPerS,
    WholeJPerGeneratedToken,
    /// Evaluation workloads: the fraction of items answered right.
    Accuracy,
    JPerItem,
    JPerCorrect,
    CorrectPerKj,
    /// Intelligence per Watt's "accuracy per joule": accuracy / mean joules per query.
    AccuracyPerJoule,
}

/// How a table prints a figure: multiplied by `scale`, with `decimals`, under `heading`.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub heading: &'static str,
    pub scale: f64,
    pub decimals: usize,
}

impl Metric {
    /// Every figure, in report order.
    pub const ALL: &[Metric] = &[
        Metric::JPerToken,
        Metric::JPerPrefillToken,
        Metric::JPerDecodeToken,
        Metric::JPerRequest,
        Metric::TokensPerJ,
        Metric::WhPer1000Queries,
        Metric::PrefillJ,
        Metric::DecodeJ,
        Metric::RequestJ,
        Metric::RequestNetJ,
        Metric::JPerPrefillTokenNet,
        Metric::JPerDecodeTokenNet,
        Metric::AvgPowerW,
        Metric::PeakPowerW,
        Metric::UncertaintyJ,
        Metric::TtftS,
        Metric::TpotS,
        Metric::ItlP50S,
        Metric::ItlP90S,
        Metric::ItlP99S,
        Metric::E2eS,
        Metric::PrefillTokensPerS,
        Metric::DecodeTokensPerS,
        Metric::Gco2ePer1000Queries,
        Metric::SteadyJPerToken,
        Metric::SteadyTokensPerS,
        Metric::WholeJPerGeneratedToken,
        Metric::Accuracy,
        Metric::JPerItem,
        Metric::JPerCorrect,
        Metric::CorrectPerKj,
        Metric::AccuracyPerJoule,
    ];

    /// The figures summary.csv has columns for, in order.
    pub const CSV: &[Metric] = &[
        Metric::JPerPrefillToken,
        Metric::JPerDecodeToken,
        Metric::JPerRequest,
        Metric::TokensPerJ,
        Metric::WhPer1000Queries,
        Metric::RequestNetJ,
        Metric::TtftS,
        Metric::TpotS,
        Metric::ItlP50S,
        Metric::ItlP90S,
        Metric::ItlP99S,
        Metric::E2eS,
        Metric::PrefillTokensPerS,
        Metric::DecodeTokensPerS,
        Metric::AvgPowerW,
        Metric::PeakPowerW,
        Metric::Accuracy,
        Metric::JPerItem,
        Metric::CorrectPerKj,
        Metric::JPerToken,
    ];

    /// What `compare` judges when no metric is named (a row only where a side has the
    /// figure: accuracy and energy per item for evaluation cells).
    pub const COMPARED: &[Metric] = &[
        Metric::JPerDecodeToken,
        Metric::JPerPrefillToken,
        Metric::JPerRequest,
        Metric::TpotS,
        Metric::Accuracy,
        Metric::JPerItem,
    ];

    /// The name in summary.json, summary.csv and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Metric::JPerToken => "j_per_token",
            Metric::JPerPrefillToken => "j_per_prefill_token",
            Metric::JPerDecodeToken => "j_per_decode_token",
            Metric::JPerRequest => "j_per_request",
            Metric::TokensPerJ => "tokens_per_j",
            Metric::WhPer1000Queries => "wh_per_1000_queries",
            Metric::PrefillJ => "prefill_j",
            Metric::DecodeJ => "decode_j",
            Metric::RequestJ => "request_j",
            Metric::RequestNetJ => "request_net_j",
            Metric::JPerPrefillTokenNet => "j_per_prefill_token_net",
            Metric::JPerDecodeTokenNet => "j_per_decode_token_net",
            Metric::AvgPowerW => "avg_power_w",
            Metric::PeakPowerW => "peak_power_w",
            Metric::UncertaintyJ => "uncertainty_j",
            Metric::TtftS => "ttft_s",
            Metric::TpotS => "tpot_s",
            Metric::ItlP50S => "itl_p50_s",
            Metric::ItlP90S => "itl_p90_s",
            Metric::ItlP99S => "itl_p99_s",
            Metric::E2eS => "e2e_s",
            Metric::PrefillTokensPerS => "prefill_tokens_per_s",
            Metric::DecodeTokensPerS => "decode_tokens_per_s",
            Metric::Gco2ePer1000Queries => "gco2e_per_1000_queries",
            Metric::SteadyJPerToken => "steady_j_per_token",
            Metric::SteadyTokensPerS => "steady_tokens_per_s",
            Metric::WholeJPerGeneratedToken => "whole_j_per_generated_token",
            Metric::Accuracy => "accuracy",
            Metric::JPerItem => "j_per_item",
            Metric::JPerCorrect => "j_per_correct",
            Metric::CorrectPerKj => "correct_per_kj",
            Metric::AccuracyPerJoule => "accuracy_per_joule",
        }
    }

    /// The figure of this name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The unit of the value as stored.
    pub fn unit(self) -> &'static str {
        use Metric::*;
        match self {
            JPerToken
            | JPerPrefillToken
            | JPerDecodeToken
            | JPerPrefillTokenNet
            | JPerDecodeTokenNet
            | SteadyJPerToken
            | WholeJPerGeneratedToken => "J/token",
            JPerRequest => "J/request",
            TokensPerJ => "tokens/J",
            WhPer1000Queries => "Wh/1000 queries",
            PrefillJ | DecodeJ | RequestJ | RequestNetJ | UncertaintyJ => "J",
            AvgPowerW | PeakPowerW => "W",
            TtftS | TpotS | ItlP50S | ItlP90S | ItlP99S | E2eS => "s",
            PrefillTokensPerS | DecodeTokensPerS | SteadyTokensPerS => "tokens/s",
            Gco2ePer1000Queries => "gCO2e/1000 queries",
            Accuracy => "fraction correct",
            JPerItem => "J/item",
            JPerCorrect => "J/correct answer",
            CorrectPerKj => "correct answers/kJ",
            AccuracyPerJoule => "accuracy/J",
        }
    }

    /// True when a smaller value is better.
    pub fn lower_is_better(self) -> bool {
        !matches!(
            self,
            Metric::TokensPerJ
                | Metric::PrefillTokensPerS
                | Metric::DecodeTokensPerS
                | Metric::SteadyTokensPerS
                | Metric::Accuracy
                | Metric::CorrectPerKj
                | Metric::AccuracyPerJoule
        )
    }

    /// True for figures that come from the meters (estimated where the energy is); latency,
    /// throughput and accuracy are measured whatever the energy source.
    pub fn is_energy(self) -> bool {
        use Metric::*;
        !matches!(
            self,
            TtftS
                | TpotS
                | ItlP50S
                | ItlP90S
                | ItlP99S
                | E2eS
                | PrefillTokensPerS
                | DecodeTokensPerS
                | SteadyTokensPerS
                | Accuracy
        )
    }

    /// The value in a record, if it has one.
    pub fn read(self, r: &Record) -> Option<f64> {
        use Metric::*;
        let e = r.energy.as_ref();
        match self {
            JPerToken => r.energy_per_token_joules,
            JPerPrefillToken => e.and_then(|e| e.j_per_prefill_token),
            JPerDecodeToken => e.and_then(|e| e.j_per_decode_token),
            JPerRequest => e.map(|e| e.j_per_request),
            TokensPerJ => e.and_then(|e| e.tokens_per_j),
            WhPer1000Queries => e.map(|e| e.wh_per_1000_queries),
            PrefillJ => e.and_then(|e| e.prefill_j),
            DecodeJ => e.and_then(|e| e.decode_j),
            RequestJ => e.map(|e| e.request_j),
            RequestNetJ => e.and_then(|e| e.request_net_j),
            JPerPrefillTokenNet => e.and_then(|e| e.j_per_prefill_token_net),
            JPerDecodeTokenNet => e.and_then(|e| e.j_per_decode_token_net),
            AvgPowerW => e.map(|e| e.avg_power_w),
            PeakPowerW => e.map(|e| e.peak_power_w),
            UncertaintyJ => e.map(|e| e.uncertainty_j),
            TtftS => r.ttft_s,
            TpotS => r.tpot_s,
            ItlP50S => r.itl_p50_s,
            ItlP90S => r.itl_p90_s,
            ItlP99S => r.itl_p99_s,
            E2eS => r.e2e_s,
            PrefillTokensPerS => r.prefill_tokens_per_s,
            DecodeTokensPerS => r.decode_tokens_per_s,
            Gco2ePer1000Queries => r.gco2e_per_1000_queries,
            SteadyJPerToken => r.steady.as_ref().and_then(|s| s.j_per_token),
            SteadyTokensPerS => r.steady.as_ref().map(|s| s.tokens_per_s),
            WholeJPerGeneratedToken => r.whole.as_ref().and_then(|w| w.j_per_generated_token),
            Accuracy => r.eval.as_ref().map(|v| v.accuracy),
            JPerItem => r.eval.as_ref().and_then(|v| v.j_per_item),
            JPerCorrect => r.eval.as_ref().and_then(|v| v.j_per_correct),
            CorrectPerKj => r.eval.as_ref().and_then(|v| v.correct_per_kj),
            AccuracyPerJoule => r.eval.as_ref().and_then(|v| v.accuracy_per_joule),
        }
    }

    /// How tables print it (milli-units where the figures are small).
    pub fn shown(self) -> Shown {
        use Metric::*;
        let (heading, scale, decimals) = match self {
            JPerToken => ("mJ/token", 1e3, 3),
            JPerPrefillToken => ("prefill mJ/token", 1e3, 3),
            JPerDecodeToken => ("decode mJ/token", 1e3, 3),
            JPerPrefillTokenNet => ("prefill net mJ/token", 1e3, 3),
            JPerDecodeTokenNet => ("decode net mJ/token", 1e3, 3),
            SteadyJPerToken => ("steady mJ/token", 1e3, 2),
            WholeJPerGeneratedToken => ("whole mJ/token", 1e3, 2),
            JPerRequest => ("J/request", 1.0, 4),
            TokensPerJ => ("tokens/J", 1.0, 2),
            WhPer1000Queries => ("Wh/1k queries", 1.0, 4),
            PrefillJ => ("prefill J", 1.0, 4),
            DecodeJ => ("decode J", 1.0, 4),
            RequestJ => ("request J", 1.0, 4),
            RequestNetJ => ("request net J", 1.0, 4),
            UncertaintyJ => ("± J", 1.0, 4),
            AvgPowerW => ("avg W", 1.0, 2),
            PeakPowerW => ("peak W", 1.0, 2),
            TtftS => ("TTFT ms", 1e3, 1),
            TpotS => ("TPOT ms", 1e3, 2),
            ItlP50S => ("ITL p50 ms", 1e3, 2),
            ItlP90S => ("ITL p90 ms", 1e3, 2),
            ItlP99S => ("ITL p99 ms", 1e3, 2),
            E2eS => ("E2E ms", 1e3, 1),
            PrefillTokensPerS => ("prefill tokens/s", 1.0, 1),
            DecodeTokensPerS => ("decode tokens/s", 1.0, 1),
            SteadyTokensPerS => ("steady tokens/s", 1.0, 1),
            Gco2ePer1000Queries => ("gCO2e/1k queries", 1.0, 3),
            Accuracy => ("accuracy %", 100.0, 1),
            JPerItem => ("J/item", 1.0, 4),
            JPerCorrect => ("J/correct", 1.0, 4),
            CorrectPerKj => ("correct/kJ", 1.0, 2),
            AccuracyPerJoule => ("accuracy/J", 1.0, 4),
        };
        Shown {
            heading,
            scale,
            decimals,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for &m in Metric::ALL {
            assert!(seen.insert(m.name()), "{m} twice");
            assert_eq!(Metric::parse(m.name()), Some(m));
            assert!(!m.unit().is_empty() && !m.shown().heading.is_empty());
        }
        assert_eq!(Metric::parse("joules"), None);
        for m in Metric::CSV.iter().chain(Metric::COMPARED) {
            assert!(Metric::ALL.contains(m));
        }
    }

    #[test]
    fn throughputs_are_higher_is_better() {
        assert!(!Metric::TokensPerJ.lower_is_better());
        assert!(!Metric::SteadyTokensPerS.lower_is_better());
        assert!(Metric::JPerDecodeToken.lower_is_better());
        assert!(Metric::TpotS.lower_is_better());
    }
}
