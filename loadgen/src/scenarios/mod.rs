//! The scenarios: `logins` (closed or open loop), `fetch`/`retr`, `idle`,
//! and the `mix` profile. Each runs client tasks on the tokio runtime until
//! its deadline or its operation count, recording into one [`Stats`].
//!
//! Open loop: operation k is due at `start + k / rate`; its latency is
//! measured from that intended start, so a stalled server shows up as
//! latency (not as a politely slower client: no coordinated omission).
//!
//! The `mix` profile and its populations live in `mix.rs`.

mod mix;

pub use mix::{mix, MixProfile};

use crate::client::{Conn, Endpoint, ErrorKind, Failure, Protocol, Result};
use crate::stats::Stats;
use crate::users::{Sources, Users};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What every scenario is given.
#[derive(Clone)]
pub struct Run {
    pub endpoint: Endpoint,
    pub users: Arc<Users>,
    pub sources: Sources,
    /// When the run ends.
    pub deadline: Instant,
    /// Operations left to start (`u64::MAX` when unbounded).
    pub remaining: Arc<AtomicU64>,
    /// Bound on one operation.
    pub timeout: Duration,
    pub stats: Stats,
}

impl Run {
    /// Takes one operation from the count; `false` when it is used up or the
    /// deadline has passed.
    pub(super) fn take_one(&self) -> bool {
        Instant::now() < self.deadline
            && self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    pub(super) async fn bounded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    pub(super) async fn logged_in(&self, i: u64) -> Result<Conn> {
        let (user, password) = self.users.get(i);
        let mut conn = Conn::open(&self.endpoint, self.sources.get(i)).await?;
        conn.login(user, password).await?;
        Ok(conn)
    }
}

/// How `logins` applies load.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// C clients, each starting its next login when the last one ends.
    Closed { clients: usize },
    /// A fixed rate of logins per second, at most `max_in_flight` at once
    /// (beyond it an operation is counted as an `overload` error).
    Open { rate: f64, max_in_flight: usize },
}

/// One login: connect, greeting (and TLS), login, logout; with
/// `page_view`, `SELECT INBOX` and `FETCH 1 BODY.PEEK[]` before the logout,
/// as a webmail page view does. The latency from `since` (to the logout, or
/// for a page view to the login's answer) and the bytes received.
async fn login_once(run: &Run, i: u64, page_view: bool, since: Instant) -> Result<(Duration, u64)> {
    let mut conn = run.logged_in(i).await?;
    let mut latency = since.elapsed();
    if page_view {
        conn.select().await?;
        conn.fetch_unchecked(1).await?;
    }
    conn.logout().await?;
    if !page_view {
        latency = since.elapsed();
    }
    Ok((latency, conn.bytes_in))
}

/// connect → greeting → login → logout, closed or open loop.
pub async fn logins(run: Run, load: Load, page_view: bool) {
    match load {
        Load::Closed { clients } => {
            let next = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let run = run.clone();
                    let next = next.clone();
                    tokio::spawn(async move {
                        while run.take_one() {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            run.stats.attempt();
                            let started = Instant::now();
                            match run.bounded(login_once(&run, i, page_view, started)).await {
                                Ok((latency, bytes)) => run.stats.success(latency, bytes),
                                Err(e) => run.stats.failure(&e),
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        }
        Load::Open {
            rate,
            max_in_flight,
        } => {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let mut tasks = Vec::new();
            let mut k: u64 = 0;
            loop {
                let due = start + period.mul_f64(k as f64);
                if due >= run.deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                if !run.take_one() {
                    break;
                }
                run.stats.attempt();
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    run.stats.failure(&Failure::new(
                        ErrorKind::Overload,
                        format!("{max_in_flight} operations already in flight"),
                    ));
                } else {
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let run = run.clone();
                    let in_flight = in_flight.clone();
                    tasks.push(tokio::spawn(async move {
                        match run.bounded(login_once(&run, k, page_view, due)).await {
                            Ok((latency, bytes)) => run.stats.success(latency, bytes),
                            Err(e) => run.stats.failure(&e),
                        }
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    }));
                }
                k += 1;
                if tasks.len() >= 4096 {
                    tasks.retain(|t| !t.is_finished());
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

/// The messages a fetch checks against, by number.
pub type Expected = Arc<HashMap<usize, Vec<u8>>>;

/// Logged-in sessions fetching (IMAP) or retrieving (POP3) `messages` in
/// turn; every body is checked. A failed session is replaced by a new one.
pub async fn fetch(run: Run, clients: usize, messages: Vec<usize>, expected: Expected) {
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let run = run.clone();
            let messages = messages.clone();
            let expected = expected.clone();
            tokio::spawn(async move {
                let mut turn = client;
                'session: while Instant::now() < run.deadline {
                    let conn = run
                        .bounded(async {
                            let mut conn = run.logged_in(client as u64).await?;
                            conn.select().await?;
                            Ok(conn)
                        })
                        .await;
                    let mut conn = match conn {
                        Ok(conn) => conn,
                        Err(e) => {
                            run.stats.failure(&e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    while run.take_one() {
                        let number = messages[turn % messages.len()];
                        turn += 1;
                        let Some(body) = expected.get(&number) else {
                            continue;
                        };
                        run.stats.attempt();
                        let started = Instant::now();
                        match run.bounded(conn.fetch(number, body)).await {
                            Ok(bytes) => run.stats.success(started.elapsed(), bytes),
                            Err(e) => {
                                run.stats.failure(&e);
                                continue 'session;
                            }
                        }
                    }
                    let _ = run.bounded(conn.logout()).await;
                    break;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Opens `sessions` sessions at `connect_rate` per second, logs them in,
/// holds them in IDLE (POP3: connected) until the deadline, then ends them.
/// A session that is still up at the end (its `DONE`/`NOOP` answered)
/// counts as ok; its latency is its login time.
pub async fn idle(run: Run, sessions: u64, connect_rate: f64, kind: Option<&'static str>) {
    let period = Duration::from_secs_f64(1.0 / connect_rate.max(1e-3));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let due = start + period.mul_f64(i as f64);
        if due >= run.deadline || !run.take_one() {
            break;
        }
        tokio::time::sleep_until(due).await;
        run.stats.attempt();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let login = run
                .bounded(async {
                    let mut conn = run.logged_in(i).await?;
                    conn.select().await?;
                    Ok(conn)
                })
                .await;
            let mut conn = match login {
                Ok(conn) => conn,
                Err(e) => return run.stats.failure(&e),
            };
            let login_time = due.elapsed();
            run.stats.gauge("sessions_up", 1);
            let held = conn.idle(run.deadline).await;
            run.stats.gauge("sessions_up", -1);
            match held {
                Ok(()) => {
                    let _ = run.bounded(conn.logout()).await;
                    match kind {
                        Some(kind) => run.stats.success_as(kind, login_time, conn.bytes_in),
                        None => run.stats.success(login_time, conn.bytes_in),
                    }
                    run.stats.gauge("stayed_up", 1);
                }
                Err(e) => run.stats.failure(&e),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The endpoint's protocol, for labels.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop3",
        Protocol::Managesieve => "managesieve",
    }
}
