//! The small transport interface the session, TLS and relay are written
//! against: a connected [`Stream`] with owned-buffer I/O, a [`Connector`] for
//! outgoing connections and an [`Acceptor`] for incoming ones, and the
//! [`Reactor`] a worker thread runs them on.
//!
//! Only this module tree knows a reactor. [`uring`] implements the traits on
//! tokio-uring (the completion model needs the kernel to own a buffer while
//! an operation is in flight, hence owned buffers in the interface);
//! [`epoll`] on non-blocking sockets and tokio's epoll reactor, for hosts
//! where io_uring is blocked. Which one runs is decided once at start
//! ([`IoMode`], [`probe_uring`]); nothing above this module knows which.
//! Nothing here knows a protocol, a session or the configuration.

pub mod buffers;
pub mod epoll;
pub mod keepalive;
pub mod uring;

pub use epoll::{EpollConnector, EpollListener, EpollStream};
pub use keepalive::KeepAlive;
pub use uring::{UringConnector, UringListener, UringStream};

use serde::Deserialize;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;

/// Which reactor the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring when it can be set up, else epoll (with a warning).
    #[default]
    Auto,
    /// io_uring or nothing: a host where it cannot be set up fails to start.
    Uring,
    /// epoll, without trying io_uring.
    Epoll,
}

/// The reactor a worker runs, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// io_uring (tokio-uring).
    Uring,
    /// epoll (tokio's reactor).
    Epoll,
}

impl Io {
    /// `uring` or `epoll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Io::Uring => "uring",
            Io::Epoll => "epoll",
        }
    }
}

/// Sets up (and drops) a ring of `entries` entries: whether workers can run
/// io_uring here, and if not, the error that says why.
pub fn probe_uring(entries: u32) -> io::Result<()> {
    io_uring::IoUring::new(entries).map(drop)
}

/// tokio-uring's runtime on a ring set up for one thread that is rarely
/// away from the kernel for long: with `IORING_SETUP_COOP_TASKRUN` a
/// completion that arrives while the worker runs (data on a socket it
/// reads, from another CPU's network processing) does not interrupt it
/// with an inter-processor interrupt; it is finished on the worker's next
/// system call, and a worker asleep in `epoll_wait` is still woken at
/// once. Kernels before 5.19 refuse the flag: the ring is then set up
/// without it.
fn uring_runtime(entries: u32) -> io::Result<tokio_uring::Runtime> {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun();
    let mut builder = tokio_uring::builder();
    builder.entries(entries).uring_builder(&ring);
    match tokio_uring::Runtime::new(&builder) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tokio_uring::Runtime::new(tokio_uring::builder().entries(entries))
        }
        made => made,
    }
}

/// A worker thread's event loop: a tokio current-thread runtime with a
/// local task set, driving io_uring or epoll. Sessions are spawned with
/// `tokio::task::spawn_local` on either.
pub enum Reactor {
    /// tokio-uring's runtime (io_uring, polled through tokio).
    Uring(tokio_uring::Runtime),
    /// tokio's current-thread runtime (epoll) and the local task set.
    Epoll(tokio::runtime::Runtime, tokio::task::LocalSet),
}

impl Reactor {
    /// A reactor of kind `io`; `entries` sizes the io_uring rings.
    pub fn new(io: Io, entries: u32) -> io::Result<Self> {
        match io {
            Io::Uring => uring_runtime(entries).map(Reactor::Uring),
            Io::Epoll => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(Reactor::Epoll(runtime, tokio::task::LocalSet::new()))
            }
        }
    }

    /// Runs `future` (and the tasks it spawns) to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Reactor::Uring(runtime) => runtime.block_on(future),
            Reactor::Epoll(runtime, local) => local.block_on(runtime, future),
        }
    }
}

/// Sends `line` on `socket` if it takes it at once, never waiting and
/// never raising SIGPIPE: the last words to a client about to be closed
/// (a refusal at a cap, an eviction), who may not be reading.
pub fn send_now(socket: std::os::fd::BorrowedFd<'_>, line: &[u8]) {
    let _ = socket2::SockRef::from(&socket)
        .send_with_flags(line, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
}

/// A socket descriptor owned elsewhere (by a stream that outlives what is
/// made with it): what an epoll registration of an io_uring socket holds.
pub(crate) struct SocketFd(pub RawFd);

impl AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A connected byte stream with owned-buffer I/O.
#[allow(async_fn_in_trait)] // workers are single-threaded: futures need not be Send
pub trait Stream: AsRawFd {
    /// Reads into `buf` (cleared first, filled up to its capacity).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Waits until a `read` would find bytes (or the end, or an error),
    /// without holding a buffer meanwhile. A wait that returns is followed
    /// by a `read` (io_uring consumes the readiness it reports). The
    /// default returns at once.
    async fn readable(&self) -> io::Result<()> {
        Ok(())
    }
    /// Writes all of `buf`.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// The local address of the connection.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Ends the sending direction cleanly (TLS: close_notify first).
    async fn close_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
    /// The socket, when bytes may be spliced to and from it directly (a
    /// plain socket, not TLS).
    fn splice_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// The socket's own registration with the worker's reactor, when it has
    /// one (epoll): the splice path must wait on it rather than register the
    /// descriptor a second time.
    fn registration(&self) -> Option<&AsyncFd<std::net::TcpStream>> {
        None
    }
}

impl<T: Stream> Stream for Box<T> {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        (**self).read(buf).await
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        (**self).write_all(buf).await
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        (**self).shutdown(how)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        (**self).local_addr()
    }

    async fn close_write(&self) -> io::Result<()> {
        (**self).close_write().await
    }

    fn splice_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).splice_fd()
    }

    async fn readable(&self) -> io::Result<()> {
        (**self).readable().await
    }

    fn registration(&self) -> Option<&AsyncFd<std::net::TcpStream>> {
        (**self).registration()
    }
}

/// A stream that can leave its worker's reactor: the plain socket it
/// becomes can be handed to another worker, which adopts it with
/// [`Connector::adopt`] (a parked back-end session taken on another core).
pub trait Detach {
    /// The socket, open and connected, registered with no reactor; no
    /// operation may be in flight on the stream. The connection stays up.
    fn detach(self) -> io::Result<std::net::TcpStream>;
}

/// How outgoing connections are made, or taken over from another worker.
#[allow(async_fn_in_trait)]
pub trait Connector {
    /// The stream type produced (owned: parked sessions outlive the one
    /// that made them, and can move to another worker).
    type Stream: Stream + Detach + 'static;
    /// Connects to `addr` (the caller bounds the time).
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream>;
    /// Puts a connected socket another worker detached on this worker's
    /// reactor.
    fn adopt(&self, socket: std::net::TcpStream) -> io::Result<Self::Stream>;
}

/// How incoming connections are accepted.
#[allow(async_fn_in_trait)]
pub trait Acceptor {
    /// The stream type produced.
    type Stream: Stream;
    /// The next connection and its peer's address.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}
