//! POP3, sans I/O: the pre-auth state machine for clients (RFC 1939, RFC 2449
//! CAPA, RFC 5034 AUTH) and the login exchange with a back end.
//!
//! Nothing in this module tree performs I/O or reads a clock.

pub mod backend;
pub mod preauth;
mod protocol;

pub use backend::{Pop3BackendAuth, Pop3BackendLogin};
pub use preauth::{Pop3PreAuth, Pop3Settings};
pub use protocol::POP3;

/// Splits a command line into an upper-cased keyword and the rest (after one space).
pub(crate) fn split_command(line: &[u8]) -> (String, &[u8]) {
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &b""[..]),
    };
    (String::from_utf8_lossy(keyword).to_ascii_uppercase(), rest)
}
