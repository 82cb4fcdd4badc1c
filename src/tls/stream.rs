//! A rustls connection (server or client side) over an owned-buffer stream.
//!
//! Reads pull ciphertext from the socket into a reused buffer (small while the
//! peer is quiet, large while it sends), feed rustls, and hand out plaintext;
//! writes give plaintext to rustls and flush the records it produced. Records
//! leaving the socket are serialized by a lock so that the two relay
//! directions cannot interleave partial writes. Nothing here allocates per
//! record: rustls encrypts into its own buffer, which is drained into one
//! reused `Vec`.

use crate::transport::{buffers, Stream};
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Ciphertext read size while the peer is quiet (a read that waits on the
/// ring, mid-record or before the relay waits for readiness, holds it):
/// 2 KiB takes a ClientHello with a post-quantum key share (~1.8 KiB) or an
/// IMAP command in one read; a read that fills it switches to [`BUSY_READ`].
const QUIET_READ: usize = 2048;
/// Ciphertext read size while the peer sends (a few full records).
const BUSY_READ: usize = 64 * 1024;

/// TLS over `S`.
pub struct TlsStream<S> {
    inner: S,
    conn: RefCell<rustls::Connection>,
    /// Ciphertext received but not yet taken by rustls.
    pending: RefCell<Vec<u8>>,
    read_buf: Cell<Option<Vec<u8>>>,
    write_buf: Cell<Option<Vec<u8>>>,
    write_lock: tokio::sync::Mutex<()>,
    eof: Cell<bool>,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: Stream> TlsStream<S> {
    /// Wraps `inner`; call [`TlsStream::handshake`] next.
    pub fn new(inner: S, conn: impl Into<rustls::Connection>) -> Self {
        Self {
            inner,
            conn: RefCell::new(conn.into()),
            pending: RefCell::new(Vec::new()),
            read_buf: Cell::new(None),
            write_buf: Cell::new(None),
            write_lock: tokio::sync::Mutex::new(()),
            eof: Cell::new(false),
        }
    }

    /// Runs the handshake to completion (the caller bounds the time).
    pub async fn handshake(&self) -> io::Result<()> {
        loop {
            self.flush().await?;
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            if !self.receive().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
    }

    /// The socket and the TLS state, to move to another worker: rustls's
    /// connection and the ciphertext received but not yet given to it.
    pub(super) fn into_parts(self) -> (S, rustls::Connection, Vec<u8>) {
        (
            self.inner,
            self.conn.into_inner(),
            self.pending.into_inner(),
        )
    }

    /// A stream from [`TlsStream::into_parts`]'s parts (its socket adopted
    /// by this worker).
    pub(super) fn from_parts(inner: S, conn: rustls::Connection, pending: Vec<u8>) -> Self {
        let stream = Self::new(inner, conn);
        *stream.pending.borrow_mut() = pending;
        stream
    }

    /// The SNI name the client asked for, if any (server side).
    pub fn server_name(&self) -> Option<String> {
        match &*self.conn.borrow() {
            rustls::Connection::Server(c) => c.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => None,
        }
    }

    /// Whether the session was resumed (an abbreviated handshake).
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.borrow().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// Writes every record rustls has ready.
    async fn flush(&self) -> io::Result<()> {
        let _serialized = self.write_lock.lock().await;
        loop {
            let mut out = self.write_buf.take().unwrap_or_default();
            out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.write_buf.set(Some(out));
                return Ok(());
            }
            let (res, out) = self.inner.write_all(out).await;
            self.write_buf.set(Some(out));
            res?;
        }
    }

    /// Feeds rustls ciphertext already received, then reads more from the
    /// socket if it had none. False at the peer's EOF.
    async fn receive(&self) -> io::Result<bool> {
        if !self.pending.borrow().is_empty() {
            self.feed_pending()?;
            return Ok(true);
        }
        let buf = self
            .read_buf
            .take()
            .unwrap_or_else(|| buffers::take(QUIET_READ));
        let (res, buf) = self.inner.read(buf).await;
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                self.read_buf.set(Some(buf));
                return Err(e);
            }
        };
        if n == 0 {
            self.eof.set(true);
            buffers::give_back(buf);
            return Ok(false);
        }
        self.pending.borrow_mut().extend_from_slice(&buf[..n]);
        // Adapt the next read to the peer's pace; a quiet peer leaves no
        // buffer behind (the next read takes one from the worker's pool).
        let capacity = buf.capacity();
        if n == capacity && capacity < BUSY_READ {
            buffers::give_back(buf);
            self.read_buf.set(Some(Vec::with_capacity(BUSY_READ)));
        } else if n < QUIET_READ {
            if capacity > QUIET_READ {
                drop(buf);
            } else {
                buffers::give_back(buf);
            }
        } else {
            self.read_buf.set(Some(buf));
        }
        self.feed_pending()?;
        Ok(true)
    }

    fn feed_pending(&self) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        let mut pending = self.pending.borrow_mut();
        let mut offset = 0;
        // rustls stops wanting input while its plaintext buffer is full: the
        // rest waits here until the reader has taken plaintext.
        while offset < pending.len() && conn.wants_read() {
            let mut rest = &pending[offset..];
            let taken = conn.read_tls(&mut rest)?;
            if taken == 0 {
                break; // rustls is full: plaintext must be read first
            }
            offset += taken;
            conn.process_new_packets().map_err(tls_error)?;
        }
        pending.drain(..offset);
        Ok(())
    }

    /// Plaintext into `buf`'s capacity: `Some(n)` when any is ready or the
    /// stream ended, `None` when more ciphertext is needed.
    fn take_plaintext(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let capacity = buf.capacity();
        buf.resize(capacity, 0);
        let result = self.conn.borrow_mut().reader().read(buf);
        match result {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(n)) // 0: close_notify received
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buf.clear();
                Ok(None)
            }
            // EOF without close_notify: treat as the end of the stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                buf.clear();
                Ok(Some(0))
            }
            Err(e) => {
                buf.clear();
                Err(e)
            }
        }
    }
}

impl<S: Stream> AsRawFd for TlsStream<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<S: Stream> TlsStream<S> {
    /// Whether a read would make progress without the socket: plaintext
    /// or ciphertext buffered, or the end seen (a TLS error counts: the
    /// read reports it).
    fn buffered(&self) -> bool {
        if self.eof.get() || !self.pending.borrow().is_empty() {
            return true;
        }
        self.conn
            .borrow_mut()
            .process_new_packets()
            .map_or(true, |state| state.plaintext_bytes_to_read() > 0)
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    async fn readable(&self) -> io::Result<()> {
        if self.buffered() {
            return Ok(());
        }
        self.inner.readable().await
    }

    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            // Answer what rustls wants to say (handshake, key update, alerts).
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
            if self.eof.get() && self.pending.borrow().is_empty() {
                return (Ok(0), buf);
            }
            if let Err(e) = self.receive().await {
                return (Err(e), buf);
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut written = 0;
        while written < buf.len() {
            let accepted = self.conn.borrow_mut().writer().write(&buf[written..]);
            match accepted {
                Ok(n) => written += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn close_write(&self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.flush().await?;
        self.inner.shutdown(Shutdown::Write)
    }
}

/// A connection that may have been upgraded to TLS (back ends: `tls = "none"`,
/// `"implicit"` or after `STARTTLS`).
pub enum MaybeTls<S> {
    /// Plaintext.
    Plain(S),
    /// TLS over the same socket.
    Tls(Box<TlsStream<S>>),
}

impl<S: Stream> AsRawFd for MaybeTls<S> {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            MaybeTls::Plain(s) => s.as_raw_fd(),
            MaybeTls::Tls(s) => s.as_raw_fd(),
        }
    }
}

impl<S: Stream> Stream for MaybeTls<S> {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            MaybeTls::Plain(s) => s.read(buf).await,
            MaybeTls::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            MaybeTls::Plain(s) => s.write_all(buf).await,
            MaybeTls::Tls(s) => s.write_all(buf).await,
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.shutdown(how),
            MaybeTls::Tls(s) => s.shutdown(how),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            MaybeTls::Plain(s) => s.local_addr(),
            MaybeTls::Tls(s) => s.local_addr(),
        }
    }

    async fn close_write(&self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.close_write().await,
            MaybeTls::Tls(s) => s.close_write().await,
        }
    }

    fn splice_fd(&self) -> Option<RawFd> {
        match self {
            MaybeTls::Plain(s) => s.splice_fd(),
            MaybeTls::Tls(_) => None,
        }
    }

    async fn readable(&self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.readable().await,
            MaybeTls::Tls(s) => s.readable().await,
        }
    }

    fn registration(&self) -> Option<&tokio::io::unix::AsyncFd<std::net::TcpStream>> {
        match self {
            MaybeTls::Plain(s) => s.registration(),
            MaybeTls::Tls(_) => None,
        }
    }
}
