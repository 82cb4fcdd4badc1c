//! Shared integration-test harness: a real Dovecot and the real `mailgate`
//! binary on loopback, each in its own temporary folder with ephemeral ports,
//! stopped when dropped (also when a test panics).

#![allow(dead_code, unused_imports)]

pub mod auth_http;
pub mod certs;
pub mod dovecot;
pub mod mailgate;
pub mod oauth;
pub mod recorder;
pub mod sieve;
pub mod slapd;
pub mod sql;
pub mod stack;

pub use dovecot::{Dovecot, TestUser};
pub use mailgate::Mailgate;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long a fixture may take to come up.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A port that was free a moment ago (for programs that cannot bind port 0
/// and report it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A port nothing can listen on while the returned socket lives: bound on
/// 127.0.0.1 without `SO_REUSEADDR` and never listening, so a connection
/// to it is refused and no other process can take it (a port from
/// [`free_port`] that is meant to stay closed can be bound by another
/// test's server in the meantime).
pub fn closed_port() -> (socket2::Socket, u16) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind an ephemeral port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("its port");
    (socket, port)
}

/// A port as [`closed_port`] gives, its socket held for the rest of the
/// test process: for a helper that returns only configuration text.
pub fn closed_port_held() -> u16 {
    static HELD: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let (socket, port) = closed_port();
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    port
}

/// Starts `python3 tests/support/<script> <args…>`, a server that writes its
/// port to `port_file` once it listens; the child and that port.
// The child is handed to the caller, whose fixture terminates and reaps it
// when dropped; the lint does not follow it out of the loop.
#[allow(clippy::zombie_processes)]
pub fn start_python_server(
    script: &str,
    args: &[&std::ffi::OsStr],
    port_file: &std::path::Path,
) -> (std::process::Child, u16) {
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .arg(path)
        .args(args)
        .spawn()
        .unwrap_or_else(|e| panic!("start python3 {script}: {e}"));
    let start = Instant::now();
    loop {
        if let Some(port) = std::fs::read_to_string(port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return (child, port);
        }
        if start.elapsed() > START_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a client program; its output, or a panic with what it said.
pub fn run_client(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().expect("run client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_for_port(addr: SocketAddr, deadline: Duration) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{addr} did not accept connections within {deadline:?}");
}

/// Sends SIGTERM to `child`, waits up to `grace`, then kills it.
pub fn terminate(
    child: &mut std::process::Child,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// CPU time `pid` has used, user and system, in clock ticks (10 ms).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// True when `program` can be run (for tools that CI installs).
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The sum of the samples `selector` (`name{a="x",b="y"}`) picks: every line
/// of that name whose labels include the selector's (a series may carry
/// more labels, e.g. `listener`).
pub fn metric(text: &str, selector: &str) -> f64 {
    fn split(series: &str) -> (&str, Vec<&str>) {
        match series.split_once('{') {
            Some((name, labels)) => (
                name,
                labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .collect(),
            ),
            None => (series, Vec::new()),
        }
    }
    let (name, wanted) = split(selector);
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = split(series);
            n == name && wanted.iter().all(|w| labels.contains(w))
        })
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert!(!values.is_empty(), "{selector} missing:\n{text}");
    values.iter().sum()
}
