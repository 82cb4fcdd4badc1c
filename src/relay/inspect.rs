//! What the tracked relay asks of whoever follows the bytes it relays: the
//! [`Inspector`] trait, defined here so that the relay knows no protocol.
//! The connection cache's IMAP tracker implements it (through an adapter in
//! the session layer, which knows both); the relay only moves bytes where
//! the inspector's steps say.
//!
//! This module owns the relay's side of that contract; it must never
//! decide anything about a protocol.

/// What to do with client bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send `buf[..n]` to the back end; keep the rest and call again once
    /// more bytes arrived.
    Forward(usize),
    /// Send `buf[..forward]` to the back end, then `internal` (a command of
    /// our own); the client's closing command (tag `logout_tag`) is
    /// answered by the caller and not forwarded. The up direction ends.
    Park {
        /// Bytes before the closing command.
        forward: usize,
        /// The client's tag, for the caller's answer.
        logout_tag: String,
        /// Our command, complete with its line end.
        internal: Vec<u8>,
    },
}

/// What to do with server bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send `buf[..n]` to the client; keep the rest and call again with
    /// more.
    Forward(usize),
    /// Send `buf[..forward]` to the client; the next `len` bytes answer our
    /// own command (not for the client); `ok` says whether it succeeded.
    /// The down direction ends.
    Internal {
        /// Bytes before our answer.
        forward: usize,
        /// Length of our answer.
        len: usize,
        /// Our command succeeded.
        ok: bool,
    },
}

/// Follows both directions of a relayed session.
pub trait Inspector {
    /// Client bytes `buf` (starting with what was kept last time).
    fn client(&mut self, buf: &[u8]) -> ClientStep;
    /// Server bytes `buf` (starting with what was kept last time).
    fn server(&mut self, buf: &[u8]) -> ServerStep;
}
