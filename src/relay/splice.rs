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
//!
//! Small bursts are copied, not spliced (as HAProxy's `splice-auto` does): a
//! burst starts with one read into a [`SMALL_BURST`]-byte buffer on the
//! stack, passed on at once. A command, a reply line, a LOGOUT and its BYE
//! fit in it; a read that comes back short proves the socket drained (a
//! stream socket's read returns less than asked only when its queue is
//! empty, the rule tokio's own reads rely on), so the burst ends with no
//! further call. A splice proves nothing of the kind (a pipe fills by slots
//! as well as by bytes), so a spliced burst ends only at `EAGAIN`: for the
//! few bytes of a login's last exchanges the copy takes two calls where the
//! pipe took three, and no page moves in the kernel. A read that fills the
//! buffer means bulk: the rest of that burst, and the next bursts while they
//! stay that large, go by splice.

use super::{pipes, poll_idle, RelayEnd, RelayMethod, RelaySettings, RelayStats, Shared};
use crate::transport::{SocketFd, Stream};
use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::task::{ready, Context, Poll};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
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
    let mut up = Flow::Waiting { bulk: false };
    let mut down = Flow::Waiting { bulk: false };
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

/// Bytes a burst's first read takes into a buffer on the stack, and the
/// size under which a burst is copied rather than spliced: one page, far
/// more than a command or a status line, far less than a message body.
pub const SMALL_BURST: usize = 4096;

/// Where one direction's bytes are.
enum Flow {
    /// Waiting for the sender: no pipe, no buffer. `bulk`: the last burst
    /// moved at least [`SMALL_BURST`] bytes, so the next one is spliced from
    /// its start; otherwise it starts with a copy on the stack.
    Waiting { bulk: bool },
    /// A burst through `pipe`, `pending` bytes of it still in the pipe (at
    /// 0 the next read is due); `moved`, the burst's bytes so far.
    Spliced {
        pipe: pipes::Pipe,
        pending: usize,
        moved: usize,
    },
    /// What a burst's first read brought and the receiver did not take at
    /// once: `rest[sent..]` is still to be written. Then the direction
    /// waits again, or splices on (`bulk`: the read filled its buffer).
    Held {
        rest: Box<[u8]>,
        sent: usize,
        bulk: bool,
    },
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
                Flow::Waiting { .. } => true,
                Flow::Spliced { pending, .. } => *pending == 0,
                Flow::Copied { sent, len, .. } => sent == len,
                Flow::Held { .. } => false,
            };
            let step = if reading {
                self.read(cx, flow, shared, settings)
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
    fn read<A: Stream, B: Stream>(
        &self,
        cx: &mut Context<'_>,
        flow: &mut Flow,
        shared: &Shared<'_, A, B>,
        settings: &RelaySettings,
    ) -> Poll<io::Result<()>> {
        let mut ready = ready!(self.from.poll_read_ready(cx))?;
        match flow {
            Flow::Waiting { bulk: false } => {
                return Poll::Ready(self.read_small(&mut ready, flow, shared));
            }
            Flow::Waiting { bulk: true } => {
                *flow = match pipes::take(settings.pipe_size, settings.max_pipes) {
                    Some(pipe) => Flow::Spliced {
                        pipe,
                        pending: 0,
                        moved: 0,
                    },
                    // No pipe to be had (the bound, or out of descriptors):
                    // this burst is copied, the session goes on.
                    None => Flow::Copied {
                        buf: vec![0; settings.buffer_size.min(COPY_FALLBACK_BUFFER)],
                        sent: 0,
                        len: 0,
                    },
                };
            }
            _ => {}
        }
        let from = self.from.as_raw_fd();
        let read = match flow {
            Flow::Spliced { pipe, .. } => splice(from, pipe.write_fd(), settings.pipe_size),
            Flow::Copied { buf, .. } => recv(from, buf),
            Flow::Waiting { .. } | Flow::Held { .. } | Flow::Done => {
                unreachable!("a read is due only in a burst")
            }
        };
        match read {
            Ok(0) => {
                end_burst(flow);
                self.to_stream.shut_write();
                *flow = Flow::Done;
            }
            Ok(n) => match flow {
                Flow::Spliced { pending, moved, .. } => (*pending, *moved) = (n, *moved + n),
                Flow::Copied { sent, len, .. } => (*sent, *len) = (0, n),
                Flow::Waiting { .. } | Flow::Held { .. } | Flow::Done => {}
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

    /// A burst's first read, into [`SMALL_BURST`] bytes on the stack, and
    /// the write of what it brought. A short read drained the socket: the
    /// burst is over, no `EAGAIN` needed. A full one leaves the rest of the
    /// burst to splice. Bytes the receiver does not take at once wait in a
    /// buffer of their own (`Flow::Held`).
    fn read_small<A: Stream, B: Stream>(
        &self,
        ready: &mut AsyncFdReadyGuard<'_, F>,
        flow: &mut Flow,
        shared: &Shared<'_, A, B>,
    ) -> io::Result<()> {
        // Not zeroed: only what the read brought is ever looked at.
        let mut chunk = [MaybeUninit::<u8>::uninit(); SMALL_BURST];
        let bytes = match recv_uninit(self.from.as_raw_fd(), &mut chunk) {
            Ok([]) => {
                self.to_stream.shut_write();
                *flow = Flow::Done;
                return Ok(());
            }
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.clear_ready();
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        let n = bytes.len();
        if n < SMALL_BURST {
            // Short: the socket's queue was empty after it. Bytes or an end
            // arriving later raise a new edge; an end that came with these
            // bytes stays in the readiness (tokio never clears "closed").
            ready.clear_ready();
        }
        let sent = match send(self.to.as_raw_fd(), bytes) {
            Ok(sent) => sent,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if sent > 0 {
            self.total.set(self.total.get() + sent as u64);
            shared.last_activity.set(Instant::now());
        }
        let bulk = n == SMALL_BURST;
        *flow = if sent < n {
            Flow::Held {
                rest: bytes[sent..].into(),
                sent: 0,
                bulk,
            }
        } else {
            Flow::Waiting { bulk }
        };
        Ok(())
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
            Flow::Spliced { pipe, pending, .. } => {
                splice(pipe.read_fd(), to, *pending).inspect(|&n| *pending -= n)
            }
            Flow::Copied { buf, sent, len } => send(to, &buf[*sent..*len]).inspect(|&n| *sent += n),
            Flow::Held { rest, sent, .. } => send(to, &rest[*sent..]).inspect(|&n| *sent += n),
            Flow::Waiting { .. } | Flow::Done => {
                unreachable!("a write is due only with bytes held")
            }
        };
        if let Flow::Held { rest, sent, bulk } = flow {
            if *sent == rest.len() {
                *flow = Flow::Waiting { bulk: *bulk };
            }
        }
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
/// freed; the direction waits again holding nothing, and splices the next
/// burst from its start if this one was bulk.
fn end_burst(flow: &mut Flow) {
    let bulk = matches!(flow, Flow::Spliced { moved, .. } if *moved >= SMALL_BURST);
    if let Flow::Spliced { pipe, .. } = std::mem::replace(flow, Flow::Waiting { bulk }) {
        pipes::give_back(pipe);
    }
}

/// Reads what the socket has into `buf`, never waiting.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the same memory seen as possibly uninitialized, which it may
    // always be; `recv_uninit` only writes initialized bytes into it.
    let buf = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    recv_uninit(fd, buf).map(<[u8]>::len)
}

/// Reads what the socket has into `buf`, never waiting, without `buf`
/// having been initialized; the bytes that came.
fn recv_uninit(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<&[u8]> {
    // SAFETY: `buf` is live, writable memory of `buf.len()` bytes (recv
    // writes at most that many and never reads them); the descriptor stays
    // open for the call (owned by the session's stream, which outlives the
    // relay).
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recv initialized the first `n` bytes of `buf` (`n` is at most
    // `buf.len()`), and the slice borrows `buf`.
    Ok(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::EpollStream;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Duration;

    /// A loopback connection: the end the relay holds, and its peer.
    fn connection() -> (EpollStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (EpollStream::new(ours).unwrap(), peer)
    }

    fn settings() -> RelaySettings {
        RelaySettings {
            buffer_size: 16 * 1024,
            idle_timeout: Duration::from_secs(30),
            splice: true,
            pipe_size: 64 * 1024,
            max_pipes: 16,
        }
    }

    /// Reads exactly `len` bytes from a blocking socket on another thread.
    fn read_exactly(mut from: TcpStream, len: usize) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut got = vec![0; len];
            from.read_exact(&mut got).unwrap();
            got
        })
    }

    /// Both peers half-close; the relay's totals once it ended (`Closed`).
    async fn both_half_close(
        client_peer: &TcpStream,
        backend_peer: &TcpStream,
        relay: impl std::future::Future<Output = io::Result<RelayStats>>,
    ) -> RelayStats {
        client_peer.shutdown(Shutdown::Write).unwrap();
        backend_peer.shutdown(Shutdown::Write).unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(10), relay)
            .await
            .expect("the relay ends after both half-closes")
            .unwrap();
        assert_eq!(stats.end, RelayEnd::Closed);
        stats
    }

    #[test]
    fn a_direction_s_state_stays_at_40_bytes() {
        // Two per logged-in session, idle ones included: the held rest of a
        // small burst is a boxed slice (16 bytes) so that it adds nothing
        // to the largest state, a copied burst's buffer and counts (a
        // `Vec` there made every session 16 bytes larger).
        assert!(std::mem::size_of::<Flow>() <= 40);
    }

    #[test]
    fn small_bursts_are_copied_without_a_pipe_and_a_bulk_burst_is_spliced() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, mut client_peer) = connection();
            let (backend, mut backend_peer) = connection();
            let (c, b) = (client.as_raw_fd(), backend.as_raw_fd());
            let relay = relay(&client, &backend, c, b, settings());
            tokio::pin!(relay);

            // A command up, under SMALL_BURST.
            let up = read_exactly(backend_peer.try_clone().unwrap(), 11);
            client_peer.write_all(b"a1 LOGOUT\r\n").unwrap();
            while !up.is_finished() {
                let _ = tokio::time::timeout(Duration::from_millis(20), &mut relay).await;
            }
            assert_eq!(up.join().unwrap(), b"a1 LOGOUT\r\n");
            assert_eq!(pipes::pooled(), 0, "a small burst took no pipe");

            // Down: one byte under the boundary, at it, one over; then
            // 256 KiB, bulk.
            for len in [SMALL_BURST - 1, SMALL_BURST, SMALL_BURST + 1, 256 * 1024] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let down = read_exactly(client_peer.try_clone().unwrap(), len);
                backend_peer.write_all(&data).unwrap();
                while !down.is_finished() {
                    let _ = tokio::time::timeout(Duration::from_millis(20), &mut relay).await;
                }
                assert!(down.join().unwrap() == data, "{len} bytes relayed exactly");
            }
            assert_eq!(
                pipes::pooled(),
                1,
                "the bulk burst went through a pipe, now back"
            );

            let stats = both_half_close(&client_peer, &backend_peer, relay).await;
            assert_eq!(stats.client_to_backend, 11);
            assert_eq!(
                stats.backend_to_client,
                (3 * SMALL_BURST + 256 * 1024) as u64
            );
        });
    }

    #[test]
    fn small_bursts_a_full_receiver_cannot_take_wait_and_arrive_whole() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, client_peer) = connection();
            let (backend, mut backend_peer) = connection();
            // Small socket buffers towards the client, which reads nothing
            // at first: a small burst soon meets a full socket.
            socket2::SockRef::from(&client_peer)
                .set_recv_buffer_size(4096)
                .unwrap();
            socket2::SockRef::from(client.registration().unwrap().get_ref())
                .set_send_buffer_size(4096)
                .unwrap();
            let (c, b) = (client.as_raw_fd(), backend.as_raw_fd());
            let relay = relay(&client, &backend, c, b, settings());
            tokio::pin!(relay);

            // One message at a time, each given the relay's turn, so that
            // each is a burst of its own under SMALL_BURST.
            let message =
                |i: usize| -> Vec<u8> { (0..1000).map(|j| ((i * 31 + j) % 253) as u8).collect() };
            let count = 100;
            for i in 0..count {
                backend_peer.write_all(&message(i)).unwrap();
                let _ = tokio::time::timeout(Duration::from_millis(5), &mut relay).await;
            }
            let reader = read_exactly(client_peer.try_clone().unwrap(), count * 1000);
            while !reader.is_finished() {
                let _ = tokio::time::timeout(Duration::from_millis(20), &mut relay).await;
            }
            let expected: Vec<u8> = (0..count).flat_map(message).collect();
            // (What gathered behind the held bytes went on as bulk, spliced.)
            assert!(reader.join().unwrap() == expected, "every burst, in order");

            let stats = both_half_close(&client_peer, &backend_peer, relay).await;
            assert_eq!(stats.backend_to_client, (count * 1000) as u64);
        });
    }
}
