//! What the external engines (`openai`, `command`) share: validating their `[[model]]` entries,
//! placeholders in commands and URLs, and the plain-HTTP guard for API keys.

pub mod openai;
pub mod server;

use crate::config::{EngineKind, ModelEntry};
use std::collections::BTreeMap;

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

fn probe_vars() -> BTreeMap<&'static str, String> {
    PLACEHOLDERS.iter().map(|p| (*p, "1".to_string())).collect()
}

/// Checks a `[[model]]` entry's engine fields; the message says what to change.
pub fn validate(m: &ModelEntry) -> Result<(), String> {
    let openai_only = [
        ("base_url", m.base_url.is_some()),
        ("model", m.model.is_some()),
        ("api_key_env", m.api_key_env.is_some()),
        ("launch", m.launch.is_some()),
        ("ready_url", m.ready_url.is_some()),
        ("ready_timeout_s", m.ready_timeout_s.is_some()),
        ("request_timeout_s", m.request_timeout_s.is_some()),
        ("tokenizer", m.tokenizer.is_some()),
        ("allow_insecure_http", m.allow_insecure_http),
    ];
    let command_only = [
        ("command", m.command.is_some()),
        ("tokens_regex", m.tokens_regex.is_some()),
    ];
    let stray = |fields: &[(&str, bool)], engine: &str| -> Result<(), String> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err(format!(
                "{f} only applies to engine = \"{engine}\" (this model's engine is {:?})",
                format!("{:?}", m.engine).to_lowercase()
            )),
            None => Ok(()),
        }
    };
    match m.engine {
        EngineKind::Candle => {
            stray(&openai_only, "openai")?;
            stray(&command_only, "command")
        }
        EngineKind::Command => {
            stray(&openai_only, "openai")?;
            let cmd = m.command.as_deref().unwrap_or(&[]);
            if cmd.is_empty() || cmd[0].trim().is_empty() {
                return Err(
                    "engine = \"command\" needs command = [\"program\", \"arg\", ...]".into(),
                );
            }
            for a in cmd {
                expand(a, &probe_vars())?;
            }
            if let Some(r) = &m.tokens_regex {
                regex::Regex::new(r).map_err(|e| format!("tokens_regex: {e}"))?;
            }
            Ok(())
        }
        EngineKind::Openai => {
            stray(&command_only, "command")?;
            let url = m
                .base_url
                .as_deref()
                .ok_or("engine = \"openai\" needs base_url (like \"http://127.0.0.1:8080/v1\")")?;
            if m.model.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(
                    "engine = \"openai\" needs model, the server's name for the model".into(),
                );
            }
            let url = expand(url, &probe_vars())?;
            if let Some(k) = &m.api_key_env
                && (k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(format!(
                    "api_key_env = {k:?} must name an environment variable (the key itself \
                     never goes in the suite)"
                ));
            }
            check_key_transport(&url, m.api_key_env.is_some(), m.allow_insecure_http)?;
            if let Some(l) = &m.launch {
                if l.is_empty() || l[0].trim().is_empty() {
                    return Err("launch must be a command: [\"program\", \"arg\", ...]".into());
                }
                for a in l {
                    expand(a, &probe_vars())?;
                }
            }
            if let Some(r) = &m.ready_url {
                scheme_host(&expand(r, &probe_vars())?)?;
            }
            for (what, v) in [
                ("ready_timeout_s", m.ready_timeout_s),
                ("request_timeout_s", m.request_timeout_s),
            ] {
                if v.is_some_and(|v| !v.is_finite() || v <= 0.0) {
                    return Err(format!("{what} must be > 0 seconds"));
                }
            }
            Ok(())
        }
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
