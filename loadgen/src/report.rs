//! The end of a run: a human summary, `--json`, and `--report FILE.html`, a
//! self-contained page whose charts (latency percentile distribution,
//! throughput over time, errors by kind) are inline SVG drawn by plotters.

use crate::stats::{Interval, Totals};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

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

    /// The human summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} ({}) against {}, {}: {:.2} s",
            self.scenario, self.protocol, self.tls, self.target, self.load, self.seconds
        );
        let _ = writeln!(
            s,
            "  attempted {}, ok {}, errors {}{}",
            self.attempted,
            self.ok,
            self.errors,
            if self.errors_by_kind.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.errors_by_kind
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = writeln!(
            s,
            "  throughput {:.1} ok/s, {:.1} MiB/s ({} bytes)",
            self.per_second, self.mib_per_second, self.bytes
        );
        let _ = writeln!(
            s,
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        for (k, l) in &self.latency_by_kind {
            let _ = writeln!(
                s,
                "  {k}: {} ok, latency ms p50 {:.3}  p99 {:.3}  max {:.3}",
                l.count, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        for (k, v) in &self.counts {
            let _ = writeln!(s, "  {k}: {v}");
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "  first error: {e}");
        }
        s
    }

    /// The HTML report.
    pub fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mailgate-loadgen: {scenario}</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{text-align:left}}figure{{margin:1em 0}}</style>\
</head><body>\n<h1>mailgate-loadgen: {scenario}</h1>\n<p>{protocol} ({tls}) against <code>{target}</code>, {load}, {secs:.2} s.</p>\n",
            scenario = escape(&self.scenario),
            protocol = escape(&self.protocol),
            tls = escape(&self.tls),
            target = escape(&self.target),
            load = escape(&self.load),
            secs = self.seconds,
        );
        page.push_str("<table>\n");
        for (k, v) in [
            ("attempted", self.attempted.to_string()),
            ("ok", self.ok.to_string()),
            ("errors", self.errors.to_string()),
            ("ok per second", format!("{:.1}", self.per_second)),
            ("MiB per second", format!("{:.1}", self.mib_per_second)),
            ("p50 ms", format!("{:.3}", self.p50_ms)),
            ("p90 ms", format!("{:.3}", self.p90_ms)),
            ("p99 ms", format!("{:.3}", self.p99_ms)),
            ("p99.9 ms", format!("{:.3}", self.p999_ms)),
            ("max ms", format!("{:.3}", self.max_ms)),
        ] {
            let _ = writeln!(page, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        for (k, v) in &self.counts {
            let _ = writeln!(page, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
        }
        page.push_str("</table>\n");
        if !self.latency_by_kind.is_empty() {
            page.push_str("<h2>By kind</h2>\n<table><tr><th>kind</th><th>ok</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>\n");
            for (k, l) in &self.latency_by_kind {
                let _ = writeln!(
                    page,
                    "<tr><th>{}</th><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                    escape(k),
                    l.count,
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms
                );
            }
            page.push_str("</table>\n");
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(page, "<p>First error: <code>{}</code></p>", escape(e));
        }
        let errors_title = if self.errors == 0 {
            "Errors by kind: none"
        } else {
            "Errors by kind"
        };
        for (title, svg) in [
            ("Latency by percentile", self.percentile_chart()),
            ("Throughput over time", self.throughput_chart()),
            (errors_title, self.error_chart()),
        ] {
            let _ = writeln!(
                page,
                "<figure class=\"chart\"><figcaption>{title}</figcaption>\n{svg}\n</figure>"
            );
        }
        page.push_str("</body></html>\n");
        page
    }

    fn percentile_chart(&self) -> String {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 360)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let points: Vec<(f64, f64)> = self
                .percentiles
                .iter()
                .map(|(p, ms)| (nines(*p), *ms))
                .collect();
            let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
            let x_max = points.last().map_or(1.0, |p| p.0);
            if let Ok(mut chart) = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            {
                let _ = chart
                    .configure_mesh()
                    .x_labels(x_max.ceil() as usize + 1)
                    .x_desc("percentile")
                    .y_desc("latency (ms)")
                    .x_label_formatter(&|x| format!("{}%", percent_label(*x)))
                    .draw();
                let _ = chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)));
                let _ = chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, BLUE.filled())));
            }
            let _ = root.present();
        }
        svg
    }

    fn throughput_chart(&self) -> String {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 360)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let mut last = 0.0;
            // A last interval cut short by the end of the run is left out:
            // a few operations over a few milliseconds make no rate.
            let rates: Vec<(f64, f64, f64)> = self
                .timeline
                .iter()
                .filter_map(|i| {
                    let width = i.at_seconds - last;
                    last = i.at_seconds;
                    (width >= 0.25).then(|| {
                        (
                            i.at_seconds,
                            i.ok as f64 / width,
                            i.bytes as f64 / width / (1024.0 * 1024.0),
                        )
                    })
                })
                .collect();
            let x_max = rates.last().map_or(1.0, |r| r.0).max(1.0);
            let ops_max = rates.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0) * 1.1;
            let mib_max = rates.iter().map(|r| r.2).fold(0.0, f64::max).max(0.1) * 1.1;
            if let Ok(mut chart) = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .right_y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max, 0.0..ops_max)
                .map(|c| c.set_secondary_coord(0.0..x_max, 0.0..mib_max))
            {
                let _ = chart
                    .configure_mesh()
                    .x_desc("seconds")
                    .y_desc("ok per second")
                    .draw();
                let _ = chart.configure_secondary_axes().y_desc("MiB/s").draw();
                if let Ok(series) = chart.draw_series(LineSeries::new(
                    rates.iter().map(|r| (r.0, r.1)),
                    BLUE.stroke_width(2),
                )) {
                    series
                        .label("ok/s")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
                }
                if let Ok(series) = chart.draw_secondary_series(LineSeries::new(
                    rates.iter().map(|r| (r.0, r.2)),
                    RED.stroke_width(2),
                )) {
                    series
                        .label("MiB/s")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
                }
                let _ = chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw();
            }
            let _ = root.present();
        }
        svg
    }

    fn error_chart(&self) -> String {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 300)).into_drawing_area();
            let _ = root.fill(&WHITE);
            let kinds: Vec<(&String, &u64)> = self.errors_by_kind.iter().collect();
            let labels: Vec<String> = if kinds.is_empty() {
                vec!["none".to_owned()]
            } else {
                kinds.iter().map(|(k, _)| (*k).clone()).collect()
            };
            let y_max = kinds.iter().map(|(_, v)| **v).max().unwrap_or(0).max(1) as f64 * 1.1;
            let n = labels.len();
            if let Ok(mut chart) = ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
            {
                let _ = chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_labels(n + 1)
                    .x_label_formatter(&|x| {
                        let i = (*x - 0.5).round();
                        if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                            labels[i as usize].clone()
                        } else {
                            String::new()
                        }
                    })
                    .y_desc("errors")
                    .draw();
                let _ = chart.draw_series(kinds.iter().enumerate().map(|(i, (_, v))| {
                    Rectangle::new(
                        [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, **v as f64)],
                        RED.filled(),
                    )
                }));
            }
            let _ = root.present();
        }
        svg
    }
}

/// Percentiles plotted: from the median to 99.999.
fn percentile_points() -> Vec<f64> {
    vec![
        0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
    ]
}

/// Percentile → "nines" axis position (0 at 0 %, 1 at 90 %, 2 at 99 %, …).
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-6).log10()
}

fn percent_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
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
