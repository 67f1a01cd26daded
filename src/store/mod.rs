//! Model storage: the registered models and data sets, the verified cache they are fetched
//! into, and Hugging Face Hub ids in the standard hub cache.

pub mod cache;
pub mod hub;
pub mod registry;
pub mod tree;

use std::path::PathBuf;

/// Why a registered model, data set or Hub file could not be found, fetched or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("model file not found: {path}: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: sha256 mismatch (expected {expected}, got {actual}): delete the file and fetch it \
         again"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "{path}: size {actual} bytes, expected {expected}: the file is truncated or not the \
         registered one; delete it and fetch it again"
    )]
    Size {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("cannot fetch {id}: {reason}")]
    Fetch { id: String, reason: String },
}
