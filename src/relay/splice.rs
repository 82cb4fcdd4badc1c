//! The splice path: socket → pipe → socket with `splice(2)`, driven by
//! readiness on the worker's own reactor.
//!
//! Why not io_uring's `IORING_OP_SPLICE`: the kernel runs socket splices
//! submitted through io_uring in its async worker threads (`iou-wrk-*`), off
//! the pinned worker's CPU, and it measured no cheaper than this path (2 GiB
//! through one thread on 2 vCPUs: 0.54–0.59 CPU-s/GiB vs 0.39–0.58; figures in
//! `docs/ARCHITECTURE.md`). A non-blocking splice attempted when epoll says
//! the socket is readable stays on the worker's core. While a direction is quiet
//! it waits for readiness without any buffer or pipe.

use super::{pipes, run_both, RelayMethod, RelaySettings, RelayStats, Shared};
use crate::transport::Stream;
use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// A socket descriptor owned elsewhere (by the session's stream), registered
/// with the reactor for the relay's duration.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // sockets belong to the session's streams, which outlive the relay; the
    // pipe is owned by the caller); null offsets are required for pipes and
    // sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Puts a socket in non-blocking mode: `SPLICE_F_NONBLOCK` only covers the
/// pipe side, and a blocking socket would stall the whole worker. io_uring
/// operations are unaffected by the flag.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor that stays open for the call (owned by
    // the session's stream); F_GETFL/F_SETFL only read and set status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Relays with splice; `Err` only if the sockets cannot be registered.
pub async fn relay<A: Stream, B: Stream>(
    client: &A,
    backend: &B,
    client_fd: RawFd,
    backend_fd: RawFd,
    settings: RelaySettings,
) -> io::Result<RelayStats> {
    match (client.registration(), backend.registration()) {
        // epoll: the sockets are registered with the reactor already.
        (Some(client_io), Some(backend_io)) => {
            Ok(run(client, backend, client_io, backend_io, settings).await)
        }
        // io_uring: the sockets are unknown to epoll; register them for the
        // relay's duration.
        (None, None) => {
            set_nonblocking(client_fd)?;
            set_nonblocking(backend_fd)?;
            let interest = Interest::READABLE | Interest::WRITABLE;
            // SAFETY: the descriptors belong to `client` and `backend`, which
            // are borrowed for this whole function, so they stay open and keep
            // referring to the same sockets for the lifetime of both
            // registrations (dropped, and so deregistered, before this
            // function returns).
            let client_io =
                unsafe { AsyncFd::register_with_interest(Borrowed(client_fd), interest)? };
            // SAFETY: as above.
            let backend_io =
                unsafe { AsyncFd::register_with_interest(Borrowed(backend_fd), interest)? };
            Ok(run(client, backend, &client_io, &backend_io, settings).await)
        }
        _ => Err(io::Error::other(
            "the two sides run on different transports",
        )),
    }
}

/// Both directions over the sockets' registrations.
async fn run<A: Stream, B: Stream, F: AsRawFd>(
    client: &A,
    backend: &B,
    client_io: &AsyncFd<F>,
    backend_io: &AsyncFd<F>,
    settings: RelaySettings,
) -> RelayStats {
    let shared = Shared::new(client, backend);
    let up = pump(
        &shared,
        client_io,
        backend_io,
        backend,
        &shared.client_to_backend,
        &settings,
    );
    let down = pump(
        &shared,
        backend_io,
        client_io,
        client,
        &shared.backend_to_client,
        &settings,
    );
    run_both(
        &shared,
        up,
        down,
        settings.idle_timeout,
        RelayMethod::Splice,
    )
    .await
}

/// One direction until EOF (then a write shutdown of `to`) or an error.
async fn pump<A: Stream, B: Stream, T: Stream, F: AsRawFd>(
    shared: &Shared<'_, A, B>,
    from: &AsyncFd<F>,
    to: &AsyncFd<F>,
    to_stream: &T,
    total: &Cell<u64>,
    settings: &RelaySettings,
) {
    loop {
        let mut ready = match from.readable().await {
            Ok(guard) => guard,
            Err(e) => return shared.abort(e.kind()),
        };
        let moved = match pipes::take(settings.pipe_size, settings.max_pipes) {
            Some(pipe) => {
                let end = splice_burst(from, to, &pipe, settings.pipe_size, total, shared).await;
                if end.as_ref().is_ok_and(|e| *e != Burst::Failed) {
                    pipes::give_back(pipe); // empty; a failed one is dropped
                }
                end
            }
            // No pipe to be had (the bound, or out of descriptors): this
            // burst is copied, the session goes on.
            None => copy_burst(from, to, settings.buffer_size, total, shared).await,
        };
        match moved {
            Ok(Burst::Drained) => ready.clear_ready(),
            Ok(Burst::Eof) => {
                let _ = to_stream.close_write().await;
                return;
            }
            Ok(Burst::Failed) | Err(_) => return,
        }
    }
}

/// How a burst of bytes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// The socket has nothing more for now.
    Drained,
    /// The sender closed its direction.
    Eof,
    /// An error ended the relay (already aborted).
    Failed,
}

/// Moves bytes through `pipe` while `from` has them; the pipe is empty
/// afterwards unless the burst failed.
async fn splice_burst<A: Stream, B: Stream, F: AsRawFd>(
    from: &AsyncFd<F>,
    to: &AsyncFd<F>,
    pipe: &pipes::Pipe,
    pipe_size: usize,
    total: &Cell<u64>,
    shared: &Shared<'_, A, B>,
) -> io::Result<Burst> {
    loop {
        match splice(from.as_raw_fd(), pipe.write_fd(), pipe_size) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => {
                if let Err(e) = drain(pipe, to, n).await {
                    tracing::debug!("splice out: {e}");
                    shared.abort(e.kind());
                    return Ok(Burst::Failed);
                }
                total.set(total.get() + n as u64);
                shared.last_activity.set(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("splice in: {e}");
                shared.abort(e.kind());
                return Ok(Burst::Failed);
            }
        }
    }
}

/// Moves bytes by copying while `from` has them: the fallback when no pipe
/// can be had.
async fn copy_burst<A: Stream, B: Stream, F: AsRawFd>(
    from: &AsyncFd<F>,
    to: &AsyncFd<F>,
    buffer_size: usize,
    total: &Cell<u64>,
    shared: &Shared<'_, A, B>,
) -> io::Result<Burst> {
    let mut buf = vec![0u8; buffer_size.min(COPY_FALLBACK_BUFFER)];
    loop {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes and
        // the descriptor stays open for the call (owned by the session's
        // stream, which outlives the relay).
        let n = unsafe {
            libc::recv(
                from.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
                io::ErrorKind::Interrupted => continue,
                kind => {
                    shared.abort(kind);
                    return Ok(Burst::Failed);
                }
            }
        }
        if n == 0 {
            return Ok(Burst::Eof);
        }
        let n = n as usize;
        if let Err(e) = send_all(to, &buf[..n]).await {
            shared.abort(e.kind());
            return Ok(Burst::Failed);
        }
        total.set(total.get() + n as u64);
        shared.last_activity.set(Instant::now());
    }
}

/// Writes all of `bytes` to the socket, waiting for room as needed.
async fn send_all<F: AsRawFd>(to: &AsyncFd<F>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = to.writable().await?;
        // SAFETY: `bytes` is a live buffer; the descriptor stays open for the
        // call (owned by the session's stream, which outlives the relay).
        let n = unsafe {
            libc::send(
                to.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => ready.clear_ready(),
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
            continue;
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Largest buffer the copy fallback reads into.
const COPY_FALLBACK_BUFFER: usize = 64 * 1024;

/// Moves `len` bytes from the pipe to the socket.
async fn drain<F: AsRawFd>(pipe: &pipes::Pipe, to: &AsyncFd<F>, mut len: usize) -> io::Result<()> {
    while len > 0 {
        let mut ready = to.writable().await?;
        match splice(pipe.read_fd(), to.as_raw_fd(), len) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
