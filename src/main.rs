//! The `mailgate` command: run the proxy, check a config, or run the demo.

// Non-test code says why a value must be there (`expect`) or handles its absence.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use mailgate::admin::client::{Action, AdminClient};
use mailgate::runtime::Live;
use std::path::{Path, PathBuf};
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
        /// Write the process id here once all listeners are up (removed at
        /// exit when the folder lets the running user remove it).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Take over from a running mailgate: share its ports until it is
        /// stopped (without this, a port another process listens on is a
        /// start-up error).
        #[arg(long)]
        handover: bool,
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
    /// Print a mailgate configuration equivalent to a Perdition one (and
    /// write its user map as a static map file); every option that does not
    /// carry over is listed at the end as `# not carried over: …`.
    ImportPerdition {
        /// The Perdition configuration file (perdition.conf).
        file: PathBuf,
        /// The flat popmap (`user:host[:port]`), or popmap.re with the
        /// posix_regex map library.
        #[arg(long)]
        popmap: Option<PathBuf>,
        /// Where to write the static map; the TOML names it as given, so
        /// save the TOML in the same folder (an existing file is kept).
        #[arg(long, default_value = "users.map")]
        map_out: PathBuf,
        /// Where to write the password of a MySQL or PostgreSQL map (mode
        /// 0600; the TOML names it as given; an existing file is kept).
        #[arg(long, default_value = "sql.pw")]
        password_out: PathBuf,
        /// Perdition modes to import: imap4, imap4s, pop3, pop3s,
        /// managesieve (or the program names, perdition.managesieve …;
        /// default: those --defaults starts, else the file's `protocol`,
        /// else IMAP4, IMAP4S, POP3 and POP3S).
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
        /// The init script's settings (/etc/default/perdition, or
        /// /etc/sysconfig/perdition): the modes it starts and the
        /// command-line flags it gives them (FLAGS, IMAP4_FLAGS…), which
        /// override the file.
        #[arg(long)]
        defaults: Option<PathBuf>,
    },
    /// Print the man page (roff): `mailgate man > mailgate.1`.
    Man,
    /// Print shell completions, e.g. `mailgate completions bash >
    /// /usr/share/bash-completion/completions/mailgate`.
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
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
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Run { config, .. } => mailgate::config::log_format_of(config),
        _ => mailgate::config::LogFormat::Text,
    };
    init_logging(format);
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run {
            config,
            ready_file,
            pid_file,
            handover,
        } => run(&config, ready_file, pid_file, handover),
        Command::Admin {
            address,
            token_file,
            action,
        } => admin(address, token_file, action),
        Command::ImportPerdition {
            file,
            popmap,
            map_out,
            password_out,
            modes,
            defaults,
        } => import_perdition(
            &file,
            popmap.as_deref(),
            &map_out,
            &password_out,
            &modes,
            defaults.as_deref(),
        ),
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "mailgate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Demo { check } => {
            mailgate::runtime::raise_fd_limit();
            mailgate::demo::run(check, wait_for_stop_signal)
        }
    }
}

fn import_perdition(
    file: &Path,
    popmap: Option<&Path>,
    map_out: &Path,
    password_out: &Path,
    modes: &[String],
    defaults: Option<&Path>,
) -> anyhow::Result<()> {
    use mailgate::import::perdition::{import, Input, Mode};
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let config = read(file)?;
    let popmap = popmap.map(read).transpose()?;
    let defaults = defaults.map(read).transpose()?;
    let modes = if modes.is_empty() {
        None
    } else {
        let parsed: Option<Vec<Mode>> = modes.iter().map(|m| Mode::parse(m)).collect();
        Some(parsed.context("--modes takes imap4, imap4s, pop3, pop3s and managesieve")?)
    };
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let map_name = map_out.display().to_string();
    let password_name = password_out.display().to_string();
    let imported = import(&Input {
        source: &source,
        config: &config,
        popmap: popmap.as_deref(),
        map_out: &map_name,
        password_out: &password_name,
        modes,
        defaults: defaults.as_deref(),
    });
    for warning in &imported.warnings {
        eprintln!("mailgate: {warning}");
    }
    if let Some(map) = &imported.map {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(map_out)
            .with_context(|| {
                format!("writing the static map {map_name} (an existing file is never overwritten)")
            })?;
        std::io::Write::write_all(&mut f, map.as_bytes())
            .with_context(|| format!("writing {map_name}"))?;
        let entries = map
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        eprintln!("mailgate: wrote {map_name} ({entries} entries)");
    }
    if let Some(password) = &imported.password {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(password_out)
            .with_context(|| {
                format!("writing the database password to {password_name} (an existing file is never overwritten)")
            })?;
        let mut text = password.expose().to_vec();
        text.push(b'\n');
        std::io::Write::write_all(&mut f, &text)
            .with_context(|| format!("writing {password_name}"))?;
        zeroize::Zeroize::zeroize(&mut text);
        eprintln!("mailgate: wrote the SQL map's password to {password_name} (mode 0600)");
    }
    print!("{}", imported.toml);
    Ok(())
}

/// mimalloc reserves its arena eagerly; on hosts whose transparent huge
/// pages are `always` (a common default), the few pages an idle daemon
/// touches there become 2 MiB pages: 14.6 MiB of anonymous memory instead
/// of about 1.4 MiB (perf/footprint.sh). A proxy's allocations are small
/// and short-lived; huge pages buy it nothing. Best effort: a kernel
/// without the call leaves things as they were.
/// It runs as an ELF constructor, before the Rust runtime's first
/// allocation sets mimalloc's arena up (from `main` it came too late for
/// the pages touched until then: 5.0 MiB instead of 1.4).
extern "C" fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's memory policy for pages faulted from now on; it allocates
    // nothing and needs nothing initialized.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[used]
#[link_section = ".init_array"]
static DISABLE_TRANSPARENT_HUGE_PAGES: extern "C" fn() = disable_transparent_huge_pages;

/// Loads `path` and everything it names, as `run` would.
fn load(path: &Path) -> anyhow::Result<Live> {
    let loaded = mailgate::config::load_file(path)?;
    Ok(Live::build(Arc::new(loaded))?)
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let live = load(path)?;
    let runtime = &live.loaded.config.runtime;
    if let Some(user) = &runtime.user {
        mailgate::runtime::privileges::resolve(user, runtime.group.as_deref())?;
    }
    let io = mailgate::runtime::resolve_io(runtime.io, runtime.ring_entries)?;
    println!(
        "{}: ok ({} listener(s), {}, io {})",
        path.display(),
        live.loaded.config.listen.len(),
        live.directory.summary(),
        io.as_str()
    );
    Ok(())
}

fn run(
    path: &Path,
    ready_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    handover: bool,
) -> anyhow::Result<()> {
    use mailgate::runtime::privileges;
    let signals = stop_signals()?;
    let live = load(path)?;
    let loaded = live.loaded.clone();
    let runtime = &loaded.config.runtime;
    privileges::check_start(runtime.user.as_deref(), runtime.allow_root)?;
    let account = match &runtime.user {
        Some(user) => Some(privileges::resolve(user, runtime.group.as_deref())?),
        None => None,
    };
    mailgate::runtime::raise_fd_limit();
    let sharing = if handover {
        mailgate::runtime::listener::Sharing::Handover
    } else {
        mailgate::runtime::listener::Sharing::Exclusive
    };
    let server = mailgate::runtime::start(live, sharing)?;
    for (protocol, address) in server.addresses() {
        tracing::info!(%protocol, %address, workers = server.workers(), io = server.io().as_str(), "listening");
    }
    let admin = start_admin(&loaded, &server)?;
    let pid_file = match &pid_file {
        Some(path) => Some(mailgate::runtime::pid_file::PidFile::write(path)?),
        None => None,
    };
    if let Some(path) = ready_file {
        write_ready_file(&path, &server.addresses(), admin).context("writing the ready file")?;
    }
    if let Some(account) = &account {
        if let Err(e) = privileges::switch_to(account) {
            server.shutdown();
            server.join();
            return Err(e.into());
        }
        tracing::info!(user = %account.name, uid = account.uid, gid = account.gid, "switched user: root is given up");
    } else if privileges::is_root() {
        tracing::warn!("running as root (allow_root = true)");
    }
    let _pid_file = pid_file;
    wait_for_stop_signal_or(signals, || {
        match load(path).map(|live| server.reload(live)) {
            Ok(Ok(())) => tracing::info!(
            "SIGHUP: configuration reloaded; new connections use it, running sessions keep theirs"
        ),
            Ok(Err(e)) => tracing::error!("SIGHUP: {e}"),
            Err(e) => {
                tracing::error!("SIGHUP: reload failed, the running configuration stays: {e:#}")
            }
        }
    })?;
    tracing::info!("stopping: no new connections, draining sessions");
    server.shutdown();
    server.join();
    Ok(())
}

fn admin(
    address: std::net::SocketAddr,
    token_file: Option<PathBuf>,
    action: AdminAction,
) -> anyhow::Result<()> {
    let token = match token_file {
        Some(f) => {
            Some(std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?)
        }
        None => None,
    };
    let action = match action {
        AdminAction::Metrics => Action::Metrics,
        AdminAction::Invalidate { user } => Action::Invalidate(user),
        AdminAction::Kick { user } => Action::Kick(user),
        AdminAction::Sessions { user } => Action::Sessions(user),
    };
    let answer = AdminClient::new(address, token).run(&action)?;
    print!("{}", answer.body);
    anyhow::ensure!(answer.status == 200, "admin answered {}", answer.status);
    Ok(())
}

fn init_logging(format: mailgate::config::LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let setting = std::env::var("MAILGATE_LOG").ok();
    let (filter, unreadable) = log_filter(setting.as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    // No colours, even on a terminal: tracing-subscriber is built without
    // its `ansi` feature, whose styling code runs for every line even with
    // colours off (10 % of a plaintext login's user-space instructions,
    // docs/performance.md, "Where the CPU per login goes, by side").
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(mailgate::log_batch::LogOutput)
        .with_ansi(false);
    // The text format's session-end line is written without tracing's
    // formatter (the same bytes, a fraction of the cost).
    mailgate::session::write_session_end_as_text(format == mailgate::config::LogFormat::Text);
    match format {
        mailgate::config::LogFormat::Text => registry.with(layer).init(),
        mailgate::config::LogFormat::Json => registry.with(layer.json()).init(),
    }
    if let Some(reason) = unreadable {
        tracing::warn!("MAILGATE_LOG not understood ({reason}); logging at info");
    }
}

/// The log filter `MAILGATE_LOG` asks for: comma-separated directives, each
/// `level` (the default for every target) or `target=level`, e.g.
/// `mailgate::session=debug,warn`. `info` when unset, empty or unreadable
/// (then with the reason). A plain target filter rather than a regex-based
/// one keeps the regex engines out of the binary (~0.3 MiB; see
/// docs/performance.md, "Footprint").
fn log_filter(setting: Option<&str>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match setting.map(str::trim) {
        None | Some("") => (info(), None),
        Some(text) => match text.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(error) => (info(), Some(error.to_string())),
        },
    }
}

/// Blocks until SIGTERM or SIGINT; a second signal exits at once.
fn wait_for_stop_signal() -> anyhow::Result<()> {
    wait_for_stop_signal_or(stop_signals()?, || tracing::info!("SIGHUP ignored here"))
}

/// Takes SIGTERM, SIGINT and SIGHUP from their default actions (which end
/// the process): install before anything can send them, e.g. before the
/// ready file says the process is up.
fn stop_signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")
}

/// Like `wait_for_stop_signal`, running `on_hangup` for each SIGHUP.
fn wait_for_stop_signal_or(
    mut signals: signal_hook::iterator::Signals,
    mut on_hangup: impl FnMut(),
) -> anyhow::Result<()> {
    use signal_hook::consts::SIGHUP;
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
    mailgate::admin::spawn(
        listener,
        mailgate::admin::Admin {
            io: server.io(),
            watch: server.watch(),
            workers: server.workers_state.clone(),
            process: vec![server.parking_recorder()],
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

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn log_filter_reads_levels_and_targets() {
        let (unset, none) = log_filter(None);
        assert!(none.is_none());
        assert!(unset.would_enable("mailgate::session", &Level::INFO));
        assert!(!unset.would_enable("mailgate::session", &Level::DEBUG));

        let (mixed, none) = log_filter(Some("mailgate::session=debug,warn"));
        assert!(none.is_none());
        assert!(mixed.would_enable("mailgate::session::login", &Level::DEBUG));
        assert!(!mixed.would_enable("mailgate::runtime", &Level::INFO));
        assert!(mixed.would_enable("ldap3", &Level::WARN));

        let (trace, _) = log_filter(Some("trace"));
        assert!(trace.would_enable("rustls::client", &Level::TRACE));
    }

    #[test]
    fn unreadable_log_filter_falls_back_to_info_with_the_reason() {
        let (filter, reason) = log_filter(Some("mailgate=loud"));
        assert!(reason.is_some());
        assert!(filter.would_enable("mailgate", &Level::INFO));
        assert!(!filter.would_enable("mailgate", &Level::DEBUG));
    }
}
