//! The background sampler: one thread reads every source at a fixed interval on CLOCK_MONOTONIC,
//! into bounded memory, while [`Sampler::mark`] reads every counter synchronously at a boundary.

use super::mark::Mark;
use super::recording::{INVALID, MarkRead, Recording};
use super::{DomainInfo, EnergySource};
use crate::clock::{monotonic_ns, thread_cpu_ns};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Samples kept before the store halves itself (and then keeps every second one).
pub const DEFAULT_MAX_SAMPLES: usize = 200_000;

/// How the sampler runs.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    pub interval: Duration,
    pub max_samples: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            interval: Duration::from_millis(10),
            max_samples: DEFAULT_MAX_SAMPLES,
        }
    }
}

struct State {
    sources: Vec<Box<dyn EnergySource>>,
    width: usize,
    scratch: Vec<Option<u64>>,
    times: Vec<u64>,
    values: Vec<u64>,
    marks: Vec<MarkRead>,
    stride: u64,
    ticks: u64,
}

impl State {
    fn read_all(&mut self) -> u64 {
        let now = monotonic_ns();
        let mut off = 0;
        for s in &mut self.sources {
            let n = s.domains().len();
            s.read_into(now, &mut self.scratch[off..off + n]);
            off += n;
        }
        now
    }

    fn push_sample(&mut self, t: u64, max: usize, force: bool) {
        self.ticks += 1;
        if !force && !self.ticks.is_multiple_of(self.stride) {
            return;
        }
        if self.times.len() >= max {
            // Keep every second sample; from now on keep one in twice as many.
            let w = self.width;
            let kept: Vec<usize> = (0..self.times.len()).step_by(2).collect();
            for (dst, &src) in kept.iter().enumerate() {
                self.times[dst] = self.times[src];
                self.values.copy_within(src * w..src * w + w, dst * w);
            }
            self.times.truncate(kept.len());
            self.values.truncate(kept.len() * w);
            self.stride *= 2;
        }
        self.times.push(t);
        self.values
            .extend(self.scratch.iter().map(|v| v.unwrap_or(INVALID)));
    }
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    cpu_ns: AtomicU64,
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the store half-written in a way that matters
    // more than losing the session, so recover the data.
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running sampler over a set of sources.
pub struct Sampler {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    domains: Vec<DomainInfo>,
    start_ns: u64,
    interval: Duration,
    max_samples: usize,
}

impl Sampler {
    /// Starts sampling `sources` every `config.interval`. The first sample is taken at once.
    pub fn start(sources: Vec<Box<dyn EnergySource>>, config: SamplerConfig) -> Sampler {
        let domains: Vec<DomainInfo> = sources
            .iter()
            .flat_map(|s| s.domains().iter().cloned())
            .collect();
        let width = domains.len();
        let max_samples = config.max_samples.max(2);
        let mut state = State {
            sources,
            width,
            scratch: vec![None; width],
            times: Vec::new(),
            values: Vec::new(),
            marks: Vec::new(),
            stride: 1,
            ticks: 0,
        };
        let start_ns = state.read_all();
        state.push_sample(start_ns, max_samples, true);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
            cpu_ns: AtomicU64::new(0),
        });
        let interval = config.interval.max(Duration::from_micros(100));
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("joulebench-sampler".into())
            .spawn(move || run(thread_shared, interval, max_samples))
            .ok();
        Sampler {
            shared,
            handle,
            domains,
            start_ns,
            interval,
            max_samples,
        }
    }

    /// Every domain, in sample order.
    pub fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    /// Reads every counter now and records the read under `mark`; returns it.
    pub fn mark(&self, mark: Mark) -> MarkRead {
        let mut st = lock(&self.shared);
        let t = st.read_all();
        let m = MarkRead {
            mark,
            t_ns: t,
            values: st.scratch.clone(),
        };
        st.marks.push(m.clone());
        m
    }

    /// Every source's current health warnings (a throttling GPU, say).
    pub fn health(&self) -> Vec<String> {
        lock(&self.shared)
            .sources
            .iter()
            .flat_map(|s| s.health())
            .collect()
    }

    /// Reads every counter now and keeps it as a sample (not a mark): a read right after a mark
    /// whose read failed lets that mark be bridged from both sides.
    pub fn sample_now(&self) {
        let mut st = lock(&self.shared);
        let t = st.read_all();
        st.push_sample(t, self.max_samples, true);
    }

    /// Everything recorded so far, while sampling goes on (a copy).
    pub fn snapshot(&self) -> Recording {
        let st = lock(&self.shared);
        self.recording(&st, st.times.clone(), st.values.clone(), st.marks.clone())
    }

    fn recording(
        &self,
        st: &State,
        times: Vec<u64>,
        values: Vec<u64>,
        marks: Vec<MarkRead>,
    ) -> Recording {
        Recording {
            domains: self.domains.clone(),
            times,
            values,
            marks,
            start_ns: self.start_ns,
            decimation: st.stride,
            ticks: st.ticks,
            interval_ms: self.interval.as_secs_f64() * 1e3,
            sampler_cpu_ns: self.shared.cpu_ns.load(Ordering::SeqCst),
            diagnostics: st.sources.iter().flat_map(|s| s.diagnostics()).collect(),
            sources: st
                .sources
                .iter()
                .map(|s| (s.kind(), s.describe()))
                .collect(),
        }
    }

    /// Stops the thread, takes a last sample and returns everything recorded.
    pub fn stop(mut self) -> Recording {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let mut st = lock(&self.shared);
        let t = st.read_all();
        st.push_sample(t, self.max_samples, true);
        let times = std::mem::take(&mut st.times);
        let values = std::mem::take(&mut st.values);
        let marks = std::mem::take(&mut st.marks);
        self.recording(&st, times, values, marks)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn run(shared: Arc<Shared>, interval: Duration, max_samples: usize) {
    let step = interval.as_nanos() as u64;
    let mut next = monotonic_ns() + step;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        if now < next {
            std::thread::park_timeout(Duration::from_nanos(next - now));
            continue;
        }
        // If the thread fell behind (a suspended machine, a long mark), skip missed ticks.
        next += step * ((now - next) / step + 1);
        let mut st = lock(&shared);
        let t = st.read_all();
        st.push_sample(t, max_samples, false);
    }
    shared.cpu_ns.store(thread_cpu_ns(), Ordering::SeqCst);
}

impl Sampler {
    /// Starts sampling every `requested` interval, shortened to the sources' safe interval (the
    /// warning says so when it had to be).
    pub fn start_safe(
        sources: Vec<Box<dyn EnergySource>>,
        requested: Duration,
    ) -> (Sampler, Option<String>) {
        let (interval, clamped) = safe_interval(requested, &sources);
        let s = Sampler::start(
            sources,
            SamplerConfig {
                interval,
                ..Default::default()
            },
        );
        (s, clamped)
    }
}

/// The read interval to use: `requested`, shortened to the sources' longest safe interval so no
/// counter wrap can hide between two reads, with a warning when it had to be.
pub fn safe_interval(
    requested: Duration,
    sources: &[Box<dyn EnergySource>],
) -> (Duration, Option<String>) {
    match sources
        .iter()
        .filter_map(|s| s.max_read_interval_ms())
        .reduce(f64::min)
    {
        Some(max_ms) if requested.as_secs_f64() * 1e3 > max_ms => (
            Duration::from_secs_f64(max_ms / 1e3),
            Some(format!(
                "interval {} ms is too long for the counters' wrap period; using {max_ms:.0} ms",
                requested.as_millis()
            )),
        ),
        _ => (requested, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::fake::ScriptedSource;
    use crate::meter::mark::{Phase, Round};

    #[test]
    fn marks_and_samples_are_recorded_in_order() {
        let src = ScriptedSource::linear("package-0", 5.0);
        let s = Sampler::start(
            vec![Box::new(src)],
            SamplerConfig {
                interval: Duration::from_millis(1),
                max_samples: 1000,
            },
        );
        let a = s.mark(Mark::round(Round::Run(1), Phase::Start));
        // Wait on the sampler's progress, not on wall-clock speed.
        while lock(&s.shared).ticks < 5 {
            std::thread::yield_now();
        }
        let b = s.mark(Mark::round(Round::Run(1), Phase::End));
        let r = s.stop();
        assert!(b.t_ns > a.t_ns);
        assert!(r.times.len() >= 5);
        assert!(r.times.windows(2).all(|w| w[0] <= w[1]));
        let w = r.window(0, 1);
        let want = 5.0 * w.duration_s() * 1e6;
        assert!((w.domains[0].energy_uj - want).abs() <= 1.0 + want * 1e-9);
    }

    #[test]
    fn memory_stays_bounded_by_decimation() {
        let src = ScriptedSource::linear("package-0", 1.0);
        let s = Sampler::start(
            vec![Box::new(src)],
            SamplerConfig {
                interval: Duration::from_micros(100),
                max_samples: 16,
            },
        );
        while lock(&s.shared).ticks < 200 {
            std::thread::yield_now();
        }
        let r = s.stop();
        assert!(r.times.len() <= 17, "{}", r.times.len());
        assert!(r.decimation >= 8);
        assert_eq!(r.values.len(), r.times.len());
        assert!(r.times.windows(2).all(|w| w[0] <= w[1]));
    }
}
