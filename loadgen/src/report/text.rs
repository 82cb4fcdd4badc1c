//! The human summary of a run.

use super::Summary;
use std::fmt::Write as _;

impl Summary {
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
}
