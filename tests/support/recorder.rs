//! `tcp_recorder.py`: a relay to a real back end that records what each
//! connection's client (mailgate) sent, and whether it spoke first.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// Relays 127.0.0.1:`target` and records what each client sent
/// (`<dir>/<n>.up`, complete once the client closed); stopped when dropped.
pub struct Recorder {
    child: std::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Recorder {
    /// Relays to `target` at once.
    pub fn start(target: u16) -> Self {
        Self::start_with(target, None)
    }

    /// Connects each relayed connection to `target` only once its client
    /// has sent something, or `wait` has passed: [`Recorder::spoke_first`]
    /// then tells which.
    pub fn noting_who_speaks_first(target: u16, wait: Duration) -> Self {
        Self::start_with(target, Some(wait))
    }

    fn start_with(target: u16, wait: Option<Duration>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let target = target.to_string();
        let wait = wait.map(|w| w.as_secs_f64().to_string());
        let mut args: Vec<&OsStr> = vec![
            target.as_ref(),
            port_file.as_os_str(),
            dir.path().as_os_str(),
        ];
        if let Some(wait) = &wait {
            args.push(wait.as_ref());
        }
        let (child, port) = super::start_python_server("tcp_recorder.py", &args, &port_file);
        Self { child, port, dir }
    }

    /// What the `n`th connection sent, once it is complete.
    pub fn sent(&self, n: usize) -> String {
        let path = self.dir.path().join(format!("{n}.up"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(bytes) = std::fs::read(&path) {
                return String::from_utf8_lossy(&bytes).into_owned();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("connection {n} never completed");
    }

    /// Whether the `n`th connection's client sent something before the
    /// back end was even connected (so before any greeting); only for a
    /// recorder [`Recorder::noting_who_speaks_first`], once `sent(n)`
    /// returned.
    pub fn spoke_first(&self, n: usize) -> bool {
        let path = self.dir.path().join(format!("{n}.early"));
        match std::fs::read_to_string(&path).as_deref() {
            Ok("yes") => true,
            Ok("no") => false,
            other => panic!("connection {n}: {other:?}"),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
