//! The contract between the sans-I/O protocol state machines and the session.
//!
//! A client-side [`PreAuth`] machine (IMAP or POP3) is fed the client's bytes
//! and answers with bytes to send and [`PreAuthEvent`]s; a [`BackendLogin`]
//! machine does the same towards a back end. Neither performs I/O, reads a
//! clock or looks anything up: `session` moves the bytes, applies the
//! timeouts and asks the directory. That keeps every protocol rule testable
//! (and fuzzable) without a socket.

use crate::auth::Credentials;

mod address_text;
pub mod framing;
mod spec;
pub use address_text::{append_decimal, append_decimal_bytes, AddressText};
pub use spec::{
    BackendAuth, BackendLoginRequest, BackendOffers, ListenerSettings, MachineFactory, OAuthOffer,
    ProtocolSpec,
};

/// Greeting text when a listener sets none (never the back end's banner).
pub const DEFAULT_GREETING: &str = "mailgate ready.";
/// Default longest command line accepted before login (bytes, CRLF excluded).
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;
/// Default largest IMAP literal accepted before login (bytes).
pub const DEFAULT_MAX_LITERAL: usize = 8 * 1024;
/// Default number of failed logins after which a connection is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// Default number of commands a client may send before login.
pub const DEFAULT_MAX_PREAUTH_COMMANDS: u32 = 50;
/// Default number of refused commands a client may send before login.
pub const DEFAULT_MAX_PROTOCOL_ERRORS: u32 = 10;
/// Longest user name looked up; longer ones fail without a lookup.
pub const MAX_USER_NAME: usize = 255;

/// Why a user name is not looked up (it fails like an unknown user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadUserName {
    /// Over [`MAX_USER_NAME`] bytes.
    #[error("user name longer than {MAX_USER_NAME} bytes")]
    TooLong,
    /// A control character (NUL, CR, LF, TAB, DEL, …): no directory or
    /// back end has such names, and a NUL would shift the fields of the
    /// back end's `AUTHENTICATE PLAIN` message.
    #[error("user name with a control character")]
    ControlCharacter,
}

/// The one rule every login mechanism's user name passes before it is
/// looked up or sent anywhere (IMAP LOGIN and AUTHENTICATE, POP3 USER and
/// AUTH, quoted, atom or literal alike).
pub fn check_user_name(user: &str) -> Result<(), BadUserName> {
    if user.len() > MAX_USER_NAME {
        return Err(BadUserName::TooLong);
    }
    if user.chars().any(char::is_control) {
        return Err(BadUserName::ControlCharacter);
    }
    Ok(())
}
/// Longest back-end line accepted during login (capability lists can be long).
pub const MAX_BACKEND_LINE: usize = 64 * 1024;
/// Bytes of a back-end line kept when it is quoted in an error (for logs).
pub const MAX_QUOTED_LINE: usize = 200;

/// What a pre-auth machine needs next.
#[must_use]
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
    /// Whether the back-end leg is compressed from here on.
    pub compression: Compression,
}

/// The back-end leg's compression after a login (RFC 4978).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not asked for (`[backend] compress = "off"`, or a protocol without it).
    #[default]
    Off,
    /// `COMPRESS DEFLATE` accepted: every byte after the answer is deflate.
    Deflate,
    /// Asked for, but the back end does not announce `COMPRESS=DEFLATE`.
    NotOffered,
    /// Asked for and announced, but the back end refused the command.
    Refused,
    /// Not asked for although configured: the back end is on this host,
    /// there is no VPN to save bytes on (set by the session, not a machine).
    SameHost,
}

impl Compression {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Deflate => "deflate",
            Compression::NotOffered => "not_offered",
            Compression::Refused => "refused",
            Compression::SameHost => "same_host",
        }
    }
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
    /// Reports success: the login answer and what the client pipelined
    /// after it; the machine is done (the session drops it and relays).
    fn login_succeeded(&mut self, backend: &BackendGreeting) -> LoggedIn;
    /// The pre-auth time ran out: queue a goodbye; `poll` then returns `Close`.
    fn timed_out(&mut self);
    /// The server is stopping: queue a goodbye; `poll` then returns `Close`.
    fn shutting_down(&mut self);
    /// The TLS handshake after `StartTls` succeeded: commands resume, with
    /// capabilities recomputed.
    fn tls_started(&mut self);
    /// Commands refused as malformed, unknown or oversized since the last
    /// call (IMAP `BAD`, POP3 `-ERR` other than a failed login), for the
    /// metrics.
    fn take_protocol_errors(&mut self) -> u32;
}

/// A boxed machine (what a [`ProtocolSpec`] makes) is a machine.
impl<P: PreAuth + ?Sized> PreAuth for Box<P> {
    fn receive(&mut self, data: &[u8]) {
        (**self).receive(data)
    }
    fn poll(&mut self) -> PreAuthEvent {
        (**self).poll()
    }
    fn take_output(&mut self) -> Vec<u8> {
        (**self).take_output()
    }
    fn login_failed(&mut self, failure: LoginFailure) {
        (**self).login_failed(failure)
    }
    fn login_succeeded(&mut self, backend: &BackendGreeting) -> LoggedIn {
        (**self).login_succeeded(backend)
    }
    fn timed_out(&mut self) {
        (**self).timed_out()
    }
    fn shutting_down(&mut self) {
        (**self).shutting_down()
    }
    fn tls_started(&mut self) {
        (**self).tls_started()
    }
    fn take_protocol_errors(&mut self) -> u32 {
        (**self).take_protocol_errors()
    }
}

/// What a back-end login machine needs next.
#[must_use]
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
    /// The back end misbehaved or refused service (for logs and metrics;
    /// the client hears a temporary failure).
    Unavailable(BackendFault),
}

/// How a back end failed a login exchange, as logged. Quoted lines are the
/// back end's own, made printable and cut at [`MAX_QUOTED_LINE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendFault {
    /// The greeting was not `* OK` / `+OK`.
    #[error("unexpected greeting: {0}")]
    UnexpectedGreeting(String),
    /// STARTTLS/STLS was refused.
    #[error("STARTTLS refused: {0}")]
    StartTlsRefused(String),
    /// Bytes followed the STARTTLS reply before the handshake (they would be
    /// plaintext injected before TLS).
    #[error("back end sent data after its STARTTLS reply")]
    DataAfterStartTls,
    /// Bytes arrived while the driver ran the TLS handshake.
    #[error("back end sent data during the TLS upgrade")]
    DataDuringTlsUpgrade,
    /// `CAPABILITY` failed.
    #[error("CAPABILITY failed: {0}")]
    CapabilityFailed(String),
    /// `LOGINDISABLED` without a mechanism the proxy can use.
    #[error("back end advertises LOGINDISABLED and no AUTH=PLAIN")]
    LoginDisabled,
    /// A bearer-token login, and the back end does not announce the
    /// mechanism.
    #[error("back end does not offer {0} (a bearer-token login is replayed with the client's mechanism: add `{1}` to the back end's mechanisms, e.g. Dovecot's auth_mechanisms, with an oauth2 passdb)")]
    MechanismMissing(&'static str, &'static str),
    /// A continuation request that no pending literal or SASL step explains.
    #[error("unexpected continuation request during login")]
    UnexpectedContinuation,
    /// A reply that fits no step of the exchange.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The back end refused service (`NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`…).
    #[error("back end refused service: {0}")]
    ServiceRefused(String),
    /// More untagged lines during the login than a client should be handed.
    #[error("too many untagged lines during the login")]
    TooManyUntagged,
    /// A line longer than [`MAX_BACKEND_LINE`].
    #[error("back-end line longer than {MAX_BACKEND_LINE} bytes")]
    LineTooLong,
    /// `poll` was called after the exchange ended (a driver bug).
    #[error("login exchange already finished")]
    AlreadyFinished,
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
    /// What the back end announced of itself during this exchange, to be
    /// remembered for the next login to it ([`BackendLoginRequest::offers`]);
    /// `None` when it was not asked.
    fn offers(&self) -> Option<BackendOffers> {
        None
    }
}

/// A boxed back-end machine is a back-end machine.
impl<B: BackendLogin + ?Sized> BackendLogin for Box<B> {
    fn receive(&mut self, data: &[u8]) {
        (**self).receive(data)
    }
    fn poll(&mut self) -> BackendEvent {
        (**self).poll()
    }
    fn take_output(&mut self) -> Vec<u8> {
        (**self).take_output()
    }
    fn tls_started(&mut self) {
        (**self).tls_started()
    }
    fn offers(&self) -> Option<BackendOffers> {
        (**self).offers()
    }
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

/// No line end within the allowed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line too long")]
pub struct LineTooLong;

/// Removes and returns the first line (without CR LF) from `buf`, if complete.
/// Errors when no line end appears within `max` bytes.
pub fn take_line(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, LineTooLong> {
    let mut line = Vec::new();
    Ok(take_line_into(buf, &mut line, max)?.then_some(line))
}

/// [`take_line`] into `line` (cleared first), for a caller that reads many
/// lines into one buffer: `true` when a whole line was moved. A back end's
/// login is four lines or so; one buffer for them all spares an allocation
/// per line.
pub fn take_line_into(
    buf: &mut Vec<u8>,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineTooLong> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) if lf <= max + 1 => {
            let end = if lf > 0 && buf[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            line.clear();
            line.extend_from_slice(&buf[..end]);
            buf.drain(..=lf);
            Ok(true)
        }
        Some(_) => Err(LineTooLong),
        None if buf.len() > max + 1 => Err(LineTooLong),
        None => Ok(false),
    }
}

/// Appends a client's bytes to a pre-auth machine's input. When the buffer
/// must grow, the old one is wiped before it is freed: it may hold the first
/// part of a login command (a password), which `Vec`'s own growth would
/// copy and then leave behind.
pub fn append_wiping(input: &mut Vec<u8>, data: &[u8]) {
    if input.capacity() - input.len() < data.len() {
        let room = (input.len() + data.len()).max(2 * input.capacity());
        let mut grown = Vec::with_capacity(room);
        grown.extend_from_slice(input);
        zeroize::Zeroize::zeroize(input);
        *input = grown;
    }
    input.extend_from_slice(data);
}

/// A peer's line for a log message: lossy, escaped, at most
/// [`MAX_QUOTED_LINE`] bytes of it.
pub fn printable(line: &[u8]) -> String {
    let shown = &line[..line.len().min(MAX_QUOTED_LINE)];
    String::from_utf8_lossy(shown).escape_debug().to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn user_names_are_checked_at_the_length_bound_and_for_control_characters() {
        let name = |len: usize| "a".repeat(len);
        assert_eq!(check_user_name(&name(MAX_USER_NAME - 1)), Ok(()));
        assert_eq!(check_user_name(&name(MAX_USER_NAME)), Ok(()));
        assert_eq!(
            check_user_name(&name(MAX_USER_NAME + 1)),
            Err(BadUserName::TooLong)
        );
        for bad in ["a\0b", "a\tb", "a\rb", "a\nb", "a\x7fb", "a\u{85}b"] {
            assert_eq!(
                check_user_name(bad),
                Err(BadUserName::ControlCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(check_user_name("jörg@exämple.org"), Ok(()));
    }

    use super::*;

    #[test]
    fn take_line_bounds() {
        let mut buf = b"abc\r\ndef".to_vec();
        assert_eq!(take_line(&mut buf, 3), Ok(Some(b"abc".to_vec())));
        assert_eq!(buf, b"def");
        assert_eq!(take_line(&mut buf, 3), Ok(None));
        let mut long = b"abcd\r\n".to_vec();
        assert_eq!(take_line(&mut long, 3), Err(LineTooLong));
        let mut long_unterminated = b"abcde".to_vec();
        assert_eq!(take_line(&mut long_unterminated, 3), Err(LineTooLong));
        let mut lf_only = b"ab\nc".to_vec();
        assert_eq!(take_line(&mut lf_only, 3), Ok(Some(b"ab".to_vec())));
    }

    #[test]
    fn appending_keeps_every_byte_and_grows_by_doubling() {
        use super::append_wiping;
        let mut input = Vec::new();
        append_wiping(&mut input, b"a LOGIN alice pa");
        assert_eq!(input.capacity(), 16, "made at the first bytes' size");
        append_wiping(&mut input, b"ss");
        assert_eq!(input, b"a LOGIN alice pass");
        assert_eq!(input.capacity(), 32, "doubled: amortized as Vec's own");
        append_wiping(&mut input, &[b'x'; 100]);
        assert_eq!(input.len(), 118);
        assert_eq!(input.capacity(), 118);
        let room = input.as_ptr();
        input.clear();
        append_wiping(&mut input, b"fits");
        assert_eq!(input.as_ptr(), room, "no new buffer while it fits");
    }

    #[test]
    fn take_line_into_reuses_the_line_buffer() {
        use super::take_line_into;
        let mut buf = b"first line\r\nab\r\npartial".to_vec();
        let mut line = Vec::with_capacity(64);
        let room = line.as_ptr();
        assert_eq!(take_line_into(&mut buf, &mut line, 10), Ok(true));
        assert_eq!(line, b"first line");
        assert_eq!(take_line_into(&mut buf, &mut line, 10), Ok(true));
        assert_eq!(line, b"ab", "cleared before the next line");
        assert_eq!(line.as_ptr(), room, "the same buffer");
        assert_eq!(take_line_into(&mut buf, &mut line, 10), Ok(false));
        assert_eq!(buf, b"partial");
        let mut long = b"abcdefghijkl\r\n".to_vec();
        assert_eq!(
            take_line_into(&mut long, &mut line, 10),
            Err(super::LineTooLong)
        );
    }

    #[test]
    fn printable_escapes_and_cuts_at_the_limit() {
        let long = vec![b'a'; MAX_QUOTED_LINE + 1];
        assert_eq!(printable(&long).len(), MAX_QUOTED_LINE);
        assert_eq!(
            printable(&long[..MAX_QUOTED_LINE - 1]).len(),
            MAX_QUOTED_LINE - 1
        );
        assert_eq!(printable(b"a\r\nb"), "a\\r\\nb");
    }
}
