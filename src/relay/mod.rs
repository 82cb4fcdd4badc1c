//! Post-login relay: bytes both ways, byte-exact, until both sides are done.
//!
//! Two paths share one contract: EOF from one side becomes a write shutdown
//! towards the other (half-close) while the other direction keeps draining;
//! an error in either direction ends both (logged once); the session ends
//! after `idle_timeout` without a byte in either direction.
//!
//! * [`splice`]: when both sides are plain sockets, bytes go socket → pipe →
//!   socket with `splice(2)` and never enter user space; pipes come from a
//!   per-worker pool and are held only while bytes are in flight.
//! * [`copy`]: otherwise (a TLS side), through user-space buffers.

pub mod copy;
pub mod inspect;
pub mod pipes;
pub mod splice;
pub mod tracked;

use crate::transport::Stream;
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their sending direction.
    Closed,
    /// No byte moved for the idle timeout.
    IdleTimeout,
    /// A read or write failed (reset, broken pipe, …).
    Error(io::ErrorKind),
}

/// Totals of one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client to the back end.
    pub client_to_backend: u64,
    /// Bytes from the back end to the client.
    pub backend_to_client: u64,
    /// Why it ended.
    pub end: RelayEnd,
    /// Which path moved the bytes.
    pub method: RelayMethod,
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Bytes per read, per direction (copy path).
    pub buffer_size: usize,
    /// Idle limit.
    pub idle_timeout: Duration,
    /// Use splice when both sides are plain sockets.
    pub splice: bool,
    /// Pipe capacity for splice (bytes; rounded by the kernel).
    pub pipe_size: usize,
    /// Pipes in existence at once, all workers.
    pub max_pipes: usize,
}

pub use crate::metrics::RelayMethod;

/// Smallest pipe capacity for splice (one page; the kernel rounds up).
pub const MIN_PIPE_SIZE: usize = 4096;

/// Relays `client` ⇄ `backend` with splice when possible, else by copying.
pub async fn relay<A: Stream, B: Stream>(
    client: &A,
    backend: &B,
    settings: RelaySettings,
) -> RelayStats {
    if settings.splice {
        if let (Some(c), Some(b)) = (client.splice_fd(), backend.splice_fd()) {
            match Box::pin(splice::relay(client, backend, c, b, settings)).await {
                Ok(stats) => return stats,
                Err(e) => tracing::warn!("splice unavailable, copying instead: {e}"),
            }
        }
    }
    Box::pin(copy::relay(client, backend, settings)).await
}

pub(crate) struct Shared<'a, A, B> {
    pub client: &'a A,
    pub backend: &'a B,
    pub last_activity: Cell<Instant>,
    pub error: Cell<Option<io::ErrorKind>>,
    pub client_to_backend: Cell<u64>,
    pub backend_to_client: Cell<u64>,
}

impl<'a, A: Stream, B: Stream> Shared<'a, A, B> {
    /// Both sides, idle clock at now, no bytes yet.
    pub fn new(client: &'a A, backend: &'a B) -> Self {
        Self {
            client,
            backend,
            last_activity: Cell::new(Instant::now()),
            error: Cell::new(None),
            client_to_backend: Cell::new(0),
            backend_to_client: Cell::new(0),
        }
    }

    /// Ends both directions after an error (the first error is kept).
    pub fn abort(&self, kind: io::ErrorKind) {
        tracing::debug!(error = %kind, "relay ends on an error");
        if self.error.get().is_none() {
            self.error.set(Some(kind));
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.backend.shutdown(Shutdown::Both);
    }
}

/// Runs both directions against the idle clock; the stats when done.
///
/// The directions come pinned by the caller, so that each exists once in
/// the session's state (a `join!` inside an `async` block would hold a
/// second copy of each beside the caller's, ~1.5 KiB per TLS session).
pub(crate) async fn run_both<A: Stream, B: Stream>(
    shared: &Shared<'_, A, B>,
    mut up: Pin<&mut impl Future<Output = ()>>,
    mut down: Pin<&mut impl Future<Output = ()>>,
    idle: Duration,
    method: RelayMethod,
) -> RelayStats {
    let clock = tokio::time::sleep_until(shared.last_activity.get() + idle);
    tokio::pin!(clock);
    let (mut up_done, mut down_done) = (false, false);
    let end = std::future::poll_fn(|cx| {
        up_done = up_done || up.as_mut().poll(cx).is_ready();
        down_done = down_done || down.as_mut().poll(cx).is_ready();
        if up_done && down_done {
            return Poll::Ready(shared.error.get().map_or(RelayEnd::Closed, RelayEnd::Error));
        }
        poll_idle(clock.as_mut(), shared, idle, cx).map(|()| RelayEnd::IdleTimeout)
    })
    .await;
    RelayStats {
        client_to_backend: shared.client_to_backend.get(),
        backend_to_client: shared.backend_to_client.get(),
        end,
        method,
    }
}

/// `Ready` once no byte has moved for `idle` (both sides are then shut
/// down); otherwise the clock is set to the last activity plus `idle`.
pub(crate) fn poll_idle<A: Stream, B: Stream>(
    mut clock: Pin<&mut Sleep>,
    shared: &Shared<'_, A, B>,
    idle: Duration,
    cx: &mut Context<'_>,
) -> Poll<()> {
    while clock.as_mut().poll(cx).is_ready() {
        let deadline = shared.last_activity.get() + idle;
        if Instant::now() >= deadline {
            shared.abort(io::ErrorKind::TimedOut);
            return Poll::Ready(());
        }
        clock.as_mut().reset(deadline);
    }
    Poll::Pending
}
