//! Hugging Face Hub model ids: `hf:ORG/REPO[@REVISION]/FILE.gguf` (one GGUF file) and
//! `hf:ORG/REPO[@REVISION]` (a safetensors folder: config.json, tokenizer.json, weights).
//!
//! Files live in the standard hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`: `models--ORG--REPO/{refs,blobs,snapshots}`), so what
//! `huggingface-cli download` put there is found offline and what joulebench downloads serves
//! the Python tools too. A revision already in the cache is used as it is, without asking the
//! Hub (reproducible, and no network inside measured runs); `joulebench models fetch hf:…`
//! asks the Hub for the revision's current commit. Downloads go through the `hf-hub` crate
//! (feature `hub`), honouring `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`) and
//! `HF_HUB_OFFLINE`; every file is checked against the hash the Hub names its blob by (sha256
//! for LFS files, the git blob sha1 for small ones) and the resolved commit and hashes go into
//! every record ([`ModelSource`]). The token is sent as a header and never written anywhere.

use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The Hub joulebench asks when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files of a safetensors folder besides the weights: needed, then used when present.
const FOLDER_NEEDS: &[&str] = &["config.json", "tokenizer.json"];
const FOLDER_OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];
const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";

/// A parsed `hf:` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `ORG/REPO`.
    pub repo: String,
    /// A branch, tag or commit; `main` when the id names none.
    pub revision: String,
    /// The file inside the repository; `None` for a safetensors folder.
    pub file: Option<String>,
}

/// Where a model's files came from: written into `model_info.source` of every record and
/// into `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSource {
    /// `hub`.
    pub kind: String,
    /// `ORG/REPO`.
    pub repo: String,
    /// The revision as asked for.
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// The Hub asked, where not the default one (credentials in the URL removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub files: Vec<SourceFile>,
}

/// One file of a [`ModelSource`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path inside the repository.
    pub name: String,
    pub bytes: u64,
    /// sha256 of the content (checked against the Hub's LFS hash when it has one).
    pub sha256: String,
    /// What the Hub names the blob by: the LFS sha256, or the git blob sha1 of a small file.
    pub etag: String,
}

impl HubId {
    /// Parses `spec` when it is an `hf:` id; `None` for anything else. The names are checked
    /// so that no part of the id can reach outside the cache folder.
    pub fn parse(spec: &str) -> Option<Result<HubId, String>> {
        let rest = spec.strip_prefix("hf:")?;
        Some(parse_rest(rest).map_err(|why| {
            format!(
                "{spec:?} is not a Hugging Face id ({why}); write hf:ORG/REPO/FILE.gguf, \
                 hf:ORG/REPO@REVISION/FILE.gguf or hf:ORG/REPO[@REVISION] for a safetensors folder"
            )
        }))
    }

    /// The cache folder name (`models--ORG--REPO`).
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }

    /// The id written back (`hf:ORG/REPO@REV/FILE`, `@main` left out).
    pub fn display(&self) -> String {
        let rev = if self.revision == "main" {
            String::new()
        } else {
            format!("@{}", self.revision)
        };
        match &self.file {
            Some(f) => format!("hf:{}{rev}/{f}", self.repo),
            None => format!("hf:{}{rev}", self.repo),
        }
    }
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s != "."
        && s != ".."
        && !s.contains("--")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_rest(rest: &str) -> Result<HubId, String> {
    let mut parts = rest.splitn(3, '/');
    let org = parts.next().unwrap_or("");
    let repo_rev = parts.next().ok_or("no repository: the id needs ORG/REPO")?;
    let tail = parts.next();
    let (repo, rev, mut tail) = match repo_rev.split_once('@') {
        Some((r, rev)) => (r, Some(rev.to_string()), tail.map(str::to_string)),
        None => (repo_rev, None, tail.map(str::to_string)),
    };
    if !name_ok(org, 96) || !name_ok(repo, 96) {
        return Err(format!(
            "{org:?}/{repo:?}: organisation and repository names are letters, digits, '-', '_' \
             and '.'"
        ));
    }
    // `refs/pr/N` revisions hold slashes: the file starts after them.
    let revision = match rev {
        Some(r) if r == "refs" => {
            let t = tail.take().unwrap_or_default();
            let mut s = t.splitn(3, '/');
            let (pr, n) = (s.next().unwrap_or(""), s.next().unwrap_or(""));
            if pr != "pr" || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err("a revision with '/' must be refs/pr/N".into());
            }
            tail = s.next().map(str::to_string);
            format!("refs/pr/{n}")
        }
        Some(r) => {
            if !name_ok(&r, 128) {
                return Err(format!(
                    "revision {r:?}: letters, digits, '-', '_' and '.' (or refs/pr/N)"
                ));
            }
            r
        }
        None => "main".into(),
    };
    let file = match tail {
        None => None,
        Some(f) if f.is_empty() => None,
        Some(f) => {
            if f.len() > 512
                || f.contains('\\')
                || f.split('/').any(|seg| {
                    seg.is_empty()
                        || seg == "."
                        || seg == ".."
                        || seg.chars().any(|c| c.is_control() || c == ':')
                })
            {
                return Err(format!(
                    "file {f:?}: a path inside the repository, without '..', empty parts or \
                     control characters"
                ));
            }
            Some(f)
        }
    };
    Ok(HubId {
        repo: format!("{org}/{repo}"),
        revision,
        file,
    })
}

/// The Hub settings of this process's environment.
#[derive(Debug, Clone)]
pub struct HubEnv {
    pub cache: PathBuf,
    pub endpoint: String,
    pub offline: bool,
    pub token: Option<String>,
}

use super::cache::env_nonempty;
pub use super::cache::hf_cache_dir as cache_dir;

impl HubEnv {
    /// Reads `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` (else the
    /// token file `huggingface-cli login` writes). The token is registered for redaction.
    pub fn from_env() -> HubEnv {
        let cache = cache_dir();
        let endpoint = env_nonempty("HF_ENDPOINT").map_or_else(
            || DEFAULT_ENDPOINT.to_string(),
            |e| e.trim_end_matches('/').into(),
        );
        let offline = env_nonempty("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let token = env_nonempty("HF_TOKEN")
            .or_else(|| {
                let home = env_nonempty("HF_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        cache
                            .parent()
                            .map_or_else(|| cache.clone(), Path::to_path_buf)
                    });
                std::fs::read_to_string(home.join("token")).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(t) = &token {
            crate::redact::register(t);
        }
        HubEnv {
            cache,
            endpoint,
            offline,
            token,
        }
    }

    /// The endpoint to record: `None` for the default Hub, credentials removed otherwise.
    fn recorded_endpoint(&self) -> Option<String> {
        if self.endpoint == DEFAULT_ENDPOINT {
            return None;
        }
        Some(crate::redact::url_without_credentials(&self.endpoint))
    }
}

/// When the Hub is asked about a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A revision the cache has is used as it is (loading, runs).
    CacheFirst,
    /// The Hub is asked for the revision's commit (`models fetch`).
    Latest,
    /// The cache only, every file hashed again (`models verify`).
    Recheck,
}

/// The local path of `id` (the file, or the snapshot folder) and where it came from. Never
/// downloads when `allow_fetch` is false or `HF_HUB_OFFLINE` is set.
pub fn resolve(
    id: &HubId,
    allow_fetch: bool,
    freshness: Freshness,
    progress: &mut dyn FnMut(&str),
) -> Result<(PathBuf, ModelSource), StoreError> {
    let env = HubEnv::from_env();
    let offline = env.offline || !allow_fetch || freshness == Freshness::Recheck;
    if (freshness != Freshness::Latest || offline)
        && let Some(found) = cached(&env, id, freshness == Freshness::Recheck, progress)?
    {
        return Ok(found);
    }
    if offline {
        let why = if env.offline {
            "HF_HUB_OFFLINE is set"
        } else {
            "fetching is off (--offline)"
        };
        return Err(StoreError::Missing {
            path: env.cache.join(id.folder()),
            hint: format!(
                "{} is not in the Hugging Face cache and {why}: allow the download, or put it \
                 there with `huggingface-cli download {} {}--revision {}`",
                id.display(),
                id.repo,
                id.file
                    .as_deref()
                    .map_or(String::new(), |f| format!("{f} ")),
                id.revision
            ),
        });
    }
    download(&env, id, progress)
}

/// A commit hash as the Hub writes them.
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

mod download;
mod snapshot;
#[cfg(test)]
mod tests;

use download::download;
pub use download::remote_files;
use snapshot::*;
pub use snapshot::{CachedModel, cached_models, cached_path};
