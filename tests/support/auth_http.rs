//! A real HTTP auth server on loopback (`auth_http.py`, Python's
//! `http.server`), answering as an nginx `auth_http` server does; stopped
//! when dropped.

use super::terminate;
use std::path::PathBuf;
use std::time::Duration;

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
        let mut args = vec![
            config_path.as_os_str(),
            port_file.as_os_str(),
            log.as_os_str(),
        ];
        args.extend(tls.iter().flat_map(|(c, k)| [c.as_os_str(), k.as_os_str()]));
        let (child, port) = super::start_python_server("auth_http.py", &args, &port_file);
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
