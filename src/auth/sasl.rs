//! The SASL exchanges a client may run before login, as a value stepped with
//! the client's response lines: PLAIN (RFC 4616, with or without an initial
//! response), LOGIN (user name, then password, each base64), and the
//! OAuth 2.0 bearer-token mechanisms OAUTHBEARER (RFC 7628) and XOAUTH2,
//! with their error exchange: a refused token is answered with a JSON
//! challenge ([`super::oauth::error_challenge`]) that the client
//! acknowledges before the refusal (RFC 7628 §3.2.2).
//!
//! IMAP `AUTHENTICATE` and POP3 `AUTH` both frame an exchange the same way
//! (`+ <base64 challenge>` lines answered by one base64 line each, `*`
//! cancels); what differs is only how a refusal is worded, which stays with
//! each protocol machine. This module never performs I/O and never logs.

use super::oauth::{BearerMechanism, BearerMessage, ERROR_CHALLENGE_BASE64};
use super::{decode_base64, decode_plain, Credentials, SaslError, Secret};

/// A mechanism the proxy can replay to a back end (it needs the password
/// or the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: `authzid NUL authcid NUL passwd` in one response.
    Plain,
    /// The LOGIN mechanism: user name and password in two responses.
    Login,
    /// An OAuth 2.0 bearer token (offered only where configured).
    Bearer(BearerMechanism),
}

impl Mechanism {
    /// The mechanism named `name` (case-insensitive), if supported; the
    /// machines offer a [`Mechanism::Bearer`] only where it is configured.
    pub fn parse(name: &[u8]) -> Option<Self> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            BearerMechanism::parse(name).map(Mechanism::Bearer)
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
    LoginPassword {
        user: String,
    },
    BearerResponse {
        mechanism: BearerMechanism,
        max_token: usize,
    },
    /// The error challenge was sent; any answer ends the exchange.
    ErrorAcknowledgement,
}

/// Shows the step only: a pending LOGIN user name is client text, not needed
/// in a debug print.
impl std::fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.0 {
            Awaiting::PlainResponse => "PlainResponse",
            Awaiting::LoginUser => "LoginUser",
            Awaiting::LoginPassword { .. } => "LoginPassword",
            Awaiting::BearerResponse { .. } => "BearerResponse",
            Awaiting::ErrorAcknowledgement => "ErrorAcknowledgement",
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
    /// (SASL-IR, or POP3's `AUTH PLAIN <response>`); a bearer token longer
    /// than `max_token` bytes is refused.
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>, max_token: usize) -> SaslStep {
        let first = match mechanism {
            Mechanism::Plain => SaslExchange(Awaiting::PlainResponse),
            Mechanism::Login => SaslExchange(Awaiting::LoginUser),
            Mechanism::Bearer(mechanism) => SaslExchange(Awaiting::BearerResponse {
                mechanism,
                max_token,
            }),
        };
        match initial {
            Some(response) => first.respond(response),
            None => SaslStep::Challenge {
                challenge: first.challenge(),
                next: first,
            },
        }
    }

    /// The error exchange of a bearer-token login whose token was refused
    /// (by the front's check or by the back end): the JSON challenge, then
    /// [`SaslError::TokenRefused`] whatever the client answers.
    pub fn token_refused() -> SaslStep {
        let next = SaslExchange(Awaiting::ErrorAcknowledgement);
        SaslStep::Challenge {
            challenge: next.challenge(),
            next,
        }
    }

    fn challenge(&self) -> &'static str {
        match self.0 {
            Awaiting::PlainResponse | Awaiting::BearerResponse { .. } => "",
            Awaiting::LoginUser => LOGIN_USER_CHALLENGE,
            Awaiting::LoginPassword { .. } => LOGIN_PASSWORD_CHALLENGE,
            Awaiting::ErrorAcknowledgement => ERROR_CHALLENGE_BASE64,
        }
    }

    /// Feeds one response line (without CR LF); `*` cancels.
    pub fn respond(self, line: &[u8]) -> SaslStep {
        if self.0 == Awaiting::ErrorAcknowledgement {
            return SaslStep::Failed(SaslError::TokenRefused);
        }
        if line == b"*" {
            return SaslStep::Failed(SaslError::Cancelled);
        }
        match self.0 {
            Awaiting::ErrorAcknowledgement => SaslStep::Failed(SaslError::TokenRefused),
            Awaiting::BearerResponse {
                mechanism,
                max_token,
            } => {
                let message = match decode_base64(line) {
                    Ok(message) => message,
                    Err(e) => return SaslStep::Failed(e),
                };
                match mechanism.decode(&message, max_token) {
                    Ok(BearerMessage::Login(login)) => {
                        SaslStep::Done(login.into_credentials(mechanism))
                    }
                    // A message no token can be read from, or an
                    // acknowledgement out of turn: refused like a bad token.
                    Ok(BearerMessage::ErrorAcknowledged) | Err(_) => Self::token_refused(),
                }
            }
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
                Ok(password) => SaslStep::Done(Credentials::with_password(
                    user,
                    Secret::new(password.to_vec()),
                )),
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
            0,
        ));
        assert_eq!(
            (c.user.as_str(), c.password.expose()),
            ("alice", &b"pw"[..])
        );
        let (text, next) = challenge(SaslExchange::start(Mechanism::Plain, None, 0));
        assert_eq!(text, "");
        assert_eq!(done(next.respond(response.as_bytes())).user, "alice");
    }

    #[test]
    fn login_asks_user_then_password() {
        let (text, next) = challenge(SaslExchange::start(Mechanism::Login, None, 0));
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
        let (_, next) = challenge(SaslExchange::start(Mechanism::Login, None, 0));
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

    const BEARER: Mechanism = Mechanism::Bearer(BearerMechanism::OAuthBearer);

    #[test]
    fn a_bearer_token_arrives_as_credentials_with_its_mechanism() {
        let message = encode_base64(b"n,a=dora@example.org,\x01auth=Bearer abc.def\x01\x01");
        let c = done(SaslExchange::start(BEARER, Some(message.as_bytes()), 100));
        assert_eq!(c.user, "dora@example.org");
        assert_eq!(c.password.expose(), b"abc.def");
        assert_eq!(c.method(), "oauthbearer");
        let (text, next) = challenge(SaslExchange::start(
            Mechanism::Bearer(BearerMechanism::XOAuth2),
            None,
            100,
        ));
        assert_eq!(text, "");
        let xoauth2 = encode_base64(b"user=dora\x01auth=Bearer t\x01\x01");
        assert_eq!(done(next.respond(xoauth2.as_bytes())).method(), "xoauth2");
    }

    #[test]
    fn an_unusable_bearer_message_gets_the_error_exchange_then_fails() {
        for message in [
            &b"n,,\x01auth=Bearer abc\x01\x01"[..],
            b"x,a=u,\x01auth=Bearer abc\x01\x01",
            b"\x01",
            b"n,a=u,\x01auth=Bearer abcd\x01\x01",
        ] {
            let response = encode_base64(message);
            // `abcd` is one byte over a 3-byte limit.
            let (text, next) = challenge(SaslExchange::start(BEARER, Some(response.as_bytes()), 3));
            assert_eq!(text, ERROR_CHALLENGE_BASE64);
            for answer in [&b"AQ=="[..], b"", b"*"] {
                assert!(matches!(
                    next.clone().respond(answer),
                    SaslStep::Failed(SaslError::TokenRefused)
                ));
            }
        }
        assert!(matches!(
            SaslExchange::start(BEARER, Some(b"!!"), 3),
            SaslStep::Failed(SaslError::Base64)
        ));
    }

    #[test]
    fn debug_never_shows_the_pending_user() {
        let (_, next) = challenge(SaslExchange::start(Mechanism::Login, None, 0));
        let (_, next) = challenge(next.respond(encode_base64(b"carol").as_bytes()));
        assert!(!format!("{next:?}").contains("carol"));
    }
}
