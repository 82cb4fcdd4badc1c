//! One mailgate front end per box, started as a real process (the test
//! kit's), and the counters the VPN share is read from, parsed from its
//! `/metrics` with `prometheus-parse`.

use anyhow::Context;
use mailgate_testkit::admin::Action;
use mailgate_testkit::MailgateProcess;
use prometheus_parse::{Scrape, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// A mailgate process for one box (stopped when dropped).
pub(super) struct FrontEnd {
    process: MailgateProcess,
    pub imap: SocketAddr,
    pub ip: IpAddr,
}

/// What the VPN share is computed from, of one front end.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counts {
    /// Sessions whose end was recorded.
    pub sessions_ended: f64,
    /// Bytes relayed (both directions) by back end.
    pub backend_bytes: HashMap<SocketAddr, u64>,
    /// Logins attempted (every outcome).
    pub logins: f64,
}

impl FrontEnd {
    /// Starts box `b`'s front end on `ip` with `directory` (its
    /// `[directory]` section).
    pub fn start(
        mailgate: &Path,
        dir: &Path,
        b: usize,
        ip: IpAddr,
        directory: &str,
    ) -> anyhow::Result<Self> {
        let config = format!(
            r#"[[listen]]
protocol = "imap"
address = "{ip}:0"

[backend]
connect_timeout = "5s"
login_timeout = "10s"

[runtime]
workers = 1
pin_workers = false
shutdown_grace = "1s"
allow_root = true

[limits]
max_failures_per_address = 0

[admin]
address = "{ip}:0"

{directory}"#
        );
        let process = MailgateProcess::start(mailgate, dir, &format!("box{b}"), &config, "info")
            .with_context(|| format!("the front end of box {b}"))?;
        Ok(Self {
            imap: process.addr(0),
            process,
            ip,
        })
    }

    /// The counters, read from `/metrics`.
    pub fn counts(&self) -> anyhow::Result<Counts> {
        let answer = self.process.admin(None).run(&Action::Metrics)?;
        Ok(counts(&answer.body)?)
    }
}

/// Reads `mailgate_session_duration_seconds` (its `+Inf` bucket counts every
/// ended session) and `mailgate_backend_bytes_total` out of a scrape.
fn counts(text: &str) -> std::io::Result<Counts> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    let mut counts = Counts::default();
    for sample in scrape.samples {
        match (sample.metric.as_str(), &sample.value) {
            ("mailgate_session_duration_seconds", Value::Histogram(buckets)) => {
                counts.sessions_ended += buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count);
            }
            ("mailgate_logins_total", Value::Counter(v)) => counts.logins += v,
            ("mailgate_backend_bytes_total", Value::Counter(v)) => {
                let Some(backend) = sample.labels.get("backend").and_then(|b| b.parse().ok())
                else {
                    continue;
                };
                *counts.backend_bytes.entry(backend).or_default() += *v as u64;
            }
            _ => {}
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_bytes_are_summed_per_back_end_and_sessions_counted() {
        let text = "# TYPE mailgate_backend_bytes_total counter\nmailgate_backend_bytes_total{backend=\"127.0.1.2:4000\",direction=\"to_backend\"} 10\nmailgate_backend_bytes_total{backend=\"127.0.1.2:4000\",direction=\"to_client\"} 1000\n# TYPE mailgate_session_duration_seconds histogram\nmailgate_session_duration_seconds_bucket{protocol=\"imap\",le=\"1\"} 2\nmailgate_session_duration_seconds_bucket{protocol=\"imap\",le=\"+Inf\"} 3\nmailgate_session_duration_seconds_bucket{protocol=\"pop3\",le=\"+Inf\"} 1\n";
        let c = counts(text).unwrap();
        assert_eq!(c.sessions_ended, 4.0);
        assert_eq!(c.backend_bytes[&"127.0.1.2:4000".parse().unwrap()], 1010);
    }
}
