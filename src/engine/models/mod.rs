//! The in-process engine's models: the one decoder forward for GGUF files (`decoder`), the
//! candle-based llama path (`llama`), Qwen on GPU devices (`qwen`), BERT encoders (`bert`),
//! synthetic models, Hugging Face folders (`hf`), the shared greedy loop and continuation
//! scoring (`generate`), the flat-buffer math they share (`ops`) and the driver the runner uses.
//!
//! Which forward runs a model is decided in one place, [`forward_for`]:
//!
//! | what is loaded | architecture | device | matmul plan | forward |
//! |---|---|---|---|---|
//! | a GGUF file | qwen2, qwen3, gemma3, phi3 | cpu | any | `decoder` |
//! | a GGUF file | llama | cpu | the default (both phases on the kernels) | `decoder` |
//! | a GGUF file | llama | cpu | a dense or candle phase | `llama` |
//! | a GGUF file | llama | GPU | any | `llama` |
//! | a GGUF file | qwen2, qwen3 | GPU | any | `qwen` (candle-transformers' modules) |
//! | a GGUF file | gemma3, phi3 | GPU | any | `decoder` (which refuses: CPU only) |
//! | a GGUF file | anything else | any | any | `llama` (which refuses the architecture) |
//! | a Hugging Face folder | llama, mistral | any | any | `llama` |
//! | `synthetic:NAME` | llama | any | any | `llama` |
//! | a BERT folder or registered encoder | bert | any | - | `bert` |

pub mod bert;
pub mod causal;
pub mod decoder;
pub mod driver;
pub mod evaluate;
pub mod generate;
pub mod hf;
pub mod llama;
pub mod ops;
#[cfg(feature = "qwen-modules")]
pub mod qwen;
pub mod score;
pub mod synthetic;

pub use llama::load::{load_gguf, load_llama};
pub use llama::{Matmul, MatmulPlan};

use crate::engine::gguf::Gguf;
use crate::engine::{EngineError, InferenceBackend, ModelInfo};
use crate::store::hub;
use crate::store::registry::{self, ModelKind};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Architectures joulebench runs from GGUF files.
pub const SUPPORTED_ARCH: &str =
    "llama (SmolLM2, Llama 2/3, Mistral, TinyLlama), qwen2, qwen3, gemma3, phi3";

/// The forwards a model can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The plain-Rust decoder on joulebench's kernels (`decoder`).
    Decoder,
    /// The candle-based llama path (`llama`).
    Llama,
    /// candle-transformers' quantized Qwen modules (`qwen`).
    Qwen,
}

/// Which forward runs a GGUF file of architecture `arch` on a CPU (`cpu`) or GPU device with
/// `plan` (the module's table). Where the model is decisive, the decoder and the llama path
/// agree with llama.cpp (tests/llama_ref.rs, every format); where the top two logits are within
/// a few tenths, 8-bit activations let either pick either.
pub fn forward_for(arch: &str, cpu: bool, plan: MatmulPlan) -> Forward {
    match arch {
        "qwen2" | "qwen3" if !cpu => Forward::Qwen,
        "qwen2" | "qwen3" | "gemma3" | "phi3" => Forward::Decoder,
        "llama" if cpu && plan == MatmulPlan::default() => Forward::Decoder,
        _ => Forward::Llama,
    }
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `cpu`, or `cuda:N` / `metal` with those features.
    pub device: String,
    /// How linear layers are computed while prefilling and while decoding.
    pub matmul: MatmulPlan,
    /// Fetch registered models that are not cached.
    pub allow_fetch: bool,
    /// Seed of synthetic weights.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: "cpu".into(),
            matmul: MatmulPlan::default(),
            allow_fetch: true,
            seed: 42,
        }
    }
}

/// Parses a device string.
pub fn device(spec: &str) -> Result<Device, EngineError> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            let idx = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), |i| i.parse::<usize>())
                .map_err(|_| EngineError::Device(s.into()))?;
            Device::new_cuda(idx).map_err(|_| EngineError::Device(s.into()))
        }
        "metal" => Device::new_metal(0).map_err(|_| EngineError::Device(spec.into())),
        other => Err(EngineError::Device(other.into())),
    }
}

/// Loads any model: `hf:` ids, encoders (registered BERT ids, BERT folders), GGUF files (on
/// the forward [`forward_for`] picks) and everything [`load_llama`] takes. The kernels' note
/// about the instruction set, if any, goes to `progress` first.
pub fn load(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Box<dyn InferenceBackend>, EngineError> {
    if let Some(note) = crate::engine::kernels::isa_note() {
        progress(note);
    }
    if let Some(id) = hub::HubId::parse(spec) {
        let id = id.map_err(EngineError::Request)?;
        let (path, source) =
            hub::resolve(&id, opts.allow_fetch, hub::Freshness::CacheFirst, progress)?;
        let inner = load(&path.display().to_string(), opts, progress)?;
        let mut info = inner.info().clone();
        info.id = spec.to_string();
        info.source = Some(source);
        return Ok(Box::new(Sourced { inner, info }));
    }
    let dev = device(&opts.device)?;
    if let Some(dir) = encoder_folder(spec, opts, progress)? {
        let id = registry::lookup(spec).map_or(spec, |m| m.id);
        return Ok(Box::new(bert::load_folder(&dir, id, &opts.device, &dev)?));
    }
    if let Some(g) = gguf_file(spec, opts, progress)? {
        let arch = g.string("general.architecture").unwrap_or_default();
        match forward_for(&arch, dev.is_cpu(), opts.matmul) {
            Forward::Decoder => {
                return Ok(Box::new(decoder::load(g, spec, &opts.device, &dev)?));
            }
            #[cfg(feature = "qwen-modules")]
            Forward::Qwen => {
                return Ok(Box::new(qwen::load(g, &arch, spec, &opts.device, &dev)?));
            }
            // Without a GPU feature no device but the CPU parses, so this is not reached.
            #[cfg(not(feature = "qwen-modules"))]
            Forward::Qwen => return Err(EngineError::Device(opts.device.clone())),
            Forward::Llama => {}
        }
    }
    Ok(Box::new(load_llama(spec, opts, progress)?))
}

/// The folder of an encoder model: a registered BERT id (fetched if allowed, sizes checked) or
/// a BERT folder.
fn encoder_folder(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<PathBuf>, EngineError> {
    if let Some(m) = registry::lookup(spec)
        && m.kind == ModelKind::BertEncoder
    {
        let dir = registry::resolve(m, opts.allow_fetch, progress)?;
        for f in m.files {
            registry::check_size(&dir.join(f.name), f)?;
        }
        return Ok(Some(dir));
    }
    let p = Path::new(spec);
    Ok((p.is_dir() && is_bert_folder(p)).then(|| p.to_path_buf()))
}

/// A model loaded from the Hub: its info says the `hf:` id and where the files came from.
struct Sourced {
    inner: Box<dyn InferenceBackend>,
    info: ModelInfo,
}

impl InferenceBackend for Sourced {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.inner.tokenizer()
    }
    fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template()
    }
    fn kind(&self) -> crate::engine::BackendKind {
        self.inner.kind()
    }
    fn generate(
        &mut self,
        req: &crate::engine::GenerateRequest,
        obs: &mut dyn crate::engine::TokenObserver,
    ) -> Result<crate::engine::GenerateOutput, EngineError> {
        self.inner.generate(req, obs)
    }
    fn embed(
        &mut self,
        req: &crate::engine::EmbedRequest,
        obs: &mut dyn crate::engine::TokenObserver,
    ) -> Result<crate::engine::EmbedOutput, EngineError> {
        self.inner.embed(req, obs)
    }
    fn score(
        &mut self,
        req: &crate::engine::ScoreRequest,
        obs: &mut dyn crate::engine::TokenObserver,
    ) -> Result<crate::engine::ScoreOutput, EngineError> {
        self.inner.score(req, obs)
    }
}

/// The opened GGUF file at `spec` (a path, a folder holding one, or a registered single-file
/// id), or None where `spec` names something else (a synthetic model, a Hugging Face folder, a
/// path that does not exist: [`load_llama`] says what is wrong with it).
fn gguf_file(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Gguf>, EngineError> {
    if let Some(m) = registry::lookup(spec) {
        if m.kind != ModelKind::GgufLlama || m.files.len() != 1 {
            return Ok(None);
        }
        let dir = registry::resolve(m, opts.allow_fetch, progress)?;
        let f = &m.files[0];
        let path = dir.join(f.name);
        registry::check_size(&path, f)?;
        return Ok(Some(Gguf::open(&path)?));
    }
    let p = Path::new(spec);
    if spec.starts_with("synthetic:") || !p.exists() {
        return Ok(None);
    }
    if p.is_dir() && p.join("config.json").exists() {
        return Ok(None);
    }
    Ok(Some(Gguf::open(&gguf_in(p)?)?))
}

fn is_bert_folder(p: &Path) -> bool {
    std::fs::read_to_string(p.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["model_type"] == "bert")
}

/// The .gguf file `p` names, or the only one in the folder `p`.
pub fn gguf_in(p: &Path) -> Result<PathBuf, EngineError> {
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let mut found = crate::engine::files_with_ext(p, "gguf")?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(EngineError::Missing {
            path: p.to_path_buf(),
            hint: "no .gguf file and no config.json in this folder".into(),
        }),
        _ => Err(EngineError::Request(format!(
            "{} holds several .gguf files; name one",
            p.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_picks_one_forward_per_architecture_device_and_plan() {
        let dense = MatmulPlan {
            prefill: Matmul::Dense,
            decode: Matmul::Simd,
        };
        let default = MatmulPlan::default();
        assert_eq!(forward_for("llama", true, default), Forward::Decoder);
        assert_eq!(forward_for("llama", true, dense), Forward::Llama);
        assert_eq!(forward_for("llama", false, default), Forward::Llama);
        for a in ["qwen2", "qwen3", "gemma3", "phi3"] {
            assert_eq!(forward_for(a, true, dense), Forward::Decoder, "{a}");
        }
        assert_eq!(forward_for("qwen2", false, default), Forward::Qwen);
        assert_eq!(forward_for("gemma3", false, default), Forward::Decoder);
        assert_eq!(forward_for("gpt2", true, default), Forward::Llama);
    }
}
