//! Downloads through Hugging Face's own client (`hf-hub`, feature `hub`), with progress and
//! errors that say what to do; without the feature, an error that says how to get the file.

use super::*;

#[cfg(not(feature = "hub"))]
pub(super) fn download(
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
pub(super) fn download(
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
