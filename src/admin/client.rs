//! A client for the admin listener: what `mailgate admin …`, the tests and
//! the load generator's cluster mode use to read `/metrics` and run actions.

use percent_encoding::{utf8_percent_encode, AsciiSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bound on connecting to the admin listener.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on each read and write of a request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters sent as they are in a `user=` value; everything else is
/// percent-encoded.
const USER_SAFE: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// Why a request to the admin listener failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// No connection.
    #[error("connecting to the admin listener {address}: {source}")]
    Connect {
        /// The admin address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("talking to the admin listener {address}: {source}")]
    Io {
        /// The admin address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not an HTTP answer.
    #[error("malformed answer from the admin listener {address}")]
    Malformed {
        /// The admin address.
        address: SocketAddr,
    },
}

/// An answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET /metrics`.
    Metrics,
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `POST /cache/invalidate?user=…`.
    Invalidate(String),
    /// `POST /sessions/kick?user=…`.
    Kick(String),
    /// `GET /sessions[?user=…]`.
    Sessions(Option<String>),
}

impl Action {
    /// Method and path (with the query).
    pub fn request_line(&self) -> (&'static str, String) {
        let with_user = |path: &str, user: &str| {
            format!("{path}?user={}", utf8_percent_encode(user, USER_SAFE))
        };
        match self {
            Action::Metrics => ("GET", "/metrics".into()),
            Action::Health => ("GET", "/healthz".into()),
            Action::Ready => ("GET", "/readyz".into()),
            Action::Invalidate(user) => ("POST", with_user("/cache/invalidate", user)),
            Action::Kick(user) => ("POST", with_user("/sessions/kick", user)),
            Action::Sessions(None) => ("GET", "/sessions".into()),
            Action::Sessions(Some(user)) => ("GET", with_user("/sessions", user)),
        }
    }
}

/// A running mailgate's admin listener.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// Its address.
    pub address: SocketAddr,
    /// Bearer token for actions.
    pub token: Option<String>,
}

impl AdminClient {
    /// A client for `address`, with `token` for actions.
    pub fn new(address: SocketAddr, token: Option<String>) -> Self {
        Self { address, token }
    }

    /// Runs `action`.
    pub fn run(&self, action: &Action) -> Result<Answer, AdminClientError> {
        let (method, path) = action.request_line();
        self.request(method, &path)
    }

    /// One raw request (any method and path).
    pub fn request(&self, method: &str, path: &str) -> Result<Answer, AdminClientError> {
        let address = self.address;
        let io = |source| AdminClientError::Io { address, source };
        let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
            .map_err(|source| AdminClientError::Connect { address, source })?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let auth = self
            .token
            .as_deref()
            .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
        )
        .map_err(io)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(io)?;
        let status = response
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or(AdminClientError::Malformed { address })?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_percent_encoded() {
        let (method, path) = Action::Kick("a b+c@x.org".into()).request_line();
        assert_eq!(method, "POST");
        assert_eq!(path, "/sessions/kick?user=a%20b%2Bc%40x.org");
    }
}
