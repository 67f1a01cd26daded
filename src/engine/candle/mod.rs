//! joulebench's own in-process engine on candle: loading GGUF and safetensors models, one
//! transformer forward per family, the quantized kernels and the greedy loop.

pub mod bert;
pub mod blocks;
pub mod decode;
pub mod driver;
pub mod generate;
pub mod gguf;
pub mod gguf_scan;
pub mod hf;
pub mod kernels;
pub mod llama;
pub mod load;
pub mod qgemm;
pub mod qmatrix;
pub mod qwen;
pub mod synth_gguf;
pub mod synthetic;
pub mod text_meta;
pub mod transformer;
