//! OAuth 2.0 bearer-token SASL messages without I/O: OAUTHBEARER (RFC 7628)
//! and Google's XOAUTH2, decoded from a client's (base64-decoded) response
//! and encoded again for the back end, plus the error challenge a server
//! sends before it refuses a token.
//!
//! The SASL exchange around them is [`super::sasl`]; checking a token
//! against an identity provider is the `oauth` module's, above this one.
//! Nothing here performs I/O or logs; a token is a [`Secret`] from the
//! moment it is decoded, and every input is bounded (`max_token`, the
//! whole message).

use super::{Credentials, Secret};

/// OAUTHBEARER's and XOAUTH2's field separator (`kvsep`, `^A`).
const KVSEP: u8 = 0x01;
/// Longest host name accepted in a `host=` field.
const MAX_HOST: usize = 255;
/// Longest user name: the rule every mechanism's names meet later
/// (`login::check_user_name`: at most 255 bytes, no control character),
/// applied here too since this module sits below `login`.
const MAX_USER: usize = 255;

/// Longest authzid accepted, escaped (`,` and `=` take three bytes each).
const MAX_AUTHZID: usize = 3 * MAX_USER;
/// Bytes of a message besides its token, user, host and port: the GS2
/// header, the field names and separators, with room for short extension
/// fields.
const MESSAGE_FRAME: usize = 256;

/// The two bearer-token mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BearerMechanism {
    /// RFC 7628's OAUTHBEARER.
    OAuthBearer,
    /// Google's XOAUTH2 (what older clients and Gmail speak).
    XOAuth2,
}

impl BearerMechanism {
    /// Both, in the order they are announced.
    pub const ALL: [BearerMechanism; 2] = [BearerMechanism::OAuthBearer, BearerMechanism::XOAuth2];

    /// The SASL name, as announced and sent.
    pub fn name(self) -> &'static str {
        match self {
            BearerMechanism::OAuthBearer => "OAUTHBEARER",
            BearerMechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The name in lower case, for metrics and configuration.
    pub fn label(self) -> &'static str {
        match self {
            BearerMechanism::OAuthBearer => "oauthbearer",
            BearerMechanism::XOAuth2 => "xoauth2",
        }
    }

    /// The mechanism named `name` (case-insensitive).
    pub fn parse(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }

    /// Decodes a client's (base64-decoded) message.
    pub fn decode(self, message: &[u8], max_token: usize) -> Result<BearerMessage, BearerError> {
        match self {
            BearerMechanism::OAuthBearer => decode_oauthbearer(message, max_token),
            BearerMechanism::XOAuth2 => {
                decode_xoauth2(message, max_token).map(BearerMessage::Login)
            }
        }
    }

    /// The message a back end gets for `login`.
    pub fn encode(self, login: &BearerLogin) -> Secret {
        match self {
            BearerMechanism::OAuthBearer => encode_oauthbearer(login),
            BearerMechanism::XOAuth2 => encode_xoauth2(login),
        }
    }

    /// What a client answers to the server's error challenge (base64):
    /// OAUTHBEARER's `^A` (RFC 7628 §3.2.3), XOAUTH2's empty response.
    pub fn error_acknowledgement(self) -> &'static str {
        match self {
            BearerMechanism::OAuthBearer => "AQ==",
            BearerMechanism::XOAuth2 => "",
        }
    }
}

/// What a bearer-token login carries besides its user and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    /// The mechanism the client used (the back end is asked with the same).
    pub mechanism: BearerMechanism,
    /// OAUTHBEARER's `host=`, when sent.
    pub host: Option<String>,
    /// OAUTHBEARER's `port=`, when sent.
    pub port: Option<u16>,
}

/// The longest base64 text of a client message whose token has at most
/// `max_token` bytes: the bound on a SASL response line (and on an
/// initial response) wherever these mechanisms are offered.
pub fn max_message_base64(max_token: usize) -> usize {
    let raw = max_token + MAX_AUTHZID + MAX_HOST + MESSAGE_FRAME;
    raw.div_ceil(3) * 4
}

/// [`error_challenge`] in base64, as the challenge line carries it.
pub const ERROR_CHALLENGE_BASE64: &str =
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciJ9";

/// Why a token was refused at the front (`[oauth] verify`), as metrics
/// count it. The client hears the same error exchange whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum TokenFailure {
    /// Not a JWT (three base64url parts of JSON), or a claim of the wrong
    /// type, or no `exp`.
    #[error("malformed token")]
    Malformed,
    /// Signed with an algorithm not accepted (`none`, HMAC, unknown).
    #[error("algorithm not accepted")]
    Algorithm,
    /// No key with the token's `kid` (after a refresh).
    #[error("no such signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` (with leeway).
    #[error("expired")]
    Expired,
    /// Before `nbf` (with leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` names none of the configured audiences.
    #[error("wrong audience")]
    Audience,
    /// The user claim does not name the user the client logs in as.
    #[error("names another user")]
    User,
    /// The introspection endpoint says the token is not active.
    #[error("not active")]
    Inactive,
}

impl TokenFailure {
    /// Every reason, in export order.
    pub const ALL: [TokenFailure; 10] = [
        TokenFailure::Malformed,
        TokenFailure::Algorithm,
        TokenFailure::UnknownKey,
        TokenFailure::BadSignature,
        TokenFailure::Expired,
        TokenFailure::NotYetValid,
        TokenFailure::Issuer,
        TokenFailure::Audience,
        TokenFailure::User,
        TokenFailure::Inactive,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFailure::Malformed => "malformed",
            TokenFailure::Algorithm => "algorithm",
            TokenFailure::UnknownKey => "unknown_key",
            TokenFailure::BadSignature => "bad_signature",
            TokenFailure::Expired => "expired",
            TokenFailure::NotYetValid => "not_yet_valid",
            TokenFailure::Issuer => "issuer",
            TokenFailure::Audience => "audience",
            TokenFailure::User => "user",
            TokenFailure::Inactive => "inactive",
        }
    }
}

/// A decoded bearer-token login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerLogin {
    /// The user the client names (OAUTHBEARER's authzid `a=`, XOAUTH2's
    /// `user=`): what the login is routed by.
    pub user: String,
    /// The token (`auth=Bearer <token>`), never logged.
    pub token: Secret,
    /// OAUTHBEARER's `host=`, when sent.
    pub host: Option<String>,
    /// OAUTHBEARER's `port=`, when sent.
    pub port: Option<u16>,
}

/// What a bearer-token message can be instead of a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerMessage {
    /// A login to check.
    Login(BearerLogin),
    /// OAUTHBEARER's lone `^A`: the client's answer to an error challenge,
    /// after which the server refuses the login (RFC 7628 §3.2.3).
    ErrorAcknowledged,
}

/// Why a bearer-token message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Not the message's syntax.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// Channel binding (`p=`) asked for: not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// No user named (OAUTHBEARER without `a=`).
    #[error("no user named")]
    NoUser,
    /// The user name breaks the user-name rule.
    #[error("unusable user name")]
    BadUser,
    /// No `auth=Bearer …` field, or a token that is not a b64token.
    #[error("no bearer token")]
    NoToken,
    /// The token is longer than allowed.
    #[error("token longer than {0} bytes")]
    TokenTooLong(usize),
}

/// Decodes an OAUTHBEARER client response (RFC 7628 §3.1):
/// `n,a=user,^Ahost=…^Aport=…^Aauth=Bearer <token>^A^A`.
pub fn decode_oauthbearer(message: &[u8], max_token: usize) -> Result<BearerMessage, BearerError> {
    const NAME: &str = "OAUTHBEARER";
    if message == [KVSEP] {
        return Ok(BearerMessage::ErrorAcknowledged);
    }
    let bad = BearerError::Malformed(NAME);
    // gs2-header: cbind-flag "," [authzid] ","
    let (flag, rest) = split_once(message, b',').ok_or(bad)?;
    match flag {
        b"n" | b"y" => {}
        f if f.starts_with(b"p=") => return Err(BearerError::ChannelBinding),
        _ => return Err(bad),
    }
    let (authzid, rest) = split_once(rest, b',').ok_or(bad)?;
    let user = match authzid {
        [] => return Err(BearerError::NoUser),
        a => match a.strip_prefix(b"a=") {
            Some(name) => saslname(name).ok_or(bad)?,
            None => return Err(bad),
        },
    };
    let fields = rest.strip_prefix(&[KVSEP]).ok_or(bad)?;
    let fields = fields.strip_suffix(&[KVSEP, KVSEP]).ok_or(bad)?;
    let mut login = BearerLogin {
        user: checked_user(user)?,
        token: Secret::new(Vec::new()),
        host: None,
        port: None,
    };
    let mut token = None;
    for pair in fields.split(|&b| b == KVSEP) {
        let (key, value) = split_once(pair, b'=').ok_or(bad)?;
        if key.is_empty() || !key.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad);
        }
        match key {
            b"auth" => {
                if token.is_some() {
                    return Err(bad);
                }
                token = Some(bearer_token(value, max_token)?);
            }
            b"host" => {
                let host = std::str::from_utf8(value).map_err(|_| bad)?;
                if host.len() > MAX_HOST || host.chars().any(|c| c.is_control()) {
                    return Err(bad);
                }
                login.host = Some(host.to_owned());
            }
            b"port" => {
                let port = std::str::from_utf8(value)
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .ok_or(bad)?;
                login.port = Some(port);
            }
            // Other keys are extensions (RFC 7628 §3.1): ignored.
            _ => {}
        }
    }
    login.token = token.ok_or(BearerError::NoToken)?;
    Ok(BearerMessage::Login(login))
}

/// Decodes an XOAUTH2 client response: `user=<user>^Aauth=Bearer <token>^A^A`.
pub fn decode_xoauth2(message: &[u8], max_token: usize) -> Result<BearerLogin, BearerError> {
    const NAME: &str = "XOAUTH2";
    let bad = BearerError::Malformed(NAME);
    let fields = message.strip_suffix(&[KVSEP, KVSEP]).ok_or(bad)?;
    let mut parts = fields.split(|&b| b == KVSEP);
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix(b"user="))
        .ok_or(bad)?;
    let auth = parts
        .next()
        .and_then(|p| p.strip_prefix(b"auth="))
        .ok_or(BearerError::NoToken)?;
    if parts.next().is_some() {
        return Err(bad);
    }
    let user = std::str::from_utf8(user).map_err(|_| bad)?;
    Ok(BearerLogin {
        user: checked_user(user.to_owned())?,
        token: bearer_token(auth, max_token)?,
        host: None,
        port: None,
    })
}

impl BearerLogin {
    /// The credentials this login presents (the token as the secret).
    pub fn into_credentials(self, mechanism: BearerMechanism) -> Credentials {
        Credentials {
            user: self.user,
            password: self.token,
            bearer: Some(Bearer {
                mechanism,
                host: self.host,
                port: self.port,
            }),
        }
    }

    /// The login to replay as `user` with `token` (a back end's name for
    /// the user may differ from the one the client sent).
    pub fn replay(user: &str, token: &Secret, bearer: &Bearer) -> Self {
        Self {
            user: user.to_owned(),
            token: token.clone(),
            host: bearer.host.clone(),
            port: bearer.port,
        }
    }
}

/// The OAUTHBEARER message a back end gets: the same user and token.
pub fn encode_oauthbearer(login: &BearerLogin) -> Secret {
    let mut out = Vec::with_capacity(login.token.expose().len() + 64);
    out.extend_from_slice(b"n,a=");
    for b in login.user.bytes() {
        match b {
            b',' => out.extend_from_slice(b"=2C"),
            b'=' => out.extend_from_slice(b"=3D"),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b",\x01");
    if let Some(host) = &login.host {
        out.extend_from_slice(format!("host={host}\x01").as_bytes());
    }
    if let Some(port) = login.port {
        out.extend_from_slice(format!("port={port}\x01").as_bytes());
    }
    out.extend_from_slice(b"auth=Bearer ");
    out.extend_from_slice(login.token.expose());
    out.extend_from_slice(b"\x01\x01");
    Secret::new(out)
}

/// The XOAUTH2 message a back end gets: the same user and token.
pub fn encode_xoauth2(login: &BearerLogin) -> Secret {
    let mut out = Vec::with_capacity(login.token.expose().len() + 32);
    out.extend_from_slice(b"user=");
    out.extend_from_slice(login.user.as_bytes());
    out.extend_from_slice(b"\x01auth=Bearer ");
    out.extend_from_slice(login.token.expose());
    out.extend_from_slice(b"\x01\x01");
    Secret::new(out)
}

/// The JSON error a server sends as its last challenge before refusing a
/// token (RFC 7628 §3.2.2): the same whatever failed, so the answer tells
/// nothing about why.
pub fn error_challenge() -> &'static str {
    r#"{"status":"invalid_token","schemes":"bearer"}"#
}

/// `value` as `Bearer <b64token>` (scheme case-insensitive, RFC 6750
/// §2.1), the token bounded by `max_token`.
fn bearer_token(value: &[u8], max_token: usize) -> Result<Secret, BearerError> {
    let scheme = value.get(..7).ok_or(BearerError::NoToken)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return Err(BearerError::NoToken);
    }
    let token = &value[7..];
    if token.len() > max_token {
        return Err(BearerError::TokenTooLong(max_token));
    }
    let body_end = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    if body_end == 0 || !token[..body_end].iter().all(b64token) {
        return Err(BearerError::NoToken);
    }
    Ok(Secret::new(token.to_vec()))
}

/// RFC 5801's saslname: `=2C` is `,`, `=3D` is `=`, any other `=` or a
/// raw `,` is malformed.
fn saslname(encoded: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(encoded).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['=', ',']) {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn checked_user(user: String) -> Result<String, BearerError> {
    if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) {
        return Err(BearerError::BadUser);
    }
    Ok(user)
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == sep)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    fn login(message: &[u8]) -> BearerLogin {
        match decode_oauthbearer(message, MAX).unwrap() {
            BearerMessage::Login(login) => login,
            other => panic!("not a login: {other:?}"),
        }
    }

    #[test]
    fn rfc_7628s_example_decodes() {
        // RFC 7628 §4.1, the client's first message.
        let message = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
        let l = login(message);
        assert_eq!(l.user, "user@example.com");
        assert_eq!(l.host.as_deref(), Some("server.example.com"));
        assert_eq!(l.port, Some(143));
        assert_eq!(
            l.token.expose(),
            b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
        );
        assert_eq!(encode_oauthbearer(&l).expose(), message, "replayed as sent");
        assert_eq!(
            decode_oauthbearer(b"\x01", MAX),
            Ok(BearerMessage::ErrorAcknowledged)
        );
    }

    #[test]
    fn the_authzid_is_unescaped_and_reescaped() {
        let l = login(b"y,a=odd=2Cname=3Dx@example.org,\x01auth=bearer abc\x01\x01");
        assert_eq!(l.user, "odd,name=x@example.org");
        assert_eq!(
            encode_oauthbearer(&l).expose(),
            b"n,a=odd=2Cname=3Dx@example.org,\x01auth=Bearer abc\x01\x01"
        );
    }

    #[test]
    fn malformed_oauthbearer_messages_are_named() {
        let cases: &[(&[u8], BearerError)] = &[
            (b"", BearerError::Malformed("OAUTHBEARER")),
            (
                b"p=tls-unique,a=u,\x01auth=Bearer x\x01\x01",
                BearerError::ChannelBinding,
            ),
            (b"n,,\x01auth=Bearer x\x01\x01", BearerError::NoUser),
            (b"n,a=u,\x01host=h\x01\x01", BearerError::NoToken),
            (b"n,a=u,\x01auth=Basic x\x01\x01", BearerError::NoToken),
            (b"n,a=u,\x01auth=Bearer a b\x01\x01", BearerError::NoToken),
            (b"n,a=u,\x01auth=Bearer =\x01\x01", BearerError::NoToken),
            (
                b"n,a=u,\x01auth=Bearer x\x01",
                BearerError::Malformed("OAUTHBEARER"),
            ),
            (
                b"n,a=u=2,\x01auth=Bearer x\x01\x01",
                BearerError::Malformed("OAUTHBEARER"),
            ),
            (
                b"n,a=u,\x01port=http\x01auth=Bearer x\x01\x01",
                BearerError::Malformed("OAUTHBEARER"),
            ),
            (
                b"n,a=a\x07b,\x01auth=Bearer x\x01\x01",
                BearerError::BadUser,
            ),
            (
                b"n,a=u,\x01auth=Bearer x\x01auth=Bearer y\x01\x01",
                BearerError::Malformed("OAUTHBEARER"),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                decode_oauthbearer(message, MAX).err().as_ref(),
                Some(expected),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn the_token_is_bounded_at_the_limit() {
        let at_limit = format!("n,a=u,\x01auth=Bearer {}\x01\x01", "t".repeat(MAX));
        assert!(decode_oauthbearer(at_limit.as_bytes(), MAX).is_ok());
        let over = format!("n,a=u,\x01auth=Bearer {}\x01\x01", "t".repeat(MAX + 1));
        assert_eq!(
            decode_oauthbearer(over.as_bytes(), MAX),
            Err(BearerError::TokenTooLong(MAX))
        );
    }

    #[test]
    fn xoauth2_decodes_and_replays() {
        let message = b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01";
        let l = decode_xoauth2(message, MAX).unwrap();
        assert_eq!(l.user, "someuser@example.com");
        assert_eq!(encode_xoauth2(&l).expose(), message);
        for bad in [
            &b"user=u\x01auth=Bearer x\x01"[..],
            b"auth=Bearer x\x01user=u\x01\x01",
            b"user=u\x01\x01",
            b"user=u\x01auth=Bearer x\x01extra=1\x01\x01",
            b"user=\x01auth=Bearer x\x01\x01",
        ] {
            assert!(
                decode_xoauth2(bad, MAX).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_error_challenge_is_rfc_7628s_json() {
        let json: serde_json::Value = serde_json::from_str(error_challenge()).unwrap();
        assert_eq!(json["status"], "invalid_token");
        assert_eq!(
            ERROR_CHALLENGE_BASE64,
            crate::auth::encode_base64(error_challenge().as_bytes())
        );
    }

    #[test]
    fn the_longest_message_fits_the_line_bound() {
        let user = ",".repeat(MAX_USER);
        let host = "h".repeat(MAX_HOST);
        let login = BearerLogin {
            user,
            token: Secret::new(vec![b't'; MAX]),
            host: Some(host),
            port: Some(65535),
        };
        let message = encode_oauthbearer(&login);
        let b64 = crate::auth::encode_base64(message.expose());
        assert!(b64.len() <= max_message_base64(MAX), "{}", b64.len());
        assert!(decode_oauthbearer(message.expose(), MAX).is_ok());
    }

    #[test]
    fn mechanisms_parse_by_name_and_replay_with_their_own_encoding() {
        assert_eq!(
            BearerMechanism::parse(b"oauthbearer"),
            Some(BearerMechanism::OAuthBearer)
        );
        assert_eq!(
            BearerMechanism::parse(b"XOAUTH2"),
            Some(BearerMechanism::XOAuth2)
        );
        assert_eq!(BearerMechanism::parse(b"PLAIN"), None);
        for mechanism in BearerMechanism::ALL {
            let login = BearerLogin {
                user: "u@example.org".into(),
                token: Secret::new(b"tok".to_vec()),
                host: None,
                port: None,
            };
            let message = mechanism.encode(&login);
            assert_eq!(
                mechanism.decode(message.expose(), MAX),
                Ok(BearerMessage::Login(login))
            );
        }
    }
}
