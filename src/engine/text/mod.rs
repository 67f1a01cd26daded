//! Text in and out of models: tokenizers (from GGUF metadata or tokenizer.json) and prompts of an
//! exact token length; evaluation tasks and how their answers are scored (`eval`).

pub mod dataset;
pub mod eval;
pub mod meta;
pub mod prompt;
pub mod tokenizer;
