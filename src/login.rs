//! The contract between the sans-I/O protocol state machines and the session.
//!
//! A client-side [`PreAuth`] machine (IMAP or POP3) is fed the client's bytes
//! and answers with bytes to send and [`PreAuthEvent`]s; a [`BackendLogin`]
//! machine does the same towards a back end. Neither performs I/O, reads a
//! clock or looks anything up: `session` moves the bytes, applies the
//! timeouts and asks the directory. That keeps every protocol rule testable
//! (and fuzzable) without a socket.

use crate::auth::Credentials;

/// What a pre-auth machine needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum PreAuthEvent {
    /// Send the pending output, then read more client bytes.
    NeedInput,
    /// The client presented credentials: look up and log in to the back end,
    /// then report with `login_failed` or `login_succeeded`.
    Login(Credentials),
    /// Send the pending output, then close the connection.
    Close,
    /// Send the pending output, then run a TLS handshake on the connection
    /// and report with `tls_started` (pipelined plaintext was discarded).
    StartTls,
}

/// Why a login attempt did not succeed, as the client will be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong password, unknown or inactive user (deliberately the same answer).
    AuthFailed,
    /// Back end or directory trouble: try again later.
    Unavailable,
    /// The mailbox is locked by another session (POP3 `[IN-USE]`).
    InUse,
}

/// What the back end said on a successful login, to pass on to the client.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackendGreeting {
    /// Post-login capability list (IMAP), if the back end sent one.
    pub capability: Option<String>,
    /// Untagged lines the back end sent with its login reply, CRLF included.
    pub untagged: Vec<u8>,
}

/// Bytes to send once a login has succeeded.
#[derive(Debug, PartialEq, Eq)]
pub struct LoggedIn {
    /// The reply to the client's login command.
    pub to_client: Vec<u8>,
    /// What the client pipelined after its login command, for the back end.
    pub to_backend: Vec<u8>,
}

/// A client-side, pre-authentication protocol machine.
pub trait PreAuth {
    /// Adds bytes received from the client.
    fn receive(&mut self, data: &[u8]);
    /// Processes buffered input as far as possible.
    fn poll(&mut self) -> PreAuthEvent;
    /// Takes the bytes queued for the client.
    fn take_output(&mut self) -> Vec<u8>;
    /// Reports a failed login for the credentials last returned by `poll`.
    fn login_failed(&mut self, failure: LoginFailure);
    /// Reports success; consumes the machine (the session now relays).
    fn login_succeeded(self, backend: &BackendGreeting) -> LoggedIn;
    /// The pre-auth time ran out: queue a goodbye; `poll` then returns `Close`.
    fn timed_out(&mut self);
    /// The TLS handshake after `StartTls` succeeded: commands resume, with
    /// capabilities recomputed.
    fn tls_started(&mut self);
    /// Commands refused as malformed, unknown or oversized since the last
    /// call (IMAP `BAD`, POP3 `-ERR` other than a failed login), for the
    /// metrics.
    fn take_protocol_errors(&mut self) -> u32;
}

/// What a back-end login machine needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendEvent {
    /// Send the pending output, then read more back-end bytes.
    NeedInput,
    /// The exchange is over.
    Done(BackendOutcome),
    /// The back end agreed to STARTTLS/STLS: send the pending output, run a
    /// TLS handshake as client, then call `tls_started`.
    StartTls,
}

/// How a back-end login ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendOutcome {
    /// Logged in. `leftover` holds back-end bytes after the login reply,
    /// which belong to the client.
    LoggedIn {
        /// Capability and untagged lines to pass on.
        greeting: BackendGreeting,
        /// Bytes received after the login reply.
        leftover: Vec<u8>,
    },
    /// The back end refused the credentials.
    Rejected(LoginFailure),
    /// The back end misbehaved or refused service; the reason is for logs.
    Unavailable(String),
}

/// A back-end login exchange.
pub trait BackendLogin {
    /// Adds bytes received from the back end.
    fn receive(&mut self, data: &[u8]);
    /// Processes buffered input as far as possible.
    fn poll(&mut self) -> BackendEvent;
    /// Takes the bytes queued for the back end.
    fn take_output(&mut self) -> Vec<u8>;
    /// The TLS handshake after `StartTls` succeeded; capabilities are asked anew.
    fn tls_started(&mut self);
}

/// Where a client connected from and to, passed on to back ends that accept
/// it (IMAP `ID` with `x-originating-ip` …, POP3 `XCLIENT`), so their logs,
/// per-IP limits and auth penalties apply to the real client, not the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The proxy address the client connected to.
    pub local: std::net::SocketAddr,
}

/// Longest back-end line accepted during login (capability lists can be long).
pub const MAX_BACKEND_LINE: usize = 64 * 1024;

/// Removes and returns the first line (without CR LF) from `buf`, if complete.
/// Errors when no line end appears within `max` bytes.
pub(crate) fn take_line(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, ()> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) if lf <= max + 1 => {
            let mut line: Vec<u8> = buf.drain(..=lf).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(Some(line))
        }
        Some(_) => Err(()),
        None if buf.len() > max + 1 => Err(()),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_line_bounds() {
        let mut buf = b"abc\r\ndef".to_vec();
        assert_eq!(take_line(&mut buf, 3), Ok(Some(b"abc".to_vec())));
        assert_eq!(buf, b"def");
        assert_eq!(take_line(&mut buf, 3), Ok(None));
        let mut long = b"abcd\r\n".to_vec();
        assert_eq!(take_line(&mut long, 3), Err(()));
        let mut long_unterminated = b"abcde".to_vec();
        assert_eq!(take_line(&mut long_unterminated, 3), Err(()));
        let mut lf_only = b"ab\nc".to_vec();
        assert_eq!(take_line(&mut lf_only, 3), Ok(Some(b"ab".to_vec())));
    }
}
