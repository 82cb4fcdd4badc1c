//! Typed configuration: parsed once from TOML, validated, then shared read-only.
//!
//! Every key is declared with `deny_unknown_fields`, so a typo is an error that
//! names the file, the line and the key instead of a silently ignored setting.
//! Nothing here performs network I/O; the static map file named by
//! `[directory] map` is read and checked here so that `check-config` catches it.

mod error;
mod load;

pub use error::ConfigError;
pub use load::{load_file, parse_str};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default longest command line accepted before login (bytes, CRLF excluded).
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;
/// Default largest IMAP literal accepted before login (bytes).
pub const DEFAULT_MAX_LITERAL: usize = 8 * 1024;
/// Default number of failed logins after which a connection is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;

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
}

/// Mail protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1 / IMAP4rev2.
    Imap,
    /// POP3.
    Pop3,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        })
    }
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
    /// TLS mode (default `none`); only `none` is implemented so far.
    #[serde(default)]
    pub tls: Option<toml::Spanned<TlsMode>>,
    /// Text of the greeting; never the back end's banner.
    #[serde(default)]
    pub greeting: Option<String>,
}

/// Kind of directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// A map file (`user host[:port]` per line).
    Static,
    /// LDAP (not implemented yet; rejected at load).
    Ldap,
}

/// `[directory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Which directory to use.
    pub kind: toml::Spanned<DirectoryKind>,
    /// Static map file, relative to the config file's folder.
    pub map: Option<toml::Spanned<PathBuf>>,
    /// Whether `Alice@x` and `alice@x` are different users (domains never are).
    #[serde(default)]
    pub local_part_case_sensitive: bool,
}

/// How the proxy logs in to POP3 back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pop3BackendAuth {
    /// Ask `CAPA`; use `AUTH PLAIN` when offered, else `USER`/`PASS`.
    #[default]
    Auto,
    /// Always `AUTH PLAIN` (saves the CAPA round trip).
    Plain,
    /// Always `USER`/`PASS`.
    User,
}

/// How the proxy logs in to IMAP back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImapBackendAuth {
    /// `AUTHENTICATE PLAIN` when the back end offers `AUTH=PLAIN`, else `LOGIN`.
    #[default]
    Auto,
    /// Always `AUTHENTICATE PLAIN`.
    Plain,
    /// Always `LOGIN` (quoted strings or literals as needed).
    Login,
}

/// `[backend]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// IMAP port used when the directory gives a host without a port.
    pub imap_port: u16,
    /// POP3 port used when the directory gives a host without a port.
    pub pop3_port: u16,
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
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            imap_port: 143,
            pop3_port: 110,
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(15),
            imap_auth: ImapBackendAuth::Auto,
            pop3_auth: Pop3BackendAuth::Auto,
            forward_client_address: true,
        }
    }
}

/// `[limits]`: every pre-login input path is bounded by these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest command line (bytes, without CRLF and literal contents).
    pub max_line: usize,
    /// Largest IMAP literal before login.
    pub max_literal: usize,
    /// Failed logins after which the connection is closed.
    pub max_auth_failures: u32,
    /// Time a client may take from connect to successful login.
    #[serde(with = "humantime_serde")]
    pub preauth_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_literal: DEFAULT_MAX_LITERAL,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            preauth_timeout: Duration::from_secs(60),
        }
    }
}

/// `[relay]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Size of each direction's copy buffer.
    pub buffer_size: usize,
    /// Session closed after this long without a byte in either direction.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            buffer_size: 64 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per CPU this process may run on.
    pub workers: usize,
    /// Pin each worker to one CPU.
    pub pin_workers: bool,
    /// After SIGTERM/SIGINT, how long running sessions may go on.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// io_uring submission queue entries per worker.
    pub ring_entries: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            pin_workers: true,
            shutdown_grace: Duration::from_secs(30),
            ring_entries: 256,
        }
    }
}

/// Where the config was read from, for resolving relative paths.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed and validated configuration.
    pub config: Config,
    /// The static map, when `kind = "static"`.
    pub static_map: Option<crate::directory::StaticMap>,
    /// Folder holding the config file (relative paths start here).
    pub base_dir: PathBuf,
}
