//! Async IMAP, POP3 and ManageSieve clients, just what the scenarios need:
//! connect (from a chosen source address), greeting, STARTTLS/STLS or
//! implicit TLS, login, select, fetch/retr with the body checked byte for
//! byte, IDLE, logout (ManageSieve: the login scenarios only).
//!
//! Every failure carries an [`ErrorKind`], which is how the summary counts
//! errors. A body that differs from the expected one is
//! [`ErrorKind::Mismatch`]: the run fails on it.
//!
//! `conn.rs` holds the connection (TCP, TLS, lines) and the operations the
//! scenarios call; `imap.rs` and `pop3.rs` how each protocol does them.

mod conn;
mod imap;
mod managesieve;
mod pop3;

pub use conn::Conn;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed.
    Connect,
    /// The operation ran over `--timeout`.
    Timeout,
    /// TLS handshake failed.
    Tls,
    /// No `* OK` / `+OK` greeting.
    Greeting,
    /// The server refused the credentials.
    LoginRejected,
    /// A temporary failure (`[UNAVAILABLE]`, `[SYS/TEMP]`, `[IN-USE]`).
    Unavailable,
    /// Any other unexpected answer.
    Protocol,
    /// A message body differed from what the back end holds.
    Mismatch,
    /// The server closed the connection early.
    Closed,
    /// Any other I/O error.
    Io,
    /// Open loop only: too many operations in flight, this one was not started.
    Overload,
}

impl ErrorKind {
    /// Name in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Greeting => "greeting",
            ErrorKind::LoginRejected => "login_rejected",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Overload => "overload",
        }
    }
}

/// A failed step: its kind and what was seen.
#[derive(Debug)]
pub struct Failure {
    /// For counting.
    pub kind: ErrorKind,
    /// For the first-error line.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        Failure::new(kind, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// How the client speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext.
    None,
    /// STARTTLS (IMAP) / STLS (POP3) before login.
    Starttls,
    /// TLS from the first byte (993 / 995 style).
    Implicit,
}

/// Mail protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    /// ManageSieve (RFC 5804): logins only.
    Managesieve,
}

/// How a client logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// The protocol's own: IMAP `LOGIN`, POP3 `USER`/`PASS`, ManageSieve
    /// `AUTHENTICATE "PLAIN"`.
    #[default]
    Native,
    /// SASL `PLAIN` with an initial response.
    Plain,
    /// OAUTHBEARER (RFC 7628) with an initial response; the password is
    /// the token.
    Oauthbearer,
    /// XOAUTH2 with an initial response; the password is the token.
    Xoauth2,
}

impl Mechanism {
    /// The SASL name and the base64 initial response for `user` and
    /// `secret`; `None` for the native login.
    pub fn initial_response(self, user: &str, secret: &str) -> Option<(&'static str, String)> {
        let (name, message) = match self {
            Mechanism::Native => return None,
            Mechanism::Plain => ("PLAIN", format!("\0{user}\0{secret}")),
            Mechanism::Oauthbearer => (
                "OAUTHBEARER",
                format!("n,a={user},\x01auth=Bearer {secret}\x01\x01"),
            ),
            Mechanism::Xoauth2 => (
                "XOAUTH2",
                format!("user={user}\x01auth=Bearer {secret}\x01\x01"),
            ),
        };
        Some((name, mailgate::auth::encode_base64(message.as_bytes())))
    }

    /// What the client answers to a server's error challenge (RFC 7628
    /// §3.2.3; XOAUTH2 an empty response).
    pub fn error_acknowledgement(self) -> &'static str {
        match self {
            Mechanism::Oauthbearer => "AQ==",
            _ => "",
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub target: SocketAddr,
    pub protocol: Protocol,
    /// How to log in.
    pub mechanism: Mechanism,
    pub tls: TlsMode,
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// A body differs: say where, so a bad relay can be found.
pub fn check_body(got: &[u8], expected: &[u8]) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    Err(Failure::new(
        ErrorKind::Mismatch,
        format!(
            "body of {} bytes differs from the expected {} bytes at offset {at}",
            got.len(),
            expected.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_is_a_mismatch_with_its_offset() {
        assert!(check_body(b"abc", b"abc").is_ok());
        let e = check_body(b"abX", b"abc").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Mismatch);
        assert!(e.detail.contains("offset 2"), "{}", e.detail);
        assert_eq!(
            check_body(b"ab", b"abc").unwrap_err().kind,
            ErrorKind::Mismatch
        );
    }
}
