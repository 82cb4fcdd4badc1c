use super::*;
use crate::auth::encode_base64;

fn settings(starttls: bool, require_tls: bool) -> Rc<ManageSieveSettings> {
    Rc::new(ManageSieveSettings {
        listener: ListenerSettings {
            greeting: "mailgate ready.".into(),
            max_line: 200,
            max_literal: 64,
            max_auth_failures: 2,
            max_commands: 20,
            max_protocol_errors: 5,
            starttls,
            require_tls,
            oauth: None,
        },
        capabilities: SieveCapabilities::default(),
    })
}

fn machine() -> ManageSievePreAuth {
    ManageSievePreAuth::with_tls(settings(false, false), false)
}

fn feed(m: &mut ManageSievePreAuth, bytes: &[u8]) -> (PreAuthEvent, String) {
    m.receive(bytes);
    let event = m.poll();
    (event, String::from_utf8(m.take_output()).unwrap())
}

fn plain(user: &str, password: &str) -> String {
    encode_base64(format!("\0{user}\0{password}").as_bytes())
}

#[test]
fn the_greeting_is_the_capabilities_then_ok() {
    let mut m = ManageSievePreAuth::with_tls(settings(true, true), false);
    let greeting = String::from_utf8(m.take_output()).unwrap();
    assert!(
        greeting.starts_with("\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto ")
    );
    assert!(greeting.contains("\"NOTIFY\" \"mailto\"\r\n"));
    assert!(
        greeting.contains("\"SASL\" \"\"\r\n"),
        "no login before TLS: {greeting}"
    );
    assert!(greeting.contains("\"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\n"));
    assert!(greeting.ends_with("OK \"mailgate ready.\"\r\n"));
    // After TLS: the capabilities again (no STARTTLS, SASL offered), OK.
    let (event, _) = feed(
        &mut m,
        b"STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"injected\"\r\n",
    );
    assert_eq!(event, PreAuthEvent::StartTls);
    m.tls_started();
    let again = String::from_utf8(m.take_output()).unwrap();
    assert!(again.contains("\"SASL\" \"PLAIN LOGIN\"\r\n") && !again.contains("STARTTLS"));
    assert!(again.ends_with("OK \"TLS negotiation successful.\"\r\n"));
    assert_eq!(
        m.poll(),
        PreAuthEvent::NeedInput,
        "pipelined plaintext discarded"
    );
}

#[test]
fn authenticate_plain_with_an_initial_response_logs_in() {
    let mut m = machine();
    m.take_output();
    let line = format!("Authenticate \"plain\" \"{}\"\r\n", plain("alice", "pw"));
    let (event, _) = feed(&mut m, line.as_bytes());
    let PreAuthEvent::Login(credentials) = event else {
        panic!("{event:?}")
    };
    assert_eq!(credentials.user, "alice");
    assert_eq!(credentials.password.expose(), b"pw");
    let done = m.login_succeeded(&BackendGreeting::default());
    assert_eq!(done.to_client, b"OK \"Logged in.\"\r\n");
}

#[test]
fn authenticate_plain_with_a_continuation_and_a_literal_response() {
    let mut m = machine();
    m.take_output();
    let (event, out) = feed(&mut m, b"AUTHENTICATE \"PLAIN\"\r\n");
    assert_eq!((event, out.as_str()), (PreAuthEvent::NeedInput, "\"\"\r\n"));
    let response = plain("bob", "p\"w");
    let line = format!("{{{}+}}\r\n{response}\r\n", response.len());
    let (event, _) = feed(&mut m, line.as_bytes());
    let PreAuthEvent::Login(credentials) = event else {
        panic!("{event:?}")
    };
    assert_eq!(
        (credentials.user.as_str(), credentials.password.expose()),
        ("bob", &b"p\"w"[..])
    );
}

#[test]
fn failures_say_no_with_codes_and_close_at_the_limit() {
    let mut m = machine();
    m.take_output();
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("a", "b"));
    assert!(matches!(
        feed(&mut m, line.as_bytes()).0,
        PreAuthEvent::Login(_)
    ));
    m.login_failed(LoginFailure::Unavailable);
    assert_eq!(
        m.take_output(),
        b"NO (TRYLATER) \"Temporary failure, try again later.\"\r\n"
    );
    assert!(matches!(
        feed(&mut m, line.as_bytes()).0,
        PreAuthEvent::Login(_)
    ));
    m.login_failed(LoginFailure::AuthFailed);
    assert_eq!(m.take_output(), b"NO \"Authentication failed.\"\r\n");
    assert!(matches!(
        feed(&mut m, line.as_bytes()).0,
        PreAuthEvent::Login(_)
    ));
    m.login_failed(LoginFailure::AuthFailed);
    assert!(String::from_utf8(m.take_output())
        .unwrap()
        .starts_with("BYE "));
    assert_eq!(m.poll(), PreAuthEvent::Close);
}

#[test]
fn login_before_tls_where_it_is_required_needs_encryption() {
    let mut m = ManageSievePreAuth::with_tls(settings(true, true), false);
    m.take_output();
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("a", "b"));
    let (event, out) = feed(&mut m, line.as_bytes());
    assert_eq!(event, PreAuthEvent::NeedInput);
    assert!(out.starts_with("NO (ENCRYPT-NEEDED) "), "{out}");
}

#[test]
fn noop_logout_capability_and_refusals() {
    let mut m = machine();
    m.take_output();
    let (_, out) = feed(&mut m, b"NOOP \"t1\"\r\n");
    assert_eq!(out, "OK (TAG \"t1\") \"Done.\"\r\n");
    let (_, out) = feed(&mut m, b"CAPABILITY\r\n");
    assert!(out.ends_with("OK \"Capability completed.\"\r\n"));
    let (_, out) = feed(&mut m, b"LISTSCRIPTS\r\n");
    assert!(out.starts_with("NO "), "{out}");
    let (_, out) = feed(&mut m, b"AUTHENTICATE \"GSSAPI\"\r\n");
    assert_eq!(out, "NO \"Unsupported authentication mechanism.\"\r\n");
    let (_, out) = feed(&mut m, b"NOOP \"unterminated\r\n");
    assert!(out.starts_with("NO \"Syntax error"), "{out}");
    assert_eq!(m.take_protocol_errors(), 3);
    let (event, out) = feed(&mut m, b"LOGOUT\r\n");
    assert_eq!(
        (event, out.as_str()),
        (PreAuthEvent::Close, "OK \"Logout completed.\"\r\n")
    );
}

#[test]
fn bounds_on_lines_literals_commands_and_errors() {
    let at = |limit: usize| {
        let mut m = machine();
        m.take_output();
        feed(&mut m, format!("NOOP {{{limit}+}}\r\n").as_bytes()).0
    };
    assert_eq!(
        at(64),
        PreAuthEvent::NeedInput,
        "a literal at the bound waits for its bytes"
    );
    assert_eq!(at(65), PreAuthEvent::Close, "one over closes");
    let mut m = machine();
    m.take_output();
    let long = format!("NOOP \"{}\"\r\n", "x".repeat(200));
    assert_eq!(feed(&mut m, long.as_bytes()).0, PreAuthEvent::Close);
    let mut m = machine();
    m.take_output();
    for _ in 0..4 {
        assert_eq!(feed(&mut m, b"BOGUS\r\n").0, PreAuthEvent::NeedInput);
    }
    let (event, out) = feed(&mut m, b"BOGUS\r\n");
    assert_eq!(
        event,
        PreAuthEvent::Close,
        "the fifth refused command closes"
    );
    assert!(out.contains("BYE \"Too many invalid commands.\""), "{out}");
    let mut m = machine();
    m.take_output();
    for _ in 0..20 {
        assert_eq!(feed(&mut m, b"NOOP\r\n").0, PreAuthEvent::NeedInput);
    }
    assert_eq!(
        feed(&mut m, b"NOOP\r\n").0,
        PreAuthEvent::Close,
        "command 21"
    );
}

#[test]
fn a_cancelled_exchange_and_a_shutdown() {
    let mut m = machine();
    m.take_output();
    let _ = feed(&mut m, b"AUTHENTICATE \"LOGIN\"\r\n");
    let (event, out) = feed(&mut m, b"\"*\"\r\n");
    assert_eq!(event, PreAuthEvent::NeedInput);
    assert_eq!(out, "NO \"Authentication cancelled.\"\r\n");
    m.shutting_down();
    assert_eq!(
        m.take_output(),
        b"BYE (TRYLATER) \"Server shutting down.\"\r\n"
    );
    assert_eq!(m.poll(), PreAuthEvent::Close);
}

#[test]
fn oauthbearer_is_offered_where_configured_and_its_refusal_is_acknowledged_first() {
    let mut with_oauth = (*settings(false, false)).clone();
    with_oauth.listener.oauth = Some(crate::login::OAuthOffer {
        mechanisms: crate::auth::oauth::BearerMechanism::ALL.to_vec(),
        max_token: 256,
    });
    let mut m = ManageSievePreAuth::with_tls(Rc::new(with_oauth), false);
    let greeting = String::from_utf8(m.take_output()).unwrap();
    assert!(
        greeting.contains("\"SASL\" \"PLAIN LOGIN OAUTHBEARER XOAUTH2\"\r\n"),
        "{greeting}"
    );
    // The message as a literal longer than max_literal (64): allowed up to
    // a bearer message's size.
    let message =
        encode_base64(format!("n,a=ann,\x01auth=Bearer {}\x01\x01", "t".repeat(100)).as_bytes());
    let command = format!(
        "AUTHENTICATE \"OAUTHBEARER\" {{{}+}}\r\n{message}\r\n",
        message.len()
    );
    let (event, _) = feed(&mut m, command.as_bytes());
    assert!(
        matches!(event, PreAuthEvent::Login(c) if c.user == "ann" && c.method() == "oauthbearer")
    );
    m.login_failed(LoginFailure::AuthFailed);
    let challenge = crate::auth::oauth::ERROR_CHALLENGE_BASE64;
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        format!("\"{challenge}\"\r\n")
    );
    let (_, out) = feed(&mut m, b"\"AQ==\"\r\n");
    assert_eq!(out, "NO \"Authentication failed.\"\r\n");
    let mut plain = machine();
    plain.take_output();
    let (_, out) = feed(&mut plain, b"AUTHENTICATE \"XOAUTH2\" \"eA==\"\r\n");
    assert_eq!(out, "NO \"Unsupported authentication mechanism.\"\r\n");
}
