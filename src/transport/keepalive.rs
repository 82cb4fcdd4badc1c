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
            let mut probes = socket2::TcpKeepalive::new()
                .with_time(self.idle)
                .with_interval(KEEPALIVE_INTERVAL);
            // With `TCP_USER_TIMEOUT` set, Linux drops a connection whose
            // probes go unanswered once that much time has passed, and
            // never looks at the probe count (tcp(7)): a `setsockopt` for
            // nothing on every back-end connection.
            if self.user_timeout.is_zero() {
                probes = probes.with_retries(KEEPALIVE_PROBES);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> socket2::Socket {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()
    }

    fn applied(user_timeout: Duration) -> socket2::Socket {
        let socket = socket();
        let settings = KeepAlive {
            idle: Duration::from_secs(60),
            user_timeout,
        };
        settings.apply_to(&socket);
        socket
    }

    #[test]
    fn the_probe_count_is_set_only_without_a_user_timeout() {
        let default_count = socket().keepalive_retries().unwrap();

        let with = applied(Duration::from_secs(120));
        assert!(with.keepalive().unwrap());
        assert_eq!(with.keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(with.keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(
            with.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(120))
        );
        // Linux ignores the count once TCP_USER_TIMEOUT is set: not asked.
        assert_eq!(with.keepalive_retries().unwrap(), default_count);

        let without = applied(Duration::ZERO);
        assert_eq!(without.keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(without.tcp_user_timeout().unwrap(), None);
    }
}
