//! A back-end connection after `COMPRESS DEFLATE`: reads inflate, writes
//! deflate (sync-flushed per write), over any [`Stream`] (TCP or TLS).
//!
//! Bounded: a read inflates into the caller's buffer only (a compressible
//! flood waits in the socket, not in mailgate), and the compressed bytes
//! read but not yet inflated are at most one read's worth (their buffer is
//! dropped once consumed). While a connection is quiet it holds the
//! inflater's window and nothing else (the deflater's compressor goes at
//! the next small write, see [`super::codec`]).

use super::codec::{Deflater, Inflater};
use crate::transport::buffers;
use crate::transport::Stream;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Compressed bytes read from the socket at a time while the leg is quiet.
pub const WIRE_READ_SIZE: usize = 4096;
/// … and while it is busy (a read filled the quiet size).
pub const BUSY_WIRE_READ_SIZE: usize = 64 * 1024;

/// Bytes on the wire (compressed), both ways.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WireBytes {
    /// Sent to the back end.
    pub sent: u64,
    /// Received from the back end.
    pub received: u64,
}

/// A deflate-compressed connection.
pub struct DeflateStream<S> {
    inner: S,
    deflater: RefCell<Deflater>,
    inflater: RefCell<Inflater>,
    /// Compressed bytes received and not yet inflated, from `at`.
    pending: RefCell<Vec<u8>>,
    at: Cell<usize>,
    /// The last inflate filled the caller's buffer: the inflater may hold
    /// more output without needing more input.
    full: Cell<bool>,
    /// The next socket read's size: [`WIRE_READ_SIZE`] while quiet,
    /// [`BUSY_WIRE_READ_SIZE`] after a read filled its buffer.
    wire_read: Cell<usize>,
    eof: Cell<bool>,
    wire: Cell<WireBytes>,
}

impl<S: Stream> DeflateStream<S> {
    /// Compression on `inner` from now on, at `level`; `received` holds
    /// compressed bytes already read past the `COMPRESS` answer.
    pub fn new(inner: S, level: u32, received: Vec<u8>) -> Self {
        let wire = WireBytes {
            sent: 0,
            received: received.len() as u64,
        };
        Self {
            inner,
            deflater: RefCell::new(Deflater::new(level)),
            inflater: RefCell::new(Inflater::new()),
            pending: RefCell::new(received),
            at: Cell::new(0),
            full: Cell::new(false),
            wire_read: Cell::new(WIRE_READ_SIZE),
            eof: Cell::new(false),
            wire: Cell::new(wire),
        }
    }

    /// Bytes on the wire so far.
    pub fn wire_bytes(&self) -> WireBytes {
        self.wire.get()
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether an inflate may give bytes without reading the socket.
    fn has_pending(&self) -> bool {
        self.full.get() || self.at.get() < self.pending.borrow().len()
    }

    /// Inflates pending bytes into `buf`: bytes made.
    fn inflate_pending(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut pending = self.pending.borrow_mut();
        let at = self.at.get();
        let room = buf.capacity() - buf.len();
        let (used, made) = self.inflater.borrow_mut().read(&pending[at..], buf)?;
        self.full.set(room > 0 && made == room);
        if at + used == pending.len() {
            // Consumed: release the buffer (a quiet connection keeps none).
            let spent = std::mem::take(&mut *pending);
            if matches!(spent.capacity(), WIRE_READ_SIZE | BUSY_WIRE_READ_SIZE) {
                buffers::give_back(spent);
            }
            self.at.set(0);
        } else {
            self.at.set(at + used);
        }
        Ok(made)
    }
}

impl<S: Stream> AsRawFd for DeflateStream<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<S: Stream> Stream for DeflateStream<S> {
    async fn readable(&self) -> io::Result<()> {
        if self.has_pending() {
            return Ok(());
        }
        self.inner.readable().await
    }

    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        loop {
            if self.has_pending() {
                match self.inflate_pending(&mut buf) {
                    Ok(0) => {}
                    Ok(made) => return (Ok(made), buf),
                    Err(e) => return (Err(e), buf),
                }
                if self.at.get() < self.pending.borrow().len() {
                    // Input left but nothing made: the caller's buffer has
                    // no room (a zero-capacity read) or the stream ended.
                    return (Ok(0), buf);
                }
            }
            if self.eof.get() || self.inflater.borrow().ended() {
                return (Ok(0), buf);
            }
            let size = self.wire_read.get();
            let (res, wire) = self.inner.read(buffers::take(size)).await;
            // Busy while reads fill their buffer; quiet again once one
            // comes back under a quarter full.
            match res {
                Ok(n) if n == size => self.wire_read.set(BUSY_WIRE_READ_SIZE),
                Ok(n) if n < size / 4 => self.wire_read.set(WIRE_READ_SIZE),
                _ => {}
            }
            match res {
                Ok(0) => {
                    buffers::give_back(wire);
                    self.eof.set(true);
                }
                Ok(n) => {
                    let mut counts = self.wire.get();
                    counts.received += n as u64;
                    self.wire.set(counts);
                    let mut pending = self.pending.borrow_mut();
                    if pending.is_empty() {
                        *pending = wire;
                    } else {
                        pending.extend_from_slice(&wire[..n]);
                        buffers::give_back(wire);
                    }
                }
                Err(e) => {
                    buffers::give_back(wire);
                    return (Err(e), buf);
                }
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut wire = Vec::with_capacity(buf.len().min(64 * 1024) + 16);
        if let Err(e) = self.deflater.borrow_mut().write(&buf, &mut wire) {
            return (Err(e), buf);
        }
        let len = wire.len() as u64;
        let (res, _) = self.inner.write_all(wire).await;
        if res.is_ok() {
            let mut counts = self.wire.get();
            counts.sent += len;
            self.wire.set(counts);
        }
        (res, buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn close_write(&self) -> io::Result<()> {
        self.inner.close_write().await
    }
}
