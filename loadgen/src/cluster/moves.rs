//! `cluster --moves N`: mailbox moves during the run, through a real slapd
//! with content synchronization, as the operator's runbook makes them.
//!
//! Each move takes a user of its own (`moverI@example.org`, not in the
//! workload), whose session on its old box stays open (selected, quiet)
//! until the move. Hold mode (the runbook): set `status=moving`, probe
//! every front end with back-to-back logins until each answers with the
//! temporary failure (the hold latency), check the open session was ended,
//! then set `host` to the next box and `status=active` in one change and
//! probe every front end until a login succeeds (the reroute latency).
//! Direct mode: only the `host` changes; probes run until a login lands on
//! the new box.
//!
//! Which box a login reached is read from `SELECT`'s `UIDVALIDITY`: box b's
//! simulated back end says b + 1. The counts that must be 0: logins that
//! reached the old box after every front end held the user (hold mode), and
//! sessions still open on the old box once the front ends moved on.

use crate::client::{Conn, Endpoint, ErrorKind, Result as ClientResult};
use mailgate_testkit::slapd::{Slapd, SlapdError};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a probe may wait for a front end to follow one change.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// How long an open session on the old box may take to be ended.
const KICK_LIMIT: Duration = Duration::from_secs(5);
/// Pause between two probe logins on one front end.
const PROBE_PAUSE: Duration = Duration::from_millis(1);

/// How moves are made.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MoveMode {
    /// `status=moving`, wait until held everywhere, then `host` + `status=active`.
    Hold,
    /// Change `host` only.
    Direct,
}

/// The mover of move `i`.
pub(super) fn mover(i: u64) -> String {
    format!("mover{i}@example.org")
}

/// Latencies in milliseconds, summarised.
#[derive(Debug, Default, serde::Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Self {
            count: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// What the moves measured.
#[derive(Debug, serde::Serialize)]
pub struct MoveReport {
    pub mode: MoveMode,
    pub moves: u64,
    /// Change acknowledged → a front end's first held login (hold mode),
    /// per front end; a probe is back-to-back logins, so this includes up
    /// to one login's time.
    pub hold: Vec<Latency>,
    /// Last change acknowledged → a front end's first login on the new
    /// box, per front end (as above).
    pub reroute: Vec<Latency>,
    /// Logins that reached the old box after every front end held the user
    /// (hold mode; must be 0).
    pub old_box_logins_after_hold: u64,
    /// Logins that reached the old box after the change, before the front
    /// end followed it (the propagation window).
    pub old_box_logins_before_followed: u64,
    /// Open sessions on the old box that the front ends ended.
    pub sessions_ended: u64,
    /// Open sessions on the old box still relaying after the move (must be 0).
    pub sessions_left_on_old_box: u64,
    /// Probes that ran out of time (a front end that never followed).
    pub probe_timeouts: u64,
    /// The first unexpected failure, if any.
    pub first_error: Option<String>,
}

impl MoveReport {
    /// Whether nothing was lost: no login on the old box after the hold, no
    /// session left there, every front end followed every move.
    pub fn clean(&self) -> bool {
        self.old_box_logins_after_hold == 0
            && self.sessions_left_on_old_box == 0
            && self.probe_timeouts == 0
            && self.first_error.is_none()
    }
}

/// Where the moves happen.
pub(super) struct Moves {
    pub slapd: Arc<Slapd>,
    pub fronts: Vec<Endpoint>,
    pub boxes: usize,
    pub password: &'static str,
}

/// The report being filled, and the latencies per front end.
struct Tally {
    hold: Vec<Vec<f64>>,
    reroute: Vec<Vec<f64>>,
    report: MoveReport,
}

#[derive(Clone, Copy)]
enum Phase {
    Hold,
    Reroute,
}

impl Tally {
    /// Counts whether the session on the old box was ended: its front end
    /// has followed the change, so the kick is at most a moment behind.
    async fn session_on_old_box(&mut self, conn: &mut Conn) {
        let start = Instant::now();
        while start.elapsed() < KICK_LIMIT {
            match tokio::time::timeout(KICK_LIMIT, conn.imap_command("NOOP")).await {
                Ok(Err(_)) => {
                    self.report.sessions_ended += 1;
                    return;
                }
                Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => break,
            }
        }
        self.report.sessions_left_on_old_box += 1;
    }

    fn add(&mut self, probe: Probe, phase: Phase, front: usize) -> Result<(), String> {
        if let Some(e) = probe.error {
            return Err(e);
        }
        let into = match phase {
            Phase::Hold => &mut self.hold[front],
            Phase::Reroute => &mut self.reroute[front],
        };
        match probe.latency {
            Some(latency) => into.push(latency.as_secs_f64() * 1e3),
            None => self.report.probe_timeouts += 1,
        }
        Ok(())
    }
}

/// What one probe of one front end saw.
#[derive(Default)]
struct Probe {
    /// When the awaited answer came, after the change.
    latency: Option<Duration>,
    /// Logins that reached the old box before it.
    old_box_logins: u64,
    error: Option<String>,
}

/// What a probe waits for.
#[derive(Clone, Copy)]
enum Awaited {
    /// The temporary failure (held).
    Held,
    /// A login on box `.0`.
    On(usize),
}

impl Moves {
    /// Makes `count` moves, one after the other.
    pub async fn run(self: Arc<Self>, count: u64, mode: MoveMode) -> MoveReport {
        let fronts = self.fronts.len();
        let mut tally = Tally {
            hold: vec![Vec::new(); fronts],
            reroute: vec![Vec::new(); fronts],
            report: MoveReport {
                mode,
                moves: 0,
                hold: Vec::new(),
                reroute: Vec::new(),
                old_box_logins_after_hold: 0,
                old_box_logins_before_followed: 0,
                sessions_ended: 0,
                sessions_left_on_old_box: 0,
                probe_timeouts: 0,
                first_error: None,
            },
        };
        for i in 0..count {
            let user = mover(i);
            let old = (i as usize) % self.boxes;
            let new = (old + 1) % self.boxes;
            if let Err(e) = self.one(&user, old, new, mode, &mut tally).await {
                tally
                    .report
                    .first_error
                    .get_or_insert(format!("move {i}: {e}"));
                break;
            }
            tally.report.moves += 1;
        }
        let mut report = tally.report;
        report.hold = tally.hold.into_iter().map(Latency::of).collect();
        report.reroute = tally.reroute.into_iter().map(Latency::of).collect();
        report
    }

    async fn one(
        self: &Arc<Self>,
        user: &str,
        old: usize,
        new: usize,
        mode: MoveMode,
        tally: &mut Tally,
    ) -> Result<(), String> {
        // The user's session on the old box, through some front end.
        let through = &self.fronts[old % self.fronts.len()];
        let mut open = match self.session(through, user).await {
            Attempt::Reached(conn, Some(b)) if b == old => conn,
            Attempt::Reached(_, reached) => {
                return Err(format!(
                    "{user} should start on box {old}, reached {reached:?}"
                ))
            }
            Attempt::Held | Attempt::Ended => {
                return Err(format!("{user} could not log in before its move"))
            }
            Attempt::Failed(e) => return Err(e),
        };
        if mode == MoveMode::Hold {
            self.change(user, None, Some("moving")).await?;
            let at = Instant::now();
            for (f, probe) in self
                .probe_all(user, at, Awaited::Held)
                .await
                .into_iter()
                .enumerate()
            {
                tally.report.old_box_logins_before_followed += probe.old_box_logins;
                tally.add(probe, Phase::Hold, f)?;
            }
        }
        if mode == MoveMode::Hold {
            // Before the final sync: nothing may still write to the old box.
            tally.session_on_old_box(&mut open).await;
        }
        let status = (mode == MoveMode::Hold).then_some("active");
        self.change(user, Some(new), status).await?;
        // From the server's acknowledgement of the change.
        let at = Instant::now();
        for (f, probe) in self
            .probe_all(user, at, Awaited::On(new))
            .await
            .into_iter()
            .enumerate()
        {
            match mode {
                MoveMode::Hold => tally.report.old_box_logins_after_hold += probe.old_box_logins,
                MoveMode::Direct => {
                    tally.report.old_box_logins_before_followed += probe.old_box_logins
                }
            }
            tally.add(probe, Phase::Reroute, f)?;
        }
        if mode == MoveMode::Direct {
            tally.session_on_old_box(&mut open).await;
        }
        Ok(())
    }

    /// The LDAP change, as an operator's `ldapmodify` makes it.
    async fn change(
        &self,
        user: &str,
        host: Option<usize>,
        status: Option<&str>,
    ) -> Result<(), String> {
        let slapd = self.slapd.clone();
        let (user, status) = (user.to_owned(), status.map(str::to_owned));
        tokio::task::spawn_blocking(move || -> Result<(), SlapdError> {
            match (host, status) {
                (Some(b), Some(s)) => slapd.set_host_and_status(&user, &box_host(b), &s),
                (Some(b), None) => slapd.set_host(&user, &box_host(b)),
                (None, Some(s)) => slapd.set_status(&user, &s),
                (None, None) => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// Probes every front end at once; one probe per front end, in order.
    async fn probe_all(
        self: &Arc<Self>,
        user: &str,
        since: Instant,
        awaited: Awaited,
    ) -> Vec<Probe> {
        let mut set = tokio::task::JoinSet::new();
        for f in 0..self.fronts.len() {
            let (moves, user) = (self.clone(), user.to_owned());
            set.spawn(async move {
                (
                    f,
                    moves.probe(&moves.fronts[f], &user, since, awaited).await,
                )
            });
        }
        let mut probes: Vec<Probe> = self.fronts.iter().map(|_| Probe::default()).collect();
        while let Some(done) = set.join_next().await {
            match done {
                Ok((f, probe)) => probes[f] = probe,
                Err(e) => probes[0].error = Some(format!("a probe failed: {e}")),
            }
        }
        probes
    }

    /// Back-to-back logins through `front` until the awaited answer.
    async fn probe(&self, front: &Endpoint, user: &str, since: Instant, awaited: Awaited) -> Probe {
        let mut probe = Probe::default();
        while since.elapsed() < PROBE_LIMIT {
            match self.session(front, user).await {
                Attempt::Reached(_, reached) => match awaited {
                    Awaited::On(b) if reached == Some(b) => {
                        probe.latency = Some(since.elapsed());
                        return probe;
                    }
                    _ => probe.old_box_logins += 1,
                },
                // Logged in, then ended before SELECT answered: the login
                // reached the old box and the front end, following the
                // change a moment later, ended it.
                Attempt::Ended => probe.old_box_logins += 1,
                Attempt::Held => {
                    if matches!(awaited, Awaited::Held) {
                        probe.latency = Some(since.elapsed());
                        return probe;
                    }
                    // Still held on this front end: the last change has
                    // not reached it yet.
                }
                Attempt::Failed(e) => {
                    probe.error = Some(e);
                    return probe;
                }
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        probe
    }

    /// Logs `user` in through `front` and selects.
    async fn session(&self, front: &Endpoint, user: &str) -> Attempt {
        let mut logged_in = false;
        let attempt = async {
            let mut conn = Conn::open(front, None).await?;
            conn.login(user, self.password).await?;
            logged_in = true;
            let validity = conn.select().await?;
            ClientResult::Ok((conn, validity.map(|v| v as usize - 1)))
        };
        let outcome = tokio::time::timeout(PROBE_LIMIT, attempt).await;
        match outcome {
            Ok(Ok((conn, reached))) => Attempt::Reached(conn, reached),
            Ok(Err(e)) if e.kind == ErrorKind::Unavailable => Attempt::Held,
            Ok(Err(e)) if logged_in && matches!(e.kind, ErrorKind::Closed | ErrorKind::Io) => {
                Attempt::Ended
            }
            Ok(Err(e)) => Attempt::Failed(format!("{user} through {}: {e}", front.target)),
            Err(_) => Attempt::Failed(format!(
                "{user} through {}: no answer in 10 s",
                front.target
            )),
        }
    }
}

/// How one login through a front end went.
enum Attempt {
    /// Logged in and selected: the connection, and the box reached (from
    /// `UIDVALIDITY`).
    Reached(Conn, Option<usize>),
    /// The temporary failure of a held user.
    Held,
    /// Logged in, then the server closed the connection.
    Ended,
    /// Anything else.
    Failed(String),
}

/// The `host` value of box `b` (mapped to its back end in `[directory.hosts]`).
pub(super) fn box_host(b: usize) -> String {
    format!("box{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_summarised_by_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.count, l.p50_ms, l.p99_ms, l.max_ms),
            (100, 51.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(vec![]).count, 0);
    }
}
