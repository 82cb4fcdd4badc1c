//! What a run counts, shared by its client tasks, and the once-a-second
//! ticker that turns it into a timeline, a progress line and, if asked, an
//! HdrHistogram interval log.
//!
//! Latencies are microseconds in HdrHistogram (3 significant digits, up to
//! one hour). The lock is taken once per operation, far below the rates one
//! loadgen process drives.

use crate::client::{ErrorKind, Failure};
use hdrhistogram::Histogram;
use mailgate::metrics::hlog::IntervalLog;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// One second (or the last, shorter interval) of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Interval {
    /// Seconds since the start, at the interval's end.
    pub at_seconds: f64,
    pub ok: u64,
    pub errors: u64,
    pub bytes: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug)]
struct Inner {
    attempted: u64,
    ok: u64,
    bytes: u64,
    errors: BTreeMap<ErrorKind, u64>,
    first_error: Option<String>,
    latency: Histogram<u64>,
    interval: Histogram<u64>,
    interval_ok: u64,
    interval_errors: u64,
    interval_bytes: u64,
    gauges: BTreeMap<&'static str, (i64, i64)>,
    by_kind: BTreeMap<&'static str, Histogram<u64>>,
    timeline: Vec<Interval>,
}

/// A run's counters (cheap to clone: shared).
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
}

/// Everything counted, at the end.
#[derive(Debug)]
pub struct Totals {
    pub attempted: u64,
    pub ok: u64,
    pub bytes: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub first_error: Option<String>,
    pub latency: Histogram<u64>,
    /// Gauges at the end, and `<name>_peak` where the peak was higher.
    pub gauges: BTreeMap<String, i64>,
    /// Latency per kind of operation (`mix`).
    pub by_kind: BTreeMap<String, Histogram<u64>>,
    pub timeline: Vec<Interval>,
    pub elapsed: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                attempted: 0,
                ok: 0,
                bytes: 0,
                errors: BTreeMap::new(),
                first_error: None,
                latency: histogram(),
                interval: histogram(),
                interval_ok: 0,
                interval_errors: 0,
                interval_bytes: 0,
                gauges: BTreeMap::new(),
                by_kind: BTreeMap::new(),
                timeline: Vec::new(),
            })),
            started: Instant::now(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// An operation starts.
    pub fn attempt(&self) {
        self.with(|i| i.attempted += 1);
    }

    /// An operation succeeded after `latency`, having moved `bytes`.
    pub fn success(&self, latency: Duration, bytes: u64) {
        self.record_success(None, latency, bytes);
    }

    /// Like [`Stats::success`], also counted under `kind` (a `mix`
    /// population), which gets its own latency distribution.
    pub fn success_as(&self, kind: &'static str, latency: Duration, bytes: u64) {
        self.record_success(Some(kind), latency, bytes);
    }

    fn record_success(&self, kind: Option<&'static str>, latency: Duration, bytes: u64) {
        let us = (latency.as_micros() as u64).max(1);
        self.with(|i| {
            i.ok += 1;
            i.bytes += bytes;
            i.interval_ok += 1;
            i.interval_bytes += bytes;
            let _ = i.latency.record(us);
            let _ = i.interval.record(us);
            if let Some(kind) = kind {
                let _ = i.by_kind.entry(kind).or_insert_with(histogram).record(us);
            }
        });
    }

    /// An operation (or the session setup it needed) failed.
    pub fn failure(&self, failure: &Failure) {
        self.with(|i| {
            *i.errors.entry(failure.kind).or_default() += 1;
            i.interval_errors += 1;
            i.first_error.get_or_insert_with(|| failure.to_string());
        });
    }

    /// Moves a named gauge (e.g. sessions up) by `delta`, keeping its peak.
    pub fn gauge(&self, name: &'static str, delta: i64) {
        self.with(|i| {
            let (current, peak) = i.gauges.entry(name).or_default();
            *current += delta;
            *peak = (*peak).max(*current);
        });
    }

    /// Mismatches seen so far (any of them fails the run).
    pub fn mismatches(&self) -> u64 {
        self.with(|i| i.errors.get(&ErrorKind::Mismatch).copied().unwrap_or(0))
    }

    /// Closes the current interval: appends it to the timeline and returns
    /// it with its histogram.
    fn tick(&self) -> (Interval, Histogram<u64>, u64, u64) {
        let at = self.started.elapsed().as_secs_f64();
        self.with(|i| {
            let h = std::mem::replace(&mut i.interval, histogram());
            let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
            let interval = Interval {
                at_seconds: at,
                ok: i.interval_ok,
                errors: i.interval_errors,
                bytes: i.interval_bytes,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
            };
            i.interval_ok = 0;
            i.interval_errors = 0;
            i.interval_bytes = 0;
            i.timeline.push(interval.clone());
            let total_errors = i.errors.values().sum();
            (interval, h, i.ok, total_errors)
        })
    }

    /// The totals (call after the ticker has stopped).
    pub fn totals(&self) -> Totals {
        let elapsed = self.started.elapsed();
        self.with(|i| Totals {
            attempted: i.attempted,
            ok: i.ok,
            bytes: i.bytes,
            errors: i.errors.clone(),
            first_error: i.first_error.clone(),
            latency: i.latency.clone(),
            gauges: i
                .gauges
                .iter()
                .flat_map(|(name, (current, peak))| {
                    let peak = (peak > current).then(|| (format!("{name}_peak"), *peak));
                    std::iter::once(((*name).to_owned(), *current)).chain(peak)
                })
                .collect(),
            by_kind: i
                .by_kind
                .iter()
                .map(|(k, h)| ((*k).to_owned(), h.clone()))
                .collect(),
            timeline: i.timeline.clone(),
            elapsed,
        })
    }

    /// Runs the once-a-second ticker until `stop` fires: timeline, progress
    /// line, interval log. Ends with a last, possibly shorter, interval.
    pub async fn ticker(
        self,
        tag: &'static str,
        hlog: Option<PathBuf>,
        progress: indicatif::ProgressBar,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) -> std::io::Result<()> {
        let log = match &hlog {
            Some(path) => Some(IntervalLog::create(
                path,
                "mailgate-loadgen latency log, microseconds",
                false,
            )?),
            None => None,
        };
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.tick().await;
        let mut interval_start = Duration::ZERO;
        loop {
            let last = tokio::select! {
                _ = every.tick() => false,
                _ = &mut stop => true,
            };
            let (interval, h, ok, errors) = self.tick();
            let now = Duration::from_secs_f64(interval.at_seconds);
            if let Some(log) = &log {
                log.record(tag, h, interval_start, now - interval_start);
            }
            interval_start = now;
            let secs = (now - Duration::ZERO).as_secs_f64().max(1e-9);
            progress.set_message(format!(
                "{:>5.0}s  ok {ok} ({:.0}/s now)  {:.1} MiB/s now  errors {errors}  p99 {:.2} ms",
                secs,
                interval.ok as f64,
                interval.bytes as f64 / (1024.0 * 1024.0),
                interval.p99_ms
            ));
            if last {
                break;
            }
        }
        progress.finish_and_clear();
        log.map_or(Ok(()), IntervalLog::finish)
    }
}
