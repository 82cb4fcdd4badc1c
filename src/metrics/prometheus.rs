//! Prometheus text exposition (format 0.0.4) of merged recorders.
//!
//! Latency histograms become Prometheus histograms (`_bucket`, `_sum`,
//! `_count`) whose buckets are read off the HdrHistogram data.

use super::{Listener, LoginOutcome, Recorder};
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
    out.push_str("# HELP mailgate_logins_total Login attempts by listener and outcome.\n# TYPE mailgate_logins_total counter\n");
    for listener in &listeners {
        for outcome in LoginOutcome::ALL {
            let n = recorder
                .logins
                .get(&(*listener, outcome))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "mailgate_logins_total{{{},outcome=\"{}\"}} {n}",
                labels(listener),
                outcome.as_str()
            );
        }
    }
    histogram_family(
        &mut out,
        "mailgate_login_duration_seconds",
        "Accept to login complete, successful logins.",
        &LOGIN_BUCKETS,
        1e-6,
        &listeners,
        |l| recorder.login_latency.get(l),
    );
    histogram_family(
        &mut out,
        "mailgate_session_duration_seconds",
        "Session duration.",
        &SESSION_BUCKETS,
        1e-3,
        &listeners,
        |l| recorder.session_duration.get(l),
    );
    phase_family(&mut out, recorder);
    out.push_str("# HELP mailgate_backend_bytes_total Bytes relayed, by back end and direction.\n# TYPE mailgate_backend_bytes_total counter\n");
    let mut backends: Vec<_> = recorder.backend_bytes.iter().collect();
    backends.sort_by_key(|(addr, _)| **addr);
    for (addr, (up, down)) in backends {
        let _ = writeln!(
            out,
            "mailgate_backend_bytes_total{{backend=\"{addr}\",direction=\"to_backend\"}} {up}"
        );
        let _ = writeln!(
            out,
            "mailgate_backend_bytes_total{{backend=\"{addr}\",direction=\"to_client\"}} {down}"
        );
    }
    out.push_str("# HELP mailgate_relay_bytes_total Bytes relayed, by method.\n# TYPE mailgate_relay_bytes_total counter\n");
    let _ = writeln!(
        out,
        "mailgate_relay_bytes_total{{method=\"splice\"}} {}",
        recorder.spliced_bytes
    );
    let _ = writeln!(
        out,
        "mailgate_relay_bytes_total{{method=\"copy\"}} {}",
        recorder.copied_bytes
    );
    out.push_str(
        "# HELP mailgate_sessions Open sessions by phase.\n# TYPE mailgate_sessions gauge\n",
    );
    let _ = writeln!(
        out,
        "mailgate_sessions{{phase=\"preauth\"}} {}",
        recorder.preauth_sessions
    );
    let _ = writeln!(
        out,
        "mailgate_sessions{{phase=\"relaying\"}} {}",
        recorder.relaying_sessions
    );
    out.push_str("# HELP mailgate_directory_cache_total Directory cache lookups by result.\n# TYPE mailgate_directory_cache_total counter\n");
    for (result, n) in [
        ("hit", cache.hits),
        ("negative_hit", cache.negative_hits),
        ("miss", cache.misses),
        ("coalesced", cache.coalesced),
        ("stale", cache.stale),
        ("error", cache.errors),
    ] {
        let _ = writeln!(
            out,
            "mailgate_directory_cache_total{{result=\"{result}\"}} {n}"
        );
    }
    out
}

fn phase_family(out: &mut String, recorder: &Recorder) {
    let name = "mailgate_phase_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Duration of login phases.\n# TYPE {name} histogram"
    );
    for phase in super::Phase::ALL {
        let h = recorder.phases.get(&phase);
        let phase = phase.as_str();
        let total = h.map_or(0, |h| h.len());
        for le in LOGIN_BUCKETS {
            let count = h.map_or(0, |h| h.count_between(0, (le / 1e-6) as u64));
            let _ = writeln!(
                out,
                "{name}_bucket{{phase=\"{phase}\",le=\"{le}\"}} {count}"
            );
        }
        let sum: f64 = h.map_or(0.0, |h| {
            h.iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum::<f64>()
                * 1e-6
        });
        let _ = writeln!(
            out,
            "{name}_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "{name}_sum{{phase=\"{phase}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{phase=\"{phase}\"}} {total}");
    }
}

fn histogram_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: &[f64],
    unit_seconds: f64,
    listeners: &[Listener],
    get: impl Fn(&Listener) -> Option<&'a Histogram<u64>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for listener in listeners {
        let (counts, sum, total) = match get(listener) {
            Some(h) => {
                let counts: Vec<u64> = buckets
                    .iter()
                    .map(|le| h.count_between(0, (le / unit_seconds) as u64))
                    .collect();
                let sum: f64 = h
                    .iter_recorded()
                    .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                    .sum();
                (counts, sum * unit_seconds, h.len())
            }
            None => (vec![0; buckets.len()], 0.0, 0),
        };
        let labels = labels(listener);
        for (le, count) in buckets.iter().zip(counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
    }
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
        r.relayed("10.0.0.1:143".parse().unwrap(), 10, 2000, crate::metrics::RelayMethod::Splice);
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
