//! The self-contained HTML report: the summary and three inline SVG charts.

use super::Summary;
use plotters::prelude::*;
use std::fmt::Write as _;

impl Summary {
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
pub(super) fn percentile_points() -> Vec<f64> {
    vec![
        0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
    ]
}

/// Percentile → "nines" axis position (0 at 0 %, 1 at 90 %, 2 at 99 %, …).
pub(super) fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-6).log10()
}

pub(super) fn percent_label(x: f64) -> String {
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
