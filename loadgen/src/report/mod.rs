//! The end of a run: a human summary, `--json`, and `--report FILE.html`, a
//! self-contained page whose charts (latency percentile distribution,
//! throughput over time, errors by kind) are inline SVG drawn by plotters.
//! `text.rs` writes the summary, `html.rs` the page.

mod html;
mod text;

use html::percentile_points;

use crate::stats::{Interval, Totals};
use std::collections::BTreeMap;

/// A run's results, as printed and as JSON.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub scenario: String,
    pub protocol: String,
    pub tls: String,
    pub target: String,
    /// `closed (C clients)`, `open (R/s)`, …
    pub load: String,
    pub attempted: u64,
    /// Successful operations (`operations` kept for scripts that read it).
    pub ok: u64,
    pub operations: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub bytes: u64,
    pub mib_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Scenario-specific counts (e.g. `stayed_up`).
    pub counts: BTreeMap<String, i64>,
    /// Latency per kind of operation (`mix`: idle_login, poll, webmail_session).
    pub latency_by_kind: BTreeMap<String, KindLatency>,
    pub timeline: Vec<Interval>,
    /// Latency at each percentile of the distribution chart.
    pub percentiles: Vec<(f64, f64)>,
}

/// One kind's latency.
#[derive(Debug, serde::Serialize)]
pub struct KindLatency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn new(
        scenario: &str,
        protocol: &str,
        tls: &str,
        target: &str,
        load: String,
        t: Totals,
    ) -> Self {
        let secs = t.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| t.latency.value_at_quantile(p) as f64 / 1000.0;
        let percentiles = percentile_points()
            .into_iter()
            .map(|p| {
                (
                    p,
                    if t.latency.is_empty() {
                        0.0
                    } else {
                        q(p / 100.0)
                    },
                )
            })
            .collect();
        Self {
            scenario: scenario.into(),
            protocol: protocol.into(),
            tls: tls.into(),
            target: target.into(),
            load,
            attempted: t.attempted,
            ok: t.ok,
            operations: t.ok,
            errors: t.errors.values().sum(),
            errors_by_kind: t
                .errors
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            first_error: t.first_error,
            seconds: secs,
            per_second: t.ok as f64 / secs,
            bytes: t.bytes,
            mib_per_second: t.bytes as f64 / secs / (1024.0 * 1024.0),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: t.latency.max() as f64 / 1000.0,
            counts: t.gauges,
            latency_by_kind: t
                .by_kind
                .iter()
                .map(|(k, h)| {
                    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
                    (
                        k.clone(),
                        KindLatency {
                            count: h.len(),
                            p50_ms: q(0.5),
                            p99_ms: q(0.99),
                            max_ms: h.max() as f64 / 1000.0,
                        },
                    )
                })
                .collect(),
            timeline: t.timeline,
            percentiles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::html::{nines, percent_label};
    use super::*;
    use crate::client::ErrorKind;
    use std::time::Duration;

    fn summary() -> Summary {
        let mut latency = crate::stats::histogram();
        for us in [900, 1000, 1100, 5000, 20_000] {
            latency.record(us).unwrap();
        }
        let totals = Totals {
            attempted: 6,
            ok: 5,
            bytes: 5 * 1024 * 1024,
            errors: [(ErrorKind::Timeout, 1)].into_iter().collect(),
            first_error: Some("timeout: <slow>".into()),
            latency,
            gauges: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            timeline: vec![Interval {
                at_seconds: 1.0,
                ok: 5,
                errors: 1,
                bytes: 5 * 1024 * 1024,
                p50_ms: 1.0,
                p99_ms: 20.0,
            }],
            elapsed: Duration::from_secs(1),
        };
        Summary::new(
            "logins",
            "imap",
            "none",
            "127.0.0.1:143",
            "closed (1 clients)".into(),
            totals,
        )
    }

    #[test]
    fn the_report_is_self_contained_with_three_svg_charts() {
        let html = summary().html();
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert!(html.contains("timeout"));
        assert!(html.contains("&lt;slow&gt;"), "escaped");
        assert!(!html.contains("<script") && !html.contains("src=\"http"));
    }

    #[test]
    fn the_summary_counts_and_percentiles() {
        let s = summary();
        assert_eq!((s.attempted, s.ok, s.errors), (6, 5, 1));
        assert!((s.mib_per_second - 5.0).abs() < 0.1);
        assert!(s.p50_ms >= 0.99 && s.p50_ms <= 1.11, "{}", s.p50_ms);
        assert!(s.max_ms >= 19.9);
        assert!(s.text().contains("timeout 1"));
        assert_eq!(percent_label(nines(99.9)), "99.9");
    }
}
