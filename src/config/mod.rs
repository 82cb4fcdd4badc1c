//! Typed configuration: parsed once from TOML, validated, then shared read-only.
//!
//! Every key is declared with `deny_unknown_fields`, so a typo is an error that
//! names the file, the line and the key instead of a silently ignored setting.
//! Loading maps the TOML into the settings types of the modules it configures
//! (a directory kind's settings, `CacheSettings`, `RelaySettings`, `ServerTlsSettings`…)
//! and reads small files the settings need (an LDAP bind password). It builds
//! nothing live — no rustls config, directory or static map: the runtime does
//! that from these settings, and reports its own failures through
//! [`Loaded::invalid`] so they too name the file, line and key.

mod directory;
mod error;
mod limits;
mod load;
mod oauth;
mod schema;
mod tuning;

pub use crate::protocols::Protocol;
pub use error::ConfigError;
pub use limits::{DEFAULT_FAILURE_DELAY, DEFAULT_PREAUTH_TIMEOUT};
pub use load::{load_file, parse_str};
pub use oauth::{OAuthConfig, VerifyMode, DEFAULT_MAX_TOKEN, MAX_MAX_TOKEN};
pub use schema::*;

use crate::directory::kind::KindSettings;
use crate::directory::CacheSettings;
use crate::relay::RelaySettings;
use crate::tls::ServerTlsSettings;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded, validated configuration and the settings derived from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed and validated configuration.
    pub config: Config,
    /// Where routes come from: the configured kind's validated settings.
    pub directory: Arc<dyn KindSettings>,
    /// Cache settings, when caching is on.
    pub cache: Option<CacheSettings>,
    /// Per listener: what it serves over TLS (`None` for plaintext listeners).
    pub listener_tls: Vec<Option<ServerTlsSettings>>,
    /// CA file that back-end certificates must chain to, when `[backend] tls`
    /// is on.
    pub backend_ca: Option<PathBuf>,
    /// Relay settings.
    pub relay: RelaySettings,
    /// `[oauth]`, when present: what listeners offer, how tokens are checked.
    pub oauth: Option<crate::oauth::OAuthSettings>,
    /// Folder holding the config file (relative paths start here).
    pub base_dir: PathBuf,
    origin: Origin,
}

/// The file a configuration came from and the line of each located key.
#[derive(Debug, Clone, Default)]
struct Origin {
    path: PathBuf,
    lines: HashMap<String, usize>,
}

impl Loaded {
    /// An error about `key` (e.g. `directory.map`), located at the key's line
    /// when it is known, for failures found after loading (a certificate or a
    /// map file the runtime cannot use).
    pub fn invalid(&self, key: &str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.path.clone(),
            line: self.origin.lines.get(key).copied().unwrap_or(0),
            key: key.to_owned(),
            reason,
        }
    }

    /// What listener `index` offers of `[oauth]`: the mechanisms, unless
    /// the listener turns them off (`oauth = false`).
    pub fn oauth_offer(&self, index: usize) -> Option<crate::login::OAuthOffer> {
        let off = self.config.listen[index]
            .oauth
            .as_ref()
            .is_some_and(|on| !*on.get_ref());
        self.oauth
            .as_ref()
            .filter(|_| !off)
            .map(|o| o.offer.clone())
    }

    /// The deflate level listener `index`'s sessions compress their
    /// back-end leg with, if they do: `[[listen]] compress`, else
    /// `[backend] compress`; never on `connection_cache` listeners (a
    /// parked session must be a plain or TLS socket) nor for protocols
    /// without compression.
    pub fn compress_level(&self, index: usize) -> Option<u32> {
        let listen = &self.config.listen[index];
        let mode = listen.compress.unwrap_or(self.config.backend.compress);
        (mode == CompressMode::Deflate
            && !listen.connection_cache
            && listen.protocol.spec().compression)
            .then_some(self.config.backend.compress_level)
    }

    /// The file the configuration was read from.
    pub fn path(&self) -> &std::path::Path {
        &self.origin.path
    }
}
