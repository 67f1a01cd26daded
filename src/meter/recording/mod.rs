//! What a metering session recorded: background samples, synchronous marks, and the arithmetic
//! on them (window energy, bridging invalid reads, peak power, the trace file).

use super::mark::Mark;
use super::rapl::ZoneId;
use super::{DomainInfo, DomainKind, Method, SourceKind};
use serde::Serialize;
use std::io::Write;

/// Stored in place of a value whose read failed.
pub const INVALID: u64 = u64::MAX;

/// A synchronous read of every counter at a boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRead {
    pub mark: Mark,
    pub t_ns: u64,
    /// Cumulative microjoules per domain; None where the read failed.
    pub values: Vec<Option<u64>>,
}

/// Everything one metering session recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub domains: Vec<DomainInfo>,
    /// Sample timestamps, CLOCK_MONOTONIC ns.
    pub times: Vec<u64>,
    /// Row-major cumulative microjoules, `domains.len()` per sample; [`INVALID`] marks a failed read.
    pub values: Vec<u64>,
    pub marks: Vec<MarkRead>,
    pub start_ns: u64,
    /// Only every `decimation`-th sample was kept (memory bound on long sessions).
    pub decimation: u64,
    /// Reads the sampler made, kept or not.
    pub ticks: u64,
    pub interval_ms: f64,
    /// CPU time the sampler thread used.
    pub sampler_cpu_ns: u64,
    /// Invalid reads and other problems the sources reported.
    pub diagnostics: Vec<String>,
    /// Each source's static facts.
    pub sources: Vec<(SourceKind, serde_json::Value)>,
}

/// Energy of one domain over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DomainWindow {
    pub energy_uj: f64,
    pub avg_power_w: f64,
    pub peak_power_w: f64,
    /// Invalid reads inside the window (bridged from neighbours).
    pub invalid_samples: u64,
    /// A boundary read failed and was interpolated from neighbouring samples.
    pub bridged: bool,
    /// The window over which peak power was taken.
    pub peak_window_ms: f64,
    /// Why the energy is unknown (NaN), when it is.
    pub lost: Option<Lost>,
    /// Energy a counter wrap hidden in a gap between two reads could add (the gap was longer
    /// than the counter needs to wrap at the domain's maximum power), in microjoules.
    pub lost_wrap_uj: f64,
}

/// Why a domain's energy over a window is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Lost {
    /// No valid read at or beyond one of the window's edges: the sensor vanished or turned
    /// unreadable. `last_valid_ns` is the last good read before the window's end, if any.
    NoReads { last_valid_ns: Option<u64> },
    /// The counter stopped advancing at `since_ns` for at least five update periods while
    /// `reference` (its parent zone, or a sibling package) kept counting.
    Stuck { since_ns: u64, reference: usize },
}

/// Energy of every domain between two marks.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
    pub domains: Vec<DomainWindow>,
}

impl Window {
    /// Window length in seconds.
    pub fn duration_s(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }
}

impl Recording {
    fn n(&self) -> usize {
        self.domains.len()
    }

    fn sample(&self, row: usize, d: usize) -> Option<u64> {
        let v = self.values[row * self.n() + d];
        (v != INVALID).then_some(v)
    }

    /// Valid (time, value) points of domain `d` from samples and marks, in time order.
    fn points(&self, d: usize) -> Vec<(u64, u64)> {
        let mut p: Vec<(u64, u64)> = self
            .times
            .iter()
            .enumerate()
            .filter_map(|(r, &t)| self.sample(r, d).map(|v| (t, v)))
            .chain(
                self.marks
                    .iter()
                    .filter_map(|m| m.values[d].map(|v| (m.t_ns, v))),
            )
            .collect();
        p.sort_unstable();
        p
    }

    /// The value at `t`, interpolated between the nearest valid reads before and after it;
    /// `None` unless there are both. A counter that stopped answering (a sensor gone, a zone
    /// turned unreadable) is unknown from its last read on, never held at that value.
    fn bridge(points: &[(u64, u64)], t: u64) -> Option<f64> {
        let i = points.partition_point(|(pt, _)| *pt < t);
        match (i.checked_sub(1).map(|j| points[j]), points.get(i)) {
            (_, Some(&(t1, v1))) if t1 == t => Some(v1 as f64),
            (Some((t0, v0)), Some(&(t1, v1))) => {
                let f = (t - t0) as f64 / (t1 - t0) as f64;
                Some(v0 as f64 + f * (v1 as f64 - v0 as f64))
            }
            _ => None,
        }
    }

    /// Index of this mark's read (the last one, if repeated).
    pub fn mark_index(&self, mark: Mark) -> Option<usize> {
        self.marks.iter().rposition(|m| m.mark == mark)
    }

    /// Energy per domain between marks `a` and `b`.
    pub fn window(&self, a: usize, b: usize) -> Window {
        let (ma, mb) = (&self.marks[a], &self.marks[b]);
        let dur_ns = mb.t_ns.saturating_sub(ma.t_ns).max(1);
        let mut out = Vec::with_capacity(self.n());
        for d in 0..self.n() {
            let pts = self.points(d);
            let bridged = ma.values[d].is_none() || mb.values[d].is_none();
            let va = ma.values[d]
                .map(|v| v as f64)
                .or_else(|| Self::bridge(&pts, ma.t_ns));
            let vb = mb.values[d]
                .map(|v| v as f64)
                .or_else(|| Self::bridge(&pts, mb.t_ns));
            let stuck = self
                .stuck_spans(d, &pts)
                .into_iter()
                .find(|&(from, to)| from < mb.t_ns && to > ma.t_ns);
            let (energy_uj, lost) = match (va, vb, stuck) {
                (_, _, Some((since_ns, _))) => (
                    f64::NAN,
                    Some(Lost::Stuck {
                        since_ns,
                        reference: self.reference(d).unwrap_or(d),
                    }),
                ),
                (Some(a), Some(b), None) => ((b - a).max(0.0), None),
                _ => (
                    f64::NAN,
                    Some(Lost::NoReads {
                        last_valid_ns: pts.iter().rev().find(|(t, _)| *t <= mb.t_ns).map(|p| p.0),
                    }),
                ),
            };
            let invalid_samples = self
                .times
                .iter()
                .enumerate()
                .filter(|(r, t)| **t >= ma.t_ns && **t <= mb.t_ns && self.sample(*r, d).is_none())
                .count() as u64
                + u64::from(ma.values[d].is_none())
                + u64::from(mb.values[d].is_none());
            let avg = energy_uj / 1e6 / (dur_ns as f64 / 1e9);
            let peak_window_ms = self
                .interval_ms
                .max(2.0 * self.domains[d].nominal_update_ms);
            let peak = peak_power(&pts, ma.t_ns, mb.t_ns, (peak_window_ms * 1e6) as u64)
                .map_or(avg, |p| p.max(avg));
            out.push(DomainWindow {
                energy_uj,
                avg_power_w: avg,
                peak_power_w: peak,
                invalid_samples,
                bridged,
                peak_window_ms,
                lost,
                lost_wrap_uj: self.lost_wrap_uj(d, &pts, ma.t_ns, mb.t_ns),
            });
        }
        Window {
            start_ns: ma.t_ns,
            end_ns: mb.t_ns,
            domains: out,
        }
    }

    /// The domain whose counting shows that `d` should be counting too: a RAPL zone's parent
    /// zone, or for a top-level package another package of the same source. None for the rest.
    fn reference(&self, d: usize) -> Option<usize> {
        let dom = &self.domains[d];
        if dom.source != SourceKind::Rapl || dom.method != Method::Counter {
            return None;
        }
        let zone = |x: &DomainInfo| {
            std::path::Path::new(&x.location)
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(ZoneId::parse)
        };
        let id = zone(dom)?;
        let same_source = |i: &usize| *i != d && self.domains[*i].source == dom.source;
        if let Some(parent) = id.parent() {
            return (0..self.n())
                .filter(same_source)
                .find(|&i| zone(&self.domains[i]).is_some_and(|z| z == parent));
        }
        (dom.kind == DomainKind::Package)
            .then(|| {
                (0..self.n())
                    .filter(same_source)
                    .find(|&i| self.domains[i].kind == DomainKind::Package)
            })
            .flatten()
    }

    /// Spans (first and last read, ns) over which domain `d` held one value for at least five
    /// update periods and three reads after having advanced before, while its reference kept
    /// counting: a stuck counter. A zone that never advanced (an unsupported DRAM domain reads a
    /// constant) is not stuck; it reads zero watts.
    fn stuck_spans(&self, d: usize, pts: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let dom = &self.domains[d];
        if !matches!(
            dom.kind,
            DomainKind::Package | DomainKind::Dram | DomainKind::Core
        ) {
            return Vec::new();
        }
        let Some(r) = self.reference(d) else {
            return Vec::new();
        };
        let min_ns = (5.0 * dom.nominal_update_ms * 1e6) as u64;
        let ref_pts = self.points(r);
        let mut out = Vec::new();
        let mut advanced = false;
        let mut i = 0;
        while i < pts.len() {
            let mut j = i;
            while j + 1 < pts.len() && pts[j + 1].1 == pts[i].1 {
                j += 1;
            }
            let (from, to) = (pts[i].0, pts[j].0);
            if advanced && j - i >= 2 && to - from >= min_ns {
                let moved = Self::bridge(&ref_pts, from)
                    .zip(Self::bridge(&ref_pts, to))
                    .is_some_and(|(a, b)| b > a);
                if moved {
                    out.push((from, to));
                }
            }
            if j + 1 < pts.len() && pts[j + 1].1 > pts[j].1 {
                advanced = true;
            }
            i = j + 1;
        }
        out
    }

    /// How much energy wraps hidden between reads could add over `[a, b]`: for each gap
    /// between consecutive valid reads that touches the window, the counter range times the
    /// number of wraps the domain's maximum power could fit in it.
    fn lost_wrap_uj(&self, d: usize, pts: &[(u64, u64)], a: u64, b: u64) -> f64 {
        let dom = &self.domains[d];
        let (Some(range), Some(max_w)) = (dom.counter_range_uj, dom.max_power_w) else {
            return 0.0;
        };
        if dom.method != Method::Counter || range == 0 || max_w <= 0.0 {
            return 0.0;
        }
        pts.windows(2)
            .filter(|w| w[1].0 > a && w[0].0 < b)
            .map(|w| {
                let fits = (w[1].0 - w[0].0) as f64 / 1e9 * max_w * 1e6 / range as f64;
                fits.floor() * range as f64
            })
            .sum()
    }

    /// Why each domain of `w` has no energy figure, one line per such domain, naming the
    /// zone and the time (seconds since the recording started).
    pub fn lost_lines(&self, w: &Window) -> Vec<String> {
        let at = |t: u64| t.saturating_sub(self.start_ns) as f64 / 1e9;
        self.domains
            .iter()
            .zip(&w.domains)
            .filter_map(|(d, dw)| {
                let why = match dw.lost.as_ref()? {
                    Lost::Stuck {
                        since_ns,
                        reference,
                    } => format!(
                        "stopped advancing at {:.3} s while {} kept counting (a stuck counter \
                         is not zero watts)",
                        at(*since_ns),
                        self.domains[*reference].name
                    ),
                    Lost::NoReads {
                        last_valid_ns: Some(t),
                    } => format!(
                        "no valid read after {:.3} s (the sensor vanished or became unreadable)",
                        at(*t)
                    ),
                    Lost::NoReads {
                        last_valid_ns: None,
                    } => "no valid read at all (unreadable)".to_string(),
                };
                Some(format!("{}/{} ({}): {why}", d.source, d.name, d.location))
            })
            .collect()
    }

    /// Writes every sample and mark as CSV: time, event, source, domain, cumulative J, W, valid.
    pub fn write_trace(&self, w: impl Write) -> std::io::Result<()> {
        self.write_trace_rows(w, 0.0, true)
    }

    /// The trace's rows with `t_s` shifted by `offset_s` (a resumed cell's rows continue the
    /// earlier ones'), with or without the header line.
    pub fn write_trace_rows(
        &self,
        w: impl Write,
        offset_s: f64,
        header: bool,
    ) -> std::io::Result<()> {
        let mut csv = csv::Writer::from_writer(w);
        if header {
            csv.write_record([
                "t_s", "event", "source", "domain", "energy_j", "power_w", "valid",
            ])?;
        }
        let points: Vec<Vec<(u64, u64)>> = (0..self.n()).map(|d| self.points(d)).collect();
        // Samples and marks merged in time order; marks carry their label as the event.
        let mut rows: Vec<(u64, Option<usize>, Option<usize>)> = self
            .times
            .iter()
            .enumerate()
            .map(|(r, &t)| (t, Some(r), None))
            .chain(
                self.marks
                    .iter()
                    .enumerate()
                    .map(|(m, mk)| (mk.t_ns, None, Some(m))),
            )
            .collect();
        rows.sort_by_key(|r| r.0);
        let mut prev: Vec<Option<(u64, f64)>> = vec![None; self.n()];
        for (t, row, mark) in rows {
            for (d, dom) in self.domains.iter().enumerate() {
                let raw = match (row, mark) {
                    (Some(r), _) => self.sample(r, d),
                    (_, Some(m)) => self.marks[m].values[d],
                    _ => None,
                };
                let value = raw
                    .map(|v| v as f64)
                    .or_else(|| Self::bridge(&points[d], t));
                let power = match (row, value, prev[d]) {
                    (Some(_), Some(v), Some((t0, v0))) if t > t0 => {
                        format!("{:.4}", (v - v0) / 1e6 / ((t - t0) as f64 / 1e9))
                    }
                    _ => String::new(),
                };
                if let (Some(_), Some(v)) = (row, value) {
                    prev[d] = Some((t, v));
                }
                let event =
                    mark.map_or_else(|| "sample".to_string(), |m| self.marks[m].mark.to_string());
                csv.write_record([
                    format!(
                        "{:.6}",
                        offset_s + t.saturating_sub(self.start_ns) as f64 / 1e9
                    )
                    .as_str(),
                    event.as_str(),
                    dom.source.as_str(),
                    dom.name.as_str(),
                    &value.map_or(String::new(), |v| format!("{:.6}", v / 1e6)),
                    &power,
                    if raw.is_some() { "1" } else { "0" },
                ])?;
            }
        }
        csv.flush()
    }
}

/// Highest average power over consecutive stretches at least `min_ns` long inside [a, b].
fn peak_power(points: &[(u64, u64)], a: u64, b: u64, min_ns: u64) -> Option<f64> {
    let mut anchor: Option<(u64, u64)> = None;
    let mut peak: Option<f64> = None;
    for &(t, v) in points.iter().filter(|(t, _)| *t >= a && *t <= b) {
        match anchor {
            None => anchor = Some((t, v)),
            Some((t0, v0)) if t - t0 >= min_ns.max(1) => {
                let w = v.saturating_sub(v0) as f64 / 1e6 / ((t - t0) as f64 / 1e9);
                peak = Some(peak.map_or(w, |p: f64| p.max(w)));
                anchor = Some((t, v));
            }
            Some(_) => {}
        }
    }
    peak
}

#[cfg(test)]
mod tests;
