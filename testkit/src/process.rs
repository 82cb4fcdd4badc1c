//! A `mailgate run` process: its config, ready file and log in a folder the
//! caller chooses, the addresses it bound read back from the ready file, and
//! the process stopped (SIGTERM, then SIGKILL) when dropped.

use crate::admin::AdminClient;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a mailgate may take to write its ready file.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between polls of the ready file, the log or the process.
const POLL: Duration = Duration::from_millis(10);

/// Why a mailgate did not come up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Files could not be written or the binary not started.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The process exited before it was ready.
    #[error("mailgate exited with {status} before it was ready:\n{log}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log.
        log: String,
    },
    /// No ready file within [`START_DEADLINE`].
    #[error("mailgate not ready within {START_DEADLINE:?}:\n{log}")]
    Timeout {
        /// Its log.
        log: String,
    },
    /// A ready file line that is not `<name> <address>`.
    #[error("malformed ready file line {0:?}")]
    ReadyFile(String),
}

/// What the ready file says: `<protocol> <address>` per listener in config
/// order, then `admin <address>` when the admin listener runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Protocol name and bound address of each listener.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin listener.
    pub admin: Option<SocketAddr>,
}

impl Ready {
    /// Parses a ready file.
    pub fn parse(text: &str) -> Result<Self, StartError> {
        let mut ready = Ready::default();
        for line in text.lines() {
            let parsed = line
                .split_once(' ')
                .and_then(|(name, addr)| Some((name, addr.trim().parse().ok()?)));
            match parsed {
                Some(("admin", address)) => ready.admin = Some(address),
                Some((name, address)) => ready.listeners.push((name.to_owned(), address)),
                None => return Err(StartError::ReadyFile(line.to_owned())),
            }
        }
        Ok(ready)
    }
}

/// A running `mailgate run --config DIR/NAME.toml --ready-file DIR/NAME.ready`,
/// logging to `DIR/NAME.log`.
pub struct MailgateProcess {
    child: Option<Child>,
    log: PathBuf,
    /// What it bound.
    pub ready: Ready,
}

impl MailgateProcess {
    /// Writes `config` to `dir/name.toml` and starts `binary` with it,
    /// logging at `log_level` (`MAILGATE_LOG`); returns once the ready file
    /// is written. Tests pass their config through
    /// [`crate::config::with_test_defaults`] first.
    pub fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        config: &str,
        log_level: &str,
    ) -> Result<Self, StartError> {
        Self::start_with_env(binary, dir, name, config, log_level, &[])
    }

    /// Like [`MailgateProcess::start`], with `env` set for the process.
    pub fn start_with_env(
        binary: &Path,
        dir: &Path,
        name: &str,
        config: &str,
        log_level: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, StartError> {
        Self::start_configured(binary, dir, name, config, log_level, |c| {
            c.envs(env.iter().copied());
        })
    }

    /// Like [`MailgateProcess::start`], with `configure` applied to the
    /// command before it is spawned (environment, a seccomp filter, …).
    pub fn start_configured(
        binary: &Path,
        dir: &Path,
        name: &str,
        config: &str,
        log_level: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Self, StartError> {
        let spawn_error = |source| StartError::Spawn {
            binary: binary.to_owned(),
            source,
        };
        let config_path = dir.join(format!("{name}.toml"));
        let ready_path = dir.join(format!("{name}.ready"));
        let log_path = dir.join(format!("{name}.log"));
        std::fs::write(&config_path, config).map_err(spawn_error)?;
        let log = std::fs::File::create(&log_path).map_err(spawn_error)?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--ready-file")
            .arg(&ready_path)
            .env("MAILGATE_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        configure(&mut command);
        let child = command.spawn().map_err(spawn_error)?;
        let mut process = Self {
            child: Some(child),
            log: log_path,
            ready: Ready::default(),
        };
        let started = Instant::now();
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_path) {
                break text;
            }
            if let Some(status) = process.try_exit() {
                return Err(StartError::Exited {
                    status,
                    log: process.log(),
                });
            }
            if started.elapsed() > START_DEADLINE {
                return Err(StartError::Timeout { log: process.log() });
            }
            std::thread::sleep(POLL);
        };
        process.ready = Ready::parse(&text)?;
        Ok(process)
    }

    /// The bound address of listener `i` (config order).
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.ready.listeners[i].1
    }

    /// Every listener's bound address, in config order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.ready.listeners.iter().map(|(_, a)| *a).collect()
    }

    /// A client for the admin listener (which must be configured).
    pub fn admin(&self, token: Option<String>) -> AdminClient {
        AdminClient::new(self.ready.admin.expect("[admin] is configured"), token)
    }

    /// Process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `deadline` until the log contains `needle`; the log, or
    /// `None` if it never did.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> Option<String> {
        let started = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Some(log);
            }
            if started.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The exit status, if the process has exited (it is then reaped).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Waits up to `deadline` for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        None
    }

    /// Sends `signal` to the process (while running).
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a child we spawned and have not reaped, so
            // the pid is still ours.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the exit, then kills; the
    /// exit status if it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(grace);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for MailgateProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_lines_are_listeners_then_admin() {
        let ready = Ready::parse("imap 127.0.0.1:143\npop3 [::1]:110\nadmin 127.0.0.1:9\n")
            .expect("parses");
        assert_eq!(ready.listeners.len(), 2);
        assert_eq!(ready.listeners[1].0, "pop3");
        assert_eq!(ready.admin, Some("127.0.0.1:9".parse().unwrap()));
        assert!(Ready::parse("imap nowhere\n").is_err());
    }
}
