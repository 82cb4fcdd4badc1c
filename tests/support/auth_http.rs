//! A real HTTP auth server on loopback (`auth_http.py`, Python's
//! `http.server`), answering as an nginx `auth_http` server does; stopped
//! when dropped.

use super::{terminate, START_DEADLINE};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The running server.
pub struct AuthHttp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AuthHttp {
    /// Starts the server with `config` (the JSON `auth_http.py` documents).
    pub fn start(config: &serde_json::Value) -> Self {
        Self::start_with(config, None)
    }

    /// The same over HTTPS with this certificate and key.
    pub fn start_tls(
        config: &serde_json::Value,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Self {
        Self::start_with(config, Some((cert, key)))
    }

    fn start_with(
        config: &serde_json::Value,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/auth_http.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(&config_path)
            .arg(&port_file)
            .arg(&log)
            .args(tls.iter().flat_map(|(c, k)| [c.as_os_str(), k.as_os_str()]))
            .spawn()
            .expect("start python3 auth_http.py");
        let start = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break port;
            }
            if start.elapsed() > START_DEADLINE {
                let _ = child.kill();
                panic!("auth_http.py did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    /// The URL mailgate is configured with.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mail/auth", self.port)
    }

    /// The same, over HTTPS.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/mail/auth", self.port)
    }

    /// Every request so far: its path, client port and headers.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for AuthHttp {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(2));
    }
}
