//! `mailgate-loadgen`: measure an IMAP/POP3 server or proxy.
//!
//! This first cut has closed-loop `logins` and `fetch` scenarios (blocking
//! clients, one thread each) and the simulated back end. Every fetched body
//! is checked against the expected bytes: a differing byte is an error, not a
//! statistic. Runs are bounded by `--duration`.

mod scenarios;

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "mailgate-loadgen",
    version,
    about = "Load generator for IMAP/POP3 proxies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Protocol {
    Imap,
    Pop3,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated back end on loopback until interrupted.
    Backend {
        /// Password every user must give.
        #[arg(long, default_value = "pw")]
        password: String,
        /// Message sizes in bytes, comma-separated (message 1 first).
        #[arg(long, value_delimiter = ',', default_value = "2000,4194304")]
        sizes: Vec<usize>,
    },
    /// Connect, log in, log out, in a closed loop.
    Logins(Common),
    /// Log in once per client, then fetch one message repeatedly.
    Fetch {
        #[command(flatten)]
        common: Common,
        /// Message number to fetch.
        #[arg(long, default_value_t = 1)]
        message: usize,
        /// File holding the expected message bytes.
        #[arg(long, required_unless_present = "expect_size")]
        expect_file: Option<PathBuf>,
        /// Expect the simulated back end's message of this size instead.
        #[arg(long, conflicts_with = "expect_file")]
        expect_size: Option<usize>,
    },
}

/// Options shared by the client scenarios.
#[derive(clap::Args, Clone)]
struct Common {
    /// Server to load (loopback by default).
    #[arg(long, default_value = "127.0.0.1:143")]
    target: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Imap)]
    protocol: Protocol,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// How long to run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// User name; `{i}` is replaced by the client number.
    #[arg(long, default_value = "user{i}@example.org")]
    user: String,
    /// Password.
    #[arg(long, default_value = "pw")]
    password: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Backend { password, sizes } => {
            let backend = mailgate::simulated_backend::SimulatedBackend::start(
                mailgate::simulated_backend::Mailbox {
                    password,
                    message_sizes: sizes,
                },
            )?;
            println!("imap {}\npop3 {}", backend.imap, backend.pop3);
            loop {
                std::thread::park();
            }
        }
        Command::Logins(common) => {
            let summary = scenarios::logins(&common.clone().into())?;
            summary.print(common.json);
        }
        Command::Fetch {
            common,
            message,
            expect_file,
            expect_size,
        } => {
            let expected = match (expect_file, expect_size) {
                (Some(file), _) => std::fs::read(&file)?,
                (None, Some(size)) => mailgate::simulated_backend::message(message, size),
                (None, None) => anyhow::bail!("--expect-file or --expect-size is required"),
            };
            let summary = scenarios::fetch(&common.clone().into(), message, expected)?;
            summary.print(common.json);
        }
    }
    Ok(())
}

impl From<Common> for scenarios::Options {
    fn from(c: Common) -> Self {
        scenarios::Options {
            target: c.target,
            pop3: c.protocol == Protocol::Pop3,
            clients: c.clients,
            duration: c.duration,
            user: c.user,
            password: c.password,
        }
    }
}
