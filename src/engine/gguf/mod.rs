//! Opening GGUF files safely: the header is checked and every tensor is checked to lie inside
//! the file before any weight is read, so truncated or corrupt files are clear errors.

pub mod scan;
pub mod synth;

use crate::engine::EngineError;
use candle_core::quantized::gguf_file::{Content, Value};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Longest context a file may state: rotary tables are sized from it.
pub const MAX_CONTEXT: u64 = 1 << 20;

/// Transformer dimensions a model file or config.json states (None: not stated).
#[derive(Debug, Clone, Copy, Default)]
pub struct Dims {
    pub layers: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub hidden: Option<u64>,
    pub ff: Option<u64>,
    pub vocab: Option<u64>,
    pub context: Option<u64>,
    /// Per-head size when stated apart from hidden / heads.
    pub head_size: Option<u64>,
}

/// Refuses dimensions that are zero, implausibly large or inconsistent (`prefix` names the
/// keys: `metadata llama.` or `config.json `), before any buffer is sized from them.
pub fn plausible(path: &Path, d: Dims, prefix: &str) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::bad_file(path, m));
    for (k, v, max) in [
        ("layers", d.layers, 4096),
        ("attention heads", d.heads, 4096),
        ("key/value heads", d.kv_heads, 4096),
        ("hidden size", d.hidden, 1 << 20),
        ("feed-forward size", d.ff, 1 << 22),
        ("vocabulary", d.vocab, 1 << 22),
        ("context length", d.context, MAX_CONTEXT),
        ("head size", d.head_size, 1 << 16),
    ] {
        if let Some(v) = v
            && (v == 0 || v > max)
        {
            return bad(format!("{prefix}{k} = {v} is impossible (1 to {max} are)"));
        }
    }
    let heads = d.heads.unwrap_or(1);
    let kv = d.kv_heads.unwrap_or(heads);
    if !heads.is_multiple_of(kv) {
        return bad(format!(
            "{prefix}: {heads} attention heads cannot share {kv} key/value heads"
        ));
    }
    let hidden = d.hidden.unwrap_or(heads);
    if d.head_size.is_none() && !hidden.is_multiple_of(heads) {
        return bad(format!(
            "{prefix}: hidden size {hidden} is not a multiple of {heads} heads"
        ));
    }
    Ok(())
}

/// llama.cpp's `general.file_type` numbers and the names it prints for them.
pub const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
];

/// The name of a `general.file_type` number.
pub fn file_type_name(n: u32) -> Option<&'static str> {
    FILE_TYPES.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// An opened, validated GGUF file.
pub struct Gguf {
    pub path: PathBuf,
    pub content: Content,
    pub file: File,
    pub file_len: u64,
}

impl Gguf {
    /// Opens and validates `path`.
    pub fn open(path: &Path) -> Result<Gguf, EngineError> {
        let mut file = File::open(path).map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| EngineError::Io {
                path: path.to_path_buf(),
                source: e,
            })?
            .len();
        let mut head = [0u8; 8];
        if file.read_exact(&mut head).is_err() {
            return Err(EngineError::bad_file(
                path,
                format!("only {file_len} bytes, too short for a GGUF header"),
            ));
        }
        if &head[..4] != b"GGUF" {
            return Err(EngineError::bad_file(
                path,
                "missing the GGUF magic bytes (not a GGUF file)",
            ));
        }
        let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(2..=3).contains(&version) {
            return Err(EngineError::bad_file(
                path,
                format!("unsupported GGUF version {version} (2 and 3 are)"),
            ));
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| EngineError::bad_file(path, e.to_string()))?;
        // Every length and count checked against the file before the parser allocates.
        scan::scan(BufReader::new(&mut file), file_len)
            .map_err(|e| EngineError::bad_file(path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| EngineError::bad_file(path, e.to_string()))?;
        let content = {
            let mut reader = BufReader::new(&mut file);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)))
                .map_err(|_| EngineError::bad_file(path, "the header is corrupt"))?
                .map_err(|e| EngineError::bad_file(path, format!("cannot read the header: {e}")))?
        };
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let bsize = info.ggml_dtype.block_size();
            if elems % bsize != 0 {
                return Err(EngineError::bad_file(
                    path,
                    format!("tensor {name} has {elems} values, not whole blocks"),
                ));
            }
            let end = ((elems / bsize) as u64)
                .checked_mul(info.ggml_dtype.type_size() as u64)
                .and_then(|b| b.checked_add(info.offset))
                .and_then(|b| b.checked_add(content.tensor_data_offset))
                .unwrap_or(u64::MAX);
            if end > file_len {
                return Err(EngineError::bad_file(
                    path,
                    format!(
                        "truncated: tensor {name} ends at byte {end} but the file has {file_len} \
                         bytes"
                    ),
                ));
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            content,
            file,
            file_len,
        })
    }

    /// Checks the transformer dimensions `arch` states (`{arch}.block_count` and the rest) for
    /// zero, implausible size and inconsistency, before anything is sized from them.
    pub fn check_dims(&self, arch: &str) -> Result<(), EngineError> {
        let num = |k: &str| {
            self.get(&format!("{arch}.{k}")).and_then(|v| {
                v.to_u64()
                    .ok()
                    .or_else(|| v.to_u32().ok().map(u64::from))
                    .or_else(|| v.to_i32().ok().map(|x| x as u64))
            })
        };
        for k in ["block_count", "attention.head_count", "embedding_length"] {
            if num(k).is_none() {
                return Err(EngineError::bad_file(
                    &self.path,
                    format!("metadata {arch}.{k} is missing or not a number"),
                ));
            }
        }
        let heads = num("attention.head_count").unwrap_or(1);
        plausible(
            &self.path,
            Dims {
                layers: num("block_count"),
                heads: Some(heads),
                kv_heads: num("attention.head_count_kv"),
                hidden: num("embedding_length"),
                ff: num("feed_forward_length"),
                vocab: None,
                context: num("context_length"),
                head_size: num("attention.key_length").or(num("rope.dimension_count")),
            },
            &format!("metadata {arch}."),
        )
    }

    /// Checks that tensor `name` exists with `want` values (a stated shape that disagrees with
    /// the dimensions would otherwise fail deep inside a kernel).
    pub fn check_len(&self, name: &str, want: usize) -> Result<(), EngineError> {
        let Some(t) = self.content.tensor_infos.get(name) else {
            return Err(EngineError::bad_file(
                &self.path,
                format!("tensor {name} is missing"),
            ));
        };
        let got = t.shape.elem_count();
        if got != want {
            return Err(EngineError::bad_file(
                &self.path,
                format!("tensor {name} has {got} values but the metadata's dimensions need {want}"),
            ));
        }
        Ok(())
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn u32(&self, key: &str) -> Result<u32, EngineError> {
        self.get(key)
            .and_then(|v| {
                v.to_u32()
                    .ok()
                    .or_else(|| v.to_u64().ok().map(|x| x as u32))
            })
            .ok_or_else(|| {
                EngineError::bad_file(
                    &self.path,
                    format!("metadata {key} is missing or not a number"),
                )
            })
    }

    /// An optional float metadata value.
    pub fn f32_or(&self, key: &str, default: f32) -> f32 {
        self.get(key)
            .and_then(|v| {
                v.to_f32()
                    .ok()
                    .or_else(|| v.to_f64().ok().map(|x| x as f32))
            })
            .unwrap_or(default)
    }

    /// A string metadata value.
    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok().cloned())
    }

    /// Reads one tensor as a quantized tensor on `device`.
    pub fn tensor(
        &mut self,
        name: &str,
        device: &candle_core::Device,
    ) -> Result<candle_core::quantized::QTensor, EngineError> {
        let path = self.path.clone();
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| EngineError::bad_file(&path, format!("tensor {name}: {e}")))
    }

    /// A 2-D tensor's format, (rows, cols) and raw bytes, read straight from the file into one
    /// buffer (no second copy while loading, so peak memory stays at the file's size).
    pub fn matrix_bytes(
        &mut self,
        name: &str,
    ) -> Result<(candle_core::quantized::GgmlDType, usize, usize, Vec<u8>), EngineError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path.clone();
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::bad_file(&path, format!("tensor {name} is missing")))?;
        let (rows, cols) = info
            .shape
            .dims2()
            .map_err(|e| EngineError::bad_file(&path, format!("tensor {name}: {e}")))?;
        let dtype = info.ggml_dtype;
        // Sizes and offsets were checked against the file when it was opened.
        let n = rows * cols / dtype.block_size() * dtype.type_size();
        let at = self.content.tensor_data_offset + info.offset;
        let mut buf = vec![0u8; n];
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| EngineError::bad_file(&path, format!("tensor {name}: {e}")))?;
        Ok((dtype, rows, cols, buf))
    }

    /// Every tensor's element count, summed: the model's parameters.
    pub fn parameters(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64)
            .sum()
    }

    /// Frees the vocabulary arrays of the metadata (a 262k-token vocabulary is tens of MB of small
    /// strings) once the tokenizer is built, and hands freed heap back to the system.
    pub fn drop_vocabulary(&mut self) {
        for k in [
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
        ] {
            self.content.metadata.remove(k);
        }
        crate::engine::release_free_memory();
    }

    /// True when the file has a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}
