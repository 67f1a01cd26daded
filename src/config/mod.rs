//! The TOML suite file: models × hardware profiles × workloads, with validation errors that name
//! the file, line and column and say what is allowed.

mod check;
pub mod lengths;
pub mod limits;
mod model;
mod sections;
pub mod slo;
mod workload;

pub use model::{EngineKind, ModelEntry};
pub use sections::{Carbon, MeterSection, Profile, Sources, SuiteSection};
pub use workload::{
    ACTIVE_IDLE_S, DEFAULT_OPEN_LOOP_STREAMS, MAX_EVAL_ITEMS, Workload, WorkloadKind, load_points,
};

use crate::meter::select::MeterChoice;
use sections::RawSuite;
use std::path::{Path, PathBuf};

/// A configuration problem at a place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub path: PathBuf,
    /// The file's text, copied into every run folder.
    pub text: String,
    pub name: String,
    pub warmup: u32,
    pub repetitions: u32,
    pub idle_seconds: f64,
    pub cooldown_seconds: f64,
    pub min_window_ms: f64,
    pub timeout_seconds: f64,
    /// Server cells with a shorter steady window are flagged unstable.
    pub min_steady_s: f64,
    /// `[slo]`: latency deadlines for `frontier` and the report.
    pub slo: Option<slo::Slo>,
    pub meter: MeterChoice,
    pub interval_ms: f64,
    pub strict: bool,
    /// `[meter] allow_partial` (or `run --allow-partial`): labelled partial totals.
    pub allow_partial: bool,
    /// `[meter] sources = "auto"` written in the file: a sensor lost mid-suite falls back to
    /// the estimate (labelled on every record) instead of failing the remaining cells' energy.
    pub auto_fallback: bool,
    pub powercap_root: Option<PathBuf>,
    pub tdp_w: Option<f64>,
    pub models: Vec<ModelEntry>,
    pub profiles: Vec<Profile>,
    pub workloads: Vec<Workload>,
    pub carbon: Option<Carbon>,
}

/// Turns a byte span of the suite's text into a `FILE:LINE:COL` error.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError {
            path: self.path.display().to_string(),
            line,
            column,
            message,
        }
    }

    /// The line a span starts on.
    fn line(&self, span: &std::ops::Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl Suite {
    /// Reads and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: 1,
            column: 1,
            message: format!("cannot read the suite file: {e}"),
        })?;
        Self::parse_with(path, &text, true)
    }

    /// Parses and validates suite text (see `parse_with`); the files it names are not looked
    /// for (a run folder's copy of its suite, read on another machine or after they moved).
    pub fn parse(path: &Path, text: &str) -> Result<Suite, ConfigError> {
        Self::parse_with(path, text, false)
    }

    /// Parses and validates suite text (`path` is used in errors and to resolve relative
    /// paths): each section checked once, in file order, every error at its own line.
    /// With `files`, every model and data set file it names must exist (`check::files`).
    pub fn parse_with(path: &Path, text: &str, files: bool) -> Result<Suite, ConfigError> {
        let at = Locator { path, text };
        let raw: RawSuite = toml::from_str(text)
            .map_err(|e| at.err(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let name = check::suite_section(&raw.suite, &at)?;
        let (meter, auto_fallback) = check::meter(&raw.meter, &at)?;
        check::present(&raw, &at)?;
        let mut names = check::Names::default();
        let models = check::models(&raw.models, base, &mut names, &at)?;
        let profiles = check::profiles(&raw.profiles, &mut names, &at)?;
        let workloads = check::workloads(&raw.workloads, &mut names, &at)?;
        check::cell_ids(
            (&models, &raw.models),
            (&profiles, &raw.profiles),
            (&workloads, &raw.workloads),
            &at,
        )?;
        if files {
            check::files(
                (&models, &raw.models),
                (&workloads, &raw.workloads),
                base,
                &at,
            )?;
        }
        if let Some(s) = &raw.slo {
            s.get_ref()
                .check()
                .map_err(|e| at.err(s.span(), format!("[slo] {e}")))?;
        }
        let carbon = check::carbon(raw.carbon, &at)?;
        Ok(Suite {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            warmup: *raw.suite.warmup.get_ref(),
            repetitions: *raw.suite.repetitions.get_ref(),
            idle_seconds: *raw.suite.idle_seconds.get_ref(),
            cooldown_seconds: *raw.suite.cooldown_seconds.get_ref(),
            min_window_ms: *raw.suite.min_window_ms.get_ref(),
            min_steady_s: *raw.suite.min_steady_s.get_ref(),
            slo: raw.slo.as_ref().map(|s| *s.get_ref()),
            timeout_seconds: *raw.suite.timeout_seconds.get_ref(),
            meter,
            interval_ms: *raw.meter.interval_ms.get_ref(),
            strict: raw.meter.strict,
            allow_partial: raw.meter.allow_partial,
            auto_fallback,
            powercap_root: raw
                .meter
                .powercap_root
                .map(|p| if p.is_relative() { base.join(p) } else { p }),
            tdp_w: raw.meter.tdp_w.map(|t| *t.get_ref()),
            models,
            profiles,
            workloads,
            carbon,
        })
    }

    /// sha256 of the file's text: runs and resumes must use the same suite.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[suite]
name = "t"
repetitions = 3

[meter]
sources = ["rapl", "estimate"]

[[model]]
id = "synthetic:llama-tiny"

[[profile]]
name = "one"
threads = 1

[[workload]]
name = "w"
prompt_tokens = 16
new_tokens = 4
"#;

    fn err(text: &str) -> ConfigError {
        match Suite::parse(Path::new("s.toml"), text) {
            Err(e) => e,
            Ok(_) => panic!("must fail"),
        }
    }

    #[test]
    fn parses_a_valid_suite_with_defaults() {
        let s = Suite::parse(Path::new("dir/s.toml"), OK).unwrap();
        assert_eq!((s.repetitions, s.warmup, s.min_window_ms), (3, 1, 200.0));
        assert_eq!(s.workloads[0].batch, 1);
        assert!(s.workloads[0].ignore_eos);
        assert_eq!(s.models[0].name(), "synthetic:llama-tiny");
        assert_eq!(s.hash().len(), 64);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(&OK.replace("repetitions = 3", "repetitions = 0"));
        assert_eq!((e.line, e.path.as_str()), (4, "s.toml"));
        assert!(e.to_string().starts_with("s.toml:4:"), "{e}");
        let e = err(&OK.replace("threads = 1", "threads = 1\nthreds = 2"));
        assert!(e.message.contains("threds"), "{e}");
        assert_eq!(e.line, 15);
        let e = err(&OK.replace("[\"rapl\", \"estimate\"]", "\"rapl,gpu\""));
        assert!(e.message.contains("unknown meter") && e.line == 7, "{e}");
        let e = err(&OK.replace("new_tokens = 4", "new_tokens = 0"));
        assert!(e.message.contains("new_tokens"), "{e}");
        let e = err(&OK.replace("id = \"synthetic:llama-tiny\"", "id = \"a\"\npath = \"b\""));
        assert!(e.message.contains("exactly one of id or path"));
        let e = err("[suite\nname = 1");
        assert_eq!(e.line, 1);
        let e = err(&OK.replace("prompt_tokens = 16", "prompt_tokens = \"many\""));
        assert_eq!(e.line, 18, "{e}");
    }
}
