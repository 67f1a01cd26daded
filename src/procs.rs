//! The processes joulebench starts, and what they leave behind. A cell process leads its own
//! process group and is a child subreaper, as is the parent of a suite: a process that a command
//! or server starts (a shell's background job, a launcher's worker, a `setsid` daemon) stays a
//! descendant however it detaches, so it is found here, signalled (TERM, then KILL after a
//! grace period) and named on the record, never left drawing power while later cells are
//! measured. Linux (`/proc`); elsewhere nothing is found and nothing is signalled.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// `R`, `S`, `D`, `Z` (a zombie: dead, its status not yet collected), ...
    pub state: char,
    /// The command name (at most 15 characters, as the kernel keeps it).
    pub comm: String,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub ticks: u64,
    /// cutime + cstime (its reaped children's), in clock ticks.
    pub children_ticks: u64,
}

/// Parses one `/proc/PID/stat` line.
pub fn parse_stat(line: &str) -> Option<Proc> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_string();
    let f: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, ppid 4, pgrp 5, utime 14 .. cstime 17.
    let get = |i: usize| f.get(i - 3).and_then(|s| s.parse::<i64>().ok());
    Some(Proc {
        pid,
        ppid: get(4)? as i32,
        pgrp: get(5)? as i32,
        state: f.first()?.chars().next()?,
        comm,
        ticks: [get(14)?, get(15)?, get(16)?, get(17)?]
            .iter()
            .map(|v| (*v).max(0) as u64)
            .sum(),
        children_ticks: [get(16)?, get(17)?]
            .iter()
            .map(|v| (*v).max(0) as u64)
            .sum(),
    })
}

/// Every process visible in `/proc` (an unreadable entry, one that just exited, is skipped).
pub fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

/// The descendants of `root` in `procs` (children, their children, ...), not `root` itself.
pub fn descendants_in(procs: &[Proc], root: i32) -> Vec<Proc> {
    let mut kids: HashMap<i32, Vec<&Proc>> = HashMap::new();
    for p in procs {
        kids.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(pid) = todo.pop() {
        for c in kids.get(&pid).into_iter().flatten() {
            if seen.insert(c.pid) {
                out.push((*c).clone());
                todo.push(c.pid);
            }
        }
    }
    out
}

/// The live descendants of `root` (zombies left out: they no longer run).
pub fn descendants(root: i32) -> Vec<Proc> {
    descendants_in(&all(), root)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .collect()
}

/// This process's id.
pub fn me() -> i32 {
    std::process::id() as i32
}

/// CPU time of what this process started: its reaped children (cutime + cstime) and every live
/// descendant, in nanoseconds (clock-tick resolution).
pub fn children_cpu_ns() -> u64 {
    let procs = all();
    let reaped = procs
        .iter()
        .find(|p| p.pid == me())
        .map_or(0, |p| p.children_ticks);
    let below: u64 = descendants_in(&procs, me()).iter().map(|p| p.ticks).sum();
    (reaped + below) * tick_ns()
}

fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// Makes this process the reaper of its descendants' orphans (they are reparented here, not to
/// init), so they can be found and stopped. Linux only; elsewhere a no-op.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER and an integer has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
}

/// Collects the exit status of every zombie child of this process (orphans reparented here by
/// [`become_subreaper`] that have exited), so none lingers in the process table. Only children
/// not in `keep` (whose status a `Child` handle will collect).
pub fn reap_orphans(keep: &[i32]) {
    for p in all() {
        if p.ppid == me() && p.state == 'Z' && !keep.contains(&p.pid) {
            // SAFETY: waitpid on a zombie child of ours, no options that block.
            unsafe {
                libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// Stops a child that leads its own process group: SIGTERM to the group, SIGKILL to it (and
/// the child) if the child has not exited after `grace`; the child is reaped either way.
pub fn stop_child_group(child: &mut std::process::Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pgid = child.id() as i32;
    // SAFETY: signalling the group our own, not yet reaped, child leads.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// What [`stop`] found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stopped {
    /// The processes that were running (PID and name).
    pub found: Vec<(i32, String)>,
    /// Those still running after SIGTERM and the grace period (sent SIGKILL).
    pub killed: Vec<(i32, String)>,
}

impl Stopped {
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// "3 processes (4711 sleep, 4712 sh, 4713 yes), 1 of them only by SIGKILL".
    pub fn describe(&self) -> String {
        let n = self.found.len();
        let list: Vec<String> = self
            .found
            .iter()
            .take(8)
            .map(|(pid, c)| format!("{pid} {}", crate::names::terminal(c)))
            .collect();
        let more = if n > 8 {
            format!(", and {} more", n - 8)
        } else {
            String::new()
        };
        let killed = if self.killed.is_empty() {
            String::new()
        } else {
            format!(", {} of them only by SIGKILL", self.killed.len())
        };
        format!(
            "{n} process{} ({}{more}){killed}",
            if n == 1 { "" } else { "es" },
            list.join(", ")
        )
    }
}

/// Stops every live descendant of this process that `pick` selects: SIGTERM to each (and to its
/// process group when it leads one), SIGKILL to what still runs after `grace`, then collects the
/// orphans' exit statuses. Returns what it found. New processes forked meanwhile are caught by
/// a few passes.
pub fn stop(grace: Duration, keep: &[i32], pick: &dyn Fn(&Proc) -> bool) -> Stopped {
    let mut st = Stopped::default();
    let live = || -> Vec<Proc> {
        let procs = all();
        let exempt: HashSet<i32> = keep
            .iter()
            .copied()
            .chain(
                keep.iter()
                    .flat_map(|k| descendants_in(&procs, *k))
                    .map(|p| p.pid),
            )
            .collect();
        descendants_in(&procs, me())
            .into_iter()
            .filter(|p| p.state != 'Z' && !exempt.contains(&p.pid) && pick(p))
            .collect()
    };
    let signal = |ps: &[Proc], sig: i32| {
        for p in ps {
            // SAFETY: kill with a PID read from /proc just now; it is our descendant (a PID
            // reused meanwhile could only be a process of ours that forked since).
            unsafe {
                if p.pgrp == p.pid {
                    libc::kill(-p.pid, sig);
                }
                libc::kill(p.pid, sig);
            }
        }
    };
    let note = |st: &mut Stopped, ps: &[Proc]| {
        for p in ps {
            if !st.found.iter().any(|(pid, _)| *pid == p.pid) {
                st.found.push((p.pid, p.comm.clone()));
            }
        }
    };
    let first = live();
    if first.is_empty() {
        return st;
    }
    note(&mut st, &first);
    signal(&first, libc::SIGTERM);
    let t0 = Instant::now();
    loop {
        reap_orphans(keep);
        let now = live();
        if now.is_empty() {
            return st;
        }
        note(&mut st, &now);
        if t0.elapsed() >= grace {
            break;
        }
        // Late forks get their TERM too.
        signal(&now, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..50 {
        let now = live();
        if now.is_empty() {
            break;
        }
        note(&mut st, &now);
        for p in &now {
            if !st.killed.iter().any(|(pid, _)| *pid == p.pid) {
                st.killed.push((p.pid, p.comm.clone()));
            }
        }
        signal(&now, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(20));
        reap_orphans(keep);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_and_parentheses_in_the_name() {
        let p = parse_stat("4711 (a (b) c) S 1 4711 4711 0 -1 0 0 0 0 0 7 3 2 1 20 0 1 0").unwrap();
        assert_eq!((p.pid, p.ppid, p.pgrp, p.state), (4711, 1, 4711, 'S'));
        assert_eq!(p.comm, "a (b) c");
        assert_eq!((p.ticks, p.children_ticks), (13, 3));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (x) S").is_none());
    }

    #[test]
    fn descendants_follow_every_generation_once() {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            pgrp: pid,
            state: 'S',
            comm: "x".into(),
            ticks: 0,
            children_ticks: 0,
        };
        let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(13, 10)];
        let mut d: Vec<i32> = descendants_in(&procs, 10).iter().map(|p| p.pid).collect();
        d.sort_unstable();
        assert_eq!(d, [11, 12, 13]);
        assert!(descendants_in(&procs, 12).is_empty());
    }
}
