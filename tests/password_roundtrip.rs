//! Property: any password — quotes, backslashes, CR, LF, NUL, 8-bit bytes —
//! that a client presents reaches the back end byte for byte, or is refused
//! with a clear answer. Both halves are the real sans-I/O machines: the
//! client's bytes go through the pre-auth machine, its credentials through
//! the back-end login machine, and what that machine sends is decoded the
//! way a back end would (IMAP's own command parser, base64 for SASL PLAIN).

use mailgate::auth::{decode_plain, encode_base64, Credentials};
use mailgate::imap::command::{self, Token};
use mailgate::imap::{ImapBackendAuth, ImapBackendLogin, ImapPreAuth, ImapSettings};
use mailgate::login::{
    BackendEvent, BackendLogin, BackendOutcome, LoginFailure, PreAuth, PreAuthEvent,
};
use mailgate::pop3::{Pop3BackendAuth, Pop3BackendLogin, Pop3PreAuth, Pop3Settings};
use proptest::prelude::*;
use std::rc::Rc;

const USER: &str = "alice@example.org";

/// What the client machine made of the bytes: credentials, or its answer.
fn client_side<P: PreAuth>(mut machine: P, bytes: &[u8]) -> Result<Credentials, String> {
    let _ = machine.take_output();
    machine.receive(bytes);
    match machine.poll() {
        PreAuthEvent::Login(c) => Ok(c),
        _ => Err(String::from_utf8_lossy(&machine.take_output()).into_owned()),
    }
}

/// The password the back end received, or how the machine refused to send it.
fn backend_side<B: BackendLogin>(
    mut machine: B,
    greeting: &[u8],
    continuation: &[u8],
    decode: fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, BackendOutcome> {
    machine.receive(greeting);
    let mut sent = Vec::new();
    for _ in 0..8 {
        let event = machine.poll();
        sent.extend_from_slice(&machine.take_output());
        if let Some(password) = decode(&sent) {
            return Ok(password);
        }
        match event {
            BackendEvent::Done(outcome) => return Err(outcome),
            _ => machine.receive(continuation),
        }
    }
    panic!("no login sent: {:?}", String::from_utf8_lossy(&sent));
}

/// The password in an IMAP `LOGIN` or `AUTHENTICATE PLAIN` the back end got.
fn imap_password(sent: &[u8]) -> Option<Vec<u8>> {
    let start = sent.windows(4).position(|w| w == b"mg1 ")?;
    let login = &sent[start..];
    if let Some(rest) = login.strip_prefix(b"mg1 AUTHENTICATE PLAIN ") {
        let end = rest.iter().position(|&b| b == b'\r')?;
        return decode_plain(&rest[..end])
            .ok()
            .map(|c| c.password.expose().to_vec());
    }
    if login.starts_with(b"mg1 AUTHENTICATE PLAIN\r\n") {
        let rest = &login[b"mg1 AUTHENTICATE PLAIN\r\n".len()..];
        let end = rest.iter().position(|&b| b == b'\r')?;
        return decode_plain(&rest[..end])
            .ok()
            .map(|c| c.password.expose().to_vec());
    }
    // LOGIN: complete once the line (with its literals) ends in CRLF and parses.
    let parsed = command::parse(login).ok()?;
    match parsed.args.get(1)? {
        Token::Quoted(q) => Some(q.to_vec()),
        Token::Literal(l) => Some(l.to_vec()),
        Token::Atom(a) => Some(a.to_vec()),
        _ => None,
    }
}

/// The password in a POP3 `PASS` or `AUTH PLAIN` the back end got.
fn pop3_password(sent: &[u8]) -> Option<Vec<u8>> {
    let text = sent;
    if let Some(at) = text.windows(11).position(|w| w == b"AUTH PLAIN ") {
        let rest = &text[at + 11..];
        let end = rest.iter().position(|&b| b == b'\r')?;
        return decode_plain(&rest[..end])
            .ok()
            .map(|c| c.password.expose().to_vec());
    }
    let at = text.windows(5).position(|w| w == b"PASS ")?;
    let rest = &text[at + 5..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(rest[..end].to_vec())
}

fn password() -> impl Strategy<Value = Vec<u8>> {
    let special = prop_oneof![
        Just(b'"'),
        Just(b'\\'),
        Just(b'\r'),
        Just(b'\n'),
        Just(0u8),
        Just(b' '),
        Just(b'{'),
        0x80u8..=0xff,
        any::<u8>(),
    ];
    proptest::collection::vec(special, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn imap_passwords_arrive_intact_or_are_refused(
        pw in password(),
        plain in any::<bool>(),
        literal_plus in any::<bool>(),
    ) {
        let mut bytes = format!("a LOGIN {USER} {{{}+}}\r\n", pw.len()).into_bytes();
        bytes.extend_from_slice(&pw);
        bytes.extend_from_slice(b"\r\n");
        let client = ImapPreAuth::new(Rc::new(ImapSettings::default()));
        let credentials = match client_side(client, &bytes) {
            Ok(c) => c,
            Err(answer) => {
                prop_assert!(answer.contains("a BAD") || answer.contains("a NO"), "{answer}");
                return Ok(());
            }
        };
        prop_assert_eq!(credentials.password.expose(), &pw[..]);
        let method = if plain { ImapBackendAuth::Plain } else { ImapBackendAuth::Login };
        let caps = if literal_plus { "IMAP4rev1 SASL-IR LITERAL+" } else { "IMAP4rev1" };
        let greeting = format!("* OK [CAPABILITY {caps}] ready\r\n");
        let backend = ImapBackendLogin::new(USER, credentials.password, method);
        match backend_side(backend, greeting.as_bytes(), b"+ go on\r\n", imap_password) {
            Ok(received) => prop_assert_eq!(received, pw),
            Err(outcome) => prop_assert_eq!(
                outcome,
                BackendOutcome::Rejected(LoginFailure::AuthFailed),
                "a password the back end cannot be sent is a failed login"
            ),
        }
    }

    #[test]
    fn pop3_passwords_arrive_intact_or_are_refused(pw in password(), plain in any::<bool>()) {
        let mut sasl = b"\0".to_vec();
        sasl.extend_from_slice(USER.as_bytes());
        sasl.push(0);
        sasl.extend_from_slice(&pw);
        let bytes = format!("AUTH PLAIN {}\r\n", encode_base64(&sasl)).into_bytes();
        let client = Pop3PreAuth::new(Rc::new(Pop3Settings::default()));
        let credentials = match client_side(client, &bytes) {
            Ok(c) => c,
            Err(answer) => {
                prop_assert!(answer.starts_with("-ERR"), "{answer}");
                return Ok(());
            }
        };
        prop_assert_eq!(credentials.password.expose(), &pw[..]);
        let method = if plain { Pop3BackendAuth::Plain } else { Pop3BackendAuth::User };
        let backend = Pop3BackendLogin::new(USER, credentials.password, method);
        match backend_side(backend, b"+OK ready\r\n", b"+OK\r\n", pop3_password) {
            Ok(received) => prop_assert_eq!(received, pw),
            Err(outcome) => prop_assert_eq!(
                outcome,
                BackendOutcome::Rejected(LoginFailure::AuthFailed),
                "a password PASS cannot carry is a failed login"
            ),
        }
    }
}
