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

/// Where `id` lies in the cache, if it is there (the snapshot file or folder; not verified:
/// for questions like "is this an encoder folder" that must not hash gigabytes).
pub fn cached_path(id: &HubId) -> Option<PathBuf> {
    let repo_dir = cache_dir().join(id.folder());
    let snap = repo_dir
        .join("snapshots")
        .join(cached_commit(&repo_dir, &id.revision)?);
    let p = match &id.file {
        Some(f) => snap.join(f),
        None => snap,
    };
    p.exists().then_some(p)
}

/// The commit a revision points to in the cache (`refs/REV`, or the revision itself when it
/// is a commit with a snapshot).
fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if is_commit(revision) && repo_dir.join("snapshots").join(revision).is_dir() {
        return Some(revision.to_string());
    }
    let c = std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
    let c = c.trim().to_string();
    is_commit(&c).then_some(c)
}

/// The files a snapshot folder's model needs: the named file, or a safetensors folder's set.
fn folder_files(snapshot: &Path, listing: &[String]) -> Result<Vec<String>, String> {
    let has = |f: &str| listing.iter().any(|l| l == f);
    for f in FOLDER_NEEDS {
        if !has(f) {
            let ggufs: Vec<&String> = listing.iter().filter(|l| l.ends_with(".gguf")).collect();
            return Err(if ggufs.is_empty() {
                format!("the repository has no {f}, so it is not a safetensors model folder")
            } else {
                format!(
                    "the repository holds GGUF files, not a safetensors folder: name one, as \
                     hf:ORG/REPO/FILE ({})",
                    ggufs
                        .iter()
                        .take(12)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
    }
    let mut files: Vec<String> = FOLDER_NEEDS
        .iter()
        .chain(FOLDER_OPTIONAL)
        .filter(|f| has(f))
        .map(|f| f.to_string())
        .collect();
    if has("model.safetensors") {
        files.push("model.safetensors".into());
    } else if has(SAFETENSORS_INDEX) {
        files.push(SAFETENSORS_INDEX.into());
        let index = snapshot.join(SAFETENSORS_INDEX);
        if let Ok(text) = std::fs::read_to_string(&index) {
            files.extend(shards_of(&text).map_err(|e| format!("{}: {e}", index.display()))?);
        }
    } else {
        return Err("the repository has neither model.safetensors nor its index".into());
    }
    Ok(files)
}

/// The shard files an index names, checked like every other name from outside.
fn shards_of(index_json: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(index_json).map_err(|e| format!("not JSON: {e}"))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or("no weight_map object in the safetensors index")?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    for s in &shards {
        if !s.ends_with(".safetensors") || Path::new(s).components().count() != 1 {
            return Err(format!(
                "shard name {s:?} is not a file name ending in .safetensors"
            ));
        }
    }
    if shards.is_empty() {
        return Err("the safetensors index names no shard".into());
    }
    Ok(shards)
}

/// Every file below `dir`, relative, with `/` separators (depth-limited).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                if depth < 4 {
                    walk(base, &p, depth + 1, out);
                }
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, 0, &mut out);
    out.sort();
    out
}

/// The cached copy of `id`, verified, if the cache has every file it needs.
fn cached(
    env: &HubEnv,
    id: &HubId,
    recheck: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<(PathBuf, ModelSource)>, StoreError> {
    let repo_dir = env.cache.join(id.folder());
    let Some(commit) = cached_commit(&repo_dir, &id.revision) else {
        return Ok(None);
    };
    let snap = repo_dir.join("snapshots").join(&commit);
    let names = match &id.file {
        Some(f) => vec![f.clone()],
        None => match folder_files(&snap, &listing(&snap)) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    if names.iter().any(|n| !snap.join(n).is_file()) {
        return Ok(None);
    }
    verified(env, id, commit, &names, recheck, progress).map(Some)
}

/// Checks every file of `names` in the snapshot of `commit` and says where the model is and
/// where it came from.
fn verified(
    env: &HubEnv,
    id: &HubId,
    commit: String,
    names: &[String],
    recheck: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(PathBuf, ModelSource), StoreError> {
    let repo_dir = env.cache.join(id.folder());
    let snap = repo_dir.join("snapshots").join(&commit);
    let files = names
        .iter()
        .map(|n| verify(&repo_dir, &snap, n, recheck, progress))
        .collect::<Result<Vec<_>, _>>()?;
    let path = match &id.file {
        Some(f) => snap.join(f),
        None => snap,
    };
    let source = ModelSource {
        kind: "hub".into(),
        repo: id.repo.clone(),
        revision: id.revision.clone(),
        commit,
        endpoint: env.recorded_endpoint(),
        files,
    };
    Ok((path, source))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 and git blob sha1 of a file, in one pass.
fn hashes(p: &Path) -> Result<(String, String, u64), StoreError> {
    let io = |e| StoreError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(p).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut s256 = Sha256::new();
    let mut s1 = Sha1::new();
    s1.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
        seen += n as u64;
    }
    Ok((hex(&s256.finalize()), hex(&s1.finalize()), seen))
}

/// Where a verified blob's sha256 is remembered (by size and modification time), so a
/// multi-gigabyte file is hashed once, not at every load.
fn verified_marker(etag: &str) -> PathBuf {
    crate::store::cache::cache_root()
        .join("hub-verified")
        .join(etag)
}

fn stamp(md: &std::fs::Metadata) -> String {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {mtime}", md.len())
}

/// Checks one snapshot file against the hash its blob is named by; a mismatch deletes the
/// blob and its link (the next fetch downloads it again).
fn verify(
    repo_dir: &Path,
    snap: &Path,
    name: &str,
    recheck: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<SourceFile, StoreError> {
    let link = snap.join(name);
    let blob = std::fs::canonicalize(&link).map_err(|e| StoreError::Io {
        path: link.clone(),
        source: e,
    })?;
    let blobs = std::fs::canonicalize(repo_dir.join("blobs")).ok();
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let in_blobs = blobs.as_ref().is_some_and(|b| blob.parent() == Some(b));
    let md = std::fs::metadata(&blob).map_err(|e| StoreError::Io {
        path: blob.clone(),
        source: e,
    })?;
    let marker = verified_marker(&etag);
    if in_blobs
        && !recheck
        && etag.len() == 64
        && let Ok(m) = std::fs::read_to_string(&marker)
        && m.trim() == stamp(&md)
    {
        return Ok(SourceFile {
            name: name.into(),
            bytes: md.len(),
            sha256: etag.clone(),
            etag,
        });
    }
    if md.len() > 64 << 20 {
        progress(&format!(
            "{name}: checking sha256 of {:.0} MB",
            md.len() as f64 / 1e6
        ));
    }
    let (sha256, sha1, bytes) = hashes(&blob)?;
    if !in_blobs {
        // A copied snapshot (no blob links): nothing to compare with, the hash is recorded.
        return Ok(SourceFile {
            name: name.into(),
            bytes,
            sha256: sha256.clone(),
            etag: String::new(),
        });
    }
    let ok = match etag.len() {
        64 => sha256 == etag,
        40 => sha1 == etag,
        _ => false,
    };
    if !ok {
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_file(&blob);
        return Err(StoreError::Checksum {
            path: link,
            expected: etag,
            actual: if sha256.len() == 64 && sha1.len() == 40 && bytes > 0 {
                format!("sha256 {sha256}, git sha1 {sha1}; the copy was deleted")
            } else {
                sha256
            },
        });
    }
    if etag.len() == 64 && md.len() > 64 << 20 {
        let _ = std::fs::create_dir_all(marker.parent().unwrap_or(Path::new(".")));
        let tmp = marker.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, stamp(&md)).is_ok() {
            let _ = std::fs::rename(&tmp, &marker);
        }
    }
    Ok(SourceFile {
        name: name.into(),
        bytes,
        sha256,
        etag,
    })
}

/// True when `p` lies inside `root` (both resolved).
fn inside(root: &Path, p: &Path) -> bool {
    match (std::fs::canonicalize(root), std::fs::canonicalize(p)) {
        (Ok(r), Ok(p)) => p.starts_with(r) && !p.components().any(|c| c == Component::ParentDir),
        _ => false,
    }
}

#[cfg(not(feature = "hub"))]
fn download(
    env: &HubEnv,
    id: &HubId,
    _progress: &mut dyn FnMut(&str),
) -> Result<(PathBuf, ModelSource), StoreError> {
    let _ = inside;
    Err(StoreError::Fetch {
        id: id.display(),
        reason: format!(
            "it is not in the Hugging Face cache ({}) and this joulebench was built without \
             the `hub` feature: build with `cargo build --release --features hub`, or download \
             it with `huggingface-cli download {} {}--revision {}` (joulebench finds the cache)",
            env.cache.display(),
            id.repo,
            id.file
                .as_deref()
                .map_or(String::new(), |f| format!("{f} ")),
            id.revision
        ),
    })
}

#[cfg(feature = "hub")]
fn download(
    env: &HubEnv,
    id: &HubId,
    progress: &mut dyn FnMut(&str),
) -> Result<(PathBuf, ModelSource), StoreError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};
    let fail = |reason: String| StoreError::Fetch {
        id: id.display(),
        reason,
    };
    std::fs::create_dir_all(&env.cache)
        .map_err(|e| fail(format!("cannot create {}: {e}", env.cache.display())))?;
    let api = ApiBuilder::from_cache(Cache::new(env.cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_retries(3)
        .with_progress(false)
        .build()
        .map_err(|e| fail(hub_error(env, id, e)))?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let info = guarded(|| repo.info()).map_err(|e| fail(hub_error(env, id, e)))?;
    if !is_commit(&info.sha) {
        return Err(fail(format!(
            "the Hub answered commit {:?}, not a commit hash",
            info.sha.chars().take(64).collect::<String>()
        )));
    }
    let commit = info.sha.clone();
    let remote: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let repo_dir = env.cache.join(id.folder());
    let snap = repo_dir.join("snapshots").join(&commit);
    let get = |name: &str, progress: &mut dyn FnMut(&str)| -> Result<(), StoreError> {
        if snap.join(name).is_file() {
            return Ok(());
        }
        let reporter = Reporter::new(name, progress);
        let got = guarded(|| repo.download_with_progress(name, reporter))
            .map_err(|e| fail(hub_error(env, id, e)))?;
        if !inside(&env.cache, &got) {
            return Err(fail(format!(
                "the download landed outside the cache ({}); refusing it",
                got.display()
            )));
        }
        if !snap.join(name).is_file() {
            return Err(fail(format!(
                "the revision {} moved while downloading (now not {commit}); run again",
                id.revision
            )));
        }
        Ok(())
    };
    let names = match &id.file {
        Some(f) => {
            if !remote.iter().any(|r| r == f) {
                let ggufs: Vec<&str> = remote
                    .iter()
                    .filter(|r| r.ends_with(".gguf"))
                    .map(String::as_str)
                    .take(12)
                    .collect();
                return Err(fail(format!(
                    "{} at {} has no file {f:?}{}",
                    id.repo,
                    id.revision,
                    if ggufs.is_empty() {
                        String::new()
                    } else {
                        format!("; its GGUF files: {}", ggufs.join(", "))
                    }
                )));
            }
            vec![f.clone()]
        }
        None => {
            if remote.iter().any(|r| r == SAFETENSORS_INDEX)
                && !remote.iter().any(|r| r == "model.safetensors")
            {
                get(SAFETENSORS_INDEX, progress)?;
            }
            folder_files(&snap, &remote).map_err(|e| fail(format!("{}: {e}", id.repo)))?
        }
    };
    for n in &names {
        if !remote.iter().any(|r| r == n) {
            return Err(fail(format!(
                "{} has no file {n:?} its index names",
                id.repo
            )));
        }
        get(n, progress)?;
    }
    verified(env, id, commit, &names, false, progress)
}

/// The files of a repository at a revision, and the commit it points to (`models list --hub`).
#[cfg(feature = "hub")]
pub fn remote_files(repo: &str, revision: &str) -> Result<(String, Vec<String>), StoreError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};
    let env = HubEnv::from_env();
    let id = HubId {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: None,
    };
    let fail = |reason: String| StoreError::Fetch {
        id: id.display(),
        reason,
    };
    if env.offline {
        return Err(fail("HF_HUB_OFFLINE is set".into()));
    }
    let api = ApiBuilder::from_cache(Cache::new(env.cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| fail(hub_error(&env, &id, e)))?;
    let r = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let info = guarded(|| r.info()).map_err(|e| fail(hub_error(&env, &id, e)))?;
    Ok((
        info.sha,
        info.siblings.into_iter().map(|s| s.rfilename).collect(),
    ))
}

/// Without the `hub` feature there is no Hub to ask.
#[cfg(not(feature = "hub"))]
pub fn remote_files(repo: &str, _revision: &str) -> Result<(String, Vec<String>), StoreError> {
    Err(StoreError::Fetch {
        id: format!("hf:{repo}"),
        reason: "this joulebench was built without the `hub` feature (cargo build --release \
                 --features hub)"
            .into(),
    })
}

/// Runs a Hub client call, turning a panic inside it (a malformed answer) into an error.
#[cfg(feature = "hub")]
fn guarded<T>(
    f: impl FnOnce() -> Result<T, hf_hub::api::sync::ApiError>,
) -> Result<T, HubCallError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HubCallError::Api(e)),
        Err(p) => Err(HubCallError::Panic(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "malformed answer".into()),
        )),
    }
}

#[cfg(feature = "hub")]
enum HubCallError {
    Api(hf_hub::api::sync::ApiError),
    Panic(String),
}

#[cfg(feature = "hub")]
impl From<hf_hub::api::sync::ApiError> for HubCallError {
    fn from(e: hf_hub::api::sync::ApiError) -> Self {
        HubCallError::Api(e)
    }
}

/// What went wrong talking to the Hub, and what to do about it.
#[cfg(feature = "hub")]
fn hub_error(env: &HubEnv, id: &HubId, e: impl Into<HubCallError>) -> String {
    use hf_hub::api::sync::ApiError;
    let e = match e.into() {
        HubCallError::Panic(m) => {
            return format!("the Hub's answer could not be read ({m})");
        }
        HubCallError::Api(e) => e,
    };
    let msg = match &e {
        ApiError::RequestError(re) => match re.as_ref() {
            ureq2::Error::Status(code, _) => match code {
                401 | 403 if env.token.is_none() => format!(
                    "HTTP {code} from {}: {} is gated or private and no token is set; set \
                     HF_TOKEN (or run `huggingface-cli login`) with a token that has access",
                    env.endpoint, id.repo
                ),
                401 | 403 => format!(
                    "HTTP {code} from {}: the token has no access to {} (accept its license \
                     on the Hub, or use a token with read access)",
                    env.endpoint, id.repo
                ),
                404 => format!(
                    "HTTP 404 from {}: no repository {} with revision {:?} (or the file is not \
                     in it)",
                    env.endpoint, id.repo, id.revision
                ),
                c => format!("HTTP {c} from {}", env.endpoint),
            },
            ureq2::Error::Transport(t) => format!(
                "cannot reach {}: {t}; check the network or HF_ENDPOINT, or set \
                 HF_HUB_OFFLINE=1 to use the cache only",
                env.endpoint
            ),
        },
        other => other.to_string(),
    };
    crate::redact::text(&msg).into_owned()
}

/// Download progress as lines: every 10%, with speed.
#[cfg(feature = "hub")]
struct Reporter<'a> {
    t: crate::store::cache::Transfer,
    /// hf-hub reports a resumed file's offset first after each `init`.
    offset_next: bool,
    progress: &'a mut dyn FnMut(&str),
}

#[cfg(feature = "hub")]
impl<'a> Reporter<'a> {
    fn new(name: &str, progress: &'a mut dyn FnMut(&str)) -> Reporter<'a> {
        Reporter {
            t: crate::store::cache::Transfer::new(name, 0),
            offset_next: false,
            progress,
        }
    }
}

#[cfg(feature = "hub")]
impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.t.restart(size as u64);
        self.offset_next = true;
    }
    fn update(&mut self, size: usize) {
        if std::mem::take(&mut self.offset_next) {
            self.t.resume_at(size as u64, self.progress);
        } else {
            self.t.advance(size as u64, self.progress);
        }
    }
    fn finish(&mut self) {}
}

/// A GGUF file or model folder found in the hub cache, for `models list`.
#[derive(Debug, Clone)]
pub struct CachedModel {
    /// The `hf:` id that loads it.
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Every GGUF file and safetensors folder in the hub cache, newest revision per ref first.
pub fn cached_models() -> Vec<CachedModel> {
    let root = cache_dir();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut repos: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("models--"))
        })
        .collect();
    repos.sort();
    let mut out = Vec::new();
    for dir in repos {
        let folder = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((org, name)) = folder["models--".len()..].split_once("--") else {
            continue;
        };
        let repo = format!("{org}/{name}");
        let main = cached_commit(&dir, "main");
        let Ok(snaps) = std::fs::read_dir(dir.join("snapshots")) else {
            continue;
        };
        let mut snaps: Vec<PathBuf> = snaps.filter_map(Result::ok).map(|e| e.path()).collect();
        snaps.sort();
        for snap in snaps {
            let commit = snap
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let rev = if main.as_deref() == Some(commit.as_str()) {
                String::new()
            } else {
                format!("@{commit}")
            };
            let files = listing(&snap);
            for f in files.iter().filter(|f| f.ends_with(".gguf")) {
                let p = snap.join(f);
                out.push(CachedModel {
                    id: format!("hf:{repo}{rev}/{f}"),
                    bytes: std::fs::metadata(&p).map_or(0, |m| m.len()),
                    path: p,
                });
            }
            if let Ok(names) = folder_files(&snap, &files) {
                out.push(CachedModel {
                    id: format!("hf:{repo}{rev}"),
                    bytes: names
                        .iter()
                        .map(|n| std::fs::metadata(snap.join(n)).map_or(0, |m| m.len()))
                        .sum(),
                    path: snap.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_into_repo_revision_and_file() {
        let id = HubId::parse(
            "hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf",
        )
        .unwrap()
        .unwrap();
        assert_eq!(id.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(id.revision, "main");
        assert_eq!(
            id.file.as_deref(),
            Some("SmolLM2-135M-Instruct-Q4_K_M.gguf")
        );
        let id = HubId::parse("hf:org/repo@v1.0/sub/dir/model.gguf")
            .unwrap()
            .unwrap();
        assert_eq!(
            (id.revision.as_str(), id.file.as_deref()),
            ("v1.0", Some("sub/dir/model.gguf"))
        );
        assert_eq!(id.display(), "hf:org/repo@v1.0/sub/dir/model.gguf");
        let id = HubId::parse("hf:org/repo@refs/pr/12/m.gguf")
            .unwrap()
            .unwrap();
        assert_eq!(
            (id.revision.as_str(), id.file.as_deref()),
            ("refs/pr/12", Some("m.gguf"))
        );
        let id = HubId::parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
            .unwrap()
            .unwrap();
        assert_eq!(id.file, None);
        assert_eq!(id.folder(), "models--HuggingFaceTB--SmolLM2-135M-Instruct");
        assert!(HubId::parse("smollm2-135m-instruct-q4_1").is_none());
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "hf:",
            "hf:org",
            "hf:../repo/x.gguf",
            "hf:org/..",
            "hf:org/repo/../../../../etc/passwd",
            "hf:org/repo/a//b.gguf",
            "hf:org/repo@../../x/f.gguf",
            "hf:org/repo@refs/heads/main/f.gguf",
            "hf:org/re--po/f.gguf",
            "hf:org/repo/a\\..\\b.gguf",
            "hf:org/repo/f\n.gguf",
            "hf:or g/repo",
        ] {
            let r = HubId::parse(bad).unwrap();
            assert!(r.is_err(), "{bad:?} parsed: {r:?}");
            assert!(r.unwrap_err().contains("hf:ORG/REPO"), "{bad:?}");
        }
    }

    #[test]
    fn shard_names_from_an_index_are_checked() {
        let ok = r#"{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#;
        assert_eq!(
            shards_of(ok).unwrap(),
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        for bad in [
            r#"{"weight_map":{"a":"../../x.safetensors"}}"#,
            r#"{"weight_map":{"a":"x.bin"}}"#,
            r#"{"weight_map":{}}"#,
            r#"{"nothing":1}"#,
            "not json",
        ] {
            assert!(shards_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recorded_endpoints_lose_their_credentials() {
        let mut env = HubEnv {
            cache: PathBuf::from("/nonexistent"),
            endpoint: DEFAULT_ENDPOINT.into(),
            offline: false,
            token: None,
        };
        assert_eq!(env.recorded_endpoint(), None);
        env.endpoint = "https://user:secret@mirror.example/hub".into();
        assert_eq!(
            env.recorded_endpoint().as_deref(),
            Some("https://mirror.example/hub")
        );
    }
}
