//! The `mailgate` command: run the proxy, check a config, or run the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mailgate", version, about = "IMAP/POP3 front-end proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy until SIGTERM/SIGINT.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Write `<protocol> <address>` lines here once all listeners are up.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Load and validate a configuration file, then exit.
    CheckConfig {
        /// Configuration file (TOML).
        config: PathBuf,
    },
    /// Talk to a running mailgate's admin listener.
    Admin {
        /// Admin address (the `[admin] address` of the running instance).
        #[arg(long, default_value = "127.0.0.1:9143")]
        address: std::net::SocketAddr,
        /// File holding the bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Start on loopback with an embedded config, a static map and a
    /// simulated back end; print how to connect.
    Demo {
        /// Run one IMAP and one POP3 session through the proxy and exit.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Print the Prometheus metrics.
    Metrics,
    /// Drop a user's cached route on every worker.
    Invalidate {
        /// Login name.
        user: String,
    },
    /// Close a user's sessions so that clients reconnect (mailbox moves).
    Kick {
        /// Login name.
        user: String,
    },
    /// List relaying sessions (of one user, or all).
    Sessions {
        /// Login name.
        user: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    init_logging();
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::CheckConfig { config } => {
            let loaded = mailgate::config::load_file(&config)?;
            println!(
                "{}: ok ({} listener(s), {} static map entries)",
                config.display(),
                loaded.config.listen.len(),
                loaded.static_map.as_ref().map_or(0, |m| m.len())
            );
            Ok(())
        }
        Command::Run { config, ready_file } => {
            let loaded = Arc::new(mailgate::config::load_file(&config)?);
            mailgate::runtime::raise_fd_limit();
            let server = mailgate::runtime::start(loaded.clone())?;
            for (protocol, address) in server.addresses() {
                tracing::info!(%protocol, %address, workers = server.workers(), "listening");
            }
            let admin = start_admin(&loaded, &server)?;
            if let Some(path) = ready_file {
                write_ready_file(&path, server.addresses(), admin)
                    .context("writing the ready file")?;
            }
            wait_for_stop_signal_or(|| match mailgate::config::load_file(&config) {
                Ok(reloaded) => {
                    server.reload_tls(reloaded.tls);
                    tracing::info!("SIGHUP: certificates reloaded");
                }
                Err(e) => {
                    tracing::error!("SIGHUP: reload failed, keeping the current certificates: {e}")
                }
            })?;
            tracing::info!("stopping: no new connections, draining sessions");
            server.shutdown();
            server.join();
            Ok(())
        }
        Command::Admin {
            address,
            token_file,
            action,
        } => {
            let token = match token_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                ),
                None => None,
            };
            let encode = |u: &str| -> String {
                u.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect()
            };
            let (method, path) = match &action {
                AdminAction::Metrics => ("GET", "/metrics".to_owned()),
                AdminAction::Invalidate { user } => {
                    ("POST", format!("/cache/invalidate?user={}", encode(user)))
                }
                AdminAction::Kick { user } => {
                    ("POST", format!("/sessions/kick?user={}", encode(user)))
                }
                AdminAction::Sessions { user } => (
                    "GET",
                    user.as_deref().map_or("/sessions".to_owned(), |u| {
                        format!("/sessions?user={}", encode(u))
                    }),
                ),
            };
            let (status, body) =
                admin_request(address, method, &path, token.as_deref().map(str::trim))?;
            print!("{body}");
            anyhow::ensure!(status == 200, "admin answered {status}");
            Ok(())
        }
        Command::Demo { check } => {
            mailgate::runtime::raise_fd_limit();
            mailgate::demo::run(check, wait_for_stop_signal)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Blocks until SIGTERM or SIGINT; a second signal exits at once.
fn wait_for_stop_signal() -> anyhow::Result<()> {
    wait_for_stop_signal_or(|| tracing::info!("SIGHUP ignored here"))
}

/// Like `wait_for_stop_signal`, running `on_hangup` for each SIGHUP.
fn wait_for_stop_signal_or(mut on_hangup: impl FnMut()) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    for signal in signals.forever() {
        if signal == SIGHUP {
            on_hangup();
        } else {
            break;
        }
    }
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("mailgate: second signal, exiting now");
            std::process::exit(130);
        }
    });
    Ok(())
}

/// One HTTP request to the admin listener: status and body.
fn admin_request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5))
            .with_context(|| format!("connecting to the admin listener {address}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("malformed admin response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// Starts the admin listener when `[admin]` is configured; its address.
fn start_admin(
    loaded: &mailgate::config::Loaded,
    server: &mailgate::runtime::RunningServer,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(admin) = &loaded.config.admin else {
        return Ok(None);
    };
    let token = match &admin.token_file {
        Some(file) => {
            let path = loaded.base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the admin token file {}", path.display()))?;
            Some(text.trim().to_owned())
        }
        None => None,
    };
    let listener = std::net::TcpListener::bind(admin.address)
        .with_context(|| format!("cannot listen on {} (admin)", admin.address))?;
    let address = listener.local_addr()?;
    mailgate::metrics::admin::spawn(
        listener,
        mailgate::metrics::admin::Admin {
            workers: server.workers_state.clone(),
            invalidations: server.invalidations(),
            token,
        },
    )?;
    tracing::info!(%address, "admin listening");
    if let Some(path) = &admin.hlog {
        let path = loaded.base_dir.join(path);
        let workers = server
            .workers_state
            .iter()
            .map(|w| w.metrics.clone())
            .collect();
        mailgate::metrics::hlog::spawn(path.clone(), admin.hlog_interval, workers)
            .with_context(|| format!("opening the hlog {}", path.display()))?;
    }
    Ok(Some(address))
}

/// Writes `<protocol> <address>` lines (and `admin <address>`) atomically.
fn write_ready_file(
    path: &std::path::Path,
    addresses: &[(mailgate::config::Protocol, std::net::SocketAddr)],
    admin: Option<std::net::SocketAddr>,
) -> std::io::Result<()> {
    let mut text: String = addresses
        .iter()
        .map(|(p, a)| format!("{p} {a}\n"))
        .collect();
    if let Some(a) = admin {
        text.push_str(&format!("admin {a}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
