//! The copy path: user-space buffers, for sessions with a TLS side.
//!
//! Each direction reads into one owned buffer and writes it all before
//! reading again (so at most `buffer_size` bytes per direction are in flight).
//! A quiet direction first waits for readiness ([`Stream::readable`]) holding
//! no buffer, then reads into a small one ([`QUIET_READ_SIZE`], pooled per
//! worker); a read that fills it switches to a full-size buffer from another
//! per-worker pool, which goes back when the stream slows down. An idle
//! session (IMAP IDLE) holds no buffer at all on either transport (io_uring
//! sockets wait for readiness on the worker's epoll set, see
//! `transport::uring`).

use super::{run_both, RelayMethod, RelaySettings, RelayStats, Shared};
use crate::transport::Stream;
use std::cell::{Cell, RefCell};
use tokio::time::Instant;

/// Read size while a direction is quiet (taken from the worker's pool once
/// readiness is announced, so an idle direction holds none). An IMAP command,
/// an untagged `EXISTS`/`EXPUNGE` during IDLE or a POP3 answer line fits; a
/// read that fills it switches to a full-size buffer.
pub const QUIET_READ_SIZE: usize = 1024;
/// Large buffers kept per worker for reuse.
const POOL_LIMIT: usize = 256;

thread_local! {
    /// Each worker thread's spare large buffers (no sharing across cores).
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

use crate::transport::buffers::{give_back as give_back_quiet, take as take_quiet};

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

/// Returns `buf` to the pool its size belongs to.
fn give_back_quiet_or_large(buf: Vec<u8>, quiet_size: usize) {
    if buf.capacity() == quiet_size {
        give_back_quiet(buf);
    } else {
        give_back(buf);
    }
}

/// Relays by copying until both directions are closed, one fails, or the idle timeout.
pub async fn relay<A: Stream, B: Stream>(
    client: &A,
    backend: &B,
    settings: RelaySettings,
) -> RelayStats {
    let shared = Shared::new(client, backend);
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
    tokio::pin!(up, down);
    run_both(&shared, up, down, settings.idle_timeout, RelayMethod::Copy).await
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
    // `None` while quiet: the next read waits for readiness without a buffer.
    let mut held: Option<Vec<u8>> = None;
    loop {
        let buf = match held.take() {
            Some(buf) => buf,
            None => {
                if let Err(e) = from.readable().await {
                    shared.abort(e.kind());
                    return;
                }
                take_quiet(quiet_size)
            }
        };
        let (res, buf) = from.read(buf).await;
        let n = match res {
            Ok(0) => {
                give_back_quiet_or_large(buf, quiet_size);
                let _ = Box::pin(to.close_write()).await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("relay read: {e}");
                shared.abort(e.kind());
                return;
            }
        };
        // Boxed (like the close above): inline, the write's state would
        // sit beside the read's in every session's future, idle or not;
        // boxed it exists only while a write is under way.
        let (res, buf) = Box::pin(to.write_all(buf)).await;
        if let Err(e) = res {
            shared.abort(e.kind());
            return;
        }
        total.set(total.get() + n as u64);
        shared.last_activity.set(Instant::now());
        let capacity = buf.capacity();
        held = if n == capacity && capacity < buffer_size {
            give_back_quiet_or_large(buf, quiet_size);
            Some(take_large(buffer_size))
        } else if capacity > quiet_size && n >= buffer_size / 4 {
            Some(buf) // busy: keep the large buffer
        } else {
            give_back_quiet_or_large(buf, quiet_size);
            None
        };
    }
}
