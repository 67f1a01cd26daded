//! Each cell runs in a child process of joulebench itself (`run-cell`), so threads, affinity and
//! environment apply cleanly and a crash, panic or hang stays in its cell.

use crate::config::Suite;
use crate::plan::Cell;
use crate::run_dir::{file_tail, log_path};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a cell process ended.
pub enum ChildEnd {
    Done,
    Interrupted,
    Failed(String),
    /// The cell could not write its results (the suite stops).
    WriteFailed(String),
}

/// The command of a cell process of `exe`: `run-cell` for the cell, with its profile's
/// environment, threads and CPU affinity (the caller adds what to run and the pipes).
pub fn cell_command(dir: &Path, cell: &Cell, exe: &Path) -> Command {
    let threads = cell.profile.thread_count();
    let mut cmd = Command::new(exe);
    {
        use std::os::unix::process::CommandExt;
        // The cell leads its own process group: what it starts can be signalled as one, and a
        // terminal's Ctrl-C reaches joulebench, which passes it on.
        cmd.process_group(0);
    }
    cmd.arg("run-cell")
        .arg("--run-dir")
        .arg(dir)
        .args(["--cell", &cell.index.to_string()])
        .envs(&cell.profile.env)
        .envs(crate::engine::thread_env(threads));
    if let Some(cpus) = cell.profile.cpu_affinity.clone() {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls (CPU_SET, sched_setaffinity) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for c in &cpus {
                    libc::CPU_SET(*c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// Runs repetitions `reps` of `cell` in a child process of `exe` (threads, affinity and
/// environment of its profile; stderr to its log), forwarding Ctrl-C and enforcing the timeout.
pub fn run_child(
    dir: &Path,
    suite: &Suite,
    cell: &Cell,
    reps: &[u32],
    exe: &Path,
    interrupt: &AtomicBool,
) -> Result<ChildEnd> {
    let log = log_path(dir, &cell.id, "stderr.log");
    let err =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let reps_arg: Vec<String> = reps.iter().map(u32::to_string).collect();
    let mut cmd = cell_command(dir, cell, exe);
    cmd.args(["--reps", &reps_arg.join(",")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(ChildEnd::Failed(format!(
                "cannot start the cell process: {e}"
            )));
        }
    };
    // The cell's stderr reaches its log redacted; joined before the log's tail is read.
    let copier = child
        .stderr
        .take()
        .map(|e| crate::redact::copy_to_log(e, err));
    let mut copier = copier;
    let mut finish_log = move || {
        if let Some(c) = copier.take() {
            let _ = c.join();
        }
    };
    let started = Instant::now();
    let limit = Duration::from_secs_f64(suite.timeout_seconds);
    let mut forwarded = false;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break s,
            None => {
                if started.elapsed() > limit {
                    stop_cell(&mut child);
                    finish_log();
                    let left = sweep(&[]);
                    return Ok(ChildEnd::Failed(format!(
                        "timed out after {} s{}; stderr tail:\n{}",
                        suite.timeout_seconds,
                        left,
                        file_tail(&log, 15)
                    )));
                }
                if interrupt.load(Ordering::Relaxed) && !forwarded {
                    // SAFETY: signalling the group our own, not yet reaped, child leads (its
                    // commands get Ctrl-C as from a terminal; a server in its own group does not).
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
                    forwarded = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    finish_log();
    let left = sweep(&[]);
    let end = end_of(status, &log);
    Ok(match end {
        ChildEnd::Failed(why) => ChildEnd::Failed(format!("{why}{left}")),
        other if !left.is_empty() => match other {
            ChildEnd::WriteFailed(w) => ChildEnd::WriteFailed(format!("{w}{left}")),
            _ => ChildEnd::Failed(format!(
                "the cell's repetitions ended{left}: the later cells' energy would have \
                 included theirs"
            )),
        },
        other => other,
    })
}

/// How long a cell's processes have to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// Stops a cell process that ran past its time: SIGTERM to its group, SIGKILL after [`GRACE`].
pub fn stop_cell(child: &mut std::process::Child) {
    crate::procs::stop_child_group(child, GRACE);
}

/// Stops whatever a cell left running (this process is their reaper: see `procs`), sparing
/// the live cell processes `keep` and their trees: "" when nothing was left, else what for the
/// failure message.
pub fn sweep(keep: &[i32]) -> String {
    let left = crate::procs::stop(GRACE, keep, &|_| true);
    if left.is_empty() {
        String::new()
    } else {
        format!(
            "; it left {} running after it ended, stopped by joulebench",
            left.describe()
        )
    }
}

/// How a cell process's exit status reads.
fn end_of(status: std::process::ExitStatus, log: &Path) -> ChildEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => ChildEnd::Done,
        (Some(130), _) => ChildEnd::Interrupted,
        (Some(c), _) if c == i32::from(super::cell::EXIT_WRITE_FAILED) => {
            ChildEnd::WriteFailed(format!(
                "the cell could not write its results:\n{}",
                file_tail(log, 5)
            ))
        }
        (Some(c), _) => ChildEnd::Failed(format!(
            "exited with status {c}; stderr tail:\n{}",
            file_tail(log, 15)
        )),
        (None, Some(s)) => ChildEnd::Failed(format!(
            "killed by signal {s}; stderr tail:\n{}",
            file_tail(log, 15)
        )),
        _ => ChildEnd::Failed("ended without a status".into()),
    }
}
