//! joulebench's integration tests as one binary (one link of candle and tokenizers instead of
//! one per file): each module is one area, `common` their shared helpers. Run one area with a
//! filter, e.g. `cargo test --release --test tests report::`.
// The report and browser modules build large `serde_json::json!` values.
#![recursion_limit = "256"]

mod common;

mod a_peer_build;
mod ab;
mod ab_gate;
mod arch;
mod browser;
mod cli;
mod compare;
mod compare_scope;
mod dataset;
mod engine;
mod engine_hf;
mod engine_qwen;
mod engines_llamacpp;
mod estimate;
mod eval;
mod eval_ref;
mod faults;
mod gemma;
mod gguf_fuzz;
mod hostile;
mod hub;
mod layout;
mod llama_ref;
mod measure;
mod nvml;
mod openai;
mod rapl;
mod report;
mod report_fixture;
mod runner;
mod shard;
mod synth;
