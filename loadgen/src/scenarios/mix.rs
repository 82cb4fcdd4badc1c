//! The `mix` scenario: a realistic profile from a TOML file — IMAP clients
//! holding IDLE, POP3 pollers, and webmail bursts of short IMAP sessions —
//! run at once, each population counted on its own.

use super::{idle, Expected, Run};
use crate::client::{Endpoint, Protocol};
use std::time::Duration;
use tokio::time::Instant;

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
                Protocol::Imap => {
                    conn.select().await?;
                }
                Protocol::Pop3 => conn.pop3_command("STAT").await?,
                Protocol::Managesieve => conn.sieve_command("LISTSCRIPTS").await?,
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
