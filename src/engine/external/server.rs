//! A server joulebench starts for a cell (`launch = [...]`, no shell): its output goes to a log
//! file whose tail explains failures; it dies with the cell process; it is stopped by its own
//! PID (SIGTERM, then SIGKILL after a grace period).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process.
pub struct ManagedServer {
    child: Option<Child>,
    log: PathBuf,
    argv0: String,
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(11)) => "was killed by signal 11 (SIGSEGV)".into(),
        (_, Some(4)) => "was killed by signal 4 (SIGILL: an instruction this CPU lacks)".into(),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".into(),
    }
}

impl ManagedServer {
    /// Starts `argv` with `env`, output to `log`.
    pub fn launch(argv: &[String], env: &[(String, String)], log: &Path) -> Result<ManagedServer> {
        let (prog, args) = argv.split_first().context("launch is empty")?;
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create the server log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(prog);
        // Output reaches the log through joulebench, redacted (a server that logs request
        // headers would otherwise write the API key into it).
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl and setpgid are async-signal-safe. The server dies if the cell process
        // does, and sits in its own process group so a terminal's Ctrl-C reaches joulebench
        // (which finishes the repetition, then stops the server) rather than the server itself.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start the server {prog:?}: {e} (is it installed and on PATH? launch runs \
                 it directly, without a shell)"
            )
        })?;
        if let Some(o) = child.stdout.take() {
            crate::redact::copy_to_log(o, out);
        }
        if let Some(e) = child.stderr.take() {
            crate::redact::copy_to_log(e, err);
        }
        Ok(ManagedServer {
            child: Some(child),
            log: log.to_path_buf(),
            argv0: prog.clone(),
        })
    }

    /// The server's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its output's last lines.
    pub fn tail(&self, n: usize) -> String {
        crate::run_dir::file_tail(&self.log, n)
    }

    /// An error when the server has exited, with how and its output's tail.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            bail!(
                "the server {} {}; its output ends with:\n{}",
                self.argv0,
                describe(status),
                self.tail(20)
            );
        }
        Ok(())
    }

    /// Polls `probe` every 200 ms until it succeeds, the server exits, or `timeout` passes.
    pub fn wait_ready(
        &mut self,
        url: &str,
        timeout: Duration,
        probe: &dyn Fn() -> Result<(), String>,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let mut last;
        loop {
            self.check_alive()?;
            match probe() {
                Ok(()) => return Ok(t0.elapsed()),
                Err(e) => last = e,
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the server was not ready at {url} after {:.0} s (last answer: {last}); \
                     raise ready_timeout_s or check its output:\n{}",
                    timeout.as_secs_f64(),
                    self.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it: SIGTERM to its process group (the server and the workers it started),
    /// SIGKILL to what still runs after `grace`; then whatever of its group is left.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let pgid = c.id() as i32;
        crate::procs::stop_child_group(&mut c, grace);
        // Its workers, in its group or reparented here, get the same grace.
        crate::procs::stop(grace.min(Duration::from_secs(5)), &[], &|p| p.pgrp == pgid);
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it next).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}
