//! `mailgate demo`: the whole path on loopback with one command.
//!
//! Starts the simulated back end, writes an embedded config and static map to
//! a temporary folder, starts the real proxy (same workers, same sessions as
//! `mailgate run`) on free loopback ports, and prints ready-to-paste `curl`
//! commands. With `--check` it runs an IMAP and a POP3 session through the
//! proxy with [`crate::check_client`], verifies the fetched messages byte for
//! byte, and exits.

use crate::check_client::{ImapClient, Pop3Client};
use crate::simulated_backend::{self, Mailbox, SimulatedBackend};
use anyhow::{bail, ensure, Context};
use std::sync::Arc;

/// The demo's one password (every user).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The demo's message sizes: a small message and a 4 MiB one.
pub const DEMO_MESSAGE_SIZES: [usize; 2] = [2_000, 4 * 1024 * 1024];

/// The embedded config; `{imap_port}`/`{pop3_port}` are the simulated back end's.
const DEMO_CONFIG: &str = r#"# mailgate demo: loopback only
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "pop3"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = {imap_port}
pop3_port = {pop3_port}

[runtime]
workers = 0
shutdown_grace = "1s"
"#;

const DEMO_MAP: &str = "# every user's mailbox is on the local simulated back end\n*  127.0.0.1\n";

/// Runs the demo; `wait` blocks until the user stops it (unless `check`).
pub fn run(check: bool, wait: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let backend = SimulatedBackend::start(Mailbox {
        password: DEMO_PASSWORD.into(),
        message_sizes: DEMO_MESSAGE_SIZES.to_vec(),
        corrupt: false,
        uid_validity: 1,
        ..Default::default()
    })
    .context("starting the simulated back end")?;
    let dir = tempfile_dir()?;
    let config_text = DEMO_CONFIG
        .replace("{imap_port}", &backend.imap.port().to_string())
        .replace("{pop3_port}", &backend.pop3.port().to_string());
    let config_path = dir.join("mailgate.toml");
    std::fs::write(&config_path, config_text)?;
    std::fs::write(dir.join("users.map"), DEMO_MAP)?;
    let loaded = crate::config::load_file(&config_path)?;
    let live = crate::runtime::Live::build(Arc::new(loaded))?;
    let server = crate::runtime::start(live, crate::runtime::listener::Sharing::Exclusive)?;
    let imap = server.addresses()[0].1;
    let pop3 = server.addresses()[1].1;
    println!("mailgate demo: {} worker(s)", server.workers());
    println!(
        "  simulated back end: imap {} pop3 {}",
        backend.imap, backend.pop3
    );
    println!("  mailgate:           imap {imap} pop3 {pop3}");
    println!("  any user, password {DEMO_PASSWORD:?}; try:");
    println!(
        "    curl -s 'imap://{imap}/INBOX;MAILINDEX=1' -u 'alice@example.org:{DEMO_PASSWORD}'"
    );
    println!("    curl -s 'pop3://{pop3}/1' -u 'alice@example.org:{DEMO_PASSWORD}'");
    let result = if check {
        check_sessions(imap, pop3)
    } else {
        println!("  (Ctrl-C stops)");
        wait()
    };
    server.shutdown();
    server.join();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mailgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn check_sessions(imap: std::net::SocketAddr, pop3: std::net::SocketAddr) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut client = ImapClient::connect(imap).context("IMAP connect")?;
    let login = client.login("alice@example.org", DEMO_PASSWORD)?;
    ensure!(
        login.is_ok(),
        "IMAP login refused: {} {}",
        login.status,
        login.text
    );
    for (i, &size) in DEMO_MESSAGE_SIZES.iter().enumerate() {
        let body = client.fetch_message(i + 1)?;
        if body != simulated_backend::message(i + 1, size) {
            bail!(
                "IMAP message {} differs from the back end's ({} bytes received)",
                i + 1,
                body.len()
            );
        }
    }
    client.logout()?;
    println!(
        "check: IMAP login + FETCH of {} messages through mailgate: byte-exact",
        DEMO_MESSAGE_SIZES.len()
    );

    let mut client = Pop3Client::connect(pop3).context("POP3 connect")?;
    let status = client.login("bob@example.org", DEMO_PASSWORD)?;
    ensure!(status.starts_with("+OK"), "POP3 login refused: {status}");
    for (i, &size) in DEMO_MESSAGE_SIZES.iter().enumerate() {
        let body = client.retrieve(i + 1)?;
        if body != simulated_backend::message(i + 1, size) {
            bail!("POP3 message {} differs from the back end's", i + 1);
        }
    }
    client.command("QUIT")?;
    println!(
        "check: POP3 login + RETR of {} messages through mailgate: byte-exact",
        DEMO_MESSAGE_SIZES.len()
    );
    println!("check: ok in {:?}", started.elapsed());
    Ok(())
}
