//! Post-login relay: bytes both ways, byte-exact, until both sides are done.
//!
//! Each direction reads into one owned buffer and writes it all before
//! reading again (so at most `buffer_size` bytes per direction are in flight).
//! A quiet direction waits with a small buffer ([`QUIET_READ_SIZE`]); a read
//! that fills it switches to a full-size buffer taken from a per-worker pool,
//! and the big buffer goes back to the pool when the stream slows down. So an
//! idle session (IMAP IDLE) holds two small buffers, not two large ones.
//! EOF from one side becomes a write shutdown towards the other (half-close),
//! and the other direction keeps draining. An error in either direction ends
//! both. The session ends after `idle_timeout` without a byte in either
//! direction. This is the copy path; zero-copy splice is a separate path.

use crate::runtime::transport::Stream;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::Shutdown;
use std::time::Duration;
use tokio::time::Instant;

/// Read size while a direction is quiet.
pub const QUIET_READ_SIZE: usize = 2048;
/// Large buffers kept per worker for reuse.
const POOL_LIMIT: usize = 256;

thread_local! {
    /// Each worker thread's spare large buffers (no sharing across cores).
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_large(size: usize) -> Vec<u8> {
    POOL.with_borrow_mut(|pool| pool.pop())
        .filter(|b| b.capacity() == size)
        .unwrap_or_else(|| Vec::with_capacity(size))
}

fn give_back(buf: Vec<u8>) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_LIMIT {
            pool.push(buf);
        }
    });
}

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
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Bytes per read, per direction.
    pub buffer_size: usize,
    /// Idle limit.
    pub idle_timeout: Duration,
}

struct Shared<'a, A, B> {
    client: &'a A,
    backend: &'a B,
    last_activity: Cell<Instant>,
    error: Cell<Option<io::ErrorKind>>,
    client_to_backend: Cell<u64>,
    backend_to_client: Cell<u64>,
}

impl<A: Stream, B: Stream> Shared<'_, A, B> {
    fn abort(&self, kind: io::ErrorKind) {
        tracing::debug!(error = %kind, "relay ends on an error");
        if self.error.get().is_none() {
            self.error.set(Some(kind));
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.backend.shutdown(Shutdown::Both);
    }
}

/// Relays until both directions are closed, one fails, or the idle timeout.
pub async fn relay<A: Stream, B: Stream>(
    client: &A,
    backend: &B,
    settings: RelaySettings,
) -> RelayStats {
    let shared = Shared {
        client,
        backend,
        last_activity: Cell::new(Instant::now()),
        error: Cell::new(None),
        client_to_backend: Cell::new(0),
        backend_to_client: Cell::new(0),
    };
    let up = pump(
        &shared,
        client,
        backend,
        &shared.client_to_backend,
        settings.buffer_size,
    );
    let down = pump(
        &shared,
        backend,
        client,
        &shared.backend_to_client,
        settings.buffer_size,
    );
    let both = async { tokio::join!(up, down) };
    let end = tokio::select! {
        _ = both => shared.error.get().map_or(RelayEnd::Closed, RelayEnd::Error),
        () = idle_watchdog(&shared, settings.idle_timeout) => {
            shared.abort(io::ErrorKind::TimedOut);
            RelayEnd::IdleTimeout
        }
    };
    RelayStats {
        client_to_backend: shared.client_to_backend.get(),
        backend_to_client: shared.backend_to_client.get(),
        end,
    }
}

/// Copies `from` → `to` until EOF or error, counting into `total`.
async fn pump<A: Stream, B: Stream, F: Stream, T: Stream>(
    shared: &Shared<'_, A, B>,
    from: &F,
    to: &T,
    total: &Cell<u64>,
    buffer_size: usize,
) {
    let quiet_size = QUIET_READ_SIZE.min(buffer_size);
    let mut buf = Vec::with_capacity(quiet_size);
    loop {
        let (res, b) = from.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) => {
                let _ = to.close_write().await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("relay read: {e}");
                shared.abort(e.kind());
                return;
            }
        };
        let (res, b) = to.write_all(buf).await;
        buf = b;
        if let Err(e) = res {
            shared.abort(e.kind());
            return;
        }
        total.set(total.get() + n as u64);
        shared.last_activity.set(Instant::now());
        let capacity = buf.capacity();
        if n == capacity && capacity < buffer_size {
            buf = take_large(buffer_size);
        } else if capacity == buffer_size && n < buffer_size / 4 && capacity > quiet_size {
            give_back(std::mem::replace(&mut buf, Vec::with_capacity(quiet_size)));
        }
    }
}

async fn idle_watchdog<A: Stream, B: Stream>(shared: &Shared<'_, A, B>, idle: Duration) {
    loop {
        let deadline = shared.last_activity.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}
