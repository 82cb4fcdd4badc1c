//! The one place live objects are built from a loaded configuration: rustls
//! server configs per TLS listener, the TLS client config towards back ends,
//! the directory of the configured kind (its files and TLS client config), and — on each worker's thread — the directory with its
//! cache. `check-config` builds the same [`Live`] as `run`, so what it
//! accepts starts.

use crate::config::{ConfigError, Loaded, Protocol};
use crate::directory::kind::Prepared;
use crate::directory::shared::SharedRoutes;
use crate::directory::{CacheCounters, CachedDirectory, Directory, Invalidations};
use crate::tls;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A configuration with everything it names loaded and checked.
pub struct Live {
    /// The configuration.
    pub loaded: Arc<Loaded>,
    /// Per listener: its TLS server config (`None` for plaintext listeners).
    pub listener_tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// TLS client config towards back ends, when `[backend] tls` is on.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// The directory, ready to be built on each worker (a loaded map, a
    /// TLS client config towards the directory's servers).
    pub directory: Arc<dyn Prepared>,
    /// The bearer-token checker, when `[oauth] verify` asks for one.
    pub oauth: Option<Arc<crate::oauth::TokenChecker>>,
}

impl Live {
    /// Loads certificates, CA files and the static map named by `loaded`;
    /// errors name the file, line and key.
    pub fn build(loaded: Arc<Loaded>) -> Result<Self, ConfigError> {
        let ticketer = tls::ticketer().map_err(|e| loaded.invalid("tls", e.to_string()))?;
        let listener_tls = loaded
            .listener_tls
            .iter()
            .enumerate()
            .map(|(index, settings)| {
                settings
                    .as_ref()
                    .map(|s| tls::server_config(s, ticketer.clone()))
                    .transpose()
                    .map_err(|e| loaded.invalid(&format!("listen[{index}].tls"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let backend_tls = loaded
            .backend_ca
            .as_deref()
            .map(tls::client_config)
            .transpose()
            .map_err(|e| loaded.invalid("backend.ca_file", e.to_string()))?;
        let client_tls =
            |path: &std::path::Path| tls::client_config(path).map_err(|e| e.to_string());
        let directory = loaded
            .directory
            .prepare(&client_tls)
            .map_err(|i| loaded.invalid(&i.key, i.reason))?;
        let oauth = match &loaded.oauth {
            None => None,
            Some(settings) => {
                let tls = settings
                    .ca_file
                    .as_deref()
                    .map(tls::client_config)
                    .transpose()
                    .map_err(|e| loaded.invalid("oauth.ca_file", e.to_string()))?;
                crate::oauth::TokenChecker::build(settings, tls)
                    .map_err(|e| loaded.invalid("oauth", e))?
            }
        };
        Ok(Self {
            loaded,
            listener_tls,
            backend_tls,
            directory,
            oauth,
        })
    }

    /// The ports a route may name: `[backend] allowed_ports`, or by default
    /// the configured back-end ports (993 and 995 too with back-end TLS),
    /// the ports the directory names (a static map's entries,
    /// `[directory.hosts]`).
    pub fn allowed_ports(&self) -> Vec<u16> {
        let backend = &self.loaded.config.backend;
        if !backend.allowed_ports.is_empty() {
            return backend.allowed_ports.clone();
        }
        let mut ports: Vec<u16> = Protocol::ALL.iter().map(|p| backend.port(*p)).collect();
        if *backend.tls.get_ref() != crate::config::TlsMode::None {
            ports.extend(
                Protocol::ALL
                    .iter()
                    .filter_map(|p| p.spec().implicit_tls_port),
            );
        }
        ports.extend(self.directory.ports());
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// How a typed name becomes the directory's lookup key (the canonical
    /// name invalidations, sessions and parked sessions are matched by).
    pub fn name_form(&self) -> crate::directory::name_form::KeyFormat {
        self.loaded.directory.name_form()
    }

    /// A worker's directory, behind the cache if
    /// configured. Called on the worker's thread (the result is not `Send`).
    pub fn directory(
        &self,
        invalidations: Arc<Invalidations>,
        counters: Arc<CacheCounters>,
        health: Arc<AtomicBool>,
        shared: Option<Arc<SharedRoutes>>,
    ) -> Rc<dyn Directory> {
        let base = self.directory.worker(health);
        match self.loaded.cache {
            Some(settings) => {
                let cache =
                    CachedDirectory::new(base, settings, invalidations).with_counters(counters);
                match shared {
                    Some(shared) => Rc::new(cache.with_shared(shared)),
                    None => Rc::new(cache),
                }
            }
            None => base,
        }
    }

    /// The process-wide layer of the route cache, when the cache is on
    /// (one per process: every worker's cache consults it on a miss).
    pub fn shared_routes(&self, invalidations: &Arc<Invalidations>) -> Option<Arc<SharedRoutes>> {
        self.loaded
            .cache
            .map(|settings| Arc::new(SharedRoutes::new(settings, invalidations.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build(text: &str, map: Option<&str>) -> Result<Live, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(map) = map {
            std::fs::write(dir.path().join("users.map"), map).unwrap();
        }
        let loaded = crate::config::parse_str(text, Path::new("test.toml"), dir.path())?;
        Live::build(Arc::new(loaded))
    }

    const STATIC: &str = "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n\n[directory]\nkind = \"static\"\nmap = \"users.map\"\n";

    #[test]
    fn missing_map_file_names_the_path_line_and_key() {
        let err = build(STATIC, None).err().unwrap().to_string();
        assert!(err.starts_with("test.toml:7: `directory.map`"), "{err}");
        assert!(err.contains("users.map"), "{err}");
    }

    #[test]
    fn malformed_map_names_its_line() {
        let err = build(STATIC, Some("alice@x 127.0.0.1\nbob@x\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("users.map:2"), "{err}");
    }

    #[test]
    fn routes_may_name_the_configured_and_mapped_ports_by_default() {
        let text = format!(
            "{STATIC}[backend]\nimap_port = 10143\npop3_port = 10110\nmanagesieve_port = 14190\n"
        );
        let live = build(&text, Some("a@x 10.0.0.1:4143\n* 10.0.0.2\n")).unwrap();
        assert_eq!(live.allowed_ports(), [4143, 10110, 10143, 14190]);
        let explicit = format!("{text}allowed_ports = [1, 2]\n");
        let live = build(&explicit, Some("* 10.0.0.2:4143\n")).unwrap();
        assert_eq!(
            live.allowed_ports(),
            [1, 2],
            "an explicit list replaces the default"
        );
    }

    #[test]
    fn unreadable_certificate_names_the_listener_and_file() {
        let text = STATIC.replace(
            "address = \"127.0.0.1:0\"\n",
            "address = \"127.0.0.1:0\"\ntls = \"implicit\"\ncert = \"nope.pem\"\nkey = \"nope.key\"\n",
        );
        let err = build(&text, Some("* 127.0.0.1\n"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("test.toml:4: `listen[0].tls`"), "{err}");
        assert!(err.contains("nope.pem"), "{err}");
    }
}
