//! `[[model]]` entries: the table as written (every engine's fields, all optional), checked
//! and turned into a [`ModelEntry`] whose engine part is one typed variant per engine.

use crate::engine::external::openai::Endpoint;
use crate::engine::external::{PLACEHOLDERS, check_key_transport, expand, scheme_host};
use crate::engine::spec::{CandleSpec, CommandSpec, EngineSpec, OpenaiSpec, Weights};
use crate::store::registry::{self, ModelKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which engine runs a model (the `engine` key; candle when absent).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    #[default]
    Candle,
    Openai,
    Command,
}

/// A validated `[[model]]`: the name results use and what the engine runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub alias: Option<String>,
    #[serde(flatten)]
    pub engine: EngineSpec,
}

impl ModelEntry {
    /// What the engine loads (an id or a path), or what the external engine talks to.
    pub fn spec(&self) -> String {
        self.engine.spec()
    }

    /// The weights behind `{model_path}` and the default tokenizer (an id or a path).
    pub fn weights(&self) -> Option<String> {
        self.engine.weights().map(Weights::spec)
    }

    /// The name results use: the alias, else the id, the server's model or the program.
    pub fn name(&self) -> String {
        self.alias
            .clone()
            .unwrap_or_else(|| self.engine.default_name())
    }
}

/// `[[model]]` as written: a registered id, a synthetic name, or a path (candle); a server
/// (openai); a command (command).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    id: Option<String>,
    path: Option<PathBuf>,
    alias: Option<String>,
    seed: Option<u64>,
    #[serde(default)]
    engine: EngineKind,
    base_url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    endpoint: Endpoint,
    launch: Option<Vec<String>>,
    ready_url: Option<String>,
    ready_timeout_s: Option<f64>,
    request_timeout_s: Option<f64>,
    tokenizer: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
    metrics_url: Option<String>,
    command: Option<Vec<String>>,
    tokens_regex: Option<String>,
}

fn probe_vars() -> BTreeMap<&'static str, String> {
    PLACEHOLDERS.iter().map(|p| (*p, "1".to_string())).collect()
}

/// True when the model is an encoder (known from the registry or its config.json).
fn is_encoder(w: &Weights) -> bool {
    let bert_folder = |p: &Path| {
        std::fs::read_to_string(p.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["model_type"] == "bert")
    };
    match w {
        // An hf: folder already in the Hugging Face cache says what it is in its config.json.
        Weights::Id(id) => match crate::store::hub::HubId::parse(id) {
            Some(Ok(h)) if h.file.is_none() => {
                crate::store::hub::cached_path(&h).is_some_and(|p| bert_folder(&p))
            }
            _ => registry::lookup(id).is_some_and(|r| r.kind == ModelKind::BertEncoder),
        },
        Weights::Path(p) => bert_folder(p),
    }
}

/// An `id` that names no model is refused where it is written, not when its cell runs: a
/// registered id, `synthetic:NAME` of a known shape, or (as before) a path written as an id.
fn known_id(id: &str) -> Result<(), String> {
    use crate::engine::models::synthetic::SYNTHETIC;
    use crate::store::registry;
    if let Some(name) = id.strip_prefix("synthetic:") {
        if SYNTHETIC.contains(&name) {
            return Ok(());
        }
        return Err(format!(
            "unknown synthetic model {id:?}; known: {}",
            SYNTHETIC
                .iter()
                .map(|s| format!("synthetic:{s}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if registry::lookup(id).is_some() || id.contains('/') || id.ends_with(".gguf") {
        return Ok(());
    }
    let what = if registry::dataset(id).is_some() {
        format!("{id:?} is a data set, not a model")
    } else {
        format!("unknown model id {id:?}")
    };
    Err(format!(
        "{what}; known ids: {}, synthetic:llama-tiny, synthetic:llama-135m, hf:OWNER/NAME (a \
         Hugging Face repository), or give path = \"FILE.gguf\" (`joulebench models list` shows \
         them)",
        registry::known_ids()
    ))
}

impl RawModel {
    /// Checks the entry (relative paths resolve against `base`, the suite's folder); the
    /// message says what to change.
    pub(super) fn validate(self, base: &Path) -> Result<ModelEntry, String> {
        let weights = match (&self.id, &self.path) {
            (Some(_), Some(_)) => {
                return Err("a [[model]] needs exactly one of id or path, not both".into());
            }
            (None, None) if self.engine == EngineKind::Candle => {
                return Err("a [[model]] needs exactly one of id or path".into());
            }
            (Some(id), None) => {
                if let Some(Err(e)) = crate::store::hub::HubId::parse(id) {
                    return Err(e);
                }
                Some(Weights::Id(id.clone()))
            }
            (None, Some(p)) if p.is_relative() => Some(Weights::Path(base.join(p))),
            (None, Some(p)) => Some(Weights::Path(p.clone())),
            (None, None) => None,
        };
        self.no_stray_fields()?;
        if let Some(Weights::Id(id)) = &weights
            && crate::store::hub::HubId::parse(id).is_none()
        {
            known_id(id)?;
        }
        let engine = match (self.engine, weights) {
            (EngineKind::Candle, Some(weights)) => EngineSpec::Candle(CandleSpec {
                encoder: is_encoder(&weights),
                weights,
                seed: self.seed,
            }),
            (EngineKind::Candle, None) => {
                return Err("a [[model]] needs exactly one of id or path".into());
            }
            (EngineKind::Command, weights) => EngineSpec::Command(self.command_spec(weights)?),
            (EngineKind::Openai, weights) => EngineSpec::Openai(self.openai_spec(weights)?),
        };
        Ok(ModelEntry {
            alias: self.alias,
            engine,
        })
    }

    fn no_stray_fields(&self) -> Result<(), String> {
        let openai_only = [
            ("base_url", self.base_url.is_some()),
            ("model", self.model.is_some()),
            ("api_key_env", self.api_key_env.is_some()),
            ("launch", self.launch.is_some()),
            ("ready_url", self.ready_url.is_some()),
            ("ready_timeout_s", self.ready_timeout_s.is_some()),
            ("request_timeout_s", self.request_timeout_s.is_some()),
            ("tokenizer", self.tokenizer.is_some()),
            ("allow_insecure_http", self.allow_insecure_http),
            ("metrics_url", self.metrics_url.is_some()),
        ];
        let command_only = [
            ("command", self.command.is_some()),
            ("tokens_regex", self.tokens_regex.is_some()),
        ];
        let stray = |fields: &[(&str, bool)], engine: &str| -> Result<(), String> {
            match fields.iter().find(|(_, set)| *set) {
                Some((f, _)) => Err(format!(
                    "{f} only applies to engine = \"{engine}\" (this model's engine is {:?})",
                    format!("{:?}", self.engine).to_lowercase()
                )),
                None => Ok(()),
            }
        };
        match self.engine {
            EngineKind::Candle => {
                stray(&openai_only, "openai")?;
                stray(&command_only, "command")
            }
            EngineKind::Command => stray(&openai_only, "openai"),
            EngineKind::Openai => stray(&command_only, "command"),
        }
    }

    fn command_spec(&self, weights: Option<Weights>) -> Result<CommandSpec, String> {
        let cmd = self.command.clone().unwrap_or_default();
        if cmd.is_empty() || cmd[0].trim().is_empty() {
            return Err("engine = \"command\" needs command = [\"program\", \"arg\", ...]".into());
        }
        for a in &cmd {
            expand(a, &probe_vars())?;
        }
        if let Some(r) = &self.tokens_regex {
            regex::Regex::new(r).map_err(|e| format!("tokens_regex: {e}"))?;
        }
        Ok(CommandSpec {
            weights,
            command: cmd,
            tokens_regex: self.tokens_regex.clone(),
        })
    }

    fn openai_spec(&self, weights: Option<Weights>) -> Result<OpenaiSpec, String> {
        let url = self
            .base_url
            .as_deref()
            .ok_or("engine = \"openai\" needs base_url (like \"http://127.0.0.1:8080/v1\")")?;
        let model = match self.model.as_deref() {
            Some(m) if !m.trim().is_empty() => m.to_string(),
            _ => {
                return Err(
                    "engine = \"openai\" needs model, the server's name for the model".into(),
                );
            }
        };
        let probe = expand(url, &probe_vars())?;
        if let Some(k) = &self.api_key_env
            && (k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "api_key_env = {k:?} must name an environment variable (the key itself never \
                 goes in the suite)"
            ));
        }
        check_key_transport(&probe, self.api_key_env.is_some(), self.allow_insecure_http)?;
        if let Some(l) = &self.launch {
            if l.is_empty() || l[0].trim().is_empty() {
                return Err("launch must be a command: [\"program\", \"arg\", ...]".into());
            }
            for a in l {
                expand(a, &probe_vars())?;
            }
        }
        if let Some(r) = &self.ready_url {
            scheme_host(&expand(r, &probe_vars())?)?;
        }
        if let Some(m) = &self.metrics_url {
            scheme_host(&expand(m, &probe_vars())?)?;
        }
        for (what, v) in [
            ("ready_timeout_s", self.ready_timeout_s),
            ("request_timeout_s", self.request_timeout_s),
        ] {
            if let Some(v) = v {
                super::limits::in_range(what, v, 0.0, super::limits::WEEK_S, true, " s")?;
            }
        }
        Ok(OpenaiSpec {
            weights,
            base_url: url.to_string(),
            model,
            api_key_env: self.api_key_env.clone(),
            endpoint: self.endpoint,
            launch: self.launch.clone(),
            ready_url: self.ready_url.clone(),
            ready_timeout_s: self.ready_timeout_s,
            request_timeout_s: self.request_timeout_s,
            tokenizer: self.tokenizer.clone(),
            allow_insecure_http: self.allow_insecure_http,
            metrics_url: self.metrics_url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> Result<ModelEntry, String> {
        let raw: RawModel = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        raw.validate(Path::new("/suites"))
    }

    #[test]
    fn each_engine_becomes_its_own_variant_and_round_trips() {
        let c = entry("id = \"synthetic:llama-tiny\"\nseed = 3\nalias = \"t\"").unwrap();
        assert!(matches!(&c.engine, EngineSpec::Candle(s) if s.seed == Some(3)));
        assert_eq!(
            (c.name(), c.spec()),
            ("t".into(), "synthetic:llama-tiny".into())
        );
        let p = entry("path = \"m/model.gguf\"").unwrap();
        assert_eq!(p.spec(), "/suites/m/model.gguf");
        assert_eq!(p.name(), "model");
        let o =
            entry("engine = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"")
                .unwrap();
        assert_eq!(o.spec(), "openai:m@http://127.0.0.1:{port}/v1");
        let k = entry("engine = \"command\"\ncommand = [\"./bin/run\", \"{threads}\"]").unwrap();
        assert_eq!(
            (k.name(), k.spec()),
            ("run".into(), "command:./bin/run {threads}".into())
        );
        for e in [c, p, o, k] {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(
                serde_json::from_str::<ModelEntry>(&json).unwrap(),
                e,
                "{json}"
            );
        }
    }

    #[test]
    fn fields_of_another_engine_are_named() {
        let e = entry("id = \"x\"\ncommand = [\"a\"]").unwrap_err();
        assert!(
            e.contains("command only applies to engine = \"command\""),
            "{e}"
        );
        let e = entry("engine = \"command\"\ncommand = [\"a\"]\nbase_url = \"http://h/v1\"")
            .unwrap_err();
        assert!(e.contains("base_url only applies"), "{e}");
        assert!(
            entry("alias = \"x\"")
                .unwrap_err()
                .contains("exactly one of id or path")
        );
    }
}
