//! What the external engines (`openai`, `command`) share: placeholders in commands and URLs,
//! the plain-HTTP guard for API keys, the weights and tokenizer behind a model, and what records
//! say about an engine joulebench cannot see inside; evaluation items on a server (`eval`).

pub mod command;
pub mod eval;
pub mod metrics;
pub mod openai;
pub mod serve;
pub mod server;
pub mod stream;

use crate::engine::driver::Job;
use crate::engine::spec::Weights;
use crate::engine::{EngineConfig, ModelInfo};
use crate::store::registry;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Placeholders a launch command, a command, a URL may use.
pub const PLACEHOLDERS: &[&str] = &[
    "port",
    "threads",
    "model_path",
    "prompt_tokens",
    "new_tokens",
    "concurrency",
    "requests",
];

/// Replaces `{name}` with its value; an unknown `{name}` is an error naming it.
pub fn expand(s: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let ident =
            |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        match after.find('}') {
            Some(j) if PLACEHOLDERS.contains(&&after[..j]) => {
                let key = &after[..j];
                let v = vars
                    .get(key)
                    .ok_or_else(|| format!("{{{key}}} has no value here"))?;
                out.push_str(v);
                rest = &after[j + 1..];
            }
            Some(j) if ident(&after[..j]) => {
                return Err(format!(
                    "unknown placeholder {{{}}} (known: {})",
                    &after[..j],
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Scheme and host of an http(s) URL (`[::1]` keeps its brackets off).
pub fn scheme_host(url: &str) -> Result<(String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (http://host:port/v1)"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?}: only http:// and https:// are supported"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or("").to_string()
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((scheme, host.to_ascii_lowercase()))
}

/// True for names that always mean this machine.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Refuses an API key over plain HTTP to another machine unless allowed.
pub fn check_key_transport(url: &str, has_key: bool, allow: bool) -> Result<(), String> {
    let (scheme, host) = scheme_host(url)?;
    if has_key && scheme == "http" && !is_loopback(&host) && !allow {
        return Err(format!(
            "{url} is plain HTTP to {host}, not this machine, and an API key would travel in the \
             clear: use https://, or set allow_insecure_http = true if the network is trusted"
        ));
    }
    Ok(())
}

/// The file or folder behind `{model_path}` (a registered model is fetched if needed).
pub fn weights_path(w: &Weights, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let spec = w.spec();
    if let Some(m) = registry::lookup(&spec) {
        let dir = registry::resolve(m, true, log)?;
        let ggufs: Vec<&str> = m
            .files
            .iter()
            .map(|f| f.name)
            .filter(|n| n.ends_with(".gguf"))
            .collect();
        return Ok(match ggufs.as_slice() {
            [one] => dir.join(one),
            _ => dir,
        });
    }
    if let Some(id) = crate::store::hub::HubId::parse(&spec) {
        let id = id.map_err(anyhow::Error::msg)?;
        let (p, _) =
            crate::store::hub::resolve(&id, true, crate::store::hub::Freshness::CacheFirst, log)?;
        return Ok(p);
    }
    if spec.starts_with("synthetic:") {
        bail!("{spec} has no weights on disk for an external engine to load");
    }
    Ok(PathBuf::from(spec))
}

/// A tokenizer for exact-length prompts from a registered id, a .gguf, a tokenizer.json or a
/// folder holding one.
pub fn load_tokenizer(spec: &str, log: &mut dyn FnMut(&str)) -> Result<Tokenizer> {
    use crate::engine::gguf::Gguf;
    use crate::engine::text::tokenizer;
    let w = match registry::lookup(spec) {
        Some(_) => Weights::Id(spec.to_string()),
        None if spec.starts_with("hf:") => Weights::Id(spec.to_string()),
        None => Weights::Path(spec.into()),
    };
    let p = weights_path(&w, log)?;
    let from_gguf = |g: &Path| -> Result<Tokenizer> { Ok(tokenizer::from_gguf(&Gguf::open(g)?)?) };
    if p.extension().is_some_and(|e| e == "gguf") {
        return from_gguf(&p);
    }
    if p.is_file() {
        return Ok(tokenizer::from_json(&p)?);
    }
    if p.join("tokenizer.json").is_file() {
        return Ok(tokenizer::from_json(&p.join("tokenizer.json"))?);
    }
    let g = crate::engine::models::gguf_in(&p).with_context(|| {
        format!(
            "no tokenizer at {} (give tokenizer = a registered id, a .gguf, or a tokenizer.json)",
            p.display()
        )
    })?;
    from_gguf(&g)
}

/// The values of the placeholders for a cell.
pub fn vars(job: &Job, port: u16, model_path: Option<&Path>) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    v.insert("port", port.to_string());
    v.insert("threads", job.threads.to_string());
    v.insert("prompt_tokens", job.prompt_tokens.to_string());
    v.insert("new_tokens", job.new_tokens.to_string());
    v.insert("concurrency", job.concurrency.to_string());
    v.insert("requests", job.requests.to_string());
    if let Some(p) = model_path {
        v.insert("model_path", p.display().to_string());
    }
    v
}

/// Expands placeholders in a command line; a relative program path with a `/` resolves against
/// the suite's folder (like model paths), a bare name is looked up on PATH.
pub fn expand_command(
    args: &[String],
    v: &BTreeMap<&str, String>,
    job: &Job,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = args
        .iter()
        .map(|a| expand(a, v).map_err(|e| anyhow::anyhow!(e)))
        .collect::<Result<_>>()?;
    if let Some(p) = out.first_mut()
        && p.contains('/')
        && Path::new(p.as_str()).is_relative()
    {
        *p = job.suite_dir.join(&*p).display().to_string();
    }
    Ok(out)
}

/// What records say about a model behind an external engine.
pub fn external_info(id: String, backend: String, job: &Job, path: Option<PathBuf>) -> ModelInfo {
    ModelInfo {
        id,
        family: "external".into(),
        architecture: "unknown (external engine)".into(),
        parameters: 0,
        quantization: "unknown".into(),
        synthetic: false,
        path,
        vocab_size: 0,
        context_length: 0,
        eos_token_ids: Vec::new(),
        bos_token_id: None,
        source: None,
        engine: EngineConfig {
            backend,
            device: job.device.clone(),
            threads: job.threads,
            prefill_matmul: "external".into(),
            decode_matmul: "external".into(),
            weights_dtype: "external".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_and_unknown_ones_are_named() {
        let mut v = BTreeMap::new();
        v.insert("port", "8080".to_string());
        assert_eq!(
            expand("http://127.0.0.1:{port}/v1", &v).unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(expand("{\"json\": 1}", &v).unwrap(), "{\"json\": 1}");
        assert!(expand("{prot}", &v).unwrap_err().contains("{prot}"));
        assert!(expand("{threads}", &v).unwrap_err().contains("no value"));
    }

    #[test]
    fn keys_never_travel_in_the_clear_to_other_hosts() {
        assert!(check_key_transport("http://127.0.0.1:8000/v1", true, false).is_ok());
        assert!(check_key_transport("http://localhost/v1", true, false).is_ok());
        assert!(check_key_transport("http://[::1]:80/v1", true, false).is_ok());
        assert!(check_key_transport("https://api.example.org/v1", true, false).is_ok());
        assert!(check_key_transport("http://10.0.0.5:8000/v1", false, false).is_ok());
        let e = check_key_transport("http://10.0.0.5:8000/v1", true, false).unwrap_err();
        assert!(e.contains("allow_insecure_http"), "{e}");
        assert!(check_key_transport("http://10.0.0.5:8000/v1", true, true).is_ok());
        assert!(check_key_transport("ftp://x/v1", false, false).is_err());
    }
}
