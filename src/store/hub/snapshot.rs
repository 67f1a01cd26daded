//! The standard Hugging Face cache on disk (`models--ORG--REPO/{refs,blobs,snapshots}`): what
//! a revision resolves to offline, the files a folder model needs, and each file verified
//! against the hash the Hub names it by (remembered per blob, so it is hashed once).

use super::*;

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
pub(super) fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if is_commit(revision) && repo_dir.join("snapshots").join(revision).is_dir() {
        return Some(revision.to_string());
    }
    let c = std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
    let c = c.trim().to_string();
    is_commit(&c).then_some(c)
}

/// The files a snapshot folder's model needs: the named file, or a safetensors folder's set.
pub(super) fn folder_files(snapshot: &Path, listing: &[String]) -> Result<Vec<String>, String> {
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
pub(super) fn shards_of(index_json: &str) -> Result<Vec<String>, String> {
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
pub(super) fn listing(dir: &Path) -> Vec<String> {
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
pub(super) fn cached(
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
pub(super) fn verified(
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 and git blob sha1 of a file, in one pass.
pub(super) fn hashes(p: &Path) -> Result<(String, String, u64), StoreError> {
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
pub(super) fn verified_marker(etag: &str) -> PathBuf {
    crate::store::cache::cache_root()
        .join("hub-verified")
        .join(etag)
}

pub(super) fn stamp(md: &std::fs::Metadata) -> String {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {mtime}", md.len())
}

/// Checks one snapshot file against the hash its blob is named by; a mismatch deletes the
/// blob and its link (the next fetch downloads it again).
pub(super) fn verify(
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
pub(super) fn inside(root: &Path, p: &Path) -> bool {
    match (std::fs::canonicalize(root), std::fs::canonicalize(p)) {
        (Ok(r), Ok(p)) => p.starts_with(r) && !p.components().any(|c| c == Component::ParentDir),
        _ => false,
    }
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
