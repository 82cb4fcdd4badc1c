//! Closed-loop scenarios: each client thread repeats its operation until the
//! deadline; latencies go into one HdrHistogram per thread, merged at the end.

use hdrhistogram::Histogram;
use mailgate::check_client::{ImapClient, Pop3Client};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a scenario runs against.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: SocketAddr,
    pub pop3: bool,
    pub clients: usize,
    pub duration: Duration,
    pub user: String,
    pub password: String,
}

impl Options {
    fn user(&self, client: usize) -> String {
        self.user.replace("{i}", &client.to_string())
    }
}

/// Totals of a run.
pub struct Summary {
    pub scenario: &'static str,
    pub operations: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub first_error: Option<String>,
}

impl Summary {
    pub fn print(&self, json: bool) {
        let secs = self.elapsed.as_secs_f64();
        let rate = self.operations as f64 / secs;
        let mib_s = self.bytes as f64 / secs / (1024.0 * 1024.0);
        let q = |p: f64| self.latency_us.value_at_quantile(p) as f64 / 1000.0;
        if json {
            println!(
                "{{\"scenario\":\"{}\",\"operations\":{},\"errors\":{},\"seconds\":{secs:.3},\"per_second\":{rate:.1},\"mib_per_second\":{mib_s:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
                self.scenario, self.operations, self.errors, q(0.5), q(0.9), q(0.99), self.latency_us.max() as f64 / 1000.0
            );
        } else {
            println!(
                "{}: {} ok, {} errors in {secs:.2}s: {rate:.1}/s, {mib_s:.1} MiB/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
                self.scenario, self.operations, self.errors, q(0.5), q(0.9), q(0.99), self.latency_us.max() as f64 / 1000.0
            );
            if let Some(e) = &self.first_error {
                println!("first error: {e}");
            }
        }
    }
}

struct ThreadResult {
    operations: u64,
    errors: u64,
    bytes: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn run_threads(
    scenario: &'static str,
    options: &Options,
    body: impl Fn(usize, Instant, &mut ThreadResult) + Send + Sync + Clone + 'static,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let deadline = started + options.duration;
    let threads: Vec<_> = (0..options.clients)
        .map(|i| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut r = ThreadResult {
                    operations: 0,
                    errors: 0,
                    bytes: 0,
                    latency: histogram(),
                    first_error: None,
                };
                body(i, deadline, &mut r);
                r
            })
        })
        .collect();
    let mut summary = Summary {
        scenario,
        operations: 0,
        errors: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
        first_error: None,
    };
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        summary.operations += r.operations;
        summary.errors += r.errors;
        summary.bytes += r.bytes;
        summary.latency_us.add(&r.latency)?;
        summary.first_error = summary.first_error.or(r.first_error);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn record_error(r: &mut ThreadResult, e: String) {
    r.errors += 1;
    r.first_error.get_or_insert(e);
}

/// Connect → greeting → login → logout, repeated.
pub fn logins(options: &Options) -> anyhow::Result<Summary> {
    let o = options.clone();
    run_threads("logins", options, move |i, deadline, r| {
        let user = o.user(i);
        while Instant::now() < deadline {
            let start = Instant::now();
            match login_once(&o, &user) {
                Ok(()) => {
                    r.operations += 1;
                    let _ = r.latency.record(start.elapsed().as_micros() as u64);
                }
                Err(e) => record_error(r, e),
            }
        }
    })
}

fn login_once(o: &Options, user: &str) -> Result<(), String> {
    if o.pop3 {
        let mut c = Pop3Client::connect(o.target).map_err(|e| e.to_string())?;
        let status = c.login(user, &o.password).map_err(|e| e.to_string())?;
        if !status.starts_with("+OK") {
            return Err(format!("login refused: {status}"));
        }
        c.command("QUIT").map_err(|e| e.to_string())?;
    } else {
        let mut c = ImapClient::connect(o.target).map_err(|e| e.to_string())?;
        let r = c.login(user, &o.password).map_err(|e| e.to_string())?;
        if !r.is_ok() {
            return Err(format!("login refused: {} {}", r.status, r.text));
        }
        c.logout().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One login per client, then the same message fetched until the deadline;
/// every body is compared with `expected`.
pub fn fetch(options: &Options, message: usize, expected: Vec<u8>) -> anyhow::Result<Summary> {
    let o = options.clone();
    let expected = std::sync::Arc::new(expected);
    run_threads("fetch", options, move |i, deadline, r| {
        let user = o.user(i);
        if let Err(e) = fetch_loop(&o, &user, message, &expected, deadline, r) {
            record_error(r, e);
        }
    })
}

fn fetch_loop(
    o: &Options,
    user: &str,
    message: usize,
    expected: &[u8],
    deadline: Instant,
    r: &mut ThreadResult,
) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    let check = |body: Vec<u8>, start: Instant, r: &mut ThreadResult| {
        if body == expected {
            r.operations += 1;
            r.bytes += body.len() as u64;
            let _ = r.latency.record(start.elapsed().as_micros() as u64);
        } else {
            record_error(
                r,
                format!(
                    "body differs: {} bytes, expected {}",
                    body.len(),
                    expected.len()
                ),
            );
        }
    };
    if o.pop3 {
        let mut c = Pop3Client::connect(o.target).map_err(err)?;
        let status = c.login(user, &o.password).map_err(err)?;
        if !status.starts_with("+OK") {
            return Err(format!("login refused: {status}"));
        }
        while Instant::now() < deadline {
            let start = Instant::now();
            check(c.retrieve(message).map_err(err)?, start, r);
        }
        let _ = c.command("QUIT");
    } else {
        let mut c = ImapClient::connect(o.target).map_err(err)?;
        let login = c.login(user, &o.password).map_err(err)?;
        if !login.is_ok() {
            return Err(format!("login refused: {}", login.text));
        }
        if !c.command("EXAMINE INBOX").map_err(err)?.is_ok() {
            return Err("EXAMINE failed".into());
        }
        while Instant::now() < deadline {
            let start = Instant::now();
            let mut resp = c
                .command(&format!("FETCH {message} BODY.PEEK[]"))
                .map_err(err)?;
            if !resp.is_ok() || resp.literals.len() != 1 {
                return Err(format!("FETCH failed: {} {}", resp.status, resp.text));
            }
            check(resp.literals.remove(0), start, r);
        }
        let _ = c.logout();
    }
    Ok(())
}
