//! Prometheus text exposition (format 0.0.4) of merged recorders.
//!
//! Latency histograms become Prometheus histograms (`_bucket`, `_sum`,
//! `_count`) whose buckets are read off the HdrHistogram data.

use super::{CacheEvent, Listener, LoginOutcome, Phase, Recorder, Refusal, RelayMethod};
use crate::auth::oauth::TokenFailure;
use crate::directory::CacheStats;
use hdrhistogram::Histogram;
use std::fmt::Write;

/// Bucket bounds for login latency, seconds.
const LOGIN_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
/// Bucket bounds for session duration, seconds.
const SESSION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 86400.0,
];

/// `protocol="…",listener="…"`.
fn labels(l: &Listener) -> String {
    format!("protocol=\"{}\",listener=\"{}\"", l.protocol, l.address)
}

/// Renders `recorder` (already merged) and the cache counters.
pub fn render(recorder: &Recorder, cache: &CacheStats) -> String {
    let mut out = String::new();
    let listeners = recorder.listeners();
    header(
        &mut out,
        "mailgate_logins_total",
        "Login attempts by listener and outcome.",
        "counter",
    );
    for listener in &listeners {
        for outcome in LoginOutcome::ALL {
            let n = recorder
                .logins
                .get(&(*listener, outcome))
                .copied()
                .unwrap_or(0);
            let labels = format!("{},outcome=\"{}\"", labels(listener), outcome.as_str());
            sample(&mut out, "mailgate_logins_total", &labels, n);
        }
    }
    refusals(&mut out, recorder, &listeners);
    mechanisms(&mut out, recorder);
    connection_cache(&mut out, recorder);
    let name = "mailgate_login_duration_seconds";
    header(
        &mut out,
        name,
        "Accept to login complete, successful logins.",
        "histogram",
    );
    for l in &listeners {
        let h = recorder.login_latency.get(l);
        histogram(&mut out, name, &labels(l), h, &LOGIN_BUCKETS, 1e-6);
    }
    let name = "mailgate_session_duration_seconds";
    header(&mut out, name, "Session duration.", "histogram");
    for l in &listeners {
        let h = recorder.session_duration.get(l);
        histogram(&mut out, name, &labels(l), h, &SESSION_BUCKETS, 1e-3);
    }
    let name = "mailgate_phase_duration_seconds";
    header(&mut out, name, "Duration of login phases.", "histogram");
    for phase in Phase::ALL {
        let labels = format!("phase=\"{}\"", phase.as_str());
        let h = recorder.phases.get(&phase);
        histogram(&mut out, name, &labels, h, &LOGIN_BUCKETS, 1e-6);
    }
    bytes(&mut out, recorder);
    let name = "mailgate_sessions";
    header(&mut out, name, "Open sessions by phase.", "gauge");
    sample(
        &mut out,
        name,
        "phase=\"preauth\"",
        recorder.preauth_sessions,
    );
    sample(
        &mut out,
        name,
        "phase=\"relaying\"",
        recorder.relaying_sessions,
    );
    let name = "mailgate_directory_cache_total";
    header(
        &mut out,
        name,
        "Directory cache lookups by result.",
        "counter",
    );
    for (result, n) in [
        ("hit", cache.hits),
        ("negative_hit", cache.negative_hits),
        ("miss", cache.misses),
        ("coalesced", cache.coalesced),
        ("stale", cache.stale),
        ("error", cache.errors),
        ("shared_hit", cache.shared_hits),
    ] {
        sample(&mut out, name, &format!("result=\"{result}\""), n);
    }
    out
}

/// `mailgate_info{version,io} 1`: what is running.
pub fn info(io: &str) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "mailgate_info",
        "The running version and the reactor its workers run.",
        "gauge",
    );
    let labels = format!("version=\"{}\",io=\"{io}\"", env!("CARGO_PKG_VERSION"));
    sample(&mut out, "mailgate_info", &labels, 1);
    out
}

/// The connection cache: events by kind, sessions parked now.
fn connection_cache(out: &mut String, recorder: &Recorder) {
    let name = "mailgate_connection_cache_events_total";
    header(
        out,
        name,
        "Connection cache events; hit = a back-end login saved.",
        "counter",
    );
    for event in CacheEvent::ALL {
        let n = recorder.connection_cache.get(&event).copied().unwrap_or(0);
        sample(out, name, &format!("event=\"{}\"", event.as_str()), n);
    }
    let name = "mailgate_connection_cache_parked";
    header(out, name, "Back-end sessions parked now.", "gauge");
    sample(out, name, "", recorder.parked_sessions.max(0));
}

/// How clients proved who they are, and bearer tokens refused at the front.
fn mechanisms(out: &mut String, recorder: &Recorder) {
    let name = "mailgate_login_mechanisms_total";
    header(
        out,
        name,
        "Login attempts by mechanism (password, oauthbearer, xoauth2) and result.",
        "counter",
    );
    for mechanism in ["password", "oauthbearer", "xoauth2"] {
        for (ok, result) in [(true, "ok"), (false, "failed")] {
            let n = recorder
                .mechanisms
                .get(&(mechanism, ok))
                .copied()
                .unwrap_or(0);
            let labels = format!("mechanism=\"{mechanism}\",result=\"{result}\"");
            sample(out, name, &labels, n);
        }
    }
    let name = "mailgate_oauth_token_failures_total";
    header(
        out,
        name,
        "Bearer tokens refused at the front ([oauth] verify), by reason.",
        "counter",
    );
    for reason in TokenFailure::ALL {
        let n = recorder.token_failures.get(&reason).copied().unwrap_or(0);
        sample(out, name, &format!("reason=\"{}\"", reason.as_str()), n);
    }
}

/// Connections refused at accept, by listener and cap.
fn refusals(out: &mut String, recorder: &Recorder, listeners: &[Listener]) {
    let name = "mailgate_connections_refused_total";
    header(
        out,
        name,
        "Connections refused at accept, by listener and cap.",
        "counter",
    );
    for listener in listeners {
        for reason in Refusal::ALL {
            let n = recorder
                .refused
                .get(&(*listener, reason))
                .copied()
                .unwrap_or(0);
            let labels = format!("{},reason=\"{}\"", labels(listener), reason.as_str());
            sample(out, name, &labels, n);
        }
    }
}

/// The directory watch: up or down, changes applied, sessions ended by moves.
pub fn watch(up: bool, changes: u64, kicked: u64) -> String {
    let mut out = String::new();
    let name = "mailgate_directory_watch_up";
    header(
        &mut out,
        name,
        "Whether the directory's content-sync search is open.",
        "gauge",
    );
    sample(&mut out, name, "", u8::from(up));
    let name = "mailgate_directory_watch_changes_total";
    header(
        &mut out,
        name,
        "Changes the directory watch reported.",
        "counter",
    );
    sample(&mut out, name, "", changes);
    let name = "mailgate_move_kicks_total";
    header(
        &mut out,
        name,
        "Sessions ended because their mailbox moved.",
        "counter",
    );
    sample(&mut out, name, "", kicked);
    out
}

/// Bytes by back end and direction, and by relay method.
fn bytes(out: &mut String, recorder: &Recorder) {
    let name = "mailgate_backend_bytes_total";
    header(
        out,
        name,
        "Bytes relayed, by back end and direction.",
        "counter",
    );
    per_backend(out, name, &recorder.backend_bytes);
    let name = "mailgate_backend_uncompressed_bytes_total";
    header(
        out,
        name,
        "Bytes relayed before compression, by back end and direction (equal to mailgate_backend_bytes_total on legs without compression).",
        "counter",
    );
    per_backend(out, name, &recorder.backend_uncompressed_bytes());
    let name = "mailgate_backend_compression_total";
    header(
        out,
        name,
        "Back-end logins on listeners that compress, by result (same_host: not asked, the back end is on this host).",
        "counter",
    );
    for result in [
        crate::login::Compression::Deflate,
        crate::login::Compression::NotOffered,
        crate::login::Compression::Refused,
        crate::login::Compression::SameHost,
    ] {
        let n = recorder.compression.get(&result).copied().unwrap_or(0);
        sample(out, name, &format!("result=\"{}\"", result.as_str()), n);
    }
    let name = "mailgate_relay_bytes_total";
    header(out, name, "Bytes relayed, by method.", "counter");
    for method in [RelayMethod::Splice, RelayMethod::Copy] {
        let n = match method {
            RelayMethod::Splice => recorder.spliced_bytes,
            RelayMethod::Copy => recorder.copied_bytes,
        };
        sample(out, name, &format!("method=\"{}\"", method.as_str()), n);
    }
}

/// One counter per back end and direction.
fn per_backend(
    out: &mut String,
    name: &str,
    bytes: &std::collections::HashMap<std::net::SocketAddr, (u64, u64)>,
) {
    let mut backends: Vec<_> = bytes.iter().collect();
    backends.sort_by_key(|(addr, _)| **addr);
    for (addr, (up, down)) in backends {
        sample(
            out,
            name,
            &format!("backend=\"{addr}\",direction=\"to_backend\""),
            *up,
        );
        sample(
            out,
            name,
            &format!("backend=\"{addr}\",direction=\"to_client\""),
            *down,
        );
    }
}

/// `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line (no braces without labels).
fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram; values are
/// recorded in units of `unit_seconds`.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    h: Option<&Histogram<u64>>,
    buckets: &[f64],
    unit_seconds: f64,
) {
    let total = h.map_or(0, |h| h.len());
    for le in buckets {
        let count = h.map_or(0, |h| h.count_between(0, (le / unit_seconds) as u64));
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let sum: f64 = h.map_or(0.0, |h| {
        h.iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum::<f64>()
            * unit_seconds
    });
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use std::time::Duration;

    fn listener(protocol: Protocol, address: &str) -> Listener {
        Listener {
            protocol,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn counts_and_buckets_follow_what_was_recorded() {
        let imap = listener(Protocol::Imap, "0.0.0.0:143");
        let imaps = listener(Protocol::Imap, "0.0.0.0:993");
        let pop3 = listener(Protocol::Pop3, "0.0.0.0:110");
        let mut r = Recorder::default();
        for ms in [1, 3, 40] {
            r.login(imap, LoginOutcome::Ok, Duration::from_millis(ms));
        }
        r.login(imaps, LoginOutcome::Ok, Duration::from_millis(7));
        r.login(imap, LoginOutcome::BadPassword, Duration::from_millis(5));
        r.protocol_errors(pop3, 2);
        r.relayed(
            "10.0.0.1:143".parse().unwrap(),
            10,
            2000,
            crate::metrics::RelayMethod::Splice,
        );
        let text = render(&r, &CacheStats::default());
        assert!(
            text.contains("mailgate_logins_total{protocol=\"imap\",listener=\"0.0.0.0:143\",outcome=\"ok\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("mailgate_logins_total{protocol=\"imap\",listener=\"0.0.0.0:143\",outcome=\"bad_password\"} 1\n")
        );
        assert!(text
            .contains("mailgate_logins_total{protocol=\"pop3\",listener=\"0.0.0.0:110\",outcome=\"protocol_error\"} 2\n"));
        assert!(
            text.contains("mailgate_logins_total{protocol=\"imap\",listener=\"0.0.0.0:143\",outcome=\"rate_limited\"} 0\n")
        );
        assert!(
            text.contains(
                "mailgate_login_duration_seconds_bucket{protocol=\"imap\",listener=\"0.0.0.0:143\",le=\"0.002\"} 1\n"
            ),
            "{text}"
        );
        assert!(text
            .contains("mailgate_login_duration_seconds_bucket{protocol=\"imap\",listener=\"0.0.0.0:143\",le=\"0.05\"} 3\n"));
        assert!(text.contains(
            "mailgate_login_duration_seconds_count{protocol=\"imap\",listener=\"0.0.0.0:143\"} 3\n"
        ));
        assert!(text.contains(
            "mailgate_logins_total{protocol=\"imap\",listener=\"0.0.0.0:993\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "mailgate_backend_bytes_total{backend=\"10.0.0.1:143\",direction=\"to_client\"} 2000\n"
        ));
        assert!(text.contains("mailgate_relay_bytes_total{method=\"splice\"} 2010\n"));
    }
}
