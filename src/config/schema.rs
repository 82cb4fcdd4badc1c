//! The TOML schema: one struct per table, `deny_unknown_fields` everywhere,
//! defaults in one place. Validation beyond what serde checks, and the
//! mapping into the settings types of other modules, live in `load.rs` and
//! `directory.rs`.

pub use super::limits::Limits;
pub use super::tuning::{RelayConfig, RuntimeConfig};
use crate::directory::CacheSettings;
use crate::imap::ImapBackendAuth;
use crate::login::BackendAuth;
use crate::netaddr::Network;
use crate::pop3::Pop3BackendAuth;
use crate::protocols::Protocol;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client-facing listeners; at least one.
    #[serde(default)]
    pub listen: Vec<Listener>,
    /// Where users' mailboxes live.
    pub directory: DirectoryConfig,
    /// How to reach and log in to back ends.
    #[serde(default)]
    pub backend: BackendConfig,
    /// Bounds on pre-login input.
    #[serde(default)]
    pub limits: Limits,
    /// Post-login relay.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Worker threads and shutdown.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Certificates for TLS listeners.
    pub tls: Option<TlsConfig>,
    /// The admin listener (off unless this table is present).
    pub admin: Option<AdminConfig>,
    /// Bounds of the back-end connection cache (`connection_cache`
    /// listeners).
    #[serde(default)]
    pub connection_cache: super::tuning::ConnectionCacheConfig,
    /// How log lines are written.
    #[serde(default)]
    pub log: LogConfig,
    /// OAuth 2.0 logins (off unless this table is present).
    pub oauth: Option<toml::Spanned<super::oauth::OAuthConfig>>,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json` (one JSON object per line, for log
    /// shippers). Read at start only.
    #[serde(default)]
    pub format: LogFormat,
    /// How long a worker's log lines may wait to be written together (one
    /// `write` per batch instead of one per line); `"0s"` writes each line
    /// at once. Read at start only.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: std::time::Duration,
}

fn default_flush_interval() -> std::time::Duration {
    crate::log_batch::DEFAULT_FLUSH_INTERVAL
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            flush_interval: default_flush_interval(),
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-30T12:00:00Z  INFO mailgate::session: session end client=…`.
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{"message":"session end",…},…}`.
    Json,
}

/// The `[log] format` of the configuration file at `path`, read before
/// anything else so that the first log line already has it; a file that
/// does not parse says `text` here and is reported by the full load.
pub fn log_format_of(path: &std::path::Path) -> LogFormat {
    #[derive(Deserialize)]
    struct OnlyLog {
        #[serde(default)]
        log: Option<toml::Value>,
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return LogFormat::Text;
    };
    let Ok(OnlyLog { log: Some(log) }) = toml::from_str::<OnlyLog>(&text) else {
        return LogFormat::Text;
    };
    log.try_into::<LogConfig>()
        .map_or(LogFormat::Text, |l| l.format)
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where to listen (loopback by default).
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// File holding the bearer token required for actions.
    pub token_file: Option<PathBuf>,
    /// HdrHistogram interval log to append to.
    pub hlog: Option<PathBuf>,
    /// Interval of the log.
    #[serde(default = "default_hlog_interval", with = "humantime_serde")]
    pub hlog_interval: Duration,
    /// Record metrics (counters, histograms). Off, `/metrics` and the
    /// `.hlog` stay empty; the admin actions still work. Without an
    /// `[admin]` section nothing is recorded.
    #[serde(default = "default_true")]
    pub metrics: bool,
}

fn default_true() -> bool {
    true
}

fn default_hlog_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9143))
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext only.
    #[default]
    None,
    /// Plaintext, upgraded with STARTTLS / STLS.
    Starttls,
    /// TLS from the first byte (IMAPS 993, POP3S 995).
    Implicit,
}

/// One `[[listen]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Protocol spoken to clients.
    pub protocol: Protocol,
    /// Address to bind; port 0 picks a free port (see `--ready-file`).
    pub address: SocketAddr,
    /// TLS mode (default `none`).
    #[serde(default)]
    pub tls: Option<toml::Spanned<TlsMode>>,
    /// On STARTTLS listeners: no login before TLS (default true).
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// Certificate chain (PEM) for this listener, instead of `[tls] cert`.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for this listener, instead of `[tls] key`.
    pub key: Option<PathBuf>,
    /// Text of the greeting; never the back end's banner.
    #[serde(default)]
    pub greeting: Option<String>,
    /// Keep back-end sessions open after the client's LOGOUT for its next
    /// login (webmail; IMAP only).
    #[serde(default)]
    pub connection_cache: bool,
    /// Clients allowed on this listener (empty: anyone); others are closed
    /// at accept.
    #[serde(default)]
    pub trusted_networks: Vec<crate::netaddr::Network>,
    /// Connections start with a PROXY protocol header (v1 or v2) from a
    /// balancer in `trusted_networks`, naming the real client.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Offer `[oauth]`'s bearer-token mechanisms here (default: wherever
    /// `[oauth]` is configured).
    #[serde(default)]
    pub oauth: Option<toml::Spanned<bool>>,
    /// This listener's sessions' back-end compression, instead of
    /// `[backend] compress`.
    #[serde(default)]
    pub compress: Option<CompressMode>,
}

impl Listener {
    /// The TLS mode (default none).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.as_ref().map_or(TlsMode::None, |t| *t.get_ref())
    }

    /// Whether login waits for TLS (STARTTLS listeners, unless turned off).
    pub fn requires_tls(&self) -> bool {
        self.tls_mode() == TlsMode::Starttls && self.require_tls.unwrap_or(true)
    }

    /// The greeting text.
    pub fn greeting(&self) -> &str {
        self.greeting
            .as_deref()
            .unwrap_or(crate::login::DEFAULT_GREETING)
    }
}

/// `[tls]`: certificates shared by TLS listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Default certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Certificates chosen by SNI name.
    #[serde(default)]
    pub certificates: Vec<NamedCertificate>,
    /// Bound on a TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

/// Default bound on a TLS handshake with a client.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn default_handshake_timeout() -> Duration {
    DEFAULT_HANDSHAKE_TIMEOUT
}

/// `[[tls.certificates]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCertificate {
    /// Server names (`mail.example.org`, `*.example.org`).
    pub names: Vec<String>,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// `[directory]`: the keys every kind shares. Each kind's own keys
/// (`url`, `map`, …) are read by that kind from the same table
/// (`directory::kind`); a key no one reads is an error.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectoryConfig {
    /// Which kind of directory: `ldap`, `static`, …
    pub kind: toml::Spanned<String>,
    /// Key template: `\U` full name, `\u` local part, `\d` domain.
    pub query_key: Option<String>,
    /// Drop `@domain` from the key.
    #[serde(default)]
    pub strip_domain: bool,
    /// Lower-case the key.
    #[serde(default)]
    pub lower_case: bool,
    /// Domain added to names without one.
    pub default_domain: Option<String>,
    /// Suffix for bare host names (`box1` → `box1.vpn`).
    pub host_suffix: Option<String>,
    /// Host name → address rewrites.
    #[serde(default)]
    pub hosts: std::collections::HashMap<String, String>,
    /// With a directory watch: end a user's sessions whose back end is no
    /// longer the user's route (default: on with the watch).
    pub kick_on_move: Option<bool>,
    /// `[directory.cache]`.
    pub cache: Option<CacheConfig>,
}

/// `[directory.cache]`: per-worker LRU with TTLs (on by default for LDAP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether to cache.
    pub enabled: bool,
    /// Entries per worker, and in the process-wide layer.
    pub capacity: usize,
    /// Bytes per worker (keys) and in the process-wide layer (keys and
    /// routes), found and negative entries alike.
    pub max_bytes: usize,
    /// Lifetime of a found route.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Lifetime of "no such user".
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Oldest entry served while the directory fails.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let d = CacheSettings::default();
        Self {
            enabled: true,
            capacity: d.capacity,
            max_bytes: d.max_bytes,
            ttl: d.ttl,
            negative_ttl: d.negative_ttl,
            max_stale: d.max_stale,
        }
    }
}

/// `[backend]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// IMAP port used when the directory gives a host without a port.
    pub imap_port: u16,
    /// POP3 port used when the directory gives a host without a port.
    pub pop3_port: u16,
    /// ManageSieve port used when the directory gives a host without a
    /// port.
    pub managesieve_port: u16,
    /// Bound on TCP connect to a back end.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on greeting + login exchange with a back end.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// IMAP login method.
    pub imap_auth: ImapBackendAuth,
    /// POP3 login method.
    pub pop3_auth: Pop3BackendAuth,
    /// Tell back ends the client's address (IMAP `ID x-originating-ip`,
    /// POP3 `XCLIENT`); Dovecot uses it when the proxy is in its
    /// `login_trusted_networks`.
    pub forward_client_address: bool,
    /// Start each back-end connection with a PROXY protocol v2 header
    /// naming the client (Dovecot's `haproxy = yes` listeners).
    pub proxy_protocol: bool,
    /// Send a login before the back end's greeting when an earlier
    /// login on this worker saw what that back end's greeting offers.
    pub early_login: bool,
    /// TLS towards back ends: `none`, `implicit` or `starttls`.
    pub tls: toml::Spanned<TlsMode>,
    /// CA certificates (PEM) that back-end certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// Networks a route may point into (default: any); a route outside is
    /// refused as a temporary failure and logged.
    pub allowed_networks: Vec<Network>,
    /// Ports a route may name (default: every protocol's back-end port,
    /// their implicit-TLS ports (993, 995) with back-end TLS, and the
    /// ports the static map names).
    pub allowed_ports: Vec<u16>,
    /// Compress the back-end leg (IMAP `COMPRESS DEFLATE`, RFC 4978) when
    /// the back end offers it: `off` or `deflate`.
    pub compress: CompressMode,
    /// Deflate level of what mailgate sends compressed (1 fastest … 9
    /// smallest).
    pub compress_level: u32,
}

/// `[backend] compress`, `[[listen]] compress`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressMode {
    /// The back-end leg as the client's: uncompressed (a client's own
    /// `COMPRESS` passes through end to end).
    #[default]
    Off,
    /// `COMPRESS DEFLATE` after the back-end login, when offered.
    Deflate,
}

/// Default `[backend] compress_level`.
pub const DEFAULT_COMPRESS_LEVEL: u32 = 1;

impl BackendConfig {
    /// The back-end port of `protocol` when a route names none (its
    /// `<protocol>_port` key).
    pub fn port(&self, protocol: Protocol) -> u16 {
        match protocol {
            Protocol::Imap => self.imap_port,
            Protocol::Pop3 => self.pop3_port,
            Protocol::ManageSieve => self.managesieve_port,
        }
    }

    /// How to log in to `protocol`'s back ends (its `<protocol>_auth` key).
    pub fn auth(&self, protocol: Protocol) -> BackendAuth {
        match protocol {
            Protocol::Imap => self.imap_auth.into(),
            Protocol::Pop3 => self.pop3_auth.into(),
            // SASL PLAIN is ManageSieve's only way to log in.
            Protocol::ManageSieve => BackendAuth::Plain,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            imap_port: Protocol::Imap.spec().default_backend_port,
            pop3_port: Protocol::Pop3.spec().default_backend_port,
            managesieve_port: Protocol::ManageSieve.spec().default_backend_port,
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(15),
            imap_auth: ImapBackendAuth::Auto,
            pop3_auth: Pop3BackendAuth::Auto,
            forward_client_address: true,
            proxy_protocol: false,
            early_login: true,
            tls: toml::Spanned::new(0..0, TlsMode::None),
            ca_file: None,
            allowed_networks: Network::ANY.to_vec(),
            allowed_ports: Vec::new(),
            compress: CompressMode::Off,
            compress_level: DEFAULT_COMPRESS_LEVEL,
        }
    }
}
