//! Text in and out of models: tokenizers (from GGUF metadata or tokenizer.json) and prompts of an
//! exact token length.

pub mod dataset;
pub mod meta;
pub mod prompt;
pub mod tokenizer;
