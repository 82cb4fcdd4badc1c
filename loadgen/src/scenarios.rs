//! The scenarios: `logins` (closed or open loop), `fetch`/`retr`, `idle`,
//! and the `mix` profile. Each runs client tasks on the tokio runtime until
//! its deadline or its operation count, recording into one [`Stats`].
//!
//! Open loop: operation k is due at `start + k / rate`; its latency is
//! measured from that intended start, so a stalled server shows up as
//! latency (not as a politely slower client: no coordinated omission).

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
    fn take_one(&self) -> bool {
        Instant::now() < self.deadline
            && self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    async fn bounded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    async fn logged_in(&self, i: u64) -> Result<Conn> {
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

/// One login: connect, greeting (and TLS), login, logout.
async fn login_once(run: &Run, i: u64) -> Result<u64> {
    let mut conn = run.logged_in(i).await?;
    conn.logout().await?;
    Ok(conn.bytes_in)
}

/// connect → greeting → login → logout, closed or open loop.
pub async fn logins(run: Run, load: Load) {
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
                            match run.bounded(login_once(&run, i)).await {
                                Ok(bytes) => run.stats.success(started.elapsed(), bytes),
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
                        match run.bounded(login_once(&run, k)).await {
                            Ok(bytes) => run.stats.success(due.elapsed(), bytes),
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

/// A realistic profile: IDLE clients, POP3 pollers, webmail bursts.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixProfile {
    #[serde(default)]
    pub idle: MixIdle,
    #[serde(default)]
    pub pollers: MixPollers,
    #[serde(default)]
    pub webmail: MixWebmail,
    pub messages: MixMessages,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixIdle {
    /// IMAP clients that log in, select and IDLE for the whole run.
    pub clients: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixPollers {
    /// POP3 clients polling every `interval`.
    pub clients: u64,
    /// Poll period of each (login, STAT, RETR one message, QUIT).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for MixPollers {
    fn default() -> Self {
        Self {
            clients: 0,
            interval: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixWebmail {
    /// Bursts per second (open loop).
    pub bursts_per_second: f64,
    /// Short IMAP sessions per burst (login, select, fetch one, logout).
    pub sessions_per_burst: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixMessages {
    /// Message sizes in the back end's mailbox (message 1 first): must
    /// match `mailgate-loadgen backend --sizes`.
    pub sizes: Vec<usize>,
    /// Relative weight of fetching each message (default: equal).
    #[serde(default)]
    pub weights: Vec<u32>,
}

impl MixMessages {
    /// A message number drawn by weight.
    fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let weights: Vec<u32> = if self.weights.len() == self.sizes.len() {
            self.weights.clone()
        } else {
            vec![1; self.sizes.len()]
        };
        let total: u32 = weights.iter().sum::<u32>().max(1);
        let mut x = rng.u32(0..total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i + 1;
            }
            x -= w;
        }
        self.sizes.len()
    }
}

/// Runs the three populations of `profile` at once; `pop3` is the POP3
/// endpoint for the pollers. Every operation (an IDLE session, a poll, a
/// webmail session) is one latency sample; gauges count each kind.
pub async fn mix(run: Run, pop3: Endpoint, profile: MixProfile, expected: Expected) {
    let mut tasks = Vec::new();
    if profile.idle.clients > 0 {
        tasks.push(tokio::spawn(idle(
            run.clone(),
            profile.idle.clients,
            500.0,
            Some("idle_login"),
        )));
    }
    for p in 0..profile.pollers.clients {
        let run = Run {
            endpoint: pop3.clone(),
            ..run.clone()
        };
        let profile = profile.clone();
        let expected = expected.clone();
        tasks.push(tokio::spawn(async move {
            let interval = profile.pollers.interval;
            let offset = interval.mul_f64(p as f64 / profile.pollers.clients as f64);
            let mut rng = fastrand::Rng::with_seed(p);
            let mut due = Instant::now() + offset;
            while due < run.deadline {
                tokio::time::sleep_until(due).await;
                if !run.take_one() {
                    break;
                }
                run.stats.attempt();
                let number = profile.messages.pick(&mut rng);
                short_session(
                    &run,
                    1_000_000 + p,
                    number,
                    &expected,
                    due,
                    ("poll", "polls"),
                )
                .await;
                due += interval;
            }
        }));
    }
    if profile.webmail.bursts_per_second > 0.0 && profile.webmail.sessions_per_burst > 0 {
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / profile.webmail.bursts_per_second);
            let start = Instant::now();
            let mut rng = fastrand::Rng::with_seed(7);
            let mut sessions = Vec::new();
            for burst in 0u64.. {
                let due = start + period.mul_f64(burst as f64);
                if due >= run.deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                for s in 0..profile.webmail.sessions_per_burst {
                    if !run.take_one() {
                        break;
                    }
                    run.stats.attempt();
                    let number = profile.messages.pick(&mut rng);
                    let run = run.clone();
                    let expected = expected.clone();
                    let i = 2_000_000 + burst * profile.webmail.sessions_per_burst + s;
                    sessions.push(tokio::spawn(async move {
                        let counted = ("webmail_session", "webmail_sessions");
                        short_session(&run, i, number, &expected, due, counted).await;
                    }));
                }
                sessions.retain(|t| !t.is_finished());
            }
            for t in sessions {
                let _ = t.await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One short `mix` session due at `due`: log in, `SELECT` (IMAP) or `STAT`
/// (POP3), fetch message `number` and check it, log out. Counted as `kind`
/// (latency from `due`) and on the `gauge`.
async fn short_session(
    run: &Run,
    i: u64,
    number: usize,
    expected: &Expected,
    due: Instant,
    (kind, gauge): (&'static str, &'static str),
) {
    let result = run
        .bounded(async {
            let mut conn = run.logged_in(i).await?;
            match run.endpoint.protocol {
                Protocol::Imap => conn.select().await?,
                Protocol::Pop3 => conn.pop3_command("STAT").await?,
            }
            let body = expected.get(&number).map(Vec::as_slice).unwrap_or(&[]);
            conn.fetch(number, body).await?;
            conn.logout().await?;
            Ok(conn.bytes_in)
        })
        .await;
    match result {
        Ok(bytes) => {
            run.stats.success_as(kind, due.elapsed(), bytes);
            run.stats.gauge(gauge, 1);
        }
        Err(e) => run.stats.failure(&e),
    }
}

/// The endpoint's protocol, for labels.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop3",
    }
}
