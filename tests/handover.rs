//! Zero-downtime restart: a second mailgate started on the same ports
//! (`SO_REUSEPORT`) takes new connections while the first, after SIGTERM,
//! stops accepting and drains — and a loop of logins running through the
//! handover sees no refused, reset or failed connection.
//!
//! What makes it lossless: the old process answers every connection it has
//! accepted (its accept loops end on their own once the sockets are shut
//! down, rather than being cancelled with a connection in hand), a client
//! that connected just before SIGTERM still gets a greeting and a one-second
//! last call for its LOGIN, and `net.ipv4.tcp_migrate_req = 1` (Linux
//! 5.14+) moves connections the kernel had queued on the old sockets to the
//! new process's instead of resetting them (without it, a run on a fresh
//! clone saw one `Connection reset by peer`). The test sets it for its
//! network namespace and puts the old value back.

mod support;

use mailgate::check_client::ImapClient;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::stack::*;
use support::{free_port, Dovecot, Mailgate};

const MIGRATE: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// `net.ipv4.tcp_migrate_req = 1` while alive.
struct MigrateRequests(String);

impl MigrateRequests {
    fn on() -> Self {
        let old = std::fs::read_to_string(MIGRATE).unwrap_or_else(|e| {
            panic!("{MIGRATE}: {e} (Linux 5.14 or later is needed for a lossless handover)")
        });
        std::fs::write(MIGRATE, "1").unwrap_or_else(|e| {
            panic!("setting {MIGRATE} to 1: {e} (the handover test needs root in its network namespace)")
        });
        Self(old)
    }
}

impl Drop for MigrateRequests {
    fn drop(&mut self) {
        let _ = std::fs::write(MIGRATE, self.0.trim());
    }
}

/// Clients logging in back to back, and processes replaced while they do.
const CLIENTS: usize = 16;
const HANDOVERS: usize = 3;

#[test]
fn new_processes_take_over_the_ports_and_no_login_fails_during_three_handovers() {
    let _migrate = MigrateRequests::on();
    let dovecot = Dovecot::start(&directory_users());
    let (imap, pop3) = (free_port(), free_port());
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"127.0.0.1:{imap}\""),
            1,
        )
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"127.0.0.1:{pop3}\""),
            1,
        );
    let map = "* 127.0.0.1\n";
    let mut old = Mailgate::start(&config, map);
    let address = old.addr(0);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    let mut c =
                        ImapClient::connect(address).map_err(|e| format!("connect: {e}"))?;
                    let r = c
                        .login(ALICE, ALICE_PW)
                        .map_err(|e| format!("login: {e}"))?;
                    if !r.is_ok() {
                        return Err(format!("login answered {} {}", r.status, r.text));
                    }
                    c.command("LOGOUT").map_err(|e| format!("logout: {e}"))?;
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut served = Vec::new();
    for _ in 0..HANDOVERS {
        let new = Mailgate::start_handover(&config, map);
        std::thread::sleep(Duration::from_millis(300));
        let status = old.stop(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "the old process exits 0: {status:?}"
        );
        served.push(old.log().matches("session end").count());
        old = new;
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("during a handover: {e}"));
    }
    let total = ok.load(Ordering::Relaxed);
    assert!(
        served.iter().all(|&n| n > 0) && total > 100,
        "sessions per replaced process {served:?}, logins {total}"
    );
    // The last process still serves.
    let mut c = ImapClient::connect(address).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
}

#[test]
fn a_second_instance_started_by_mistake_on_the_same_ports_refuses_to_start() {
    let dovecot = Dovecot::start(&directory_users());
    let imap = free_port();
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"127.0.0.1:{imap}\""),
            1,
        );
    let first = Mailgate::start(&config, "* 127.0.0.1\n");
    // Same ports, another configuration (another directory): without
    // --handover it must not take part of the traffic.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.map"), "* 127.0.0.9\n").unwrap();
    let path = dir.path().join("second.toml");
    std::fs::write(&path, mailgate_testkit::config::with_test_defaults(&config)).unwrap();
    let out = std::process::Command::new(Mailgate::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second instance started: {said}");
    assert!(
        said.contains(&format!("127.0.0.1:{imap}")) && said.contains("--handover"),
        "{said}"
    );
    // The first one still serves every login.
    for _ in 0..4 {
        let mut c = ImapClient::connect(first.addr(0)).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    }
}
