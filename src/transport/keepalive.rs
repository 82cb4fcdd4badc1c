//! How a vanished peer is noticed: TCP keepalive probes on an idle
//! connection and `TCP_USER_TIMEOUT` on unacknowledged data. Set on the
//! listening sockets (accepted sockets inherit both) and on each outgoing
//! connection.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// Between keepalive probes once the idle time has passed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered probes before the kernel drops the connection.
pub const KEEPALIVE_PROBES: u32 = 4;

/// Keepalive and user-timeout settings for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time before the first probe; zero turns keepalive off.
    pub idle: Duration,
    /// `TCP_USER_TIMEOUT`; zero keeps the kernel's default.
    pub user_timeout: Duration,
}

impl KeepAlive {
    /// Applies the settings to the socket `fd` (best effort: a failure is
    /// logged, the connection works without).
    pub fn apply(&self, fd: RawFd) {
        // SAFETY: the caller owns `fd` and keeps it open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.apply_to(fd);
    }

    /// As [`KeepAlive::apply`], on a socket borrowed safely.
    pub fn apply_to(&self, fd: impl AsFd) {
        let socket = socket2::SockRef::from(&fd);
        if !self.idle.is_zero() {
            let probes = socket2::TcpKeepalive::new()
                .with_time(self.idle)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(KEEPALIVE_PROBES);
            if let Err(e) = socket.set_tcp_keepalive(&probes) {
                tracing::debug!(fd = fd.as_fd().as_raw_fd(), "TCP keepalive not set: {e}");
            }
        }
        if !self.user_timeout.is_zero() {
            if let Err(e) = socket.set_tcp_user_timeout(Some(self.user_timeout)) {
                tracing::debug!("TCP_USER_TIMEOUT not set: {e}");
            }
        }
    }
}
