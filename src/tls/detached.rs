//! A back-end stream between two workers: what a parked session is while
//! it waits in the process-wide parking lot. A worker's stream lives on its
//! own reactor (an io_uring ring or an epoll set), which cannot be used
//! from another thread; [`DetachedStream`] is the plain socket plus, for a
//! TLS back end, rustls's connection state and any ciphertext already
//! read — everything another worker needs to carry on the same session.
//!
//! This module moves streams; it never reads or writes them.

use super::stream::TlsState;
use super::{MaybeTls, TlsStream};
use crate::transport::{Connector, Detach, Stream};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// A connected back-end stream registered with no reactor (`Send`).
pub struct DetachedStream {
    socket: std::net::TcpStream,
    /// rustls's connection, ciphertext read but not processed and
    /// plaintext not yet taken.
    tls: Option<Box<TlsState>>,
}

impl DetachedStream {
    /// Takes `stream` off this worker's reactor (no operation may be in
    /// flight on it).
    pub fn detach<S: Stream + Detach>(stream: MaybeTls<S>) -> io::Result<Self> {
        match stream {
            MaybeTls::Plain(plain) => Ok(Self {
                socket: plain.detach()?,
                tls: None,
            }),
            MaybeTls::Tls(tls) => {
                let (inner, state) = tls.into_parts();
                Ok(Self {
                    socket: inner.detach()?,
                    tls: Some(Box::new(state)),
                })
            }
        }
    }

    /// The same stream on the reactor of `connector`'s worker.
    pub fn attach<C: Connector>(self, connector: &C) -> io::Result<MaybeTls<C::Stream>> {
        let stream = connector.adopt(self.socket)?;
        Ok(match self.tls {
            None => MaybeTls::Plain(stream),
            Some(state) => MaybeTls::Tls(Box::new(TlsStream::from_parts(stream, *state))),
        })
    }

    /// Whether the session speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl AsRawFd for DetachedStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
