//! Compressed back-end legs in the cluster run: the modes a run compares
//! (one phase each, the same sessions through the same processes), what
//! each phase measured, and the table that sets them side by side.
//!
//! A phase's figures are differences of the front ends' counters and CPU
//! time taken before and after it: VPN bytes on the wire (back-end legs to
//! another box, both directions, compressed where compressed) and before
//! compression, what the clients received, mailgate's CPU seconds, and the
//! latency of each session's small `FETCH`.

use super::projection::{project, Projection, MIB};
use super::ClusterArgs;

/// `--compress`: which modes the run measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CompressMode {
    /// Back-end legs uncompressed (`compress = "off"`).
    Off,
    /// Back-end legs compressed (`compress = "deflate"`).
    Deflate,
    /// Both, one after the other, in one run.
    Compare,
}

impl CompressMode {
    /// The `[[listen]] compress` value of each phase, in order.
    pub fn phases(self) -> &'static [&'static str] {
        match self {
            CompressMode::Off => &["off"],
            CompressMode::Deflate => &["deflate"],
            CompressMode::Compare => &["off", "deflate"],
        }
    }
}

/// Most TIME_WAIT sockets a phase may start with.
const SETTLED_TIME_WAIT: u64 = 200;
/// Longest wait for them to expire (Linux keeps one 60 s).
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(65);

/// Waits (at most [`SETTLE_LIMIT`]) until the host has at most
/// [`SETTLED_TIME_WAIT`] TCP sockets in TIME_WAIT (`/proc/net/sockstat`),
/// so compared phases start alike.
pub(super) fn settle_time_wait() {
    let time_wait = || -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("TCP:"))?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == "tw")?;
        words.next()?.parse().ok()
    };
    let started = std::time::Instant::now();
    let mut said = false;
    while let Some(n) = time_wait().filter(|&n| n > SETTLED_TIME_WAIT) {
        if started.elapsed() > SETTLE_LIMIT {
            eprintln!("still {n} sockets in TIME_WAIT after {SETTLE_LIMIT:?}: going on");
            return;
        }
        if !said {
            eprintln!("waiting for {n} sockets in TIME_WAIT to expire before the phase");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Counters summed over the front ends at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Snapshot {
    pub sessions_ended: f64,
    pub vpn_wire: u64,
    pub vpn_plain: u64,
    pub local_wire: u64,
    pub local_plain: u64,
    pub cpu_seconds: f64,
}

/// What one phase measured.
#[derive(Debug, serde::Serialize)]
pub struct PhaseFigures {
    /// `off` or `deflate`.
    pub compress: String,
    pub sessions_ok: u64,
    pub seconds: f64,
    /// Bytes the clients received.
    pub client_bytes: u64,
    /// VPN bytes on the wire and before compression.
    pub vpn_wire_bytes: u64,
    pub vpn_plain_bytes: u64,
    /// Wire over plain on the VPN legs (1 without compression).
    pub vpn_wire_ratio: f64,
    /// VPN wire bytes per GiB the clients received.
    pub vpn_gib_per_client_gib: f64,
    /// mailgate CPU seconds (all front ends) per GiB the clients received.
    pub cpu_seconds_per_gib: f64,
    /// What the clients received per second, all sessions together.
    pub fetch_mib_per_second: f64,
    /// Each session's small `FETCH`, ms.
    pub small_fetch_p50_ms: f64,
    pub small_fetch_p99_ms: f64,
    /// The deployment projection with this phase's VPN bytes.
    pub projection: Projection,
}

/// Figures of one phase from the snapshots around it.
pub(super) fn figures(
    args: &ClusterArgs,
    compress: &str,
    outcome: &super::Outcome,
    seconds: f64,
    before: Snapshot,
    after: Snapshot,
) -> PhaseFigures {
    let client_bytes = outcome.local_bytes + outcome.remote_bytes;
    let client_gib = client_bytes.max(1) as f64 / (MIB * 1024.0);
    let vpn_wire = after.vpn_wire - before.vpn_wire;
    let vpn_plain = after.vpn_plain - before.vpn_plain;
    // Local legs are compressed too: the share is of bytes before compression.
    let local = after.local_plain - before.local_plain;
    let vpn_wire_ratio = vpn_wire as f64 / vpn_plain.max(1) as f64;
    let plain_total = (vpn_plain + local).max(1) as f64;
    let vpn_share = vpn_plain as f64 / plain_total;
    let mib_per_session = plain_total / outcome.ok.max(1) as f64 / MIB;
    let small = &outcome.small_fetch;
    let ms = |q: f64| {
        if small.is_empty() {
            0.0
        } else {
            small.value_at_quantile(q) as f64 / 1000.0
        }
    };
    PhaseFigures {
        compress: compress.to_owned(),
        sessions_ok: outcome.ok,
        seconds,
        client_bytes,
        vpn_wire_bytes: vpn_wire,
        vpn_plain_bytes: vpn_plain,
        vpn_wire_ratio,
        vpn_gib_per_client_gib: vpn_wire as f64 / (MIB * 1024.0) / client_gib,
        cpu_seconds_per_gib: (after.cpu_seconds - before.cpu_seconds) / client_gib,
        fetch_mib_per_second: client_bytes as f64 / MIB / seconds.max(1e-9),
        small_fetch_p50_ms: ms(0.5),
        small_fetch_p99_ms: ms(0.99),
        projection: project(args, vpn_share * vpn_wire_ratio, mib_per_session),
    }
}

/// The phases side by side, and each against the first.
pub(super) fn text(phases: &[PhaseFigures]) -> String {
    let mut s = String::from(
        "\nBack-end legs by compression (same sessions, same processes, one after the other):\n\n\
| compress | sessions | VPN wire/plain | VPN GiB per client GiB | mailgate CPU-s per GiB | fetch MiB/s | small FETCH p50 / p99 ms | VPN Mbit/s avg / peak (projection) |\n\
| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in phases {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.1} | {:.2} / {:.2} | {:.1} / {:.1} |\n",
            p.compress,
            p.sessions_ok,
            p.vpn_wire_ratio,
            p.vpn_gib_per_client_gib,
            p.cpu_seconds_per_gib,
            p.fetch_mib_per_second,
            p.small_fetch_p50_ms,
            p.small_fetch_p99_ms,
            p.projection.proxy_vpn_mbit_avg,
            p.projection.proxy_vpn_mbit_peak,
        );
    }
    if let [first, rest @ ..] = phases {
        for p in rest {
            s += &format!(
                "\n{} against {}: VPN bytes {:.3}×, CPU per GiB {:.2}×, fetch MiB/s {:.2}×, small FETCH p99 {:.2}×\n",
                p.compress,
                first.compress,
                p.vpn_gib_per_client_gib / first.vpn_gib_per_client_gib.max(1e-12),
                p.cpu_seconds_per_gib / first.cpu_seconds_per_gib.max(1e-12),
                p.fetch_mib_per_second / first.fetch_mib_per_second.max(1e-12),
                p.small_fetch_p99_ms / first.small_fetch_p99_ms.max(1e-12),
            );
        }
    }
    s
}
