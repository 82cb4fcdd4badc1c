//! The io_uring transport: tokio-uring sockets behind [`Stream`] and
//! [`Connector`]. Used on the worker threads that run a tokio-uring runtime.

use super::{Acceptor, Connector, Detach, SocketFd, Stream};
use std::cell::{Cell, OnceCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_uring::buf::BoundedBuf;

/// io_uring sockets from tokio-uring.
pub struct UringStream {
    /// The socket's registration with the worker's epoll set (which
    /// tokio-uring's runtime parks on, beside the ring), made by the first
    /// [`Stream::readable`]: a quiet relay direction waits on it holding no
    /// buffer, where a pending ring read would pin one. Declared first so
    /// that it is deregistered before the socket closes. Boxed: a session
    /// that never waits (plaintext, relayed by splice) pays one pointer.
    readiness: OnceCell<Box<AsyncFd<SocketFd>>>,
    socket: tokio_uring::net::TcpStream,
    /// Set by [`Detach::detach`]: the connection lives on in a duplicate
    /// descriptor, so dropping this one must not shut it down.
    detached: bool,
    /// Operations submitted to the ring whose completion was not awaited
    /// yet: above zero at drop only if a future was dropped mid-operation
    /// (a timeout), which is when the drop must shut the socket down.
    on_ring: Cell<u32>,
    /// Whether the last read returned less than its buffer held: the
    /// socket had nothing more then, so a wait for readiness is sound.
    /// After a full read (or the end, or an error) more may be waiting
    /// that no new edge will announce, and [`Stream::readable`] returns
    /// at once.
    drained: Cell<bool>,
}

impl UringStream {
    fn new(socket: tokio_uring::net::TcpStream) -> Self {
        Self {
            readiness: OnceCell::new(),
            socket,
            detached: false,
            on_ring: Cell::new(0),
            drained: Cell::new(false),
        }
    }

    /// One more (`+1`) or one fewer (`-1`) operation on the ring. Counted
    /// around each `.await` in place: a wrapping `async fn` would hold the
    /// operation's future twice in an idle TLS session's read.
    fn count_on_ring(&self, change: i32) {
        self.on_ring
            .set(self.on_ring.get().wrapping_add_signed(change));
    }
}

impl AsRawFd for UringStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for UringStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `self.0` and stays open at least
        // as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }
}

impl UringStream {
    /// Sends as much of `buf` as the socket takes right now, without blocking.
    fn send_now(&self, buf: &[u8]) -> usize {
        let socket = socket2::SockRef::from(self);
        let mut sent = 0;
        while sent < buf.len() {
            match socket.send_with_flags(&buf[sent..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock, or an error the ring write will report
            }
        }
        sent
    }
}

impl Stream for UringStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        let capacity = buf.capacity();
        self.count_on_ring(1);
        let read = self.socket.read(buf).await;
        self.count_on_ring(-1);
        self.drained
            .set(matches!(read.0, Ok(n) if n > 0 && n < capacity));
        read
    }

    /// A socket with room takes the bytes in one direct `send`, which saves a
    /// trip through the ring (submit, completion, wake-up); what it does not
    /// take goes through io_uring.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let sent = self.send_now(&buf);
        if sent == buf.len() {
            return (Ok(()), buf);
        }
        self.count_on_ring(1);
        let (res, slice) = self.socket.write_all(buf.slice(sent..)).await;
        self.count_on_ring(-1);
        (res, slice.into_inner())
    }

    /// Waits for epoll readiness (registering the socket the first time)
    /// and consumes it: the read that follows finds the bytes, and bytes
    /// that arrive later raise readiness anew (edge-triggered). Returns at
    /// once unless the last read left the socket drained. A read that
    /// finds nothing after all (bytes that came between the two and were
    /// taken by the previous read) waits on the ring as before.
    async fn readable(&self) -> io::Result<()> {
        if !self.drained.get() {
            return Ok(());
        }
        let registration = match self.readiness.get() {
            Some(registration) => registration,
            None => {
                // SAFETY: the descriptor belongs to `self.socket`, which
                // stays open while `self` lives; the registration is a
                // field of `self` dropped (deregistered) before the socket
                // (field order, and `detach` takes it first).
                let registration = unsafe {
                    AsyncFd::register_with_interest(
                        SocketFd(self.socket.as_raw_fd()),
                        Interest::READABLE,
                    )
                }?;
                self.readiness.get_or_init(|| Box::new(registration))
            }
        };
        registration.readable().await?.clear_ready();
        Ok(())
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.shutdown(how)
    }

    fn splice_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(self)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }
}

/// An io_uring operation abandoned by a timeout keeps the socket open until it
/// completes (the kernel still owns the buffer and the descriptor). Shutting
/// the socket down on drop completes such operations, so the descriptor is
/// closed now and the peer sees the connection end. With no operation left
/// on the ring (every session that ended in the relay) the close alone does
/// that, and the `shutdown` call is saved.
impl Drop for UringStream {
    fn drop(&mut self) {
        if !self.detached && self.on_ring.get() > 0 {
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }
}

/// A duplicate of the descriptor (close-on-exec) carries the connection;
/// this one is closed without a shutdown, which would end the connection
/// for both.
impl Detach for UringStream {
    fn detach(mut self) -> io::Result<std::net::TcpStream> {
        drop(self.readiness.take());
        let socket = self.as_fd().try_clone_to_owned()?;
        self.detached = true;
        Ok(std::net::TcpStream::from(socket))
    }
}

/// Connects with io_uring.
#[derive(Debug, Clone, Copy, Default)]
pub struct UringConnector;

impl Connector for UringConnector {
    type Stream = UringStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<UringStream> {
        let stream = tokio_uring::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(UringStream::new(stream))
    }

    /// io_uring would answer `EAGAIN` on a non-blocking socket rather than
    /// wait: the socket goes back to blocking mode first.
    fn adopt(&self, socket: std::net::TcpStream) -> io::Result<UringStream> {
        socket.set_nonblocking(false)?;
        Ok(UringStream::new(tokio_uring::net::TcpStream::from_std(
            socket,
        )))
    }
}

/// A listening socket accepting through io_uring.
pub struct UringListener(tokio_uring::net::TcpListener);

impl UringListener {
    /// Takes over `listener`.
    pub fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        Ok(Self(tokio_uring::net::TcpListener::from_std(listener)))
    }
}

impl Acceptor for UringListener {
    type Stream = UringStream;

    async fn accept(&self) -> io::Result<(UringStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((UringStream::new(stream), peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;
    use tokio::time::timeout;

    /// Long enough for a wrongly blocked wait to show; never reached when
    /// the stream behaves.
    const PATIENCE: Duration = Duration::from_secs(5);

    #[test]
    fn readiness_is_awaited_only_once_a_read_has_drained_the_socket() {
        // On the ring a worker runs (`IORING_SETUP_COOP_TASKRUN`): every
        // completion below still arrives.
        let reactor = crate::transport::Reactor::new(crate::transport::Io::Uring, 64).unwrap();
        reactor.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stream = UringConnector
                .connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(&[7; 3000]).unwrap();

            // Each full read may leave bytes behind that no new edge will
            // announce: the wait returns at once.
            let mut buf = Vec::with_capacity(1024);
            let mut got = 0;
            for expected in [1024, 1024, 952] {
                timeout(PATIENCE, stream.readable())
                    .await
                    .expect("bytes are waiting")
                    .unwrap();
                let (n, back) = stream.read(buf).await;
                buf = back;
                assert_eq!(n.unwrap(), expected);
                got += expected;
            }
            assert_eq!(got, 3000);

            // Drained: the wait lasts until the peer sends, and holds no buffer.
            assert!(
                timeout(Duration::from_millis(200), stream.readable())
                    .await
                    .is_err(),
                "nothing to read, no readiness"
            );
            peer.write_all(b"x").unwrap();
            timeout(PATIENCE, stream.readable())
                .await
                .expect("the byte is announced")
                .unwrap();
            let (n, _) = stream.read(buf).await;
            assert_eq!(n.unwrap(), 1);

            // The end is announced too, and is read as such.
            drop(peer);
            timeout(PATIENCE, stream.readable())
                .await
                .expect("the end is announced")
                .unwrap();
            let (n, _) = stream.read(Vec::with_capacity(16)).await;
            assert_eq!(n.unwrap(), 0);
        });
    }
}
