//! Inference engines behind one trait, [`InferenceBackend`], so the runner never knows which model
//! family it drives. Models run in process through candle.

pub mod arrival;
pub mod driver;
pub mod external;
pub mod gguf;
pub mod kernels;
pub mod load_curve;
pub mod models;

pub mod spec;
pub mod text;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("model file not found: {path}: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable model file: {reason}. {}", bad_file_advice(path))]
    BadModelFile { path: PathBuf, reason: String },
    #[error("{path}: unsupported architecture {arch:?}; supported: {supported}")]
    UnsupportedArch {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(
        "unknown model {id:?}; known ids: {known} (or give a path to a .gguf file or a model folder)"
    )]
    UnknownModel { id: String, known: String },
    #[error("bad request: {0}")]
    Request(String),
    #[error("unsupported device {0:?}: use cpu (or cuda:N with the `cuda` feature)")]
    Device(String),
    /// The model's files could not be found, fetched or verified.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What to do about an unusable model file: a download in joulebench's or the Hugging Face
/// cache is fetched again; any other file is the user's own, which joulebench cannot replace.
fn bad_file_advice(path: &std::path::Path) -> &'static str {
    use crate::store::cache::{cache_root, hf_cache_dir};
    let under = |root: PathBuf| {
        let root = root.canonicalize().unwrap_or(root);
        let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        p.starts_with(root)
    };
    if under(cache_root()) || under(hf_cache_dir()) {
        "It is a cached download that may be truncated or corrupt: delete it and fetch it again \
         (`joulebench models fetch ID`)"
    } else {
        "It is not a cached download: check that it is a complete GGUF or model folder (a copy \
         cut short, another format, or a newer GGUF version), and download or convert it again"
    }
}

impl EngineError {
    /// A model file that cannot be used, and why.
    pub fn bad_file(path: &std::path::Path, reason: impl Into<String>) -> EngineError {
        EngineError::BadModelFile {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// An I/O failure on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> EngineError {
        EngineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The files in `dir` ending in `.ext`, in name order.
pub fn files_with_ext(dir: &std::path::Path, ext: &str) -> Result<Vec<PathBuf>, EngineError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads a model folder's config.json into `T`; parse errors name the line and column.
pub fn read_config_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        EngineError::bad_file(
            path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })
}

/// How the engine runs a model; recorded in every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub backend: String,
    pub device: String,
    pub threads: usize,
    /// How linear layers are computed while prefilling and while decoding.
    pub prefill_matmul: String,
    pub decode_matmul: String,
    pub weights_dtype: String,
}

impl EngineConfig {
    /// The in-process engine on `device` at the configured threads, with the kernel per phase
    /// and the weights' format.
    pub fn candle(device: &str, prefill: &str, decode: &str, dtype: &str) -> EngineConfig {
        EngineConfig {
            backend: "candle".into(),
            device: device.into(),
            threads: threads(),
            prefill_matmul: prefill.into(),
            decode_matmul: decode.into(),
            weights_dtype: dtype.into(),
        }
    }
}

/// What model is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub family: String,
    pub architecture: String,
    pub parameters: u64,
    pub quantization: String,
    /// Built in process from seeded random weights; its figures are not a real model's.
    pub synthetic: bool,
    pub path: Option<PathBuf>,
    pub vocab_size: usize,
    pub context_length: usize,
    pub eos_token_ids: Vec<u32>,
    /// The start-of-sequence token every prompt begins with, where the model file says so
    /// (`tokenizer.ggml.add_bos_token`, as Gemma's does); counted in the prompt's length.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Where the files came from when that is more than a path: the Hugging Face repository,
    /// revision, resolved commit and each file's hash (`hf:` ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::store::hub::ModelSource>,
    pub engine: EngineConfig,
}

/// One generation request: a batch of equal-length prompts.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompts: Vec<Vec<u32>>,
    pub max_new_tokens: usize,
    /// Keep generating past end-of-sequence tokens (fixed-length runs).
    pub ignore_eos: bool,
    /// A sequence stops at the first of these in its text (an evaluation's stop sequences);
    /// the text up to the stop is the answer, and the tokens generated are counted.
    pub stop: Vec<String>,
}

/// One multiple-choice item to score: each choice's tokens (its context, then its
/// continuation) and where its continuation starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRequest {
    pub choices: Vec<Vec<u32>>,
    pub starts: Vec<usize>,
}

/// Each choice's log-likelihood (the sum of its continuation tokens' log-probabilities) and
/// the work it took.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOutput {
    pub loglik: Vec<f64>,
    /// Tokens the engine ran: the shared prefix once, then each choice's rest.
    pub tokens: usize,
    /// Tokens every choice shared, run once and continued from copies of their state (0: each
    /// choice ran alone, its prefix recomputed).
    pub shared: usize,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Moments of a generation; timestamps are CLOCK_MONOTONIC ns taken after the device synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// The request starts (before the prompt is processed).
    Start,
    /// The first new token exists (prefill done); `Token { index: 0 }` follows.
    FirstToken,
    /// New token number `index` (0-based) exists for every sequence in the batch.
    Token { index: usize },
    /// Generation finished.
    End,
}

/// Receives generation events as they happen (the runner reads its meters here).
pub trait TokenObserver {
    fn on_event(&mut self, _event: TokenEvent, _t_ns: u64) {}
}

/// An observer that ignores every event.
pub struct NoObserver;
impl TokenObserver for NoObserver {}

/// What a generation produced, with the engine's own token counts.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// Prompt tokens over the whole batch.
    pub prompt_tokens: usize,
    /// New tokens per sequence, up to and including its end-of-sequence token.
    pub generated: Vec<Vec<u32>>,
    /// Decode steps run (a step makes one token for every sequence in the batch).
    pub steps: usize,
    pub start_ns: u64,
    pub first_token_ns: u64,
    /// When each step's tokens existed; the first equals `first_token_ns`.
    pub token_ns: Vec<u64>,
    pub end_ns: u64,
}

impl GenerateOutput {
    /// New tokens over the whole batch.
    pub fn generated_tokens(&self) -> usize {
        self.generated.iter().map(Vec::len).sum()
    }
}

/// What a backend does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Generates tokens (decoder models).
    Generator,
    /// Turns inputs into embeddings (encoder models): energy per input token.
    Encoder,
}

/// One embedding request: a batch of equal-length token sequences.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub inputs: Vec<Vec<u32>>,
}

/// Embeddings with the engine's token count.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    /// Input tokens over the whole batch.
    pub input_tokens: usize,
    /// One unit-length vector per input.
    pub embeddings: Vec<Vec<f32>>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A loaded model the runner drives without knowing its family.
pub trait InferenceBackend: Send {
    /// The model and the engine configuration.
    fn info(&self) -> &ModelInfo;
    /// Its tokenizer, where it has one (synthetic models do not).
    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer>;
    /// The model's chat template (Jinja source), if it has one.
    fn chat_template(&self) -> Option<&str> {
        None
    }
    /// Generator or encoder.
    fn kind(&self) -> BackendKind {
        BackendKind::Generator
    }
    /// Greedy, deterministic generation, reporting events to `obs`.
    fn generate(
        &mut self,
        req: &GenerateRequest,
        obs: &mut dyn TokenObserver,
    ) -> Result<GenerateOutput, EngineError>;
    /// Log-likelihoods of an item's continuations, with `Start` and `End` events (decoders).
    fn score(
        &mut self,
        _req: &ScoreRequest,
        _obs: &mut dyn TokenObserver,
    ) -> Result<ScoreOutput, EngineError> {
        Err(EngineError::Request(format!(
            "{} cannot score continuations (an encoder, or an engine without log-probabilities)",
            self.info().id
        )))
    }
    /// Embeddings of a batch (encoders only), with `Start` and `End` events.
    fn embed(
        &mut self,
        _req: &EmbedRequest,
        _obs: &mut dyn TokenObserver,
    ) -> Result<EmbedOutput, EngineError> {
        Err(EngineError::Request(format!(
            "{} generates text; embedding workloads need an encoder model",
            self.info().id
        )))
    }
}

/// The environment that sizes the engines' thread pools to `threads` (for a process started
/// with it, like a cell).
pub fn thread_env(threads: usize) -> [(&'static str, String); 2] {
    let n = threads.max(1).to_string();
    [("RAYON_NUM_THREADS", n.clone()), ("CANDLE_NUM_THREADS", n)]
}

/// Sets the size of candle's thread pools. Call at process start, before any other thread runs
/// and before candle is used (the runner starts one process per cell).
pub fn configure_threads(threads: usize) {
    for (k, v) in thread_env(threads) {
        // SAFETY: documented precondition: no other thread is running yet, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
}

/// This process's peak resident memory so far (Linux `VmHWM`), where the system says.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Returns freed heap memory to the system (glibc keeps it otherwise, and peak RSS counts it).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The thread count candle will use.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Opens the driver of a model's engine: loads it, or starts and waits for its server, outside
/// any measured window. `name` is the model's name in results; progress lines go to `log`.
pub fn open_driver(
    spec: &spec::EngineSpec,
    job: &driver::Job,
    name: String,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<Box<dyn driver::Driver>> {
    Ok(match spec {
        spec::EngineSpec::Candle(c) => Box::new(models::driver::CandleDriver::open(c, job, log)?),
        spec::EngineSpec::Openai(o) => {
            Box::new(external::serve::ServeDriver::open(o, job, name, log)?)
        }
        spec::EngineSpec::Command(c) => {
            Box::new(external::command::CommandDriver::open(c, job, name, log)?)
        }
    })
}
