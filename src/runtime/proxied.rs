//! Connections on `proxy_protocol` listeners: the balancer's PROXY header
//! is read — exactly its bytes, at most [`HEADER_TIMEOUT`] — before the
//! connection is admitted, so the connection caps, the login-failure limits,
//! the logs, the metrics and what the back end is told all see the client
//! the header names. A missing, garbled or late header closes the
//! connection with a log line.

use crate::proxy_header::{self, Header, HeaderError, Next};
use crate::transport::Stream;
use std::time::Duration;

/// Bound on the header's arrival (a balancer sends it at once).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection's header was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ProxiedError {
    /// The bytes are not a PROXY header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The connection ended first, after `after` bytes (none: a port
    /// probe, e.g. a balancer's plain TCP health check).
    #[error("the connection closed after {after} bytes, before the PROXY header ended")]
    Closed {
        /// Bytes received before the end.
        after: usize,
    },
    /// A read failed.
    #[error("reading the PROXY header: {0}")]
    Io(std::io::Error),
    /// Nothing complete within [`HEADER_TIMEOUT`].
    #[error("no complete PROXY header within {HEADER_TIMEOUT:?}")]
    Timeout,
}

/// Reads the header at the start of `stream`, and nothing after it.
pub async fn read_header<S: Stream>(stream: &S) -> Result<Header, ProxiedError> {
    let read = async {
        let mut seen = Vec::new();
        loop {
            match proxy_header::advance(&seen)? {
                Next::Done(header) => return Ok(header),
                Next::Read(wanted) => {
                    let (res, buf) = stream.read(Vec::with_capacity(wanted)).await;
                    match res {
                        Ok(0) => return Err(ProxiedError::Closed { after: seen.len() }),
                        Ok(n) => seen.extend_from_slice(&buf[..n.min(wanted)]),
                        Err(e) => return Err(ProxiedError::Io(e)),
                    }
                }
            }
        }
    };
    tokio::time::timeout(HEADER_TIMEOUT, read)
        .await
        .unwrap_or(Err(ProxiedError::Timeout))
}
