//! The protocol seam: what one mail protocol supplies to the rest of
//! mailgate, as one [`ProtocolSpec`] value in the protocol's own folder.
//! The session, runtime, relay, metrics and configuration ask a listener's
//! spec for whatever differs between protocols — the machines, the
//! one-line answers written outside a machine, whether the webmail cache
//! applies — and never `match` on the protocol. Registering a protocol is
//! one line in the protocol registry, `protocols.rs` (plus its config keys).
//!
//! Everything here is protocol-neutral: the settings every pre-auth machine
//! is built from ([`ListenerSettings`]) and what a back-end login is started
//! with ([`BackendLoginRequest`]).

use super::{BackendLogin, ClientAddress, PreAuth};
use crate::auth::oauth::{max_message_base64, Bearer, BearerMechanism};
use crate::auth::sasl::Mechanism;
use crate::auth::Secret;
use std::rc::Rc;

/// What one protocol supplies.
pub struct ProtocolSpec {
    /// Its name: the `protocol` value of a listener, the metrics' and logs'
    /// `protocol` label, the TLS ALPN identifier.
    pub name: &'static str,
    /// The back-end port when `[backend]` names none (and a route neither).
    pub default_backend_port: u16,
    /// The protocol's implicit-TLS port (a route may name it when back
    /// ends are reached over TLS), if it has one.
    pub implicit_tls_port: Option<u16>,
    /// Said to a connection refused at a cap, before it is closed.
    pub too_many_connections: &'static [u8],
    /// Said to a pre-auth connection evicted to make room for a newcomer.
    pub queue_full: &'static [u8],
    /// Said to a logged-in client when the server stops (empty: nothing;
    /// the connection just closes).
    pub shutting_down: &'static [u8],
    /// Whether `connection_cache` listeners may speak it (the webmail
    /// cache knows this protocol's commands).
    pub connection_cache: bool,
    /// Whether its back-end leg can be compressed (IMAP's `COMPRESS`).
    pub compression: bool,
    /// The machines of a listener's sessions, built once per listener.
    pub listener: fn(&ListenerSettings) -> Rc<dyn MachineFactory>,
    /// A back-end login machine.
    pub backend_login: fn(BackendLoginRequest<'_>) -> Box<dyn BackendLogin>,
}

impl std::fmt::Debug for ProtocolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Makes the pre-auth machine of each session of one listener.
pub trait MachineFactory {
    /// A machine for a new connection, `tls_active` when TLS was on from
    /// the first byte (implicit TLS); its greeting is queued.
    fn preauth(&self, tls_active: bool) -> Box<dyn PreAuth>;

    /// A back-end login succeeded with `greeting`: a protocol whose
    /// greeting repeats what the back ends announce (ManageSieve's Sieve
    /// capabilities) takes it for the next connections.
    fn learned(&self, greeting: &super::BackendGreeting) {
        let _ = greeting;
    }
}

/// A listener's pre-auth settings, the same for every protocol (each
/// protocol uses what applies to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Greeting text (never the back end's banner).
    pub greeting: String,
    /// Longest command line (bytes, CRLF excluded).
    pub max_line: usize,
    /// Largest literal (protocols with literals).
    pub max_literal: usize,
    /// Failed logins before the connection is closed.
    pub max_auth_failures: u32,
    /// Commands before login; the next one closes the connection.
    pub max_commands: u32,
    /// Refused commands before login; the last one closes the connection.
    pub max_protocol_errors: u32,
    /// This listener offers STARTTLS (STLS).
    pub starttls: bool,
    /// Login only after TLS.
    pub require_tls: bool,
    /// The bearer-token mechanisms offered (`[oauth]` configured).
    pub oauth: Option<OAuthOffer>,
}

/// What a listener offers of OAuth 2.0 logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOffer {
    /// The mechanisms announced and accepted.
    pub mechanisms: Vec<BearerMechanism>,
    /// Longest token accepted (bytes).
    pub max_token: usize,
}

impl ListenerSettings {
    /// Whether a client may use `mechanism` here (once login is allowed).
    pub fn offers(&self, mechanism: Mechanism) -> bool {
        match mechanism {
            Mechanism::Plain | Mechanism::Login => true,
            Mechanism::Bearer(bearer) => self
                .oauth
                .as_ref()
                .is_some_and(|o| o.mechanisms.contains(&bearer)),
        }
    }

    /// The bearer-token mechanisms offered, in announcing order.
    pub fn bearer_mechanisms(&self) -> impl Iterator<Item = BearerMechanism> + '_ {
        self.oauth.iter().flat_map(|o| o.mechanisms.iter().copied())
    }

    /// Longest bearer token accepted (0 where none is offered).
    pub fn max_token(&self) -> usize {
        self.oauth.as_ref().map_or(0, |o| o.max_token)
    }

    /// Longest line before login (CRLF excluded): `max_line`, or where
    /// bearer tokens are offered, at least a bearer message of
    /// `max_token` in base64 (an `AUTHENTICATE` initial response or a
    /// SASL response line carries one).
    pub fn max_login_line(&self) -> usize {
        match &self.oauth {
            Some(o) => self.max_line.max(max_message_base64(o.max_token) + 64),
            None => self.max_line,
        }
    }

    /// Largest literal before login: `max_literal`, or where bearer
    /// tokens are offered, at least [`Self::max_login_line`] (a protocol
    /// whose SASL responses are strings may send one as a literal).
    pub fn max_login_literal(&self) -> usize {
        match &self.oauth {
            Some(_) => self.max_literal.max(self.max_login_line()),
            None => self.max_literal,
        }
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            greeting: super::DEFAULT_GREETING.into(),
            max_line: super::DEFAULT_MAX_LINE,
            max_literal: super::DEFAULT_MAX_LITERAL,
            max_auth_failures: super::DEFAULT_MAX_AUTH_FAILURES,
            max_commands: super::DEFAULT_MAX_PREAUTH_COMMANDS,
            max_protocol_errors: super::DEFAULT_MAX_PROTOCOL_ERRORS,
            starttls: false,
            require_tls: false,
            oauth: None,
        }
    }
}

/// How mailgate logs in to a back end, in every protocol's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendAuth {
    /// SASL `PLAIN` when the back end offers it, else the protocol's own
    /// login command.
    #[default]
    Auto,
    /// Always SASL `PLAIN`.
    Plain,
    /// Always the protocol's own login command (IMAP `LOGIN`, POP3
    /// `USER`/`PASS`); a protocol without one uses `PLAIN`.
    Native,
}

/// What a back-end login starts with.
pub struct BackendLoginRequest<'a> {
    /// The name to log in as.
    pub user: &'a str,
    /// The password, or the bearer token when `bearer` is set.
    pub password: Secret,
    /// Set for an OAuth 2.0 login: replayed with the same mechanism
    /// (whatever `auth` says), the back end checking the token.
    pub bearer: Option<Bearer>,
    /// How to log in.
    pub auth: BackendAuth,
    /// Where the client connected from and to, when it is passed on.
    pub client_address: Option<ClientAddress>,
    /// Upgrade the connection with STARTTLS (STLS) first.
    pub starttls: bool,
    /// Compress the leg after the login when the back end offers it (IMAP
    /// `COMPRESS DEFLATE`; protocols without compression ignore it).
    pub compress: bool,
    /// What this back end announced on an earlier login
    /// ([`BackendLogin::offers`](super::BackendLogin::offers)), if that is
    /// remembered.
    pub offers: Option<BackendOffers>,
    /// The login may be sent before the greeting when `offers` say what the
    /// greeting will offer (`[backend] early_login`).
    pub early_login: bool,
}

/// What a back end announced of itself (its capabilities, as far as a
/// login uses them), in bits its protocol defines and only it reads.
/// Remembered per worker and back-end address, it spares a protocol whose
/// login would ask for them every time (POP3's `CAPA`), or wait for the
/// greeting that lists them (IMAP), that round trip;
/// the protocol must still come to the right outcome when the back end
/// has changed since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendOffers(pub u32);
