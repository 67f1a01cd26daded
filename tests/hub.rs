//! `hf:` model ids against a local Hugging Face Hub mirror: a small HTTP server here that
//! answers the model-info API and the `resolve` endpoint as the Hub does (LFS files redirect to
//! a storage URL with `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`; small files answer
//! directly with a git-sha1 `ETag`; ranges answer 206 with `Content-Range`; gated repositories
//! answer 401 without the right bearer token). Downloads need the `hub` feature; reading the
//! standard cache offline does not.

use crate::common;

use crate::common::{http, jb};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn git_sha1_hex(b: &[u8]) -> String {
    use sha1::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// One file the mirror serves.
#[derive(Clone)]
struct MirrorFile {
    bytes: Arc<Vec<u8>>,
    /// The hash the Hub claims (LFS sha256); `None`: a small git file.
    lfs_sha256: Option<String>,
}

#[derive(Default)]
struct State {
    /// repo -> files
    repos: BTreeMap<String, BTreeMap<String, MirrorFile>>,
    /// repo -> the token it needs
    gated: BTreeMap<String, String>,
    /// Storage bodies that stop after this many bytes (one entry per fault).
    truncate: Vec<usize>,
    /// Every request: "METHOD PATH | range | auth".
    log: Vec<String>,
}

/// The mirror server; runs until the test ends.
#[derive(Clone)]
struct Mirror {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Mirror {
    fn start() -> Mirror {
        // The URL is known only once the server listens; the handler reads it from the state.
        let state = Arc::new(Mutex::new(State::default()));
        let url = Arc::new(Mutex::new(String::new()));
        let (st, u) = (state.clone(), url.clone());
        let server = http::Server::start(move |req, s| {
            let m = Mirror {
                url: u.lock().unwrap().clone(),
                state: st.clone(),
            };
            let _ = m.serve(req, s);
        });
        *url.lock().unwrap() = server.url();
        Mirror {
            url: server.url(),
            state,
        }
    }

    fn add(&self, repo: &str, name: &str, bytes: Vec<u8>, lfs: bool) {
        let f = MirrorFile {
            lfs_sha256: lfs.then(|| sha256_hex(&bytes)),
            bytes: Arc::new(bytes),
        };
        self.state
            .lock()
            .unwrap()
            .repos
            .entry(repo.into())
            .or_default()
            .insert(name.into(), f);
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn serve(&self, req: http::Request, s: &mut TcpStream) -> std::io::Result<()> {
        let (method, path) = (req.method.clone(), req.path.clone());
        let range = req.header("range").unwrap_or_default().to_string();
        let auth = req.header("authorization").unwrap_or_default().to_string();
        self.state
            .lock()
            .unwrap()
            .log
            .push(format!("{method} {path} | {range} | {auth}"));
        let path = path.split('?').next().unwrap_or("").to_string();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let st = self.state.lock().unwrap();
        let authorized = |repo: &str| match st.gated.get(repo) {
            Some(tok) => auth == format!("Bearer {tok}"),
            None => true,
        };
        let reply = |s: &mut TcpStream, status: &str, hdrs: &[(String, String)], body: &[u8]| {
            let hdrs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (&**k, &**v)).collect();
            http::reply(s, status, &hdrs, body)
        };
        // /api/models/ORG/REPO/revision/REV
        if segs.len() >= 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision" {
            let repo = format!("{}/{}", segs[2], segs[3]);
            let rev = segs[5..].join("/");
            if !authorized(&repo) {
                return reply(
                    s,
                    "401 Unauthorized",
                    &[],
                    br#"{"error":"Access to model is restricted."}"#,
                );
            }
            let Some(files) = st.repos.get(&repo) else {
                return reply(
                    s,
                    "404 Not Found",
                    &[],
                    br#"{"error":"Repository not found"}"#,
                );
            };
            if rev != "main" && rev != COMMIT {
                return reply(s, "404 Not Found", &[], br#"{"error":"Invalid rev id"}"#);
            }
            let siblings: Vec<serde_json::Value> = files
                .keys()
                .map(|k| serde_json::json!({ "rfilename": k }))
                .collect();
            let body = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings });
            return reply(
                s,
                "200 OK",
                &[("Content-Type".into(), "application/json".into())],
                body.to_string().as_bytes(),
            );
        }
        // /ORG/REPO/resolve/REV/FILE...
        if segs.len() >= 5 && segs[2] == "resolve" {
            let repo = format!("{}/{}", segs[0], segs[1]);
            let file = segs[4..].join("/");
            if !authorized(&repo) {
                return reply(
                    s,
                    "401 Unauthorized",
                    &[("X-Error-Code".into(), "GatedRepo".into())],
                    b"",
                );
            }
            let Some(f) = st.repos.get(&repo).and_then(|r| r.get(&file)).cloned() else {
                return reply(
                    s,
                    "404 Not Found",
                    &[("X-Error-Code".into(), "EntryNotFound".into())],
                    b"",
                );
            };
            let commit = ("X-Repo-Commit".to_string(), COMMIT.to_string());
            if let Some(sha) = &f.lfs_sha256 {
                let hdrs = vec![
                    commit,
                    ("X-Linked-Etag".into(), format!("\"{sha}\"")),
                    ("X-Linked-Size".into(), f.bytes.len().to_string()),
                    (
                        "ETag".into(),
                        format!("\"{}\"", git_sha1_hex(b"lfs pointer")),
                    ),
                    (
                        "Location".into(),
                        format!("{}/storage/{}/{sha}?X-Amz-Signature=abc", self.url, repo),
                    ),
                ];
                return reply(s, "302 Found", &hdrs, b"");
            }
            let etag = (
                "ETag".to_string(),
                format!("\"{}\"", git_sha1_hex(&f.bytes)),
            );
            drop(st);
            return self.body(s, &f.bytes, &range, vec![commit, etag], false);
        }
        // /storage/ORG/REPO/SHA: the blob store the Hub redirects to (no auth, no commit)
        if segs.len() == 4 && segs[0] == "storage" {
            let repo = format!("{}/{}", segs[1], segs[2]);
            let f = st
                .repos
                .get(&repo)
                .and_then(|r| {
                    r.values()
                        .find(|f| f.lfs_sha256.as_deref() == Some(segs[3]))
                })
                .cloned();
            drop(st);
            return match f {
                Some(f) => self.body(s, &f.bytes, &range, Vec::new(), true),
                None => reply(s, "404 Not Found", &[], b""),
            };
        }
        reply(s, "404 Not Found", &[], b"")
    }

    /// A body, honouring `Range: bytes=A-[B]`; storage bodies may be cut short (a fault).
    fn body(
        &self,
        s: &mut TcpStream,
        bytes: &[u8],
        range: &str,
        mut hdrs: Vec<(String, String)>,
        storage: bool,
    ) -> std::io::Result<()> {
        let total = bytes.len();
        let (a, b) = match range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
            Some((a, b)) => {
                let a: usize = a.parse().unwrap_or(0);
                let b: usize = b
                    .parse()
                    .map_or(total.saturating_sub(1), |b: usize| b.min(total - 1));
                (a, b)
            }
            None => (0, total.saturating_sub(1)),
        };
        let status = if range.is_empty() {
            "200 OK"
        } else {
            "206 Partial Content"
        };
        if !range.is_empty() {
            hdrs.push(("Content-Range".into(), format!("bytes {a}-{b}/{total}")));
        }
        hdrs.push(("Accept-Ranges".into(), "bytes".into()));
        let body = &bytes[a.min(total)..(b + 1).min(total)];
        let cut = if storage && body.len() > 1 {
            let mut st = self.state.lock().unwrap();
            if st.truncate.is_empty() {
                None
            } else {
                Some(st.truncate.remove(0))
            }
        } else {
            None
        };
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in &hdrs {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        s.write_all(head.as_bytes())?;
        match cut {
            Some(n) => {
                s.write_all(&body[..n.min(body.len())])?;
                s.flush()?;
                let _ = s.shutdown(std::net::Shutdown::Both);
                Ok(())
            }
            None => s.write_all(body),
        }
    }
}

/// Seeded bytes that are not a model (fetching does not parse them).
fn blob(n: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ seed as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A joulebench command with its own Hugging Face home, joulebench cache and endpoint.
fn hub_cmd(home: &Path, endpoint: &str) -> assert_cmd::Command {
    let mut c = jb();
    c.env("HF_HOME", home.join("hf"))
        .env("JOULEBENCH_CACHE", home.join("jb"))
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    c
}

/// Runs `joulebench ARGS` with its own Hugging Face home against `endpoint`.
fn hub_run(home: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    hub_cmd(home, endpoint).args(args).output().unwrap()
}

/// The `models list --json` row of `id`.
fn listed(home: &Path, id: &str) -> serde_json::Value {
    let out = hub_run(home, "http://127.0.0.1:9", &["models", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {rows}"))
}

#[cfg_attr(not(feature = "hub"), allow(dead_code))]
fn snapshot(home: &Path, repo: &str) -> PathBuf {
    home.join("hf/hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(COMMIT)
}

/// Runs `suite` with the Hub unreachable (only the cache can serve it): the run folder.
fn run_offline(home: &Path, suite: &Path) -> PathBuf {
    let out_dir = home.join("reports");
    let out = hub_cmd(home, "http://127.0.0.1:9")
        .arg("run")
        .arg(suite)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    common::only_dir(&out_dir)
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[cfg(feature = "hub")]
#[test]
fn fetch_lands_in_the_standard_cache_layout_and_is_found_offline() {
    let m = Mirror::start();
    let data = blob(3_000_000, 1);
    m.add("org/repo", "model-Q4_K_M.gguf", data.clone(), true);
    m.add("org/repo", "README.md", b"# a model\n".to_vec(), false);
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(
        home.path(),
        &m.url,
        &["models", "fetch", "hf:org/repo/model-Q4_K_M.gguf"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(COMMIT), "{}", stderr_of(&out));
    let repo_dir = home.path().join("hf/hub/models--org--repo");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let link = snapshot(home.path(), "org/repo").join("model-Q4_K_M.gguf");
    let target = std::fs::read_link(&link).expect("the snapshot file links to its blob");
    assert_eq!(
        target,
        Path::new("../../blobs").join(sha256_hex(&data)),
        "relative link, as huggingface_hub makes them"
    );
    assert_eq!(std::fs::read(&link).unwrap(), data);
    assert!(
        m.log().iter().any(|l| l.starts_with("GET /storage/")),
        "{:?}",
        m.log()
    );

    // Offline, with the endpoint gone: the cached copy is found and checked, no request made.
    let before = m.log().len();
    let out = hub_cmd(home.path(), "http://127.0.0.1:9")
        .env("HF_HUB_OFFLINE", "1")
        .args(["models", "verify", "hf:org/repo/model-Q4_K_M.gguf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&sha256_hex(&data)));
    assert_eq!(m.log().len(), before);

    // `models list` shows the cached file with its id.
    let row = listed(home.path(), "hf:org/repo/model-Q4_K_M.gguf");
    assert_eq!(row["bytes"], 3_000_000);
    assert_eq!(
        row["architecture"], "unreadable",
        "the blob is not a GGUF file"
    );

    // A corrupted blob in the cache is caught by verify, and removed.
    let blob_path = repo_dir.join("blobs").join(sha256_hex(&data));
    let mut bad = data.clone();
    bad[1000] ^= 1;
    std::fs::write(&blob_path, &bad).unwrap();
    let out = hub_cmd(home.path(), "http://127.0.0.1:9")
        .env("HF_HUB_OFFLINE", "1")
        .args(["models", "verify", "hf:org/repo/model-Q4_K_M.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("sha256 mismatch"),
        "{}",
        stderr_of(&out)
    );
    assert!(!blob_path.exists());
}

#[cfg(feature = "hub")]
#[test]
fn a_file_that_does_not_match_its_hash_is_refused_and_deleted() {
    let m = Mirror::start();
    let data = blob(500_000, 2);
    m.add("org/bad", "m.gguf", data.clone(), true);
    // The mirror claims another file's hash for these bytes.
    let claimed = sha256_hex(b"something else");
    m.state
        .lock()
        .unwrap()
        .repos
        .get_mut("org/bad")
        .unwrap()
        .get_mut("m.gguf")
        .unwrap()
        .lfs_sha256 = Some(claimed.clone());
    // The storage store serves by claimed hash.
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(
        home.path(),
        &m.url,
        &["models", "fetch", "hf:org/bad/m.gguf"],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("sha256 mismatch") && err.contains(&claimed),
        "{err}"
    );
    assert!(err.contains(&sha256_hex(&data)), "{err}");
    let blobs = home.path().join("hf/hub/models--org--bad/blobs");
    assert!(!blobs.join(&claimed).exists(), "the bad copy is deleted");
    assert!(!snapshot(home.path(), "org/bad").join("m.gguf").exists());
}

#[cfg(feature = "hub")]
#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let m = Mirror::start();
    let data = blob(4_000_000, 3);
    m.add("org/big", "big.gguf", data.clone(), true);
    m.state.lock().unwrap().truncate = vec![1_234_567];
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(
        home.path(),
        &m.url,
        &["models", "fetch", "hf:org/big/big.gguf"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let link = snapshot(home.path(), "org/big").join("big.gguf");
    assert_eq!(std::fs::read(&link).unwrap(), data);
    let ranges: Vec<String> = m
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GET /storage/"))
        .collect();
    assert!(
        ranges.iter().any(|l| l.contains("bytes=1234567-")),
        "the retry asks for the rest only: {ranges:?}"
    );
    assert!(
        stderr_of(&out).contains("resuming at 1.2"),
        "{}",
        stderr_of(&out)
    );

    // A part file left by an earlier process that died: the next fetch continues it.
    let m2 = Mirror::start();
    let data2 = blob(2_000_000, 4);
    m2.add("org/big2", "b.gguf", data2.clone(), true);
    let blobs = home.path().join("hf/hub/models--org--big2/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{}.part", sha256_hex(&data2))),
        &data2[..700_000],
    )
    .unwrap();
    let out = hub_run(
        home.path(),
        &m2.url,
        &["models", "fetch", "hf:org/big2/b.gguf"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read(snapshot(home.path(), "org/big2").join("b.gguf")).unwrap(),
        data2
    );
    let data_gets: Vec<String> = m2
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GET /storage/") && !l.contains("bytes=0-0"))
        .collect();
    assert_eq!(data_gets.len(), 1, "{data_gets:?}");
    assert!(data_gets[0].contains("bytes=700000-"), "{data_gets:?}");
}

#[cfg(feature = "hub")]
#[test]
fn a_gated_repo_needs_the_token_and_the_token_is_written_nowhere() {
    let m = Mirror::start();
    let data = blob(300_000, 5);
    m.add("org/gated", "g.gguf", data.clone(), true);
    let token = "hf_testtokenABCDEFGH1234567890";
    m.state
        .lock()
        .unwrap()
        .gated
        .insert("org/gated".into(), token.into());
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(
        home.path(),
        &m.url,
        &["models", "fetch", "hf:org/gated/g.gguf"],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");

    let out = hub_cmd(home.path(), &m.url)
        .env("HF_TOKEN", token)
        .args(["models", "fetch", "hf:org/gated/g.gguf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        m.log()
            .iter()
            .any(|l| l.ends_with(&format!("Bearer {token}"))),
        "the token is sent as a bearer header"
    );
    assert!(!stderr_of(&out).contains(token));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(token));
    let n = common::assert_no_file_holds(&[home.path()], token);
    assert!(n >= 2, "files were checked: {n}");

    // A wrong token: a different message.
    let out = hub_cmd(home.path(), &m.url)
        .env("HF_TOKEN", "hf_wrongtoken000000")
        .args(["models", "fetch", "hf:org/gated/g.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("no access"), "{}", stderr_of(&out));
}

#[cfg(feature = "hub")]
#[test]
fn missing_files_repos_and_revisions_say_what_exists() {
    let m = Mirror::start();
    m.add("org/ggufs", "a-Q4_0.gguf", blob(1000, 6), true);
    m.add("org/ggufs", "a-Q8_0.gguf", blob(1000, 7), true);
    let home = tempfile::tempdir().unwrap();
    let run = |id: &str| {
        let o = hub_run(home.path(), &m.url, &["models", "fetch", id]);
        assert!(!o.status.success(), "{id}");
        stderr_of(&o)
    };
    let e = run("hf:org/ggufs/a-Q5_0.gguf");
    assert!(
        e.contains("a-Q4_0.gguf") && e.contains("a-Q8_0.gguf"),
        "{e}"
    );
    let e = run("hf:org/ggufs");
    assert!(e.contains("name one") && e.contains("a-Q4_0.gguf"), "{e}");
    let e = run("hf:org/nothing/x.gguf");
    assert!(e.contains("404"), "{e}");
    let e = run("hf:org/ggufs@v9/a-Q4_0.gguf");
    assert!(e.contains("404") && e.contains("v9"), "{e}");
    // A dead endpoint: says how to work offline.
    let o = hub_run(
        home.path(),
        "http://127.0.0.1:9",
        &["models", "fetch", "hf:org/ggufs/a-Q4_0.gguf"],
    );
    assert!(!o.status.success());
    assert!(
        stderr_of(&o).contains("HF_HUB_OFFLINE"),
        "{}",
        stderr_of(&o)
    );
}

#[test]
fn offline_without_a_cached_copy_fails_before_any_request() {
    let m = Mirror::start();
    m.add("org/repo", "m.gguf", blob(1000, 8), true);
    let home = tempfile::tempdir().unwrap();
    let out = hub_cmd(home.path(), &m.url)
        .env("HF_HUB_OFFLINE", "1")
        .args(["models", "fetch", "hf:org/repo/m.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("huggingface-cli download org/repo m.gguf"),
        "{err}"
    );
    assert!(m.log().is_empty(), "{:?}", m.log());
}

#[test]
fn hostile_ids_are_refused_before_any_request() {
    let m = Mirror::start();
    let home = tempfile::tempdir().unwrap();
    for id in [
        "hf:org/repo/../../../../etc/passwd",
        "hf:../x/y.gguf",
        "hf:org/repo@../../refs/m.gguf",
        "hf:org/repo/a\\b.gguf",
    ] {
        let out = hub_run(home.path(), &m.url, &["models", "fetch", id]);
        assert!(!out.status.success(), "{id}");
        assert!(
            stderr_of(&out).contains("is not a Hugging Face id"),
            "{id}: {}",
            stderr_of(&out)
        );
    }
    assert!(m.log().is_empty(), "{:?}", m.log());
    // In a suite, the config error names the entry.
    let suite = common::write_suite(
        home.path(),
        "s.toml",
        "[suite]\nname = \"s\"\n\n[[model]]\nid = \"hf:org/repo/../x.gguf\"\n\n[[profile]]\nname = \"p\"\n\n[[workload]]\nname = \"w\"\nprompt_tokens = 8\nnew_tokens = 2\n",
    );
    let out = hub_cmd(home.path(), &m.url)
        .args(["run"])
        .arg(&suite)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("s.toml") && err.contains("hf:ORG/REPO"),
        "{err}"
    );
}

#[cfg(not(feature = "hub"))]
#[test]
fn without_the_hub_feature_a_missing_file_says_how_to_get_it() {
    let m = Mirror::start();
    m.add("org/repo", "m.gguf", blob(1000, 9), true);
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(
        home.path(),
        &m.url,
        &["models", "fetch", "hf:org/repo/m.gguf"],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("--features hub") && err.contains("huggingface-cli download"),
        "{err}"
    );
}

/// The default model's file, when the cache has it (the engine tests fetch it).
fn default_model_file() -> Option<PathBuf> {
    let m = joulebench::store::registry::lookup(joulebench::store::registry::DEFAULT_MODEL)?;
    let dir = joulebench::store::registry::resolve(m, true, &mut |s| eprintln!("{s}")).ok()?;
    Some(dir.join(m.files[0].name))
}

/// Lays a file out in a hub cache as huggingface-cli does (blob + relative link + ref).
fn seed_cache(hf_home: &Path, repo: &str, name: &str, src: &Path) -> String {
    let bytes = std::fs::read(src).unwrap();
    let sha = sha256_hex(&bytes);
    let dir = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::create_dir_all(dir.join("snapshots").join(COMMIT)).unwrap();
    std::fs::write(dir.join("blobs").join(&sha), &bytes).unwrap();
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    std::os::unix::fs::symlink(
        Path::new("../../blobs").join(&sha),
        dir.join("snapshots").join(COMMIT).join(name),
    )
    .unwrap();
    sha
}

#[test]
fn a_cached_hub_model_generates_and_runs_with_its_commit_and_hash_recorded() {
    let Some(src) = default_model_file() else {
        eprintln!("skipped: the default model is not cached and cannot be fetched");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let hf = home.path().join("hf");
    let repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
    let sha = seed_cache(&hf, repo, "smollm2-135m-instruct-q4_1.gguf", &src);
    let id = format!("hf:{repo}/smollm2-135m-instruct-q4_1.gguf");
    // No endpoint to ask: the cache answers.
    let out = hub_run(
        home.path(),
        "http://127.0.0.1:9",
        &[
            "generate",
            "--model",
            &id,
            "--prompt-tokens",
            "8",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"]["id"], id);
    assert_eq!(v["model"]["architecture"], "llama");
    let source = &v["model"]["source"];
    assert_eq!(source["repo"], repo);
    assert_eq!(source["revision"], "main");
    assert_eq!(source["commit"], COMMIT);
    assert_eq!(source["files"][0]["sha256"], sha);
    assert_eq!(source["files"][0]["etag"], sha);

    // A suite on it: meta.json and every record carry the source.
    let suite = common::write_suite(
        home.path(),
        "hub.toml",
        &format!(
            "[suite]\nname = \"hub\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
             cooldown_seconds = 0\nmin_window_ms = 1\n\n[[model]]\nid = \"{id}\"\nalias = \"smol\"\n\n\
             [[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"w\"\n\
             prompt_tokens = 8\nnew_tokens = 4\n"
        ),
    );
    let run = run_offline(home.path(), &suite);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["model_sources"]["smol"]["commit"], COMMIT);
    assert_eq!(meta["model_sources"]["smol"]["files"][0]["sha256"], sha);
    let recs = std::fs::read_to_string(run.join("records.jsonl")).unwrap();
    let mut n = 0;
    for line in recs.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["model_info"]["source"]["commit"], COMMIT, "{line}");
        n += 1;
    }
    assert!(n >= 1);
    // Listed from the cache with what its header says.
    let row = listed(home.path(), &id);
    assert_eq!(row["architecture"], "llama");
    assert_eq!(row["quantization"], "Q4_1");
    assert_eq!(row["parameters"], "135M");
}

#[cfg(feature = "hub")]
#[test]
fn a_safetensors_folder_fetches_its_config_tokenizer_and_indexed_shards_only() {
    let m = Mirror::start();
    let index = serde_json::json!({ "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors" } });
    m.add(
        "org/folder",
        "config.json",
        br#"{"model_type":"llama"}"#.to_vec(),
        false,
    );
    m.add(
        "org/folder",
        "tokenizer.json",
        br#"{"model":{}}"#.to_vec(),
        false,
    );
    m.add(
        "org/folder",
        "model.safetensors.index.json",
        index.to_string().into_bytes(),
        false,
    );
    m.add(
        "org/folder",
        "model-00001-of-00002.safetensors",
        blob(200_000, 10),
        true,
    );
    m.add(
        "org/folder",
        "model-00002-of-00002.safetensors",
        blob(100_000, 11),
        true,
    );
    m.add("org/folder", "pytorch_model.bin", blob(300_000, 12), true);
    let home = tempfile::tempdir().unwrap();
    let out = hub_run(home.path(), &m.url, &["models", "fetch", "hf:org/folder"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let snap = snapshot(home.path(), "org/folder");
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert!(snap.join(f).is_file(), "{f}");
    }
    assert!(!snap.join("pytorch_model.bin").exists());
    assert!(!m.log().iter().any(|l| l.contains("pytorch_model.bin")));

    // An index that names a path outside the snapshot is refused.
    let m2 = Mirror::start();
    let evil = serde_json::json!({ "weight_map": { "a": "../../../evil.safetensors" } });
    m2.add("org/evil", "config.json", b"{}".to_vec(), false);
    m2.add("org/evil", "tokenizer.json", b"{}".to_vec(), false);
    m2.add(
        "org/evil",
        "model.safetensors.index.json",
        evil.to_string().into_bytes(),
        false,
    );
    let out = hub_run(home.path(), &m2.url, &["models", "fetch", "hf:org/evil"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("evil.safetensors"),
        "{}",
        stderr_of(&out)
    );
    assert!(!home.path().join("hf/evil.safetensors").exists());
}

#[test]
fn a_cached_hub_bert_folder_is_an_encoder_and_embeds() {
    let m = joulebench::store::registry::lookup("all-minilm-l6-v2").unwrap();
    let Ok(dir) = joulebench::store::registry::resolve(m, true, &mut |s| eprintln!("{s}")) else {
        eprintln!("skipped: the encoder is not cached and cannot be fetched");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let hf = home.path().join("hf");
    let repo = "sentence-transformers/all-MiniLM-L6-v2";
    for f in m.files {
        seed_cache(&hf, repo, f.name, &dir.join(f.name));
    }
    let suite = common::write_suite(
        home.path(),
        "enc.toml",
        &format!(
            "[suite]\nname = \"enc\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
             cooldown_seconds = 0\nmin_window_ms = 1\n\n[[model]]\nid = \"hf:{repo}\"\nalias = \"minilm\"\n\n\
             [[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"e\"\nkind = \"embed\"\n\
             prompt_tokens = 16\nbatch = 2\n"
        ),
    );
    let run = run_offline(home.path(), &suite);
    let recs = std::fs::read_to_string(run.join("records.jsonl")).unwrap();
    let r: serde_json::Value = serde_json::from_str(recs.lines().next().unwrap()).unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["kind"], "embed");
    assert_eq!(r["model_info"]["id"], format!("hf:{repo}"));
    assert_eq!(
        r["model_info"]["source"]["files"].as_array().unwrap().len(),
        3
    );
}
