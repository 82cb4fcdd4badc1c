//! The relay phase: the login answer and pipelined bytes written first, the
//! session registered for the admin actions, then bytes both ways.

use super::preauth::{write_until, LoggedIn};
use super::record::{Gauge, GaugeKind, Outcome, SessionRecord};
use super::SessionContext;
use crate::config::Protocol;
use crate::metrics::RelayMethod;
use crate::registry::Leg;
use crate::relay::{self, RelayEnd};
use crate::transport::Stream;
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
            record.identity.as_deref().unwrap_or(user),
            Leg {
                addr: record.peer,
                fd: client.as_raw_fd(),
            },
            Leg {
                addr: backend_addr,
                fd: backend.as_raw_fd(),
            },
            match ctx.listener.protocol {
                Protocol::Imap => b"* BYE Server shutting down.\r\n",
                Protocol::Pop3 => b"",
            },
        )),
        _ => None,
    };
    // The client's socket inherited these from its listening socket.
    ctx.backend.keepalive.apply(backend.as_raw_fd());
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
