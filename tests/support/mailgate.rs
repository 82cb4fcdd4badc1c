//! The real `mailgate` binary, run with a config written by the test, in a
//! temporary folder of its own (the test kit's process).

use super::START_DEADLINE;
use mailgate_testkit::MailgateProcess;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use mailgate_testkit::config::two_listeners as config;

/// A running `mailgate run`.
pub struct Mailgate {
    process: MailgateProcess,
    /// Its config, map and log; removed after the process has stopped
    /// (declared after it).
    dir: tempfile::TempDir,
    /// Addresses of the listeners, in config order, then the admin
    /// listener's (as the ready file lists them).
    pub addresses: Vec<SocketAddr>,
}

impl Mailgate {
    /// Path of the binary under test.
    pub fn binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_mailgate"))
    }

    /// Starts mailgate with `config` (TOML) and the static map `map`.
    pub fn start(config: &str, map: &str) -> Self {
        Self::start_with_env(config, map, "debug", &[])
    }

    /// Like `start`, as a handover from a running mailgate on the same
    /// ports (`run --handover`).
    pub fn start_handover(config: &str, map: &str) -> Self {
        Self::start_configured(config, map, "debug", |c| {
            c.arg("--handover");
        })
    }

    /// Like `start`, logging at `log_level`, with `env` set for the process.
    pub fn start_with_env(config: &str, map: &str, log_level: &str, env: &[(&str, &str)]) -> Self {
        Self::start_configured(config, map, log_level, |c| {
            c.envs(env.iter().copied());
        })
    }

    fn start_configured(
        config: &str,
        map: &str,
        log_level: &str,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("users.map"), map).unwrap();
        let config = mailgate_testkit::config::with_test_defaults(config);
        let process = MailgateProcess::start_configured(
            &Self::binary(),
            dir.path(),
            "mailgate",
            &config,
            log_level,
            configure,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Self {
            addresses: process
                .addresses()
                .into_iter()
                .chain(process.ready.admin)
                .collect(),
            process,
            dir,
        }
    }

    /// The config file mailgate was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mailgate.toml")
    }

    /// Replaces the config file (with the test defaults added, as at
    /// start) and the static map; takes effect at [`Mailgate::reload`].
    pub fn rewrite(&self, config: &str, map: &str) {
        let config = mailgate_testkit::config::with_test_defaults(config);
        std::fs::write(self.dir.path().join("mailgate.toml"), config).unwrap();
        std::fs::write(self.dir.path().join("users.map"), map).unwrap();
    }

    /// Sends SIGHUP and waits for the log line that says how the reload
    /// went (the `nth` SIGHUP of this process, counting from 1); that line.
    pub fn reload(&self, nth: usize) -> String {
        std::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            let log = self.log();
            // Each report: its line and the continuation lines of a
            // multi-line error (those without a timestamp).
            let mut reports: Vec<String> = Vec::new();
            let mut in_report = false;
            for line in log.lines() {
                if line.contains("SIGHUP:") {
                    reports.push(line.to_owned());
                    in_report = true;
                } else if in_report && !line.starts_with("20") {
                    let last = reports.last_mut().expect("a report is open");
                    last.push('\n');
                    last.push_str(line);
                } else {
                    in_report = false;
                }
            }
            if reports.len() >= nth {
                return reports.swap_remove(nth - 1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no reload line:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The test kit's process (ready file, admin client, signals).
    pub fn process(&self) -> &MailgateProcess {
        &self.process
    }

    /// `GET /metrics` from the admin listener (which must be configured).
    pub fn metrics(&self) -> String {
        self.process
            .admin(None)
            .request("GET", "/metrics")
            .expect("metrics")
            .body
    }

    /// Waits up to `deadline` for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(deadline)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("running")
    }

    /// Address of listener `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addresses[i]
    }

    /// mailgate's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends SIGTERM and waits for exit (up to `grace`); the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.stop(grace)
    }

    /// Waits until the log contains `needle` (up to `deadline`).
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> String {
        self.process
            .wait_for_log(needle, deadline)
            .unwrap_or_else(|| panic!("log never showed {needle:?}:\n{}", self.log()))
    }

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
