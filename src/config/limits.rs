//! `[limits]`: what a client may do before it has logged in, in bytes,
//! count and time, and how many connections may be open at once.

use crate::login;
use crate::netaddr::Network;
use serde::Deserialize;
use std::time::Duration;

/// Default bound on connect → login.
pub const DEFAULT_PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Default delay before a failed login is answered (like Dovecot's
/// `auth_failure_delay`): the same for an unknown user, a wrong password and
/// an inactive user, so their timing tells nothing.
pub const DEFAULT_FAILURE_DELAY: Duration = Duration::from_secs(2);
/// Default connections not logged in yet at once from one client address
/// (IPv4 address, IPv6 /64). Logged-in sessions do not count: thousands of
/// users may sit behind one carrier-grade NAT address, while logins in
/// progress from one address are few (a mail client opens a handful).
pub const DEFAULT_MAX_PREAUTH_PER_ADDRESS: usize = 64;

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
    /// Commands a client may send before login (then it is closed).
    pub max_preauth_commands: u32,
    /// Refused commands (IMAP `BAD`, POP3 `-ERR` other than a failed login)
    /// a client may send before login (then it is closed).
    pub max_protocol_errors: u32,
    /// Time a client may take from connect to successful login, reading and
    /// writing alike.
    #[serde(with = "humantime_serde")]
    pub preauth_timeout: Duration,
    /// Delay before any failed login is answered.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Failed logins (wrong password, unknown user) from one client address
    /// (IPv6: one /64) after which its logins are refused for the rest of
    /// `failure_window`; counted per worker; 0 turns the limit off.
    pub max_failures_per_address: u32,
    /// The window of `max_failures_per_address`.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Connections open at once, all listeners together; 0 derives it from
    /// the descriptor limit (each session holds two descriptors).
    pub max_connections: usize,
    /// Connections not logged in yet, at once, from one client address
    /// (IPv4 address, IPv6 /64); 0 turns the cap off. Read from the older
    /// name `max_connections_per_address` too (which counted logged-in
    /// sessions as well).
    #[serde(alias = "max_connections_per_address")]
    pub max_preauth_per_address: usize,
    /// Logged-in sessions at once of one user from one client address
    /// (IPv4 address, IPv6 /64), all workers together, like Dovecot's
    /// `mail_max_userip_connections`; 0 (the default) turns the cap off.
    pub max_sessions_per_user_address: usize,
    /// Connections not logged in yet, at once; 0 means a quarter of
    /// `max_connections`.
    pub max_preauth_connections: usize,
    /// Client networks the per-address caps (connections and failed logins)
    /// do not apply to: webmail servers, balancers.
    pub exempt_networks: Vec<Network>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: login::DEFAULT_MAX_LINE,
            max_literal: login::DEFAULT_MAX_LITERAL,
            max_auth_failures: login::DEFAULT_MAX_AUTH_FAILURES,
            max_preauth_commands: login::DEFAULT_MAX_PREAUTH_COMMANDS,
            max_protocol_errors: login::DEFAULT_MAX_PROTOCOL_ERRORS,
            preauth_timeout: DEFAULT_PREAUTH_TIMEOUT,
            failure_delay: DEFAULT_FAILURE_DELAY,
            max_failures_per_address: 30,
            failure_window: Duration::from_secs(300),
            max_connections: 0,
            max_preauth_per_address: DEFAULT_MAX_PREAUTH_PER_ADDRESS,
            max_sessions_per_user_address: 0,
            max_preauth_connections: 0,
            exempt_networks: Vec::new(),
        }
    }
}

impl Limits {
    /// Whether the per-address caps skip `ip`.
    pub fn is_exempt(&self, ip: std::net::IpAddr) -> bool {
        self.exempt_networks.iter().any(|n| n.contains(ip))
    }
}
