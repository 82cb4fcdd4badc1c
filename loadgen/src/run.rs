//! Running a subcommand: the run built from the options, the scenario on a
//! tokio runtime with its ticker, and the report.

use crate::cli::{BackendArgs, Common, FetchArgs, MAX_DURATION};
use crate::client::{Endpoint, Protocol, TlsMode};
use crate::scenarios::{self, Expected, Load, Run};
use crate::{report, stats, tls, users};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// `backend`: the simulated back end until interrupted.
pub fn backend(args: BackendArgs) -> anyhow::Result<()> {
    let messages = if args.corpus {
        let corpus = args.corpus_args.build()?;
        eprintln!("corpus: {}", corpus.summary());
        corpus.messages
    } else {
        Vec::new()
    };
    let backend = mailgate::simulated_backend::SimulatedBackend::start_on(
        args.listen,
        args.threads.max(1),
        mailgate::simulated_backend::Mailbox {
            password: args.password,
            message_sizes: args.sizes,
            corrupt: args.corrupt,
            uid_validity: 1,
            messages,
            compress: args.compress,
        },
    )?;
    println!("imap {}\npop3 {}", backend.imap, backend.pop3);
    use std::io::Write;
    std::io::stdout().flush()?;
    backend.wait();
    Ok(())
}

/// `logins`: closed loop (`clients`) or open loop (`rate`).
pub fn logins(
    common: &Common,
    clients: usize,
    rate: Option<f64>,
    max_in_flight: usize,
    page_view: bool,
) -> anyhow::Result<()> {
    if page_view && common.protocol != Protocol::Imap {
        bail!("--page-view is for IMAP (SELECT and FETCH)");
    }
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
    let (name, label) = if page_view {
        (
            "page views",
            format!("{label}; SELECT + FETCH 1 per session, latency to the login's answer"),
        )
    } else {
        ("logins", label)
    };
    execute(name, common, label, |run| {
        scenarios::logins(run, load, page_view)
    })
}

/// `idle`: hold `sessions` open for the run.
pub fn idle(common: &Common, sessions: u64, connect_rate: f64) -> anyhow::Result<()> {
    if sessions > 1_000_000 {
        bail!("--sessions: at most 1 000 000");
    }
    let label = format!("{sessions} sessions at {connect_rate}/s");
    execute("idle", common, label, |run| {
        scenarios::idle(run, sessions, connect_rate, None)
    })
}

/// `mix`: the profile in `profile`.
pub fn mix(common: &Common, profile: &Path, pop3_target: Option<SocketAddr>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(profile)
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
        ..endpoint(common)?
    };
    let label = format!(
        "{} idle, {} pollers every {:?}, {} webmail bursts/s × {}",
        profile.idle.clients,
        profile.pollers.clients,
        profile.pollers.interval,
        profile.webmail.bursts_per_second,
        profile.webmail.sessions_per_burst
    );
    execute("mix", common, label, |run| {
        scenarios::mix(run, pop3, profile, expected)
    })
}

/// `fetch` / `retr`.
pub fn fetch(args: FetchArgs, scenario: &'static str) -> anyhow::Result<()> {
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
        mechanism: common.mechanism,
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
    publish(name, common, load, &stats)?;
    if stats.mismatches() > 0 {
        bail!(
            "{} message bodies differed from what the back end holds",
            stats.mismatches()
        );
    }
    Ok(())
}

/// Prints the summary (text or JSON) and writes the HTML report if asked.
fn publish(
    name: &'static str,
    common: &Common,
    load: String,
    stats: &stats::Stats,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// `corpus`: the corpus written as `NNNN.eml` files.
pub fn corpus(args: &crate::cli::CorpusArgs, out: &std::path::Path) -> anyhow::Result<()> {
    let corpus = args.build()?;
    std::fs::create_dir_all(out)?;
    for (i, message) in corpus.messages.iter().enumerate() {
        std::fs::write(out.join(format!("{:04}.eml", i + 1)), message)?;
    }
    println!("{}", corpus.summary());
    Ok(())
}
