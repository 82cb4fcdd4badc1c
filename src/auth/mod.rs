//! Credentials taken from a client and replayed to a back end.
//!
//! The password lives in [`Secret`]: zeroized on drop and printed as `***` by
//! `Debug`/`Display`, so it cannot reach a log line by accident. This module
//! also decodes and encodes SASL PLAIN (RFC 4616) messages, [`oauth`] the
//! OAuth 2.0 bearer-token messages (OAUTHBEARER, XOAUTH2), and [`sasl`] runs
//! the SASL exchanges that IMAP `AUTHENTICATE`, POP3 `AUTH` and ManageSieve
//! `AUTHENTICATE` share. Nothing here performs I/O or knows a protocol's
//! syntax.

pub mod oauth;
pub mod sasl;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use zeroize::Zeroizing;

/// Bytes that must never be logged (a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes, for writing to the back end only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A user name and password (or bearer token) as the client presented them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Login name as typed by the client (used for the directory lookup);
    /// for a bearer-token login, the user the client names (`a=`, `user=`).
    pub user: String,
    /// The password; for a bearer-token login, the token.
    pub password: Secret,
    /// Set when `password` is an OAuth 2.0 bearer token: the mechanism
    /// that carried it and what else the client sent with it, for the
    /// back-end login that replays it.
    pub bearer: Option<oauth::Bearer>,
}

impl Credentials {
    /// A password login.
    pub fn with_password(user: String, password: Secret) -> Self {
        Self {
            user,
            password,
            bearer: None,
        }
    }

    /// How the client proved who it is, for metrics and logs: `password`
    /// (PLAIN, LOGIN, the protocols' own login commands) or the bearer
    /// mechanism's name in lower case.
    pub fn method(&self) -> &'static str {
        match &self.bearer {
            None => "password",
            Some(bearer) => bearer.mechanism.label(),
        }
    }
}

/// Why a SASL PLAIN message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL passwd`, or an empty name.
    #[error("malformed PLAIN message")]
    Malformed,
    /// An authorization identity different from the authentication identity.
    #[error("authorization identity not supported")]
    Authzid,
    /// The user name is not UTF-8.
    #[error("user name is not UTF-8")]
    NotUtf8,
    /// The client ended the exchange with `*`.
    #[error("exchange cancelled by the client")]
    Cancelled,
    /// A bearer-token login ended with the error exchange (RFC 7628
    /// §3.2.2): the token was refused or the message unusable.
    #[error("bearer token refused")]
    TokenRefused,
}

/// Decodes base64 (one SASL response line, `=` meaning empty).
pub fn decode_base64(line: &[u8]) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    if line == b"=" {
        return Ok(Zeroizing::new(Vec::new()));
    }
    BASE64
        .decode(line)
        .map(Zeroizing::new)
        .map_err(|_| SaslError::Base64)
}

/// Decodes a base64 SASL PLAIN response into credentials.
pub fn decode_plain(response_b64: &[u8]) -> Result<Credentials, SaslError> {
    let raw = decode_base64(response_b64)?;
    let mut parts = raw.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::Authzid);
    }
    let user = std::str::from_utf8(authcid).map_err(|_| SaslError::NotUtf8)?;
    Ok(Credentials::with_password(
        user.to_owned(),
        Secret::new(passwd.to_vec()),
    ))
}

/// Encodes `\0user\0password` as base64 for a back end, as user name `login_user`.
pub fn encode_plain(login_user: &str, password: &Secret) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(
        login_user.len() + password.expose().len() + 2,
    ));
    raw.push(0);
    raw.extend_from_slice(login_user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose());
    Zeroizing::new(BASE64.encode(&*raw))
}

/// Encodes bytes as base64 (SASL LOGIN prompts, tests).
pub fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let c = Credentials::with_password("alice".into(), Secret::new(b"hunter2".to_vec()));
        let shown = format!("{c:?} {}", c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn plain_roundtrip_with_binary_password() {
        let pw = Secret::new(b"p a\"s\\s\xc3\xa9".to_vec());
        let b64 = encode_plain("alice@example.org", &pw);
        let c = decode_plain(b64.as_bytes()).unwrap();
        assert_eq!(c.user, "alice@example.org");
        assert_eq!(c.password, pw);
    }

    #[test]
    fn plain_accepts_equal_authzid() {
        let b64 = BASE64.encode(b"bob\0bob\0pw");
        assert_eq!(decode_plain(b64.as_bytes()).unwrap().user, "bob");
    }

    #[test]
    fn plain_rejects_other_authzid_bad_base64_and_missing_parts() {
        let other = BASE64.encode(b"admin\0bob\0pw");
        assert_eq!(decode_plain(other.as_bytes()), Err(SaslError::Authzid));
        assert_eq!(decode_plain(b"!!!"), Err(SaslError::Base64));
        let short = BASE64.encode(b"bob\0pw");
        assert_eq!(decode_plain(short.as_bytes()), Err(SaslError::Malformed));
        let empty_user = BASE64.encode(b"\0\0pw");
        assert_eq!(
            decode_plain(empty_user.as_bytes()),
            Err(SaslError::Malformed)
        );
        assert_eq!(decode_plain(b"="), Err(SaslError::Malformed));
        let latin1 = BASE64.encode(b"\0b\xe9\0pw");
        assert_eq!(decode_plain(latin1.as_bytes()), Err(SaslError::NotUtf8));
    }
}
