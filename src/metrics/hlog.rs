//! HdrHistogram interval logs (`.hlog`, the V2 log format HdrHistogram's log
//! tools read): every interval, the latencies recorded since the previous
//! one, one tagged histogram per metric and protocol.
//!
//! A thread of its own merges the workers' cumulative histograms and writes
//! the difference from the last interval; workers are never blocked longer
//! than one copy of their histograms.

use super::{Recorder, SharedRecorder};
use crate::login::Protocol;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Tags written, with the unit of their values.
pub const TAGS: [&str; 4] = [
    "login_us.imap",
    "login_us.pop3",
    "session_ms.imap",
    "session_ms.pop3",
];

fn snapshot(workers: &[SharedRecorder]) -> HashMap<&'static str, Histogram<u64>> {
    let mut merged = Recorder::default();
    for w in workers {
        super::with(w, |r| merged.merge(r));
    }
    let mut out = HashMap::new();
    for (tag, protocol, latency) in [
        (TAGS[0], Protocol::Imap, true),
        (TAGS[1], Protocol::Pop3, true),
        (TAGS[2], Protocol::Imap, false),
        (TAGS[3], Protocol::Pop3, false),
    ] {
        let source = if latency {
            &merged.login_latency
        } else {
            &merged.session_duration
        };
        // Tags are per protocol: the listeners of one protocol add up.
        for (listener, h) in source {
            if listener.protocol == protocol {
                let _ = out.entry(tag).or_insert_with(super::histogram).add(h);
            }
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
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    std::thread::Builder::new().name("mailgate-hlog".into()).spawn(move || {
        let mut file = file; // unbuffered: each interval reaches the file at once
        let mut serializer = V2DeflateSerializer::new();
        let started = SystemTime::now();
        let clock = Instant::now();
        let Ok(mut log) = IntervalLogWriterBuilder::new()
            .add_comment("mailgate latency log: login_us.* in microseconds, session_ms.* in milliseconds")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut file, &mut serializer)
        else {
            tracing::error!(path = %path.display(), "cannot start the hlog");
            return;
        };
        let mut previous = snapshot(&workers);
        let mut interval_start = clock.elapsed();
        loop {
            std::thread::sleep(interval);
            let now = clock.elapsed();
            let current = snapshot(&workers);
            for tag in TAGS {
                let Some(total) = current.get(tag) else { continue };
                let mut delta = total.clone();
                if let Some(before) = previous.get(tag) {
                    let _ = delta.subtract(before);
                }
                if delta.is_empty() {
                    continue;
                }
                if let Err(e) = log.write_histogram(&delta, interval_start, now - interval_start, Tag::new(tag)) {
                    tracing::error!("writing the hlog: {e:?}");
                }
            }
            previous = current;
            interval_start = now;
        }
    })?;
    Ok(())
}
