//! The names of synchronous counter reads: which round (idle, warmup, repetition, a `measure`
//! run), which request inside it, and which boundary. Typed, so a misspelt mark is a compile
//! error; written into traces as `r3.1:first`, `r3:settle`, `warmup1.0:start`, `idle:end`,
//! `run2:start` and parsed back from them.

use std::fmt;

/// The stretch of work a mark belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Round {
    /// The idle baseline.
    Idle,
    /// Warmup `k` (1-based).
    Warmup(u32),
    /// Repetition `r` of a cell (1-based, as records number them).
    Repetition(u32),
    /// Run `i` of `joulebench measure`.
    Run(u32),
}

/// Where in the round the counters were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A request (or the round) starts.
    Start,
    /// A request's first token arrived: prefill ends, decode begins.
    First,
    /// A request (or the round) ended.
    End,
    /// Every request of the repetition has ended.
    Settle,
    /// Every stream is producing tokens (steady state begins).
    SteadyStart,
    /// The first stream ran out of requests (steady state ends).
    SteadyEnd,
}

/// One named boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    pub round: Round,
    /// The request inside the round (inner iteration or stream request), if the mark is one's.
    pub request: Option<usize>,
    pub phase: Phase,
}

impl Mark {
    /// A mark of the round as a whole.
    pub fn round(round: Round, phase: Phase) -> Mark {
        Mark {
            round,
            request: None,
            phase,
        }
    }

    /// A mark of request `i` of the round.
    pub fn request(round: Round, i: usize, phase: Phase) -> Mark {
        Mark {
            round,
            request: Some(i),
            phase,
        }
    }

    /// Reads a label written by [`fmt::Display`]; None for anything else.
    pub fn parse(s: &str) -> Option<Mark> {
        let (head, phase) = s.rsplit_once(':')?;
        let phase = match phase {
            "start" => Phase::Start,
            "first" => Phase::First,
            "end" => Phase::End,
            "settle" => Phase::Settle,
            "steady-start" => Phase::SteadyStart,
            "steady-end" => Phase::SteadyEnd,
            _ => return None,
        };
        let (round, request) = match head.split_once('.') {
            Some((r, i)) => (r, Some(i.parse().ok()?)),
            None => (head, None),
        };
        let num = |rest: &str| rest.parse::<u32>().ok();
        let round = if round == "idle" {
            Round::Idle
        } else if let Some(k) = round.strip_prefix("warmup") {
            Round::Warmup(num(k)?)
        } else if let Some(i) = round.strip_prefix("run") {
            Round::Run(num(i)?)
        } else if let Some(r) = round.strip_prefix('r') {
            Round::Repetition(num(r)?)
        } else {
            return None;
        };
        Some(Mark {
            round,
            request,
            phase,
        })
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Round::Idle => write!(f, "idle"),
            Round::Warmup(k) => write!(f, "warmup{k}"),
            Round::Repetition(r) => write!(f, "r{r}"),
            Round::Run(i) => write!(f, "run{i}"),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Start => "start",
            Phase::First => "first",
            Phase::End => "end",
            Phase::Settle => "settle",
            Phase::SteadyStart => "steady-start",
            Phase::SteadyEnd => "steady-end",
        })
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.request {
            Some(i) => write!(f, "{}.{i}:{}", self.round, self.phase),
            None => write!(f, "{}:{}", self.round, self.phase),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_ones_traces_have_always_had() {
        let cases = [
            (
                Mark::request(Round::Repetition(3), 1, Phase::First),
                "r3.1:first",
            ),
            (
                Mark::round(Round::Repetition(12), Phase::Settle),
                "r12:settle",
            ),
            (
                Mark::round(Round::Repetition(2), Phase::SteadyStart),
                "r2:steady-start",
            ),
            (
                Mark::request(Round::Warmup(1), 0, Phase::Start),
                "warmup1.0:start",
            ),
            (Mark::round(Round::Warmup(2), Phase::End), "warmup2:end"),
            (Mark::round(Round::Idle, Phase::End), "idle:end"),
            (Mark::round(Round::Run(4), Phase::Start), "run4:start"),
        ];
        for (m, s) in cases {
            assert_eq!(m.to_string(), s);
            assert_eq!(Mark::parse(s), Some(m), "{s}");
        }
    }

    #[test]
    fn other_events_are_not_marks() {
        for s in [
            "sample",
            "r:start",
            "rx.1:start",
            "r1.a:end",
            "r1:begin",
            "warmup:end",
            "",
        ] {
            assert_eq!(Mark::parse(s), None, "{s}");
        }
    }
}
