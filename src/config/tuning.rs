//! `[relay]` and `[runtime]`: how bytes move after login and how the
//! workers run.

use serde::Deserialize;
use std::time::Duration;

/// `[relay]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Size of each direction's copy buffer.
    pub buffer_size: usize,
    /// Session closed after this long without a byte in either direction.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Zero-copy splice when both sides are plain sockets.
    pub splice: bool,
    /// Pipe capacity for splice.
    pub pipe_size: usize,
    /// Pipes in existence at once, process-wide (each holds two
    /// descriptors); a session that finds none relays by copying.
    pub max_pipes: usize,
    /// TCP keepalive on both legs (set on the listening sockets, which
    /// accepted connections inherit, and on back-end connections): idle time
    /// before the first probe (0 turns keepalive off).
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// `TCP_USER_TIMEOUT` on both legs: how long sent data may
    /// stay unacknowledged before the connection is dropped (0: the
    /// kernel's default).
    #[serde(with = "humantime_serde")]
    pub user_timeout: Duration,
}

impl RelayConfig {
    /// The keepalive settings of both legs.
    pub fn keep_alive(&self) -> crate::transport::KeepAlive {
        crate::transport::KeepAlive {
            idle: self.keepalive,
            user_timeout: self.user_timeout,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            buffer_size: 64 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            splice: true,
            pipe_size: 1024 * 1024,
            max_pipes: 1024,
            keepalive: Duration::from_secs(60),
            user_timeout: Duration::from_secs(120),
        }
    }
}

/// `[connection_cache]`: bounds of the back-end sessions kept for
/// `connection_cache` listeners.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionCacheConfig {
    /// A parked session is closed this long after its client's LOGOUT.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Parked sessions per user and back end.
    pub max_per_user: usize,
    /// Parked sessions per worker.
    pub max: usize,
    /// A session parked longer than this must answer a `NOOP` before reuse.
    #[serde(with = "humantime_serde")]
    pub check_after: Duration,
    /// A back-end session logged in longer ago than this is logged out at
    /// its client's LOGOUT instead of parked (and dropped if parked), so a
    /// changed password ends it within this time at the latest.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for ConnectionCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_per_user: 4,
            max: 1000,
            check_after: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
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
    /// The reactor: `auto` (io_uring where it can be set up, else epoll),
    /// `uring` or `epoll`.
    pub io: crate::transport::IoMode,
    /// After binding, switch to this user (root is needed only to bind).
    pub user: Option<String>,
    /// The group to switch to; the user's own group when absent.
    pub group: Option<String>,
    /// Keep running as root when started as root without `user`.
    pub allow_root: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            pin_workers: true,
            shutdown_grace: Duration::from_secs(30),
            ring_entries: 256,
            io: crate::transport::IoMode::Auto,
            user: None,
            group: None,
            allow_root: false,
        }
    }
}
