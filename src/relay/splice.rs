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

use super::{pipes, poll_idle, RelayEnd, RelayMethod, RelaySettings, RelayStats, Shared};
use crate::transport::{SocketFd, Stream};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

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
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO on a descriptor that stays open for the call (owned by
    // the session's stream) reads one `c_int` from a valid pointer and sets
    // O_NONBLOCK: one call where fcntl needs F_GETFL and F_SETFL.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
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
                unsafe { AsyncFd::register_with_interest(SocketFd(client_fd), interest)? };
            // SAFETY: as above.
            let backend_io =
                unsafe { AsyncFd::register_with_interest(SocketFd(backend_fd), interest)? };
            Ok(run(client, backend, &client_io, &backend_io, settings).await)
        }
        _ => Err(io::Error::other(
            "the two sides run on different transports",
        )),
    }
}

/// Both directions over the sockets' registrations, and the idle clock, in
/// one hand-polled future: its state is two [`Flow`]s and a timer (a few
/// hundred bytes for an idle session, where one `async` pump per direction
/// held every await point's state, ~4 KiB).
async fn run<A: Stream, B: Stream, F: AsRawFd>(
    client: &A,
    backend: &B,
    client_io: &AsyncFd<F>,
    backend_io: &AsyncFd<F>,
    settings: RelaySettings,
) -> RelayStats {
    let shared = Shared::new(client, backend);
    let mut up = Flow::Waiting;
    let mut down = Flow::Waiting;
    let clock = tokio::time::sleep_until(shared.last_activity.get() + settings.idle_timeout);
    tokio::pin!(clock);
    let end = std::future::poll_fn(|cx| {
        let ends = [
            Ends {
                from: client_io,
                to: backend_io,
                to_stream: backend as &dyn ShutWrite,
                total: &shared.client_to_backend,
            },
            Ends {
                from: backend_io,
                to: client_io,
                to_stream: client as &dyn ShutWrite,
                total: &shared.backend_to_client,
            },
        ];
        let [up_ends, down_ends] = &ends;
        let up_done = up_ends.poll(cx, &mut up, &shared, &settings).is_ready();
        let down_done = down_ends.poll(cx, &mut down, &shared, &settings).is_ready();
        if up_done && down_done {
            return Poll::Ready(shared.error.get().map_or(RelayEnd::Closed, RelayEnd::Error));
        }
        poll_idle(clock.as_mut(), &shared, settings.idle_timeout, cx)
            .map(|()| RelayEnd::IdleTimeout)
    })
    .await;
    RelayStats {
        client_to_backend: shared.client_to_backend.get(),
        backend_to_client: shared.backend_to_client.get(),
        end,
        method: RelayMethod::Splice,
    }
}

/// The write shutdown at EOF: both sides of the splice path are plain
/// sockets, so ending a direction is a `shutdown(SHUT_WR)`.
trait ShutWrite {
    fn shut_write(&self);
}

impl<S: Stream> ShutWrite for S {
    fn shut_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Where one direction's bytes are.
enum Flow {
    /// Waiting for the sender: no pipe, no buffer.
    Waiting,
    /// A burst through `pipe`, `pending` bytes of it still in the pipe; at
    /// 0 the next read is due.
    Spliced { pipe: pipes::Pipe, pending: usize },
    /// A burst copied through `buf` (no pipe could be had): `buf[sent..len]`
    /// is still to be written; at `sent == len` the next read is due.
    Copied {
        buf: Vec<u8>,
        sent: usize,
        len: usize,
    },
    /// The sender's EOF was passed on, or the relay failed.
    Done,
}

/// One direction's sockets and byte count.
struct Ends<'a, F: AsRawFd> {
    from: &'a AsyncFd<F>,
    to: &'a AsyncFd<F>,
    to_stream: &'a dyn ShutWrite,
    total: &'a Cell<u64>,
}

impl<F: AsRawFd> Ends<'_, F> {
    /// Moves bytes while both sockets let it; `Ready` once the direction is
    /// done (EOF passed on, or an error that ended the relay).
    fn poll<A: Stream, B: Stream>(
        &self,
        cx: &mut Context<'_>,
        flow: &mut Flow,
        shared: &Shared<'_, A, B>,
        settings: &RelaySettings,
    ) -> Poll<()> {
        loop {
            let reading = match flow {
                Flow::Done => return Poll::Ready(()),
                Flow::Waiting => true,
                Flow::Spliced { pending, .. } => *pending == 0,
                Flow::Copied { sent, len, .. } => sent == len,
            };
            let step = if reading {
                self.read(cx, flow, settings)
            } else {
                self.write(cx, flow, shared)
            };
            match ready!(step) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!("splice relay: {e}");
                    shared.abort(e.kind());
                    *flow = Flow::Done; // a pipe with bytes in it is dropped
                    return Poll::Ready(());
                }
            }
        }
    }

    /// One read into the burst's pipe or buffer (a burst starts with the
    /// first readiness); at EOF the write shutdown, when drained the pipe or
    /// buffer goes back.
    fn read(
        &self,
        cx: &mut Context<'_>,
        flow: &mut Flow,
        settings: &RelaySettings,
    ) -> Poll<io::Result<()>> {
        let mut ready = ready!(self.from.poll_read_ready(cx))?;
        if matches!(flow, Flow::Waiting) {
            *flow = match pipes::take(settings.pipe_size, settings.max_pipes) {
                Some(pipe) => Flow::Spliced { pipe, pending: 0 },
                // No pipe to be had (the bound, or out of descriptors): this
                // burst is copied, the session goes on.
                None => Flow::Copied {
                    buf: vec![0; settings.buffer_size.min(COPY_FALLBACK_BUFFER)],
                    sent: 0,
                    len: 0,
                },
            };
        }
        let from = self.from.as_raw_fd();
        let read = match flow {
            Flow::Spliced { pipe, .. } => splice(from, pipe.write_fd(), settings.pipe_size),
            Flow::Copied { buf, .. } => recv(from, buf),
            Flow::Waiting | Flow::Done => unreachable!("a read is due only in a burst"),
        };
        match read {
            Ok(0) => {
                end_burst(flow);
                self.to_stream.shut_write();
                *flow = Flow::Done;
            }
            Ok(n) => match flow {
                Flow::Spliced { pending, .. } => *pending = n,
                Flow::Copied { sent, len, .. } => (*sent, *len) = (0, n),
                Flow::Waiting | Flow::Done => {}
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.clear_ready();
                end_burst(flow);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        Poll::Ready(Ok(()))
    }

    /// One write of what the burst holds.
    fn write<A: Stream, B: Stream>(
        &self,
        cx: &mut Context<'_>,
        flow: &mut Flow,
        shared: &Shared<'_, A, B>,
    ) -> Poll<io::Result<()>> {
        let mut ready = ready!(self.to.poll_write_ready(cx))?;
        let to = self.to.as_raw_fd();
        let written = match flow {
            Flow::Spliced { pipe, pending } => {
                splice(pipe.read_fd(), to, *pending).inspect(|&n| *pending -= n)
            }
            Flow::Copied { buf, sent, len } => send(to, &buf[*sent..*len]).inspect(|&n| *sent += n),
            Flow::Waiting | Flow::Done => unreachable!("a write is due only with bytes held"),
        };
        match written {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                self.total.set(self.total.get() + n as u64);
                shared.last_activity.set(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        Poll::Ready(Ok(()))
    }
}

/// A drained burst ends: its (empty) pipe back to the pool, its buffer
/// freed; the direction waits again holding nothing.
fn end_burst(flow: &mut Flow) {
    if let Flow::Spliced { pipe, .. } = std::mem::replace(flow, Flow::Waiting) {
        pipes::give_back(pipe);
    }
}

/// Reads what the socket has into `buf`, never waiting.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes and the
    // descriptor stays open for the call (owned by the session's stream,
    // which outlives the relay).
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes what the socket takes of `bytes`, never waiting or raising SIGPIPE.
fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a live buffer; the descriptor stays open for the
    // call (owned by the session's stream, which outlives the relay).
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Largest buffer the copy fallback reads into.
const COPY_FALLBACK_BUFFER: usize = 64 * 1024;
