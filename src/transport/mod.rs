//! The small transport interface the session, TLS and relay are written
//! against: a connected [`Stream`] with owned-buffer I/O and a [`Connector`]
//! for outgoing connections.
//!
//! Only this module tree knows a reactor: [`uring`] implements the traits on
//! tokio-uring (the completion model needs the kernel to own a buffer while
//! an operation is in flight, hence owned buffers in the interface). Nothing
//! here knows a protocol, a session or the configuration.

pub mod uring;

pub use uring::{UringConnector, UringStream};

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;

/// A connected byte stream with owned-buffer I/O.
#[allow(async_fn_in_trait)] // workers are single-threaded: futures need not be Send
pub trait Stream: AsRawFd {
    /// Reads into `buf` (cleared first, filled up to its capacity).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
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
}

/// How outgoing connections are made.
#[allow(async_fn_in_trait)]
pub trait Connector {
    /// The stream type produced.
    type Stream: Stream;
    /// Connects to `addr` (the caller bounds the time).
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream>;
}
