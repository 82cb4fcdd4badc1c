//! The relay phase: the login answer and pipelined bytes written first, the
//! session registered for the admin actions, then bytes both ways.

use super::io::write_until;
use super::preauth::LoggedIn;
use super::record::{Gauge, GaugeKind, Outcome, SessionRecord};
use super::reuse::{self, ParkTicket};
use super::tracking::ImapInspector;
use super::SessionContext;
use crate::compress::DeflateStream;
use crate::imap::tracker::SessionTracker;
use crate::metrics::CacheEvent;
use crate::metrics::RelayMethod;
use crate::registry::{Leg, Names, Registration};
use crate::relay::{self, tracked, RelayEnd};
use crate::tls::MaybeTls;
use crate::transport::{Detach, Stream};
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use tokio::time::Instant;

/// Relays a logged-in session until it ends.
pub(super) async fn relay_session<S: Stream, B: Stream + Detach + 'static>(
    ctx: &SessionContext,
    session: Box<LoggedIn<S, MaybeTls<B>>>,
    record: &mut SessionRecord,
) {
    let LoggedIn {
        client,
        backend,
        to_client,
        to_backend,
        park,
        compressed,
    } = *session;
    record.backend_to_client = to_client.len() as u64;
    record.relay = Some(RelayMethod::Copy);
    let _relaying = Gauge::enter(ctx, GaugeKind::Relaying);
    // The client's socket inherited these from its listening socket.
    ctx.backend.keepalive.apply(backend.as_raw_fd());
    // Bounded like any relay write: by the idle timeout.
    let idle = Instant::now() + ctx.backend.relay.idle_timeout;
    if let Some(ticket) = park {
        // Boxed, like the compressed leg below: only a `connection_cache`
        // listener's sessions need the tracker's state.
        return Box::pin(async move {
            // The pipelined bytes go through the tracker with the rest.
            if write_until(&client, to_client, idle).await.is_err() {
                record.outcome = Outcome::RelayError;
                return;
            }
            tracked(ctx, client, backend, to_backend, *ticket, record).await;
        })
        .await;
    }
    if let Some(received) = compressed {
        // The back end agreed: from here on the leg is deflate whatever
        // else holds (the level only shapes what mailgate sends). Boxed: the
        // deflate state would size every session's future.
        let level = ctx
            .listener
            .compress
            .unwrap_or(crate::config::DEFAULT_COMPRESS_LEVEL);
        return Box::pin(async move {
            let backend = DeflateStream::new(backend, level, received);
            relay_plain(ctx, &client, &backend, to_client, to_backend, idle, record).await;
            record.wire = Some(backend.wire_bytes());
        })
        .await;
    }
    relay_plain(ctx, &client, &backend, to_client, to_backend, idle, record).await;
}

/// The first writes, then bytes both ways until the session ends.
async fn relay_plain<S: Stream, B: Stream>(
    ctx: &SessionContext,
    client: &S,
    backend: &B,
    to_client: Vec<u8>,
    to_backend: Vec<u8>,
    idle: Instant,
    record: &mut SessionRecord,
) {
    record.client_to_backend = to_backend.len() as u64;
    // Declared after the streams: dropped (unregistered) before they close.
    let _registration = register(ctx, record, client, backend);
    // Boxed: the two write futures are large and done in a moment; inline
    // they would size this future (alive for the whole session) for good.
    let first = Box::pin(async {
        tokio::join!(
            write_until(client, to_client, idle),
            write_until(backend, to_backend, idle)
        )
    })
    .await;
    if first.0.is_err() || first.1.is_err() {
        record.outcome = Outcome::RelayError;
        return;
    }
    let stats = relay::relay(client, backend, ctx.backend.relay).await;
    record.relay = Some(stats.method);
    record.client_to_backend += stats.client_to_backend;
    record.backend_to_client += stats.backend_to_client;
    record.outcome = match stats.end {
        RelayEnd::Closed => Outcome::Relayed,
        RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        RelayEnd::Error(_) => Outcome::RelayError,
    };
}

/// Registers the session for the admin actions and moves; keep the guard
/// until the relay ends, declared after the streams so that it drops first.
fn register<S: Stream, B: Stream>(
    ctx: &SessionContext,
    record: &SessionRecord,
    client: &S,
    backend: &B,
) -> Option<Registration> {
    let (Some(user), Some(backend_addr)) = (&record.user, record.backend) else {
        return None;
    };
    let canonical = ctx.worker.invalidations.canonical(user);
    let names = Names {
        user,
        identity: record.identity.as_ref().unwrap_or(user),
        canonical: &canonical,
    };
    Some(ctx.worker.registry.register(
        names,
        Leg {
            addr: record.peer,
            fd: client.as_raw_fd(),
        },
        Leg {
            addr: backend_addr,
            fd: backend.as_raw_fd(),
        },
        ctx.listener.spec.shutting_down,
    ))
}

/// The relay of a `connection_cache` listener: tracked, and at the client's
/// `LOGOUT` answered here with the back end parked when it is clean.
async fn tracked<S: Stream, B: Stream + Detach + 'static>(
    ctx: &SessionContext,
    client: S,
    backend: MaybeTls<B>,
    to_backend: Vec<u8>,
    ticket: ParkTicket,
    record: &mut SessionRecord,
) {
    let unselect = ticket.greeting.capability.as_deref().is_some_and(|caps| {
        caps.split_ascii_whitespace()
            .any(|c| c.eq_ignore_ascii_case("UNSELECT"))
    });
    let tracker = RefCell::new(ImapInspector(SessionTracker::new(
        ctx.listener.settings.max_line,
        unselect,
    )));
    let registration = register(ctx, record, &client, &backend);
    let end = tracked::relay(&client, &backend, &tracker, to_backend, ctx.backend.relay).await;
    drop(registration);
    record.relay = Some(end.stats.method);
    record.client_to_backend += end.stats.client_to_backend;
    record.backend_to_client += end.stats.backend_to_client;
    record.outcome = match end.stats.end {
        RelayEnd::Closed => Outcome::Relayed,
        RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        RelayEnd::Error(_) => Outcome::RelayError,
    };
    if let Some(reason) = tracker.borrow().0.logout_not_parked() {
        tracing::debug!(client = %record.peer, reason, "LOGOUT forwarded: the session cannot be parked");
        ctx.record(|r| r.cache_event(CacheEvent::NotParkable, 1));
    }
    if let Some(logout) = end.logout {
        if reuse::logout(ctx, &client, backend, logout, ticket).await {
            record.backend_session = record.backend_session.map(|s| match s {
                "reused" => "reused, parked",
                _ => "new, parked",
            });
        }
    }
}
