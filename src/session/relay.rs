//! The relay phase: the login answer and pipelined bytes written first, the
//! session registered for the admin actions, then bytes both ways.

use super::preauth::{write_until, LoggedIn};
use super::record::{Gauge, GaugeKind, Outcome, SessionRecord};
use super::SessionContext;
use crate::config::Protocol;
use crate::metrics::RelayMethod;
use crate::relay::{self, RelayEnd};
use crate::transport::Stream;
use std::os::fd::{BorrowedFd, RawFd};
use tokio::time::Instant;

/// Relays a logged-in session until it ends.
pub(super) async fn relay_session<S: Stream, B: Stream>(
    ctx: &SessionContext,
    session: LoggedIn<S, B>,
    record: &mut SessionRecord,
) {
    let LoggedIn {
        client,
        backend,
        to_client,
        to_backend,
    } = session;
    record.client_to_backend = to_backend.len() as u64;
    record.backend_to_client = to_client.len() as u64;
    record.relay = Some(RelayMethod::Copy);
    let _relaying = Gauge::enter(ctx, GaugeKind::Relaying);
    // Declared after the streams: dropped (unregistered) before they close.
    let _registration = match (record.user.as_deref(), record.backend) {
        (Some(user), Some(backend_addr)) => Some(ctx.worker.registry.register(
            user,
            record.peer,
            backend_addr,
            client.as_raw_fd(),
            backend.as_raw_fd(),
            match ctx.listener.protocol {
                Protocol::Imap => b"* BYE Server shutting down.\r\n",
                Protocol::Pop3 => b"",
            },
        )),
        _ => None,
    };
    keep_alive(ctx, client.as_raw_fd());
    keep_alive(ctx, backend.as_raw_fd());
    // Boxed: the two write futures are large and done in a moment; inline
    // they would size this future (alive for the whole session) for good.
    // Bounded like any relay write: by the idle timeout.
    let idle = Instant::now() + ctx.backend.relay.idle_timeout;
    let first = Box::pin(async {
        tokio::join!(
            write_until(&client, to_client, idle),
            write_until(&backend, to_backend, idle)
        )
    })
    .await;
    if first.0.is_err() || first.1.is_err() {
        record.outcome = Outcome::RelayError;
        return;
    }
    let stats = relay::relay(&client, &backend, ctx.backend.relay).await;
    record.relay = Some(stats.method);
    record.client_to_backend += stats.client_to_backend;
    record.backend_to_client += stats.backend_to_client;
    record.outcome = match stats.end {
        RelayEnd::Closed => Outcome::Relayed,
        RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        RelayEnd::Error(_) => Outcome::RelayError,
    };
}

/// TCP keepalive and `TCP_USER_TIMEOUT` on one leg, so a peer that vanished
/// (no FIN, no RST) is noticed. Best effort: a failure is logged.
fn keep_alive(ctx: &SessionContext, fd: RawFd) {
    // SAFETY: `fd` belongs to a stream the caller holds for this whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&fd);
    let policy = &ctx.backend;
    if !policy.keepalive.is_zero() {
        let probes = socket2::TcpKeepalive::new()
            .with_time(policy.keepalive)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES);
        if let Err(e) = socket.set_tcp_keepalive(&probes) {
            tracing::debug!("TCP keepalive not set: {e}");
        }
    }
    if !policy.user_timeout.is_zero() {
        if let Err(e) = socket.set_tcp_user_timeout(Some(policy.user_timeout)) {
            tracing::debug!("TCP_USER_TIMEOUT not set: {e}");
        }
    }
}

/// Between keepalive probes once the idle time has passed.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
/// Unanswered probes before the kernel drops the connection.
const KEEPALIVE_PROBES: u32 = 4;
