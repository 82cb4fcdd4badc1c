//! `mailgate-loadgen`: measure an IMAP/POP3 server or proxy, serve as its
//! simulated back end, or model a cluster to measure the VPN cost of
//! proxying.
//!
//! Scenarios (`logins`, `fetch`, `retr`, `idle`, `mix`) run async clients on
//! a tokio runtime; every fetched body is checked against what the back end
//! holds, and a differing byte fails the run (exit status 1) instead of
//! becoming a statistic. Every run is bounded by `--duration` (and
//! optionally `--count`); targets are explicit and default to loopback.

mod client;
mod cluster;
mod report;
mod scenarios;
mod stats;
mod tls;
mod users;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use client::{Endpoint, Protocol, TlsMode};
use scenarios::{Expected, Load, Run};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Longest run accepted.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Parser)]
#[command(
    name = "mailgate-loadgen",
    version,
    about = "Load generator, simulated back end and VPN-cost model for IMAP/POP3 proxies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated back end until interrupted; prints its addresses.
    Backend(BackendArgs),
    /// connect → greeting → login → logout: closed loop (--clients) or open loop (--rate).
    Logins {
        #[command(flatten)]
        common: Common,
        /// Closed loop: concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Open loop: logins per second, latency measured from each intended start.
        #[arg(long, conflicts_with = "clients")]
        rate: Option<f64>,
        /// Open loop: most logins in flight; beyond, an attempt counts as `overload`.
        #[arg(long, default_value_t = 10_000)]
        max_in_flight: usize,
    },
    /// Logged-in sessions fetching messages (IMAP; with --protocol pop3, RETR).
    Fetch(FetchArgs),
    /// POP3 sessions retrieving messages (fetch with --protocol pop3).
    Retr(FetchArgs),
    /// Hold N logged-in sessions in IDLE (POP3: connected) for --duration.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Sessions to open.
        #[arg(long, default_value_t = 100)]
        sessions: u64,
        /// Sessions opened per second.
        #[arg(long, default_value_t = 500.0)]
        connect_rate: f64,
    },
    /// A realistic profile from a TOML file (IDLE clients, POP3 pollers, webmail bursts).
    Mix {
        #[command(flatten)]
        common: Common,
        /// The profile (see docs/loadgen.md).
        #[arg(long)]
        profile: PathBuf,
        /// POP3 address for the pollers (default: the target's host, port 110).
        #[arg(long)]
        pop3_target: Option<SocketAddr>,
    },
    /// Model B boxes (front end + back end each) and measure the VPN share of proxying.
    Cluster(cluster::ClusterArgs),
}

#[derive(Args, Clone)]
struct BackendArgs {
    /// Address to listen on (ports are chosen free and printed).
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Threads serving connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Password every user must give.
    #[arg(long, default_value = "pw")]
    password: String,
    /// Message sizes in bytes, comma-separated (message 1 first).
    #[arg(long, value_delimiter = ',', default_value = "2000,4194304")]
    sizes: Vec<usize>,
    /// Flip one byte in every message served (to test that clients notice).
    #[arg(long, hide = true)]
    corrupt: bool,
}

#[derive(Args, Clone)]
struct FetchArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Message numbers to fetch in turn (default: all of --sizes; 1 with
    /// --expect-file or --expect-size).
    #[arg(long, value_delimiter = ',')]
    messages: Vec<usize>,
    /// The simulated back end's message sizes, to know what to expect.
    #[arg(long, value_delimiter = ',', default_value = "2000,4194304")]
    sizes: Vec<usize>,
    /// Expect this file's bytes for every fetched message instead (a real back end).
    #[arg(long)]
    expect_file: Option<PathBuf>,
    /// Expect the simulated message of this size for every fetched message.
    #[arg(long, conflicts_with = "expect_file")]
    expect_size: Option<usize>,
}

/// Options shared by the client scenarios.
#[derive(Args, Clone)]
struct Common {
    /// Server to load.
    #[arg(long, default_value = "127.0.0.1:143")]
    target: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Imap)]
    protocol: Protocol,
    #[arg(long, value_enum, default_value_t = TlsMode::None)]
    tls: TlsMode,
    /// CA certificate(s) to verify the server with.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Accept any server certificate (test certificates on loopback).
    #[arg(long)]
    insecure: bool,
    /// Name sent in SNI and checked in the certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// How long to run (at most 24 h).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many operations.
    #[arg(long)]
    count: Option<u64>,
    /// Bound on one operation.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// User name template; `{i}` is the user number.
    #[arg(long, default_value = "user{i}@example.org")]
    user: String,
    /// How many users the template yields (numbers --first-user ..).
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 0)]
    first_user: u64,
    /// Users from a file instead: `name [password]` per line.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// Password for every user.
    #[arg(long, default_value = "pw")]
    password: String,
    /// Read the password from this file's first line.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Connect from this many loopback addresses (127.0.0.2 …), to exercise per-address limits.
    #[arg(long, default_value_t = 0)]
    source_addresses: u32,
    /// Client runtime threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Write an HdrHistogram interval log (1 s intervals, microseconds).
    #[arg(long)]
    hlog: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // Idle runs hold one descriptor per session.
    mailgate::runtime::raise_fd_limit();
    match dispatch(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Backend(args) => {
            let backend = mailgate::simulated_backend::SimulatedBackend::start_on(
                args.listen,
                args.threads.max(1),
                mailgate::simulated_backend::Mailbox {
                    password: args.password,
                    message_sizes: args.sizes,
                    corrupt: args.corrupt,
                },
            )?;
            println!("imap {}\npop3 {}", backend.imap, backend.pop3);
            use std::io::Write;
            std::io::stdout().flush()?;
            backend.wait();
            Ok(())
        }
        Command::Cluster(args) => cluster::run(args),
        Command::Logins {
            common,
            clients,
            rate,
            max_in_flight,
        } => {
            let load = match rate {
                Some(rate) if rate > 0.0 => Load::Open {
                    rate,
                    max_in_flight: max_in_flight.max(1),
                },
                Some(rate) => bail!("--rate must be positive, not {rate}"),
                None => Load::Closed {
                    clients: clients.max(1),
                },
            };
            let label = match load {
                Load::Closed { clients } => format!("closed loop, {clients} clients"),
                Load::Open { rate, .. } => format!("open loop, {rate}/s"),
            };
            execute("logins", &common, label, |run| scenarios::logins(run, load))
        }
        Command::Fetch(args) => fetch(args, "fetch"),
        Command::Retr(mut args) => {
            args.common.protocol = Protocol::Pop3;
            fetch(args, "retr")
        }
        Command::Idle {
            common,
            sessions,
            connect_rate,
        } => {
            if sessions > 1_000_000 {
                bail!("--sessions: at most 1 000 000");
            }
            let label = format!("{sessions} sessions at {connect_rate}/s");
            execute("idle", &common, label, |run| {
                scenarios::idle(run, sessions, connect_rate, None)
            })
        }
        Command::Mix {
            common,
            profile,
            pop3_target,
        } => {
            let text = std::fs::read_to_string(&profile)
                .with_context(|| format!("reading {}", profile.display()))?;
            let profile: scenarios::MixProfile =
                toml::from_str(&text).with_context(|| format!("profile {}", profile.display()))?;
            let expected = expected_simulated(
                &(1..=profile.messages.sizes.len()).collect::<Vec<_>>(),
                &profile.messages.sizes,
            );
            let pop3 = Endpoint {
                target: pop3_target.unwrap_or_else(|| SocketAddr::new(common.target.ip(), 110)),
                protocol: Protocol::Pop3,
                ..endpoint(&common)?
            };
            let label = format!(
                "{} idle, {} pollers every {:?}, {} webmail bursts/s × {}",
                profile.idle.clients,
                profile.pollers.clients,
                profile.pollers.interval,
                profile.webmail.bursts_per_second,
                profile.webmail.sessions_per_burst
            );
            execute("mix", &common, label, |run| {
                scenarios::mix(run, pop3, profile, expected)
            })
        }
    }
}

fn fetch(args: FetchArgs, scenario: &'static str) -> anyhow::Result<()> {
    let messages = if !args.messages.is_empty() {
        args.messages.clone()
    } else if args.expect_file.is_some() || args.expect_size.is_some() {
        vec![1]
    } else {
        (1..=args.sizes.len()).collect()
    };
    if messages.is_empty() {
        bail!("no messages to fetch");
    }
    let expected: Expected = match (&args.expect_file, args.expect_size) {
        (Some(file), _) => {
            let body =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            Arc::new(messages.iter().map(|&n| (n, body.clone())).collect())
        }
        (None, Some(size)) => Arc::new(
            messages
                .iter()
                .map(|&n| (n, mailgate::simulated_backend::message(n, size)))
                .collect(),
        ),
        (None, None) => {
            if let Some(n) = messages.iter().find(|&&n| n == 0 || n > args.sizes.len()) {
                bail!(
                    "message {n} is not among the {} of --sizes",
                    args.sizes.len()
                );
            }
            expected_simulated(&messages, &args.sizes)
        }
    };
    let label = format!("{} sessions, messages {messages:?}", args.clients);
    let clients = args.clients.max(1);
    execute(scenario, &args.common, label, move |run| {
        scenarios::fetch(run, clients, messages, expected)
    })
}

fn expected_simulated(messages: &[usize], sizes: &[usize]) -> Expected {
    let map: HashMap<usize, Vec<u8>> = messages
        .iter()
        .filter(|&&n| n >= 1 && n <= sizes.len())
        .map(|&n| (n, mailgate::simulated_backend::message(n, sizes[n - 1])))
        .collect();
    Arc::new(map)
}

fn endpoint(common: &Common) -> anyhow::Result<Endpoint> {
    let tls_config = if common.tls == TlsMode::None {
        None
    } else {
        Some(tls::client_config(
            common.ca_file.as_deref(),
            common.insecure,
        )?)
    };
    let server_name = rustls::pki_types::ServerName::try_from(common.server_name.clone())
        .with_context(|| format!("--server-name {}", common.server_name))?;
    Ok(Endpoint {
        target: common.target,
        protocol: common.protocol,
        tls: common.tls,
        tls_config,
        server_name,
    })
}

/// Builds the run, starts the ticker, runs `scenario` on a runtime, and
/// reports. Fails (exit 1) when any body differed.
fn execute<F, Fut>(
    name: &'static str,
    common: &Common,
    load: String,
    scenario: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Run) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if common.duration > MAX_DURATION || common.duration.is_zero() {
        bail!("--duration must be between 1 ms and 24 h");
    }
    let password = match &common.password_file {
        Some(path) => users::password_from_file(path)?,
        None => common.password.clone(),
    };
    let users = match &common.users_file {
        Some(path) => users::Users::from_file(path, &password)?,
        None => users::Users::range(&common.user, common.first_user, common.users, &password)?,
    };
    let endpoint = endpoint(common)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = common.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.enable_all().build()?;
    let stats = stats::Stats::new();
    let progress = if common.quiet || common.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let run = Run {
        endpoint,
        users: Arc::new(users),
        sources: users::Sources::spread(common.source_addresses)?,
        deadline: tokio::time::Instant::now() + common.duration,
        remaining: Arc::new(AtomicU64::new(common.count.unwrap_or(u64::MAX))),
        timeout: common.timeout,
        stats: stats.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let ticker = runtime.spawn(
        stats
            .clone()
            .ticker(name, common.hlog.clone(), progress, stopped),
    );
    let work = runtime.spawn(scenario(run));
    runtime.block_on(async {
        let _ = work.await;
        let _ = stop.send(());
        ticker
            .await
            .context("ticker")?
            .context("writing the interval log")
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let summary = report::Summary::new(
        name,
        scenarios::protocol_name(common.protocol),
        match common.tls {
            TlsMode::None => "plaintext",
            TlsMode::Starttls => "STARTTLS",
            TlsMode::Implicit => "implicit TLS",
        },
        &common.target.to_string(),
        load,
        stats.totals(),
    );
    if common.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.text());
    }
    if let Some(path) = &common.report {
        std::fs::write(path, summary.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if stats.mismatches() > 0 {
        bail!(
            "{} message bodies differed from what the back end holds",
            stats.mismatches()
        );
    }
    Ok(())
}
