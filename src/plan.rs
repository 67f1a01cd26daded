//! A suite becomes a list of cells (model × profile × workload) in a stable order. Pure: it reads
//! nothing from disk (what a model is was settled when the suite was loaded). The parent writes
//! the plan into the run folder and every cell process reads its cell from there.

use crate::config::{ModelEntry, Profile, Suite, Workload, WorkloadKind};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One cell of the suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in the plan's stable order (model-major, then profile, then workload).
    pub index: usize,
    /// File-safe id: `<model>__<profile>__<workload>`.
    pub id: String,
    pub model: ModelEntry,
    pub profile: Profile,
    pub workload: Workload,
}

/// The cells to run, and those left out with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub cells: Vec<Cell>,
    pub skipped: Vec<(String, String)>,
}

/// Builds the plan. Encoders only get embedding workloads and generators only generation.
pub fn plan(s: &Suite) -> Plan {
    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    for m in &s.models {
        let enc = m.engine.is_encoder();
        for p in &s.profiles {
            for w in s.workloads.iter().flat_map(crate::config::load_points) {
                let w = &w;
                let id = crate::names::cell_id(&m.name(), &p.name, &w.name);
                if enc != (w.kind == WorkloadKind::Embed) {
                    let why = if enc {
                        "an encoder model only runs embed workloads"
                    } else {
                        "embed workloads need an encoder model"
                    };
                    skipped.push((id, why.to_string()));
                    continue;
                }
                if w.kind == WorkloadKind::Eval
                    && let Some(why) = eval_skip(m)
                {
                    skipped.push((id, why));
                    continue;
                }
                if (w.arrivals().is_some() || w.load_point.is_some())
                    && !matches!(m.engine, crate::engine::spec::EngineSpec::Openai(_))
                {
                    skipped.push((
                        id,
                        "an open loop (request_rate, load) needs a server engine (engine = \
                         \"openai\"): this engine runs one request or static batch at a time"
                            .to_string(),
                    ));
                    continue;
                }
                cells.push(Cell {
                    index: cells.len(),
                    id,
                    model: m.clone(),
                    profile: p.clone(),
                    workload: w.clone(),
                });
            }
        }
    }
    Plan { cells, skipped }
}

/// Why model `m` cannot run an evaluation workload, if it cannot: scoring needs a vocabulary
/// and access to the model's log-probabilities or generations (a server gives one or the
/// other: see [`eval_scoring`]).
fn eval_skip(m: &ModelEntry) -> Option<String> {
    use crate::engine::spec::EngineSpec;
    match &m.engine {
        EngineSpec::Candle(_) if m.spec().starts_with("synthetic:") => {
            Some("a synthetic model has no vocabulary to score an evaluation's text".to_string())
        }
        EngineSpec::Candle(_) | EngineSpec::Openai(_) => None,
        EngineSpec::Command(_) => Some(
            "a command's answers are not visible to joulebench: evaluations need the in-process \
             engine"
                .to_string(),
        ),
    }
}

/// How an evaluation cell of model `m` is scored, as the plan says it.
pub fn eval_scoring(m: &ModelEntry) -> &'static str {
    match &m.engine {
        crate::engine::spec::EngineSpec::Openai(_) => {
            "scored by the server's prompt log-probabilities where it echoes them \
             (/v1/completions, echo + logprobs), else by a generated answer (gsm8k, or an mc_ \
             variant's letter; rc_ variants fail before any item)"
        }
        _ => "scored in process: each choice's log-likelihood from a shared prefix",
    }
}

/// The plan as text, for `--dry-run`.
pub fn render(s: &Suite, p: &Plan) -> String {
    let mut out = format!(
        "suite {}: {} cell(s), {} warmup + {} repetitions each, idle baseline {} s\n",
        s.name,
        p.cells.len(),
        s.warmup,
        s.repetitions,
        s.idle_seconds
    );
    for c in &p.cells {
        let w = &c.workload;
        let _ = writeln!(
            out,
            "  {:>3}. {}  model={} profile={} (device {}, threads {}) workload={} ({:?}, {} prompt, {} new, batch {}{})",
            c.index + 1,
            c.id,
            c.model.spec(),
            c.profile.name,
            c.profile.device,
            c.profile
                .threads
                .map_or("default".to_string(), |t| t.to_string()),
            w.name,
            w.kind,
            match (&w.dataset, w.lengths.and_then(|l| l.prompt), w.task_ref()) {
                (_, _, Some(t)) => format!(
                    "task {} {}, {} item(s) (seed {})",
                    t.task,
                    t.variant,
                    w.eval_docs
                        .as_ref()
                        .map(Vec::len)
                        .or(w.items)
                        .map_or("every".to_string(), |n| n.to_string()),
                    w.seed.unwrap_or(0)
                ),
                (Some(d), _, _) => format!("dataset {d}"),
                (None, Some(dist), _) => dist.to_string(),
                _ => w.prompt_tokens.to_string(),
            },
            match (&w.dataset, w.lengths.and_then(|l| l.output)) {
                (Some(_), _) => format!("reply length capped at {}", w.new_tokens),
                (None, Some(dist)) => dist.to_string(),
                _ => w.new_tokens.to_string(),
            },
            w.batch,
            if w.kind == WorkloadKind::Eval {
                format!("; {}", eval_scoring(&c.model))
            } else if let Some(a) = w.arrivals() {
                format!(", {} request(s) at {}", w.request_count(), a.describe())
            } else if w.concurrency > 1 || w.requests.is_some() {
                format!(
                    ", {} stream(s), {} request(s)",
                    w.concurrency,
                    w.request_count()
                )
            } else {
                String::new()
            }
        );
    }
    for (id, why) in &p.skipped {
        let _ = writeln!(out, "  skipped {id}: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_order_and_compatibility() {
        let text = r#"
[suite]
name = "t"
[[model]]
id = "synthetic:llama-tiny"
[[model]]
id = "all-minilm-l6-v2"
[[profile]]
name = "a"
[[profile]]
name = "b b"
[[workload]]
name = "gen"
prompt_tokens = 8
new_tokens = 2
[[workload]]
name = "emb"
kind = "embed"
prompt_tokens = 8
"#;
        let s = Suite::parse(std::path::Path::new("t.toml"), text).unwrap();
        let p = plan(&s);
        let ids: Vec<&str> = p.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "synthetic_llama-tiny__a__gen",
                "synthetic_llama-tiny__b_b__gen",
                "all-minilm-l6-v2__a__emb",
                "all-minilm-l6-v2__b_b__emb"
            ]
        );
        assert_eq!(p.skipped.len(), 4);
        assert!(p.cells.iter().enumerate().all(|(i, c)| c.index == i));
        assert!(render(&s, &p).contains("4 cell(s)"));
    }

    #[test]
    fn open_loops_run_only_on_server_engines() {
        let text = r#"
[suite]
name = "t"
[[model]]
id = "synthetic:llama-tiny"
[[model]]
engine = "openai"
alias = "srv"
model = "m"
base_url = "http://127.0.0.1:9/v1"
[[profile]]
name = "a"
[[workload]]
name = "poisson"
prompt_tokens = 8
new_tokens = 2
request_rate = 4
duration_s = 5
[[workload]]
name = "curve"
prompt_tokens = 8
new_tokens = 2
max_concurrency = 2
requests = 6
load = [0.5, 1.0]
"#;
        let s = Suite::parse(std::path::Path::new("t.toml"), text).unwrap();
        let p = plan(&s);
        // The load curve runs as saturation, its two fractions, then active idle.
        let names: Vec<&str> = p.cells.iter().map(|c| c.workload.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "poisson",
                "curve-saturation",
                "curve-load0.5",
                "curve-load1",
                "curve-active-idle"
            ]
        );
        assert_eq!(p.cells[1].workload.concurrency, 2);
        assert_eq!(p.cells[0].workload.request_count(), 20);
        assert_eq!(p.skipped.len(), 5);
        assert!(p.skipped[0].0.starts_with("synthetic_llama-tiny"));
        assert!(p.skipped.iter().all(|s| s.1.contains("server engine")));
        assert!(render(&s, &p).contains("20 request(s) at 4 req/s (Poisson)"));
    }
}
