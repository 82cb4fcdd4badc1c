//! One mailgate front end per box, started as a real process (the test
//! kit's), and the counters the VPN share is read from, parsed from its
//! `/metrics` with `prometheus-parse`. A front end has one IMAP listener
//! per compression mode the run compares (`[[listen]] compress`), so the
//! modes share processes, back ends and routes.

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
    /// The first listener (every mode's sessions use `listeners`).
    pub imap: SocketAddr,
    /// One IMAP listener per compression mode, in the order given.
    pub listeners: Vec<SocketAddr>,
    pub ip: IpAddr,
}

/// What the VPN share is computed from, of one front end.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counts {
    /// Sessions whose end was recorded.
    pub sessions_ended: f64,
    /// Bytes relayed (both directions) by back end, on the wire.
    pub backend_bytes: HashMap<SocketAddr, u64>,
    /// The same before compression.
    pub backend_uncompressed: HashMap<SocketAddr, u64>,
    /// Logins attempted (every outcome).
    pub logins: f64,
}

impl FrontEnd {
    /// Starts box `b`'s front end on `ip` with `directory` (its
    /// `[directory]` section), an IMAP listener for each of `compress`
    /// (`"off"`, `"deflate"`), at `compress_level` if given.
    pub fn start(
        mailgate: &Path,
        dir: &Path,
        b: usize,
        ip: IpAddr,
        directory: &str,
        compress: &[&str],
        compress_level: Option<u32>,
    ) -> anyhow::Result<Self> {
        let listeners: String = compress
            .iter()
            .map(|mode| {
                format!("[[listen]]\nprotocol = \"imap\"\naddress = \"{ip}:0\"\ncompress = \"{mode}\"\n\n")
            })
            .collect();
        let level = compress_level
            .map(|l| format!("compress_level = {l}\n"))
            .unwrap_or_default();
        let config = format!(
            r#"{listeners}[backend]
connect_timeout = "5s"
login_timeout = "10s"
{level}
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
            listeners: process.addresses(),
            process,
            ip,
        })
    }

    /// CPU seconds the process has used (user and system).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.process.pid().context("the front end has stopped")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("/proc/pid/stat without a command")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields
            .get(11..13)
            .context("/proc/pid/stat too short")?
            .iter()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .sum();
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
        Ok(ticks as f64 / per_second as f64)
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
            (
                name @ ("mailgate_backend_bytes_total"
                | "mailgate_backend_uncompressed_bytes_total"),
                Value::Counter(v),
            ) => {
                let Some(backend) = sample.labels.get("backend").and_then(|b| b.parse().ok())
                else {
                    continue;
                };
                let map = if name == "mailgate_backend_bytes_total" {
                    &mut counts.backend_bytes
                } else {
                    &mut counts.backend_uncompressed
                };
                *map.entry(backend).or_default() += *v as u64;
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
