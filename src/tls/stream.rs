//! TLS over an owned-buffer stream: [`super::records::Records`] (rustls's
//! unbuffered API and the buffers it owns) fed from the socket.
//!
//! Reads pull ciphertext from the socket into a buffer (small while the
//! peer is quiet, large while it sends) that becomes the connection's
//! receive buffer when that is empty (no copy), and hand out plaintext;
//! writes encrypt plaintext into records and send them. Records leaving the
//! socket are serialized by a lock so that the two relay directions cannot
//! interleave partial writes. A quiet session holds no buffer: the read
//! buffer goes back to the worker's pool once rustls has taken its records.

use super::records::{Conn, Progress, Records};
use crate::transport::{buffers, Stream};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Ciphertext read size while the peer is quiet (a read that waits on the
/// ring, mid-record or before the relay waits for readiness, holds it):
/// 2 KiB takes a ClientHello with a post-quantum key share (~1.8 KiB) or an
/// IMAP command in one read; a read that returns this much or more makes
/// the next one [`BUSY_READ`].
const QUIET_READ: usize = 2048;
/// Ciphertext read size while the peer sends (a few full records).
const BUSY_READ: usize = 64 * 1024;

/// TLS over `S`.
pub struct TlsStream<S> {
    inner: S,
    records: RefCell<Records>,
    /// A large read buffer kept while the peer sends.
    read_buf: Cell<Option<Vec<u8>>>,
    /// Whether the last read was large: the next one takes [`BUSY_READ`].
    busy: Cell<bool>,
    write_lock: tokio::sync::Mutex<()>,
    eof: Cell<bool>,
}

/// A TLS session's state off its socket (see [`TlsStream::into_parts`]).
pub struct TlsState(Records);

impl<S: Stream> TlsStream<S> {
    /// Wraps `inner`; call [`TlsStream::handshake`] next.
    pub fn new(inner: S, conn: impl Into<Conn>) -> Self {
        Self::with_records(inner, Records::new(conn))
    }

    fn with_records(inner: S, records: Records) -> Self {
        Self {
            inner,
            records: RefCell::new(records),
            read_buf: Cell::new(None),
            busy: Cell::new(false),
            write_lock: tokio::sync::Mutex::new(()),
            eof: Cell::new(false),
        }
    }

    /// Runs the handshake to completion (the caller bounds the time).
    pub async fn handshake(&self) -> io::Result<()> {
        loop {
            let progress = self.records.borrow_mut().advance()?;
            self.release_buffers();
            self.flush().await?;
            if !self.records.borrow().is_handshaking() {
                return Ok(());
            }
            if progress == Progress::Closed || !self.receive().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
    }

    /// The socket and the TLS state (rustls's connection, ciphertext
    /// received and plaintext decrypted but not yet taken), to move to
    /// another worker.
    pub(super) fn into_parts(self) -> (S, TlsState) {
        (self.inner, TlsState(self.records.into_inner()))
    }

    /// A stream from [`TlsStream::into_parts`]'s parts (its socket adopted
    /// by this worker).
    pub(super) fn from_parts(inner: S, state: TlsState) -> Self {
        Self::with_records(inner, state.0)
    }

    /// Whether the session was resumed (an abbreviated handshake).
    pub fn resumed(&self) -> bool {
        self.records.borrow().resumed()
    }

    /// Sends every record encoded so far, in order.
    async fn flush(&self) -> io::Result<()> {
        let _serialized = self.write_lock.lock().await;
        loop {
            let Some(out) = self.records.borrow_mut().take_outgoing() else {
                return Ok(());
            };
            self.inner.write_all(out).await.0?;
        }
    }

    /// Reads ciphertext from the socket into the connection's receive
    /// buffer. False at the peer's EOF.
    async fn receive(&self) -> io::Result<bool> {
        let buf = match self.read_buf.take() {
            Some(buf) => buf,
            None if self.busy.get() => Vec::with_capacity(BUSY_READ),
            None => buffers::take(QUIET_READ),
        };
        let (res, mut buf) = self.inner.read(buf).await;
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                self.recycle(buf);
                return Err(e);
            }
        };
        if n == 0 {
            self.eof.set(true);
            self.recycle(buf);
            return Ok(false);
        }
        buf.truncate(n);
        // A quiet peer's next read takes a small buffer from the worker's
        // pool; one that filled a small buffer or sent much gets a large one.
        self.busy.set(n >= QUIET_READ);
        let spare = self.records.borrow_mut().receive(buf)?;
        self.recycle(spare);
        Ok(true)
    }

    /// Keeps a large buffer for the next read while the peer is busy, gives
    /// small ones back to the worker's pool, drops the rest.
    fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        if !self.busy.get() {
            drop(self.read_buf.take());
        }
        if buf.capacity() == QUIET_READ {
            buffers::give_back(buf);
        } else if buf.capacity() == BUSY_READ && self.busy.get() {
            let kept = self.read_buf.take().unwrap_or(buf);
            self.read_buf.set(Some(kept));
        }
    }

    /// The receive buffer, once rustls has taken every record in it.
    fn release_buffers(&self) {
        if let Some(buf) = self.records.borrow_mut().release_incoming() {
            self.recycle(buf);
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
    /// decrypted, or the end seen.
    fn buffered(&self) -> bool {
        let records = self.records.borrow();
        self.eof.get() || records.has_plaintext() || records.peer_closed()
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    /// A wait means the peer paused: the large read buffer kept while it
    /// sent (an upload that just ended) is dropped first, so an idle
    /// session holds none (a busy peer's next read takes a new one).
    async fn readable(&self) -> io::Result<()> {
        if self.buffered() {
            return Ok(());
        }
        drop(self.read_buf.take());
        self.inner.readable().await
    }

    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            {
                let mut records = self.records.borrow_mut();
                if records.has_plaintext() {
                    let n = records.take_plaintext(&mut buf);
                    return (Ok(n), buf);
                }
            }
            let progress = self.records.borrow_mut().advance();
            self.release_buffers();
            // Answer what rustls wants to say (key updates, alerts).
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
            if let Err(e) = progress {
                return (Err(e), buf);
            }
            if self.records.borrow().has_plaintext() {
                continue;
            }
            // The end: close_notify (a closed connection has received it),
            // or EOF without it (taken as the end).
            if self.records.borrow().peer_closed() || self.eof.get() {
                buf.clear();
                return (Ok(0), buf);
            }
            if let Err(e) = self.receive().await {
                return (Err(e), buf);
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let encrypted = self.records.borrow_mut().write(&buf);
        self.release_buffers();
        if let Err(e) = encrypted {
            return (Err(e), buf);
        }
        (self.flush().await, buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn close_write(&self) -> io::Result<()> {
        self.records.borrow_mut().close()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_configs;
    use crate::transport::EpollStream;
    use mailgate_testkit::certs::TestCa;
    use rustls::client::UnbufferedClientConnection;
    use rustls::pki_types::ServerName;
    use rustls::server::UnbufferedServerConnection;
    use std::time::Duration;
    use tokio::time::timeout;

    /// A client and a server `TlsStream` over a loopback connection, before
    /// their handshake.
    fn pair(ca: &TestCa) -> (TlsStream<EpollStream>, TlsStream<EpollStream>) {
        let (server_config, client_config) = test_configs(ca);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        (
            TlsStream::new(
                EpollStream::new(client).unwrap(),
                UnbufferedClientConnection::new(client_config, name).unwrap(),
            ),
            TlsStream::new(
                EpollStream::new(server).unwrap(),
                UnbufferedServerConnection::new(server_config).unwrap(),
            ),
        )
    }

    #[test]
    fn an_upload_arrives_whole_a_pause_holds_no_buffer_and_close_notify_ends_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ca = TestCa::new();
            let (client, server) = pair(&ca);
            let (a, b) = tokio::join!(client.handshake(), server.handshake());
            a.unwrap();
            b.unwrap();

            let upload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
            let send = async {
                let (sent, _) = client.write_all(upload.clone()).await;
                sent.unwrap();
            };
            let receive = async {
                let mut got = Vec::new();
                let mut buf = Vec::with_capacity(64 * 1024);
                while got.len() < upload.len() {
                    let (n, back) = server.read(buf).await;
                    buf = back;
                    let n = n.unwrap();
                    assert!(n > 0, "the stream ended early");
                    got.extend_from_slice(&buf[..n]);
                }
                got
            };
            let ((), got) = tokio::join!(send, receive);
            assert!(got == upload, "bytes exact");

            // The peer pauses: waiting drops a large read buffer kept from
            // the upload, and nothing else holds memory.
            server.read_buf.set(Some(Vec::with_capacity(BUSY_READ)));
            assert!(
                timeout(Duration::from_millis(200), server.readable())
                    .await
                    .is_err(),
                "nothing to read"
            );
            assert!(server.read_buf.take().is_none(), "read buffer dropped");
            assert!(server.records.borrow_mut().release_incoming().is_none());
            assert!(!server.records.borrow().has_plaintext());

            // An answer back, then close_notify: the reader sees the end.
            let (answered, _) = server.write_all(b"a1 OK APPEND done\r\n".to_vec()).await;
            answered.unwrap();
            let (n, buf) = client.read(Vec::with_capacity(256)).await;
            assert_eq!(&buf[..n.unwrap()], b"a1 OK APPEND done\r\n");
            client.close_write().await.unwrap();
            let (n, _) = server.read(Vec::with_capacity(256)).await;
            assert_eq!(n.unwrap(), 0, "close_notify ends the stream");
        });
    }
}
