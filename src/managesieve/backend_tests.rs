use super::*;
use std::net::SocketAddr;

const GREETING: &[u8] = b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto\"\r\n\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\nOK \"Dovecot ready.\"\r\n";

fn login() -> ManageSieveBackendLogin {
    ManageSieveBackendLogin::new("alice", Secret::new(b"pw".to_vec()))
}

fn step(m: &mut ManageSieveBackendLogin, bytes: &[u8]) -> (BackendEvent, String) {
    m.receive(bytes);
    let event = m.poll();
    (event, String::from_utf8(m.take_output()).unwrap())
}

#[test]
fn logs_in_with_authenticate_plain_after_the_greeting() {
    let mut m = login();
    let (event, out) = step(&mut m, GREETING);
    assert_eq!(event, BackendEvent::NeedInput);
    assert_eq!(out, "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHB3\"\r\n");
    let (event, _) = step(&mut m, b"OK \"Logged in.\"\r\n");
    let caps =
        std::str::from_utf8(&GREETING[..GREETING.len() - b"OK \"Dovecot ready.\"\r\n".len()])
            .unwrap();
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some(caps.to_owned()),
                untagged: Vec::new(),
                compression: Default::default(),
            },
            leftover: Vec::new()
        })
    );
}

#[test]
fn a_refused_password_and_trouble_are_told_apart() {
    let mut m = login();
    let _ = step(&mut m, GREETING);
    let (event, _) = step(&mut m, b"NO \"Authentication failed.\"\r\n");
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
    let mut m = login();
    let _ = step(&mut m, GREETING);
    let (event, _) = step(&mut m, b"NO (TRYLATER) \"Try again later.\"\r\n");
    assert!(matches!(
        event,
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::ServiceRefused(_)))
    ));
    let mut m = login();
    let (event, _) = step(&mut m, b"BYE \"Too many connections\"\r\n");
    assert!(matches!(
        event,
        BackendEvent::Done(BackendOutcome::Unavailable(
            BackendFault::UnexpectedGreeting(_)
        ))
    ));
}

#[test]
fn an_answer_with_a_literal_string_is_read_whole() {
    let mut m = login();
    let _ = step(&mut m, GREETING);
    let (event, _) = step(&mut m, b"NO {21}\r\nAuthentication\r\nfailed\r\n");
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
}

#[test]
fn starttls_then_xclient_then_the_login() {
    let client = ClientAddress {
        peer: "192.0.2.7:50123".parse::<SocketAddr>().unwrap(),
        local: "198.51.100.1:4190".parse::<SocketAddr>().unwrap(),
    };
    let mut m = login().with_starttls().with_client_address(client);
    let (_, out) = step(&mut m, GREETING);
    assert_eq!(out, "STARTTLS\r\n");
    let (event, _) = step(&mut m, b"OK \"Begin TLS negotiation now.\"\r\n");
    assert_eq!(event, BackendEvent::StartTls);
    m.tls_started();
    let again = b"\"IMPLEMENTATION\" \"Dovecot\"\r\n\"SASL\" \"PLAIN\"\r\n\"XCLIENT\"\r\nOK \"TLS negotiation successful.\"\r\n";
    let (_, out) = step(&mut m, again);
    assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=50123\r\n");
    let (_, out) = step(&mut m, b"OK \"Updated\"\r\n");
    assert!(out.starts_with("AUTHENTICATE \"PLAIN\" "));
}

#[test]
fn bytes_after_the_starttls_answer_are_refused() {
    let mut m = login().with_starttls();
    let _ = step(&mut m, GREETING);
    let (event, _) = step(&mut m, b"OK \"Begin TLS.\"\r\nOK \"injected\"\r\n");
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::DataAfterStartTls))
    );
}

#[test]
fn no_xclient_without_the_capability_and_a_line_bound() {
    let client = ClientAddress {
        peer: "192.0.2.7:1".parse().unwrap(),
        local: "198.51.100.1:4190".parse().unwrap(),
    };
    let mut m = login().with_client_address(client);
    let (_, out) = step(&mut m, GREETING);
    assert!(out.starts_with("AUTHENTICATE"), "{out}");
    let mut m = login();
    let (event, _) = step(&mut m, &vec![b'"'; MAX_BACKEND_LINE + 2]);
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::LineTooLong))
    );
}

#[test]
fn a_bearer_token_is_replayed_with_its_mechanism_and_its_error_challenge_acknowledged() {
    let bearer = crate::auth::oauth::Bearer {
        mechanism: crate::auth::oauth::BearerMechanism::XOAuth2,
        host: None,
        port: None,
    };
    let greeting = String::from_utf8_lossy(GREETING)
        .replace("\"SASL\" \"PLAIN\"", "\"SASL\" \"PLAIN XOAUTH2\"");
    let mut m = ManageSieveBackendLogin::new("ann", Secret::new(b"t0k".to_vec()))
        .with_bearer(bearer.clone());
    let (_, out) = step(&mut m, greeting.as_bytes());
    let message = crate::auth::encode_base64(b"user=ann\x01auth=Bearer t0k\x01\x01");
    assert_eq!(out, format!("AUTHENTICATE \"XOAUTH2\" \"{message}\"\r\n"));
    let (event, out) = step(&mut m, b"\"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\"\r\n");
    assert_eq!((event, out.as_str()), (BackendEvent::NeedInput, "\"\"\r\n"));
    let (event, _) = step(&mut m, b"NO \"Authentication failed.\"\r\n");
    assert_eq!(
        event,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
    let mut m =
        ManageSieveBackendLogin::new("ann", Secret::new(b"t0k".to_vec())).with_bearer(bearer);
    let (event, _) = step(&mut m, GREETING);
    assert!(matches!(
        event,
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::MechanismMissing(
            "XOAUTH2",
            _
        )))
    ));
}
