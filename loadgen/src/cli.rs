//! The command line: subcommands and their options.

use crate::client::{Mechanism, Protocol, TlsMode};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Parser)]
#[command(
    name = "mailgate-loadgen",
    version,
    about = "Load generator, simulated back end and VPN-cost model for IMAP/POP3 proxies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Webmail page views: after the login, `SELECT INBOX` and `FETCH 1
        /// BODY.PEEK[]`, then `LOGOUT`; the latency is to the login's answer.
        #[arg(long)]
        page_view: bool,
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
    Cluster(crate::cluster::ClusterArgs),
    /// Write the mail corpus (built from real files on this system) as one
    /// `.eml` file per message, to deliver into a real server.
    Corpus {
        #[command(flatten)]
        corpus: CorpusArgs,
        /// Folder to write into (created).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The corpus: mail built from real files on this system (docs/loadgen.md).
#[derive(Args, Clone, Debug)]
pub struct CorpusArgs {
    /// Messages built.
    #[arg(long, default_value_t = 200)]
    pub corpus_messages: usize,
    /// Sizes from this table (`bytes share` per line) instead of the
    /// built-in log-normal.
    #[arg(long)]
    pub corpus_sizes: Option<PathBuf>,
    /// Seed of every choice (same seed and system, same corpus).
    #[arg(long, default_value_t = 1)]
    pub corpus_seed: u64,
}

impl CorpusArgs {
    /// Builds the corpus.
    pub fn build(&self) -> anyhow::Result<mailgate_testkit::corpus::Corpus> {
        use anyhow::Context;
        use mailgate_testkit::corpus::{build, Options, Sizes};
        if !(1..=10_000).contains(&self.corpus_messages) {
            anyhow::bail!("--corpus-messages must be 1 ..= 10 000");
        }
        let sizes = match &self.corpus_sizes {
            Some(path) => Sizes::parse_table(
                &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
            )?,
            None => Sizes::DEFAULT,
        };
        Ok(build(&Options {
            messages: self.corpus_messages,
            seed: self.corpus_seed,
            sizes,
            ..Options::default()
        })?)
    }
}

#[derive(Args, Clone)]
pub struct BackendArgs {
    /// Address to listen on (ports are chosen free and printed).
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// Threads serving connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Password every user must give.
    #[arg(long, default_value = "pw")]
    pub password: String,
    /// Message sizes in bytes, comma-separated (message 1 first).
    #[arg(long, value_delimiter = ',', default_value = "2000,4194304")]
    pub sizes: Vec<usize>,
    /// Flip one byte in every message served (to test that clients notice).
    #[arg(long, hide = true)]
    pub corrupt: bool,
    /// Serve the corpus (mail built from real files on this system)
    /// instead of synthetic messages of --sizes.
    #[arg(long)]
    pub corpus: bool,
    #[command(flatten)]
    pub corpus_args: CorpusArgs,
    /// Announce COMPRESS=DEFLATE after login and compress when asked.
    #[arg(long)]
    pub compress: bool,
}

#[derive(Args, Clone)]
pub struct FetchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Message numbers to fetch in turn (default: all of --sizes; 1 with
    /// --expect-file or --expect-size).
    #[arg(long, value_delimiter = ',')]
    pub messages: Vec<usize>,
    /// The simulated back end's message sizes, to know what to expect.
    #[arg(long, value_delimiter = ',', default_value = "2000,4194304")]
    pub sizes: Vec<usize>,
    /// Expect this file's bytes for every fetched message instead (a real back end).
    #[arg(long)]
    pub expect_file: Option<PathBuf>,
    /// Expect the simulated message of this size for every fetched message.
    #[arg(long, conflicts_with = "expect_file")]
    pub expect_size: Option<usize>,
}

/// Options shared by the client scenarios.
#[derive(Args, Clone)]
pub struct Common {
    /// Server to load.
    #[arg(long, default_value = "127.0.0.1:143")]
    pub target: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Imap)]
    pub protocol: Protocol,
    /// How to log in: the protocol's own login, or a SASL mechanism with
    /// an initial response (for oauthbearer and xoauth2 the password, or
    /// each user's in --users-file, is the bearer token).
    #[arg(long, value_enum, default_value_t = Mechanism::Native)]
    pub mechanism: Mechanism,
    #[arg(long, value_enum, default_value_t = TlsMode::None)]
    pub tls: TlsMode,
    /// CA certificate(s) to verify the server with.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (test certificates on loopback).
    #[arg(long)]
    pub insecure: bool,
    /// Name sent in SNI and checked in the certificate.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// How long to run (at most 24 h).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Stop after this many operations.
    #[arg(long)]
    pub count: Option<u64>,
    /// Bound on one operation.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// User name template; `{i}` is the user number.
    #[arg(long, default_value = "user{i}@example.org")]
    pub user: String,
    /// How many users the template yields (numbers --first-user ..).
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    #[arg(long, default_value_t = 0)]
    pub first_user: u64,
    /// Users from a file instead: `name [password]` per line.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// Password for every user.
    #[arg(long, default_value = "pw")]
    pub password: String,
    /// Read the password from this file's first line.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Connect from this many loopback addresses (127.0.0.2 …), to exercise per-address limits.
    #[arg(long, default_value_t = 0)]
    pub source_addresses: u32,
    /// Client runtime threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write an HdrHistogram interval log (1 s intervals, microseconds).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
