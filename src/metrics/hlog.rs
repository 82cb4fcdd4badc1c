//! HdrHistogram interval logs (`.hlog`, the V2 log format HdrHistogram's log
//! tools read): every interval, the latencies recorded since the previous
//! one, one tagged histogram per metric and protocol.
//!
//! A thread of its own merges the workers' cumulative histograms and writes
//! the difference from the last interval; workers are never blocked longer
//! than one copy of their histograms.

use super::{Recorder, SharedRecorder};
use crate::protocols::Protocol;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// The tags written, with the unit of their values: `login_us.<protocol>`
/// and `session_ms.<protocol>` for every protocol.
pub fn tags() -> Vec<String> {
    let mut tags: Vec<String> = Protocol::ALL
        .iter()
        .map(|p| format!("login_us.{p}"))
        .collect();
    tags.extend(Protocol::ALL.iter().map(|p| format!("session_ms.{p}")));
    tags
}

fn snapshot(workers: &[SharedRecorder]) -> HashMap<String, Histogram<u64>> {
    let mut merged = Recorder::default();
    for w in workers {
        super::with(w, |r| merged.merge(r));
    }
    let mut out = HashMap::new();
    for (unit, source) in [
        ("login_us", &merged.login_latency),
        ("session_ms", &merged.session_duration),
    ] {
        // Tags are per protocol: the listeners of one protocol add up.
        for (listener, h) in source {
            let tag = format!("{unit}.{}", listener.protocol);
            let _ = out.entry(tag).or_insert_with(super::histogram).add(h);
        }
    }
    out
}

/// Writes `path` every `interval` until the process ends.
pub fn spawn(
    path: PathBuf,
    interval: Duration,
    workers: Vec<SharedRecorder>,
) -> std::io::Result<()> {
    let log = IntervalLog::create(
        &path,
        "mailgate latency log: login_us.* in microseconds, session_ms.* in milliseconds",
        true,
    )?;
    std::thread::Builder::new()
        .name("mailgate-hlog".into())
        .spawn(move || {
            let clock = Instant::now();
            let tags = tags();
            let mut previous = snapshot(&workers);
            let mut interval_start = clock.elapsed();
            loop {
                std::thread::sleep(interval);
                let now = clock.elapsed();
                let current = snapshot(&workers);
                for tag in &tags {
                    let Some(total) = current.get(tag) else {
                        continue;
                    };
                    let mut delta = total.clone();
                    if let Some(before) = previous.get(tag) {
                        let _ = delta.subtract(before);
                    }
                    if !log.record(tag, delta, interval_start, now - interval_start) {
                        tracing::error!(path = %path.display(), "the hlog writer stopped");
                        return;
                    }
                }
                previous = current;
                interval_start = now;
            }
        })?;
    Ok(())
}

/// One interval's histogram, tagged.
struct Interval {
    tag: String,
    histogram: Histogram<u64>,
    start: Duration,
    length: Duration,
}

/// An HdrHistogram V2 interval log written by a thread of its own, fed
/// through a channel: what mailgate's admin `.hlog` and the load generator's
/// `--hlog` both write with. Timestamps are relative to the log's creation.
pub struct IntervalLog {
    intervals: std::sync::mpsc::Sender<Interval>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl IntervalLog {
    /// Creates (or, with `append`, extends) the log at `path`, headed by
    /// `comment`.
    pub fn create(path: &std::path::Path, comment: &str, append: bool) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)?;
        let comment = comment.to_owned();
        let (intervals, rx) = std::sync::mpsc::channel::<Interval>();
        let writer = std::thread::Builder::new()
            .name("hlog-writer".into())
            .spawn(move || {
                // Unbuffered: each interval reaches the file at once.
                let mut serializer = V2DeflateSerializer::new();
                let started = SystemTime::now();
                let mut log = IntervalLogWriterBuilder::new()
                    .add_comment(&comment)
                    .with_start_time(started)
                    .with_base_time(started)
                    .begin_log_with(&mut file, &mut serializer)
                    .map_err(std::io::Error::other)?;
                for i in rx {
                    if i.histogram.is_empty() {
                        continue;
                    }
                    log.write_histogram(&i.histogram, i.start, i.length, Tag::new(&i.tag))
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                }
                Ok(())
            })?;
        Ok(Self { intervals, writer })
    }

    /// Queues one interval (`start` from the log's creation); empty
    /// histograms are skipped. `false` once the writer has stopped (an I/O
    /// error, reported by [`IntervalLog::finish`]).
    pub fn record(
        &self,
        tag: &str,
        histogram: Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> bool {
        self.intervals
            .send(Interval {
                tag: tag.to_owned(),
                histogram,
                start,
                length,
            })
            .is_ok()
    }

    /// Writes what is queued and closes the log.
    pub fn finish(self) -> std::io::Result<()> {
        drop(self.intervals);
        self.writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hlog writer panicked")))
    }
}
