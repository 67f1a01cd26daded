//! What each engine is asked to run, one serde-tagged variant per engine. The suite config
//! builds and validates these from `[[model]]` entries; the cell process gets them back from the
//! run folder's plan.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where weights come from: a registered (or synthetic) id, or a file or folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    Id(String),
    Path(PathBuf),
}

impl Weights {
    /// The id, or the path as text: what the loader takes.
    pub fn spec(&self) -> String {
        match self {
            Weights::Id(id) => id.clone(),
            Weights::Path(p) => p.display().to_string(),
        }
    }

    /// The id, or the file name without its extension: a default name for results.
    pub fn short_name(&self) -> String {
        match self {
            Weights::Id(id) => id.clone(),
            Weights::Path(p) => p.file_stem().map_or_else(
                || p.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            ),
        }
    }
}

/// One model and the engine that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case")]
pub enum EngineSpec {
    /// joulebench's own in-process engine.
    Candle(CandleSpec),
    /// Any OpenAI-compatible streaming server (llama.cpp, vLLM, TGI, Ollama).
    Openai(OpenaiSpec),
    /// Any command, run once per repetition.
    Command(CommandSpec),
}

/// A model the in-process engine loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandleSpec {
    pub weights: Weights,
    /// Seed of synthetic weights.
    pub seed: Option<u64>,
    /// An encoder (embedding) model, known from the registry or its config.json.
    #[serde(default)]
    pub encoder: bool,
}

/// A server driven by parallel streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenaiSpec {
    /// The weights behind `{model_path}` and the default tokenizer.
    pub weights: Option<Weights>,
    /// The API root, like `http://127.0.0.1:{port}/v1`.
    pub base_url: String,
    /// The server's name for the model.
    pub model: String,
    /// The environment variable holding the API key (the key is never written out).
    pub api_key_env: Option<String>,
    pub endpoint: Endpoint,
    /// A server joulebench starts (no shell) before the cell and stops after it.
    pub launch: Option<Vec<String>>,
    /// Polled until it answers 200 after `launch` (default: `<base_url>/models`).
    pub ready_url: Option<String>,
    pub ready_timeout_s: Option<f64>,
    /// Per-request limit; a stream silent for this long fails too.
    pub request_timeout_s: Option<f64>,
    /// Tokenizer for exact-length prompts: a registered id, a .gguf or tokenizer.json.
    pub tokenizer: Option<String>,
    /// Allow an API key over plain HTTP to a host other than this machine.
    pub allow_insecure_http: bool,
    /// The server's Prometheus endpoint (default: `/metrics` at the base URL's root, used when
    /// it answers with gauges joulebench knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
}

/// A command run once per repetition (no shell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The weights behind `{model_path}`.
    pub weights: Option<Weights>,
    pub command: Vec<String>,
    /// A regex whose group `tokens` (or first group) is the tokens the run produced.
    pub tokens_regex: Option<String>,
}

impl EngineSpec {
    /// What the engine loads (an id or a path), or what the external engine talks to.
    pub fn spec(&self) -> String {
        match self {
            EngineSpec::Candle(c) => c.weights.spec(),
            EngineSpec::Openai(o) => format!("openai:{}@{}", o.model, o.base_url),
            EngineSpec::Command(c) => format!("command:{}", c.command.join(" ")),
        }
    }

    /// The weights behind `{model_path}` and the default tokenizer, if any.
    pub fn weights(&self) -> Option<&Weights> {
        match self {
            EngineSpec::Candle(c) => Some(&c.weights),
            EngineSpec::Openai(o) => o.weights.as_ref(),
            EngineSpec::Command(c) => c.weights.as_ref(),
        }
    }

    /// A default name for results: the id or file name, the server's model, the program.
    pub fn default_name(&self) -> String {
        match self {
            EngineSpec::Candle(c) => c.weights.short_name(),
            EngineSpec::Openai(o) => o.model.clone(),
            EngineSpec::Command(c) => c
                .command
                .first()
                .map(|p| {
                    Path::new(p)
                        .file_name()
                        .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
                })
                .unwrap_or_default(),
        }
    }

    /// True for an encoder model (it only runs embed workloads).
    pub fn is_encoder(&self) -> bool {
        matches!(self, EngineSpec::Candle(c) if c.encoder)
    }
}

/// The endpoint of an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/chat/completions` (the server applies its chat template).
    #[default]
    Chat,
    /// `/completions` (the prompt goes in as it is).
    Completions,
}
