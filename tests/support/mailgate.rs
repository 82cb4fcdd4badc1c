//! The real `mailgate` binary, run with a config written by the test.

use super::{terminate, START_DEADLINE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mailgate run`.
pub struct Mailgate {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Addresses of the listeners, in config order.
    pub addresses: Vec<SocketAddr>,
}

impl Mailgate {
    /// Path of the binary under test.
    pub fn binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_mailgate"))
    }

    /// Starts mailgate with `config` (TOML) and the static map `map`.
    pub fn start(config: &str, map: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-test-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("mailgate.toml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(dir.path().join("users.map"), map).unwrap();
        let ready = dir.path().join("ready");
        let log = std::fs::File::create(dir.path().join("mailgate.log")).unwrap();
        let child = Command::new(Self::binary())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--ready-file")
            .arg(&ready)
            .env("MAILGATE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mailgate");
        let mut mailgate = Self {
            child: Some(child),
            dir,
            addresses: Vec::new(),
        };
        let start = Instant::now();
        while !ready.exists() {
            if let Some(status) = mailgate
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mailgate exited with {status}:\n{}", mailgate.log());
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "mailgate not ready:\n{}",
                mailgate.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        mailgate.addresses = std::fs::read_to_string(&ready)
            .unwrap()
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
            .collect();
        mailgate
    }

    /// Waits up to `deadline` for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Address of listener `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addresses[i]
    }

    /// mailgate's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mailgate.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for exit (up to `grace`); the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.child.take().and_then(|mut c| terminate(&mut c, grace))
    }

    /// Waits until the log contains `needle` (up to `deadline`).
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < deadline,
                "log never showed {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Mailgate {
    /// Waits for the `session end` lines of `count` sessions of `protocol`; returns them.
    pub fn wait_for_session_ends(&self, protocol: &str, count: usize) -> Vec<String> {
        let start = Instant::now();
        let needle = format!("protocol={protocol}");
        loop {
            let log = self.log();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains("session end") && l.contains(&needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "{count} {protocol} session ends not logged:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mailgate {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A config with an IMAP and a POP3 listener on free loopback ports.
pub fn config(imap_port: u16, pop3_port: u16, backend: &str, extra: &str) -> String {
    format!(
        r#"[[listen]]
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
connect_timeout = "2s"
login_timeout = "5s"
{backend}

[runtime]
workers = 2
shutdown_grace = "2s"
{extra}
"#
    )
}
