//! The epoll transport: non-blocking sockets registered with the worker's
//! tokio reactor (`AsyncFd`, epoll underneath), for hosts where io_uring is
//! blocked (Docker's default seccomp profile, `kernel.io_uring_disabled`).
//!
//! Reads wait for readiness first and only then touch the caller's buffer,
//! so with [`Stream::readable`] a quiet session holds no buffer at all;
//! writes are tried at once and wait only if the socket refuses. The
//! splice path uses the stream's own registration ([`Stream::registration`]):
//! a descriptor can be registered with one epoll instance only once.

use super::{Acceptor, Connector, Detach, Stream};
use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use tokio::io::unix::AsyncFd;

/// A connected socket registered with the worker's reactor.
pub struct EpollStream(AsyncFd<TcpStream>);

impl EpollStream {
    /// Registers `stream` (switched to non-blocking mode).
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self(register(stream)?))
    }
}

impl AsRawFd for EpollStream {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers a socket that owns its descriptor with the worker's reactor.
fn register<T: AsRawFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `socket` (a std TcpStream or TcpListener) owns its descriptor:
    // it stays open and is the one `as_raw_fd` returns until the `AsyncFd`
    // (which owns `socket`) is dropped.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// `recv` into the spare capacity of `buf`; its length grows by what came.
fn recv_into(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
    // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by
    // `buf`; recv writes at most that many bytes into it and reports how
    // many; `fd` is open for the call (owned by the caller's stream).
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `send` of as much of `bytes` as the socket takes now.
fn send_some(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a live buffer; `fd` is open for the call.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Stream for EpollStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        loop {
            let mut ready = match self.0.readable().await {
                Ok(guard) => guard,
                Err(e) => return (Err(e), buf),
            };
            let capacity = buf.capacity();
            match ready.try_io(|socket| recv_into(socket.as_raw_fd(), &mut buf)) {
                Ok(result) => {
                    // A short read drained the socket: forget the readiness,
                    // so that the next wait waits rather than a read holding
                    // its buffer (an idle TLS session's pending read). The
                    // guard predates the read: readiness from bytes that came
                    // since is newer and stays.
                    if matches!(result, Ok(n) if n > 0 && n < capacity) {
                        ready.clear_ready();
                    }
                    return (result, buf);
                }
                Err(_would_block) => continue,
            }
        }
    }

    async fn readable(&self) -> io::Result<()> {
        // The readiness stays set: the read that follows finds it (a read
        // that drains the socket clears it).
        self.0.readable().await.map(drop)
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        // Sent at once, before any wait: a socket takes a few hundred bytes
        // far more often than not, and waiting first costs a turn of the
        // reactor even then (a socket's readiness is learnt from the
        // `epoll_wait` after its registration: a greeting to a client just
        // accepted waited for one). Only a socket that refuses waits.
        let fd = self.0.as_raw_fd();
        let mut sent = 0;
        let mut refused = false;
        while sent < buf.len() {
            let result = if refused {
                let mut ready = match self.0.writable().await {
                    Ok(guard) => guard,
                    Err(e) => return (Err(e), buf),
                };
                // A refusal here forgets the readiness, and the wait waits.
                match ready.try_io(|_| send_some(fd, &buf[sent..])) {
                    Ok(result) => result,
                    Err(_would_block) => continue,
                }
            } else {
                send_some(fd, &buf[sent..])
            };
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => refused = true,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.0.get_ref().shutdown(how)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    fn splice_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }

    fn registration(&self) -> Option<&AsyncFd<TcpStream>> {
        Some(&self.0)
    }
}

/// Leaves this worker's epoll set; the socket stays non-blocking.
impl Detach for EpollStream {
    fn detach(self) -> io::Result<TcpStream> {
        Ok(self.0.into_inner())
    }
}

/// Connects with a non-blocking `connect` and, unless the handshake is
/// already over, a wait for writability.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpollConnector;

impl Connector for EpollConnector {
    type Stream = EpollStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<EpollStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_nodelay(true)?;
        let connected = match socket.connect(&addr.into()) {
            Ok(()) => true,
            // To this host (loopback, or one of its own addresses) the
            // handshake is over before `connect` returns: the peer's
            // address is then known, and the wait for writability (a whole
            // reactor turn) is skipped. To another host this costs one
            // `getpeername` while the handshake is on the wire.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => socket.peer_addr().is_ok(),
            Err(e) => return Err(e),
        };
        let stream = EpollStream(register(TcpStream::from(socket))?);
        if connected {
            return Ok(stream);
        }
        // Writable once the handshake finished, one way or the other.
        let _ = stream.0.writable().await?;
        match stream.0.get_ref().take_error()? {
            Some(e) => Err(e),
            None => Ok(stream),
        }
    }

    fn adopt(&self, socket: TcpStream) -> io::Result<EpollStream> {
        EpollStream::new(socket)
    }
}

/// A listening socket registered with the worker's reactor.
pub struct EpollListener(AsyncFd<TcpListener>);

impl EpollListener {
    /// Registers `listener` (switched to non-blocking mode).
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self(register(listener)?))
    }
}

/// `accept4` with the new socket non-blocking and close-on-exec; the
/// peer's address comes with it (no `getpeername`).
fn accept_nonblocking(listener: RawFd) -> io::Result<(TcpStream, SocketAddr)> {
    // SAFETY: `try_init` hands accept4 a zeroed sockaddr_storage and its
    // length on this frame; accept4 writes at most that much; `listener` is
    // open for the call.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener,
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: accept4 succeeded: `fd` is a fresh socket owned by nobody else.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))?;
    Ok((stream, peer))
}

impl Acceptor for EpollListener {
    type Stream = EpollStream;

    async fn accept(&self) -> io::Result<(EpollStream, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|listener| accept_nonblocking(listener.as_raw_fd())) {
                Ok(Ok((stream, peer))) => {
                    return Ok((EpollStream(register(stream)?), peer));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::task::Poll;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_loopback_connect_needs_no_wait_and_works() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        runtime().block_on(async {
            // Done at the first poll: no reactor turn waited for.
            let mut connect = std::pin::pin!(EpollConnector.connect(address));
            let first = std::future::poll_fn(|cx| Poll::Ready(connect.as_mut().poll(cx))).await;
            let Poll::Ready(stream) = first else {
                panic!("a loopback connect waited for writability");
            };
            let stream = stream.unwrap();
            assert_eq!(stream.0.get_ref().peer_addr().unwrap(), address);
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(b"* OK\r\n").unwrap();
            let (read, buf) = stream.read(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..read.unwrap()], b"* OK\r\n");
            let (written, _) = stream.write_all(b"a LOGOUT\r\n".to_vec()).await;
            written.unwrap();
            let mut got = [0; 10];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"a LOGOUT\r\n");
        });
    }

    #[test]
    fn a_refused_connect_is_an_error() {
        // Bound, never listening: the port stays ours and refuses.
        let held =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        held.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let address = held.local_addr().unwrap().as_socket().unwrap();
        let refused = runtime().block_on(EpollConnector.connect(address));
        let err = refused.err().expect("a closed port refuses");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
