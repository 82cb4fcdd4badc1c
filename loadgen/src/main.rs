//! `mailgate-loadgen`: measure an IMAP/POP3 server or proxy, serve as its
//! simulated back end, or model a cluster to measure the VPN cost of
//! proxying.
//!
//! Scenarios (`logins`, `fetch`, `retr`, `idle`, `mix`) run async clients on
//! a tokio runtime; every fetched body is checked against what the back end
//! holds, and a differing byte fails the run (exit status 1) instead of
//! becoming a statistic. Every run is bounded by `--duration` (and
//! optionally `--count`); targets are explicit and default to loopback.

// Non-test code says why a value must be there (`expect`) or handles its absence.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod cli;
mod client;
mod cluster;
mod report;
mod run;
mod scenarios;
mod stats;
mod tls;
mod users;

use clap::Parser;
use cli::{Cli, Command};
use client::Protocol;

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
        Command::Backend(args) => run::backend(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Corpus { corpus, out } => run::corpus(&corpus, &out),
        Command::Logins {
            common,
            clients,
            rate,
            max_in_flight,
            page_view,
        } => run::logins(&common, clients, rate, max_in_flight, page_view),
        Command::Fetch(args) => run::fetch(args, "fetch"),
        Command::Retr(mut args) => {
            args.common.protocol = Protocol::Pop3;
            run::fetch(args, "retr")
        }
        Command::Idle {
            common,
            sessions,
            connect_rate,
        } => run::idle(&common, sessions, connect_rate),
        Command::Mix {
            common,
            profile,
            pop3_target,
        } => run::mix(&common, &profile, pop3_target),
    }
}
