//! The cluster run's report and its projection to a deployment: VPN
//! bandwidth of a front end on every box vs per-box host names.

use super::ClusterArgs;
use std::collections::BTreeMap;

/// Bytes in a MiB.
pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// What the run measured and the projection.
#[derive(Debug, serde::Serialize)]
pub struct ClusterReport {
    pub boxes: usize,
    pub sessions_attempted: u64,
    pub sessions_ok: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// From mailgate's counters: bytes between a front end and a back end on
    /// another box, and on the same box (both directions).
    pub vpn_bytes: u64,
    pub local_bytes: u64,
    pub vpn_share: f64,
    pub expected_vpn_share: f64,
    /// From the clients: share of received bytes in sessions whose front end
    /// was not their mailbox's box.
    pub client_remote_share: f64,
    pub remote_sessions: u64,
    pub vpn_bytes_per_session: f64,
    pub mib_per_session: f64,
    pub projection: Projection,
    /// With `--directory ldap`.
    pub ldap: Option<LdapFigures>,
    /// With `--moves`.
    pub moves: Option<super::MoveReport>,
    /// With `--corpus`: what the corpus holds.
    pub corpus: Option<String>,
    /// With `--corpus` or `--compress`: each phase's figures.
    pub compression: Vec<super::PhaseFigures>,
}

/// The directory's load, from slapd's own log.
#[derive(Debug, serde::Serialize)]
pub struct LdapFigures {
    pub watch: bool,
    pub ttl_seconds: f64,
    /// Searches for one user (logins).
    pub lookups: u64,
    /// The watch's content-sync searches (one per front end and connection).
    pub watch_searches: u64,
    /// Logins the front ends counted (every outcome).
    pub logins: u64,
    pub lookups_per_login: f64,
}

/// Scaled to a deployment.
#[derive(Debug, serde::Serialize)]
pub struct Projection {
    pub population: u64,
    pub sessions_per_user_day: f64,
    pub mib_per_session: f64,
    pub peak_factor: f64,
    /// Front end on every box, random box per session (mailgate).
    pub proxy_vpn_mbit_avg: f64,
    pub proxy_vpn_mbit_peak: f64,
    pub proxy_vpn_gib_per_day: f64,
    /// Per-box host names: clients reach their box directly.
    pub per_box_vpn_mbit_avg: f64,
    pub per_box_vpn_mbit_peak: f64,
    /// What clients receive in total (the same either way).
    pub client_mbit_avg: f64,
}

pub(super) fn project(args: &ClusterArgs, vpn_share: f64, measured_mib: f64) -> Projection {
    let mib = args.mib_per_session.unwrap_or(measured_mib);
    let mib_per_day = args.population as f64 * args.sessions_per_user_day * mib;
    let mbit = |mib_per_day: f64| mib_per_day * MIB * 8.0 / 1e6 / 86_400.0;
    let client = mbit(mib_per_day);
    Projection {
        population: args.population,
        sessions_per_user_day: args.sessions_per_user_day,
        mib_per_session: mib,
        peak_factor: args.peak_factor,
        proxy_vpn_mbit_avg: client * vpn_share,
        proxy_vpn_mbit_peak: client * vpn_share * args.peak_factor,
        proxy_vpn_gib_per_day: mib_per_day * vpn_share / 1024.0,
        per_box_vpn_mbit_avg: 0.0,
        per_box_vpn_mbit_peak: 0.0,
        client_mbit_avg: client,
    }
}
pub(super) fn text(r: &ClusterReport) -> String {
    let p = &r.projection;
    let mut s = format!(
        "cluster of {} boxes: {} of {} sessions ok in {:.1} s{}\n",
        r.boxes,
        r.sessions_ok,
        r.sessions_attempted,
        r.seconds,
        if r.errors_by_kind.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", r.errors_by_kind)
        }
    );
    s += &format!(
        "  relayed (mailgate counters): {:.1} MiB over the VPN, {:.1} MiB local\n",
        r.vpn_bytes as f64 / MIB,
        r.local_bytes as f64 / MIB
    );
    s += &format!(
        "  VPN share {:.3} (expected (B-1)/B = {:.3}); clients' remote share {:.3} over {} remote sessions\n",
        r.vpn_share, r.expected_vpn_share, r.client_remote_share, r.remote_sessions
    );
    s += &format!(
        "  VPN bytes per session {:.0} ({:.3} MiB relayed per session)\n\n",
        r.vpn_bytes_per_session, r.mib_per_session
    );
    s += &format!(
        "Projection: {} users × {} sessions/day × {:.3} MiB/session, peak {}× average\n\n",
        p.population, p.sessions_per_user_day, p.mib_per_session, p.peak_factor
    );
    s += "| deployment | VPN Mbit/s avg | VPN Mbit/s peak | VPN GiB/day | client Mbit/s avg |\n";
    s += "| --- | --- | --- | --- | --- |\n";
    s += &format!(
        "| front end on every box (mailgate, random box) | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        p.proxy_vpn_mbit_avg, p.proxy_vpn_mbit_peak, p.proxy_vpn_gib_per_day, p.client_mbit_avg
    );
    s += &format!(
        "| per-box host names (no proxy hop) | {:.1} | {:.1} | 0.0 | {:.1} |\n",
        p.per_box_vpn_mbit_avg, p.per_box_vpn_mbit_peak, p.client_mbit_avg
    );
    if let Some(l) = &r.ldap {
        s += &format!(
            "\nLDAP (watch {}, ttl {} s): {} lookups for {} logins = {:.3} per login; {} content-sync searches\n",
            l.watch, l.ttl_seconds, l.lookups, l.logins, l.lookups_per_login, l.watch_searches
        );
    }
    if let Some(m) = &r.moves {
        s += &moves_text(m);
    }
    s += "\nPer-box host names cost no VPN bytes but tie every client's settings to a box: moving a mailbox means reconfiguring its clients (or per-user DNS).\n";
    s
}

fn moves_text(m: &super::MoveReport) -> String {
    let mut s = format!(
        "\nMoves ({:?} mode): {} made; sessions on the old box ended {}, left {}; logins on the old box after the hold {} (must be 0), before a front end followed {}; probes timed out {}\n",
        m.mode,
        m.moves,
        m.sessions_ended,
        m.sessions_left_on_old_box,
        m.old_box_logins_after_hold,
        m.old_box_logins_before_followed,
        m.probe_timeouts
    );
    if let Some(e) = &m.first_error {
        s += &format!("  first error: {e}\n");
    }
    s += "| front end | hold p50 ms | hold p99 ms | reroute p50 ms | reroute p99 ms | reroute max ms |\n| --- | --- | --- | --- | --- | --- |\n";
    for (f, reroute) in m.reroute.iter().enumerate() {
        let hold = m.hold.get(f).filter(|h| h.count > 0);
        s += &format!(
            "| {f} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            hold.map_or("-".into(), |h| format!("{:.1}", h.p50_ms)),
            hold.map_or("-".into(), |h| format!("{:.1}", h.p99_ms)),
            reroute.p50_ms,
            reroute.p99_ms,
            reroute.max_ms
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    #[test]
    fn the_projection_scales_the_share() {
        let args = ClusterArgs {
            boxes: 3,
            users: 1,
            sessions: 1,
            clients: 1,
            message_size: 1,
            fetches_per_session: 1,
            duration: Duration::from_secs(1),
            seed: 1,
            mailgate: None,
            population: 86_400,
            sessions_per_user_day: 1.0,
            mib_per_session: Some(1.0),
            peak_factor: 2.0,
            json: false,
            corpus: false,
            corpus_args: crate::cli::CorpusArgs {
                corpus_messages: 1,
                corpus_sizes: None,
                corpus_seed: 1,
            },
            compress: super::super::CompressMode::Off,
            compress_level: None,
            routes: super::super::RouteArgs::default(),
        };
        let p = project(&args, 0.5, 99.0);
        // 86 400 MiB/day = 1 MiB/s = 8.388608 Mbit/s to clients, half over the VPN.
        assert!((p.client_mbit_avg - 8.388608).abs() < 1e-9);
        assert!((p.proxy_vpn_mbit_avg - 4.194304).abs() < 1e-9);
        assert!((p.proxy_vpn_mbit_peak - 8.388608).abs() < 1e-9);
        assert_eq!(p.per_box_vpn_mbit_avg, 0.0);
    }
}
