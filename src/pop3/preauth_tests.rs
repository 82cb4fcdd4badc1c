//! Behaviour of the POP3 pre-auth machine, fed bytes without sockets.

// Steps that only feed bytes ignore the event they return.
#![allow(unused_must_use)]

use super::*;
use crate::auth;

fn machine() -> Pop3PreAuth {
    let mut m = Pop3PreAuth::new(Rc::new(Pop3Settings {
        greeting: "test ready.".into(),
        max_line: 64,
        max_auth_failures: 2,
        capabilities: vec!["TOP".into(), "UIDL".into()],
        ..Pop3Settings::default()
    }));
    assert_eq!(m.take_output(), b"+OK test ready.\r\n".to_vec());
    m
}

fn feed(m: &mut Pop3PreAuth, bytes: &[u8]) -> (PreAuthEvent, String) {
    m.receive(bytes);
    let ev = m.poll();
    (ev, String::from_utf8_lossy(&m.take_output()).into_owned())
}

fn expect_login(ev: PreAuthEvent, user: &str, password: &[u8]) {
    match ev {
        PreAuthEvent::Login(c) => {
            assert_eq!(c.user, user);
            assert_eq!(c.password.expose(), password);
        }
        other => panic!("expected a login, got {other:?}"),
    }
}

#[test]
fn capa_lists_configured_and_login_capabilities() {
    let (_, out) = feed(&mut machine(), b"capa\r\n");
    assert_eq!(
        out,
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
    );
}

#[test]
fn user_pass_with_spaces_in_password() {
    let mut m = machine();
    let (ev, out) = feed(&mut m, b"USER alice@example.org\r\nPASS my secret\r\n");
    assert_eq!(out, "+OK\r\n");
    expect_login(ev, "alice@example.org", b"my secret");
}

#[test]
fn pass_without_user_is_refused() {
    let (ev, out) = feed(&mut machine(), b"PASS x\r\n");
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(out, "-ERR No user name given: send USER first.\r\n");
}

#[test]
fn auth_plain_initial_response_and_continuation() {
    let b64 = auth::encode_base64(b"\0bob\0pw");
    let (ev, _) = feed(&mut machine(), format!("AUTH PLAIN {b64}\r\n").as_bytes());
    expect_login(ev, "bob", b"pw");

    let mut m = machine();
    let (_, out) = feed(&mut m, b"AUTH PLAIN\r\n");
    assert_eq!(out, "+ \r\n");
    let (ev, _) = feed(&mut m, format!("{b64}\r\n").as_bytes());
    expect_login(ev, "bob", b"pw");
}

#[test]
fn auth_cancel_list_and_unknown_mechanism() {
    let mut m = machine();
    feed(&mut m, b"AUTH PLAIN\r\n");
    let (_, out) = feed(&mut m, b"*\r\n");
    assert_eq!(out, "-ERR AUTH cancelled.\r\n");
    let (_, out) = feed(&mut m, b"AUTH\r\n");
    assert_eq!(out, "+OK\r\nPLAIN\r\n.\r\n");
    let (_, out) = feed(&mut m, b"AUTH CRAM-MD5\r\n");
    assert_eq!(out, "-ERR Unsupported authentication mechanism.\r\n");
}

#[test]
fn apop_gets_a_clear_error() {
    let (_, out) = feed(
        &mut machine(),
        b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
    );
    assert!(out.starts_with("-ERR APOP is not supported"), "{out}");
}

#[test]
fn quit_closes_and_unknown_commands_get_err() {
    let (ev, out) = feed(&mut machine(), b"STAT\r\nQUIT\r\n");
    assert_eq!(ev, PreAuthEvent::Close);
    assert_eq!(
        out,
        "-ERR Unknown command or not allowed before login.\r\n+OK Bye.\r\n"
    );
}

#[test]
fn failures_answer_with_resp_codes_and_close_at_limit() {
    let mut m = machine();
    let (ev, _) = feed(&mut m, b"USER u\r\nPASS bad\r\n");
    expect_login(ev, "u", b"bad");
    m.login_failed(LoginFailure::Unavailable);
    assert_eq!(
        m.take_output(),
        b"-ERR [SYS/TEMP] Temporary failure, try again later.\r\n".to_vec()
    );
    for attempt in 1..=2 {
        let (ev, _) = feed(&mut m, b"USER u\r\nPASS bad\r\n");
        expect_login(ev, "u", b"bad");
        m.login_failed(LoginFailure::AuthFailed);
        let out = String::from_utf8(m.take_output()).unwrap();
        assert!(out.contains("-ERR [AUTH] Authentication failed"), "{out}");
        assert_eq!(m.poll() == PreAuthEvent::Close, attempt == 2);
    }
}

#[test]
fn pipelined_commands_after_pass_go_to_backend() {
    let mut m = machine();
    let (ev, _) = feed(&mut m, b"USER u\r\nPASS p\r\nSTAT\r\nRETR 1\r\n");
    expect_login(ev, "u", b"p");
    let done = m.login_succeeded(&BackendGreeting::default());
    assert_eq!(done.to_client, b"+OK Logged in.\r\n".to_vec());
    assert_eq!(done.to_backend, b"STAT\r\nRETR 1\r\n".to_vec());
}

#[test]
fn line_limit_boundary() {
    let mut at = b"NOOP ".to_vec();
    at.resize(64, b'x');
    at.extend_from_slice(b"\r\n");
    let (ev, _) = feed(&mut machine(), &at);
    assert_eq!(ev, PreAuthEvent::NeedInput);
    let mut over = b"NOOP ".to_vec();
    over.resize(66, b'x');
    over.extend_from_slice(b"\r\n");
    let (ev, out) = feed(&mut machine(), &over);
    assert_eq!(ev, PreAuthEvent::Close);
    assert_eq!(out, "-ERR Line too long, closing connection.\r\n");
}

#[test]
fn nul_bytes_and_garbage_get_err_not_panic() {
    let (ev, out) = feed(&mut machine(), b"\0\0\xff\r\nUSER\r\n");
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "-ERR Unknown command or not allowed before login.\r\n-ERR USER expects a user name.\r\n"
    );
}

#[test]
fn timeout_closes() {
    let mut m = machine();
    m.timed_out();
    assert_eq!(m.poll(), PreAuthEvent::Close);
    assert_eq!(
        m.take_output(),
        b"-ERR Autologout; idle for too long.\r\n".to_vec()
    );
}

fn stls_machine() -> Pop3PreAuth {
    let mut m = Pop3PreAuth::new(Rc::new(Pop3Settings {
        capabilities: vec![],
        starttls: true,
        require_tls: true,
        ..Pop3Settings::default()
    }));
    m.take_output();
    m
}

#[test]
fn stls_required_before_login_and_capa_recomputed_after() {
    let mut m = stls_machine();
    let (_, out) = feed(&mut m, b"CAPA\r\n");
    assert_eq!(out, "+OK Capability list follows\r\nSTLS\r\n.\r\n");
    for cmd in ["USER u\r\n", "PASS p\r\n", "AUTH PLAIN\r\n"] {
        let (ev, out) = feed(&mut m, cmd.as_bytes());
        assert_eq!(ev, PreAuthEvent::NeedInput);
        assert!(
            out.starts_with("-ERR [AUTH] Plaintext authentication is disabled"),
            "{cmd}: {out}"
        );
    }
    let (ev, out) = feed(&mut m, b"STLS\r\nUSER injected\r\nPASS injected\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (PreAuthEvent::StartTls, "+OK Begin TLS negotiation now.\r\n")
    );
    m.tls_started();
    assert_eq!(
        m.poll(),
        PreAuthEvent::NeedInput,
        "injected commands were dropped"
    );
    let (_, out) = feed(&mut m, b"CAPA\r\n");
    assert_eq!(
        out,
        "+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
    );
    let (ev, _) = feed(&mut m, b"USER u\r\nPASS p\r\n");
    expect_login(ev, "u", b"p");
}

#[test]
fn refused_commands_are_counted_as_protocol_errors_and_failed_logins_are_not() {
    let mut m = machine();
    let (_, out) = feed(&mut m, b"FROB\r\nPASS early\r\nAPOP u d\r\nNOOP x\r\n");
    assert_eq!(out.matches("-ERR").count(), 4, "{out}");
    assert_eq!(m.take_protocol_errors(), 4);
    let (ev, _) = feed(&mut m, b"USER u\r\nPASS p\r\n");
    expect_login(ev, "u", b"p");
    m.login_failed(LoginFailure::AuthFailed);
    assert_eq!(m.take_protocol_errors(), 0);
    let (_, out) = feed(&mut m, &[b'x'; 100]);
    assert!(out.contains("Line too long"), "{out}");
    assert_eq!(m.take_protocol_errors(), 1);
}

fn oauth_machine() -> Pop3PreAuth {
    let mut m = Pop3PreAuth::new(Rc::new(Pop3Settings {
        oauth: Some(crate::login::OAuthOffer {
            mechanisms: vec![crate::auth::oauth::BearerMechanism::OAuthBearer],
            max_token: 64,
        }),
        ..Pop3Settings::default()
    }));
    m.take_output();
    m
}

#[test]
fn auth_offers_oauthbearer_where_configured_and_runs_its_error_exchange() {
    let mut m = oauth_machine();
    let (_, out) = feed(&mut m, b"CAPA\r\n");
    assert!(out.contains("SASL PLAIN OAUTHBEARER\r\n"), "{out}");
    let (_, out) = feed(&mut m, b"AUTH\r\n");
    assert_eq!(out, "+OK\r\nPLAIN\r\nOAUTHBEARER\r\n.\r\n");
    let (_, out) = feed(&mut m, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "-ERR Unsupported authentication mechanism.\r\n");
    let ir = auth::encode_base64(b"n,a=ann,\x01auth=Bearer t0k\x01\x01");
    let (ev, _) = feed(&mut m, format!("AUTH OAUTHBEARER {ir}\r\n").as_bytes());
    expect_login(ev, "ann", b"t0k");
    m.login_failed(LoginFailure::AuthFailed);
    let challenge = crate::auth::oauth::ERROR_CHALLENGE_BASE64;
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        format!("+ {challenge}\r\n")
    );
    let (ev, out) = feed(&mut m, b"AQ==\r\n");
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(out, "-ERR [AUTH] Authentication failed.\r\n");
    let (_, out) = feed(&mut machine(), b"CAPA\r\n");
    assert!(
        out.contains("SASL PLAIN\r\n"),
        "not offered by default: {out}"
    );
}
