//! Opening GGUF files safely: the header is checked and every tensor is checked to lie inside
//! the file before any weight is read, so truncated or corrupt files are clear errors.

use crate::engine::EngineError;
use candle_core::quantized::gguf_file::{Content, Value};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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
            let bytes = (elems / bsize) as u64 * info.ggml_dtype.type_size() as u64;
            let end = content.tensor_data_offset + info.offset + bytes;
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

    /// True when the file has a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}
