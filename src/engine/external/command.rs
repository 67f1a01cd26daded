//! A command run once per pass (no shell) as a [`Driver`]: its whole run is one request whose
//! inside joulebench cannot see; `tokens_regex` reads how many tokens it produced from its
//! output. The estimate follows the command's process tree.

use crate::engine::ModelInfo;
use crate::engine::driver::{Boundary, Driver, Job, Output, Pass, RunEvents};
use crate::engine::external::server::free_port;
use crate::engine::external::{expand_command, external_info, vars, weights_path};
use crate::engine::spec::CommandSpec;
use crate::meter::select::EstimateScope;
use crate::run_dir::tail_text;
use anyhow::{Context, Result, bail};

/// How long what a command left running has to exit after SIGTERM before SIGKILL.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// ", and left ... running (stopped)" when it left processes.
fn left_note(left: &crate::procs::Stopped) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!(", and left {} running (stopped)", left.describe())
    }
}

/// The most of a command's output joulebench reads to count its tokens (the output file keeps
/// all of it).
pub const MAX_OUTPUT: u64 = 64 << 20;

/// A command's output from its file: whole when it is at most [`MAX_OUTPUT`]; otherwise its last
/// 64 KiB (for an error's tail), or an error when its tokens are to be counted from it.
fn read_output(path: &std::path::Path, count_tokens: bool) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(String::new());
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if len <= MAX_OUTPUT {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    if count_tokens {
        bail!(
            "the command wrote {} MiB to {}, more than the {} MiB joulebench reads to count \
             tokens with tokens_regex; make it print less (or drop tokens_regex)",
            len >> 20,
            path.display(),
            MAX_OUTPUT >> 20
        );
    }
    let tail = 64 << 10;
    f.seek(SeekFrom::Start(len - tail))?;
    let mut bytes = Vec::new();
    f.take(tail).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A command line and how to read its token count.
pub struct CommandDriver {
    argv: Vec<String>,
    re: Option<regex::Regex>,
    job: Job,
    info: ModelInfo,
}

impl CommandDriver {
    /// Expands the command's placeholders (`{model_path}` fetches a registered model).
    pub fn open(
        spec: &CommandSpec,
        job: &Job,
        name: String,
        log: &mut dyn FnMut(&str),
    ) -> Result<CommandDriver> {
        let model_path = spec
            .weights
            .as_ref()
            .map(|w| weights_path(w, log))
            .transpose()?;
        let v = vars(job, free_port()?, model_path.as_deref());
        let argv = expand_command(&spec.command, &v, job)?;
        let re = spec
            .tokens_regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .context("tokens_regex")?;
        let info = external_info(
            name,
            format!("command: {}", argv.join(" ")),
            job,
            model_path,
        );
        Ok(CommandDriver {
            argv,
            re,
            job: job.clone(),
            info,
        })
    }
}

/// Reads the token count from a command's output with `tokens_regex` (group `tokens`, else the
/// first group, else the whole match); several matches add up.
pub fn tokens_from_output(re: &regex::Regex, text: &str) -> Option<usize> {
    let mut total = None;
    for c in re.captures_iter(text) {
        let m = c.name("tokens").or_else(|| c.get(1)).or_else(|| c.get(0))?;
        let n: usize = m.as_str().trim().replace(',', "").parse().ok()?;
        total = Some(total.unwrap_or(0) + n);
    }
    total
}

impl Driver for CommandDriver {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn estimate_scope(&self) -> EstimateScope {
        EstimateScope::ChildTree
    }

    fn min_warmups(&self) -> u32 {
        0
    }

    fn run(&mut self, events: &dyn RunEvents, first: usize) -> Result<Pass> {
        let out_path =
            self.job
                .logs_dir
                .join(format!("{}.{}.out", self.job.cell_id, events.label()));
        let out = std::fs::File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .envs(self.job.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        events.request(first, Boundary::Start);
        let start_ns = crate::clock::monotonic_ns();
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start {:?}: {e} (the command runs without a shell)",
                self.argv[0]
            )
        })?;
        events.child(Some(child.id()));
        let status = child.wait()?;
        let end_ns = crate::clock::monotonic_ns();
        events.request(first, Boundary::End);
        events.child(None);
        // Outside the window: what the command started and left running (a background job, a
        // detached daemon) is stopped now, before the next repetition or cell is measured.
        let left = crate::procs::stop(LEFTOVER_GRACE, &[], &|_| true);
        // Outside the measured window: the output file keeps no secret.
        let _ = crate::run_dir::redact_file(&out_path);
        let text = read_output(&out_path, self.re.is_some())?;
        if !status.success() {
            bail!(
                "{} {status}{}; its output ends with:\n{}",
                self.argv.join(" "),
                left_note(&left),
                tail_text(&text, 15)
            );
        }
        if !left.is_empty() {
            bail!(
                "{} exited but left {} running: stopped (SIGTERM, then SIGKILL after {} s). \
                 They ran inside this repetition's window and may have kept running past it, so \
                 the repetition is not recorded as measured; make the command wait for what it \
                 starts",
                self.argv.join(" "),
                left.describe(),
                LEFTOVER_GRACE.as_secs()
            );
        }
        let tokens = self.re.as_ref().and_then(|r| tokens_from_output(r, &text));
        let mut warnings = Vec::new();
        if self.re.is_some() && tokens.is_none() {
            warnings.push(
                "tokens_regex matched nothing in the command's output: energy per run only".into(),
            );
        }
        Ok(Pass {
            outputs: vec![Output::Opaque {
                start_ns,
                end_ns,
                tokens,
            }],
            chunks: Vec::new(),
            streams: None,
            token_counts: match tokens {
                Some(_) => "command output (tokens_regex)".into(),
                None => "none".into(),
            },
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_from_command_output() {
        let re = regex::Regex::new(r"generated (?P<tokens>\d+) tokens").unwrap();
        assert_eq!(
            tokens_from_output(&re, "generated 12 tokens\ngenerated 3 tokens"),
            Some(15)
        );
        assert_eq!(tokens_from_output(&re, "nothing"), None);
        let re = regex::Regex::new(r"tg\d+ +\| +(\d+)").unwrap();
        assert_eq!(tokens_from_output(&re, "tg128 | 128 |"), Some(128));
    }
}
