//! The SASL exchanges a client may run before login, as a value stepped with
//! the client's response lines: PLAIN (RFC 4616, with or without an initial
//! response) and LOGIN (user name, then password, each base64).
//!
//! IMAP `AUTHENTICATE` and POP3 `AUTH` both frame an exchange the same way
//! (`+ <base64 challenge>` lines answered by one base64 line each, `*`
//! cancels); what differs is only how a refusal is worded, which stays with
//! each protocol machine. This module never performs I/O and never logs.

use super::{decode_base64, decode_plain, Credentials, SaslError, Secret};

/// A mechanism the proxy can replay to a back end (it needs the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: `authzid NUL authcid NUL passwd` in one response.
    Plain,
    /// The LOGIN mechanism: user name and password in two responses.
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (case-insensitive), if supported.
    pub fn parse(name: &[u8]) -> Option<Self> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// `Username:` in base64, LOGIN's first challenge.
pub const LOGIN_USER_CHALLENGE: &str = "VXNlcm5hbWU6";
/// `Password:` in base64, LOGIN's second challenge.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// An exchange waiting for the client's next response line.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslExchange(Awaiting);

#[derive(Clone, PartialEq, Eq)]
enum Awaiting {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
}

/// Shows the step only: a pending LOGIN user name is client text, not needed
/// in a debug print.
impl std::fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.0 {
            Awaiting::PlainResponse => "PlainResponse",
            Awaiting::LoginUser => "LoginUser",
            Awaiting::LoginPassword { .. } => "LoginPassword",
        };
        f.debug_tuple("SaslExchange").field(&step).finish()
    }
}

/// What happens after a step of an exchange.
#[must_use]
#[derive(Debug)]
pub enum SaslStep {
    /// Send `+ <challenge>` (base64, possibly empty) and feed the next
    /// response line to `next`.
    Challenge {
        /// The base64 challenge text.
        challenge: &'static str,
        /// The exchange, waiting for the response.
        next: SaslExchange,
    },
    /// The client's credentials: log in with them.
    Done(Credentials),
    /// The exchange failed; [`SaslError::Base64`] and
    /// [`SaslError::Cancelled`] are protocol errors, the others failed
    /// logins (credentials that cannot be valid).
    Failed(SaslError),
}

impl SaslExchange {
    /// Starts `mechanism`, with the client's initial response if it sent one
    /// (SASL-IR, or POP3's `AUTH PLAIN <response>`).
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>) -> SaslStep {
        let first = match mechanism {
            Mechanism::Plain => SaslExchange(Awaiting::PlainResponse),
            Mechanism::Login => SaslExchange(Awaiting::LoginUser),
        };
        match initial {
            Some(response) => first.respond(response),
            None => SaslStep::Challenge {
                challenge: first.challenge(),
                next: first,
            },
        }
    }

    fn challenge(&self) -> &'static str {
        match self.0 {
            Awaiting::PlainResponse => "",
            Awaiting::LoginUser => LOGIN_USER_CHALLENGE,
            Awaiting::LoginPassword { .. } => LOGIN_PASSWORD_CHALLENGE,
        }
    }

    /// Feeds one response line (without CR LF); `*` cancels.
    pub fn respond(self, line: &[u8]) -> SaslStep {
        if line == b"*" {
            return SaslStep::Failed(SaslError::Cancelled);
        }
        match self.0 {
            Awaiting::PlainResponse => match decode_plain(line) {
                Ok(credentials) => SaslStep::Done(credentials),
                Err(e) => SaslStep::Failed(e),
            },
            Awaiting::LoginUser => {
                let user = match decode_base64(line) {
                    Ok(user) => user,
                    Err(e) => return SaslStep::Failed(e),
                };
                match String::from_utf8(user.to_vec()) {
                    Ok(user) if !user.is_empty() => {
                        let next = SaslExchange(Awaiting::LoginPassword { user });
                        SaslStep::Challenge {
                            challenge: next.challenge(),
                            next,
                        }
                    }
                    Ok(_) => SaslStep::Failed(SaslError::Malformed),
                    Err(_) => SaslStep::Failed(SaslError::NotUtf8),
                }
            }
            Awaiting::LoginPassword { user } => match decode_base64(line) {
                Ok(password) => SaslStep::Done(Credentials {
                    user,
                    password: Secret::new(password.to_vec()),
                }),
                Err(e) => SaslStep::Failed(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::encode_base64;

    fn done(step: SaslStep) -> Credentials {
        match step {
            SaslStep::Done(c) => c,
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    fn challenge(step: SaslStep) -> (&'static str, SaslExchange) {
        match step {
            SaslStep::Challenge { challenge, next } => (challenge, next),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let response = encode_base64(b"\0alice\0pw");
        let c = done(SaslExchange::start(
            Mechanism::Plain,
            Some(response.as_bytes()),
        ));
        assert_eq!(
            (c.user.as_str(), c.password.expose()),
            ("alice", &b"pw"[..])
        );
        let (text, next) = challenge(SaslExchange::start(Mechanism::Plain, None));
        assert_eq!(text, "");
        assert_eq!(done(next.respond(response.as_bytes())).user, "alice");
    }

    #[test]
    fn login_asks_user_then_password() {
        let (text, next) = challenge(SaslExchange::start(Mechanism::Login, None));
        assert_eq!(text, LOGIN_USER_CHALLENGE);
        let (text, next) = challenge(next.respond(encode_base64(b"bob").as_bytes()));
        assert_eq!(text, LOGIN_PASSWORD_CHALLENGE);
        let c = done(next.respond(encode_base64(b"p w\xff").as_bytes()));
        assert_eq!(
            (c.user.as_str(), c.password.expose()),
            ("bob", &b"p w\xff"[..])
        );
    }

    #[test]
    fn star_cancels_and_bad_base64_or_names_fail() {
        let (_, next) = challenge(SaslExchange::start(Mechanism::Login, None));
        assert!(matches!(
            next.clone().respond(b"*"),
            SaslStep::Failed(SaslError::Cancelled)
        ));
        assert!(matches!(
            next.clone().respond(b"!!"),
            SaslStep::Failed(SaslError::Base64)
        ));
        assert!(matches!(
            next.clone().respond(b"="),
            SaslStep::Failed(SaslError::Malformed)
        ));
        let latin1 = encode_base64(b"b\xe9");
        assert!(matches!(
            next.respond(latin1.as_bytes()),
            SaslStep::Failed(SaslError::NotUtf8)
        ));
    }

    #[test]
    fn debug_never_shows_the_pending_user() {
        let (_, next) = challenge(SaslExchange::start(Mechanism::Login, None));
        let (_, next) = challenge(next.respond(encode_base64(b"carol").as_bytes()));
        assert!(!format!("{next:?}").contains("carol"));
    }
}
