//! The in-process engine's models: the one decoder forward for GGUF files, the candle-based
//! llama path, Qwen on GPU devices, BERT encoders, synthetic models, their loaders and the
//! driver the runner uses.

pub mod bert;
pub mod decoder;
pub mod driver;
pub mod generate;
pub mod hf;
pub mod llama;
pub mod load;
pub mod ops;
pub mod qwen;
pub mod synthetic;
