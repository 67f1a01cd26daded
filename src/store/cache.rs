//! Where downloaded models live: joulebench's own cache and the standard Hugging Face hub
//! cache, and the progress lines of a download.

use std::path::PathBuf;

/// A variable's value, unless unset or blank.
pub(crate) fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The cache root: `$JOULEBENCH_CACHE`, else ~/.cache/joulebench.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("JOULEBENCH_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("joulebench")
}

/// The standard hub cache folder.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(p) = env_nonempty("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = env_nonempty("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    if let Some(p) = env_nonempty("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("huggingface").join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

/// Progress lines of one transfer: every tenth of the way, with the speed so far.
pub struct Transfer {
    name: String,
    total: u64,
    done: u64,
    shown: u64,
    resumed: u64,
    start: std::time::Instant,
}

impl Transfer {
    pub fn new(name: &str, total: u64) -> Transfer {
        Transfer {
            name: name.to_string(),
            total,
            done: 0,
            shown: 0,
            resumed: 0,
            start: std::time::Instant::now(),
        }
    }

    /// Starts again (a retry, or the real size now known).
    pub fn restart(&mut self, total: u64) {
        *self = Transfer::new(&self.name, total);
    }

    /// The transfer continues a partial file of `offset` bytes: the speed counts only what
    /// arrives after it.
    pub fn resume_at(&mut self, offset: u64, progress: &mut dyn FnMut(&str)) {
        self.done = offset;
        self.resumed = offset;
        self.shown = offset * 10 / self.total.max(1);
        if offset > 0 {
            progress(&format!(
                "{}: resuming at {:.1} of {:.1} MB",
                self.name,
                offset as f64 / 1e6,
                self.total as f64 / 1e6
            ));
        }
    }

    /// `n` more bytes arrived.
    pub fn advance(&mut self, n: u64, progress: &mut dyn FnMut(&str)) {
        self.done += n;
        let step = self.done * 10 / self.total.max(1);
        if step > self.shown {
            self.shown = step;
            let mb = self.done as f64 / 1e6;
            let fresh_mb = (self.done - self.resumed) as f64 / 1e6;
            progress(&format!(
                "{}: {}% ({mb:.0} of {:.0} MB, {:.1} MB/s)",
                self.name,
                (step * 10).min(100),
                self.total as f64 / 1e6,
                fresh_mb / self.start.elapsed().as_secs_f64().max(1e-3)
            ));
        }
    }
}
