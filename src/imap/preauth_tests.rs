//! Behaviour of the IMAP pre-auth machine, fed bytes without sockets.

// Steps that only feed bytes ignore the event they return.
#![allow(unused_must_use)]

use super::*;
use crate::auth;
use crate::auth::sasl::{LOGIN_PASSWORD_CHALLENGE, LOGIN_USER_CHALLENGE};

const SASL_USERNAME_PROMPT: &str = "+ VXNlcm5hbWU6\r\n";
const SASL_PASSWORD_PROMPT: &str = "+ UGFzc3dvcmQ6\r\n";

#[test]
fn login_prompts_are_the_sasl_challenges() {
    assert_eq!(
        SASL_USERNAME_PROMPT,
        format!("+ {LOGIN_USER_CHALLENGE}\r\n")
    );
    assert_eq!(
        SASL_PASSWORD_PROMPT,
        format!("+ {LOGIN_PASSWORD_CHALLENGE}\r\n")
    );
}

fn settings() -> Rc<ImapSettings> {
    Rc::new(ImapSettings {
        greeting: "test ready.".into(),
        max_line: 128,
        max_literal: 32,
        max_auth_failures: 3,
        ..ImapSettings::default()
    })
}

fn machine() -> ImapPreAuth {
    let mut m = ImapPreAuth::new(settings());
    let greeting = m.take_output();
    assert_eq!(
        greeting,
        format!("* OK [CAPABILITY {PREAUTH_CAPABILITIES}] test ready.\r\n").into_bytes()
    );
    m
}

fn feed(m: &mut ImapPreAuth, bytes: &[u8]) -> (PreAuthEvent, String) {
    m.receive(bytes);
    let event = m.poll();
    (
        event,
        String::from_utf8_lossy(&m.take_output()).into_owned(),
    )
}

fn expect_login(event: PreAuthEvent, user: &str, password: &[u8]) {
    match event {
        PreAuthEvent::Login(c) => {
            assert_eq!(c.user, user);
            assert_eq!(c.password.expose(), password);
        }
        other => panic!("expected a login, got {other:?}"),
    }
}

#[test]
fn capability_noop_and_id_are_answered_locally() {
    let mut m = machine();
    let (ev, out) = feed(
        &mut m,
        b"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"curl\")\r\nd ID NIL\r\n",
    );
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        format!(
            "* CAPABILITY {PREAUTH_CAPABILITIES}\r\na OK Capability completed.\r\n\
             b OK NOOP completed.\r\n* ID NIL\r\nc OK ID completed.\r\n* ID NIL\r\nd OK ID completed.\r\n"
        )
    );
}

#[test]
fn starttls_is_not_advertised_without_tls() {
    assert!(!PREAUTH_CAPABILITIES.contains("STARTTLS"));
    let (_, out) = feed(&mut machine(), b"s STARTTLS\r\n");
    assert_eq!(out, "s BAD STARTTLS is not offered here.\r\n");
}

#[test]
fn logout_closes() {
    let (ev, out) = feed(&mut machine(), b"z LOGOUT\r\n");
    assert_eq!(ev, PreAuthEvent::Close);
    assert_eq!(out, "* BYE Logging out.\r\nz OK Logout completed.\r\n");
}

#[test]
fn login_with_atom_quoted_and_literals() {
    let (ev, _) = feed(&mut machine(), b"a LOGIN alice@example.org secret\r\n");
    expect_login(ev, "alice@example.org", b"secret");

    let (ev, _) = feed(&mut machine(), b"a LOGIN \"bob smith\" \"p\\\"w\"\r\n");
    expect_login(ev, "bob smith", b"p\"w");

    let mut m = machine();
    let (ev, out) = feed(&mut m, b"a LOGIN {5}\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (PreAuthEvent::NeedInput, "+ Ready for literal data.\r\n")
    );
    let (ev, out) = feed(&mut m, b"carol {3}\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (PreAuthEvent::NeedInput, "+ Ready for literal data.\r\n")
    );
    let (ev, out) = feed(&mut m, b"x y\r\n");
    assert_eq!(out, "");
    expect_login(ev, "carol", b"x y");

    let (ev, out) = feed(&mut machine(), b"a LOGIN {4+}\r\ndave {2+}\r\n\r\n\r\n");
    assert_eq!(out, "", "LITERAL+ needs no continuation");
    expect_login(ev, "dave", b"\r\n");
}

#[test]
fn successful_login_forwards_pipelined_commands_and_backend_capability() {
    let mut m = machine();
    let (ev, _) = feed(
        &mut m,
        b"a LOGIN u p\r\nb SELECT INBOX\r\nc FETCH 1 BODY[]\r\n",
    );
    expect_login(ev, "u", b"p");
    let done = m.login_succeeded(&BackendGreeting {
        capability: Some("IMAP4rev1 IDLE".into()),
        untagged: b"* OK [ALERT] hi\r\n".to_vec(),
        compression: Default::default(),
    });
    assert_eq!(
        done.to_client,
        b"* OK [ALERT] hi\r\na OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n".to_vec()
    );
    assert_eq!(
        done.to_backend,
        b"b SELECT INBOX\r\nc FETCH 1 BODY[]\r\n".to_vec()
    );
}

#[test]
fn success_without_backend_capability() {
    let mut m = machine();
    feed(&mut m, b"x1 LOGIN u p\r\n");
    let done = m.login_succeeded(&BackendGreeting::default());
    assert_eq!(done.to_client, b"x1 OK Logged in\r\n".to_vec());
    assert!(done.to_backend.is_empty());
}

#[test]
fn wrong_password_then_right_one() {
    let mut m = machine();
    let (ev, _) = feed(&mut m, b"a LOGIN u bad\r\nb LOGIN u good\r\n");
    expect_login(ev, "u", b"bad");
    m.login_failed(LoginFailure::AuthFailed);
    let ev = m.poll();
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    expect_login(ev, "u", b"good");
    let done = m.login_succeeded(&BackendGreeting::default());
    assert_eq!(done.to_client, b"b OK Logged in\r\n".to_vec());
}

#[test]
fn too_many_failures_close_at_the_limit() {
    let mut m = machine();
    for attempt in 1..=3 {
        let (ev, _) = feed(&mut m, b"a LOGIN u bad\r\n");
        expect_login(ev, "u", b"bad");
        m.login_failed(LoginFailure::AuthFailed);
        let out = String::from_utf8(m.take_output()).unwrap();
        assert!(out.starts_with("a NO [AUTHENTICATIONFAILED]"));
        assert_eq!(
            out.contains("* BYE"),
            attempt == 3,
            "attempt {attempt}: {out}"
        );
    }
    assert_eq!(m.poll(), PreAuthEvent::Close);
}

#[test]
fn unavailable_and_in_use_do_not_count_as_failures() {
    let mut m = machine();
    for _ in 0..5 {
        let (ev, _) = feed(&mut m, b"a LOGIN u p\r\n");
        expect_login(ev, "u", b"p");
        m.login_failed(LoginFailure::Unavailable);
        assert_eq!(
            String::from_utf8(m.take_output()).unwrap(),
            "a NO [UNAVAILABLE] Temporary failure, try again later.\r\n"
        );
    }
    assert_eq!(m.poll(), PreAuthEvent::NeedInput);
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let b64 = auth::encode_base64(b"\0alice\0pw");
    let (ev, _) = feed(
        &mut machine(),
        format!("a AUTHENTICATE PLAIN {b64}\r\n").as_bytes(),
    );
    expect_login(ev, "alice", b"pw");

    let mut m = machine();
    let (ev, out) = feed(&mut m, b"a AUTHENTICATE plain\r\n");
    assert_eq!((ev, out.as_str()), (PreAuthEvent::NeedInput, "+ \r\n"));
    let (ev, _) = feed(&mut m, format!("{b64}\r\n").as_bytes());
    expect_login(ev, "alice", b"pw");
}

#[test]
fn authenticate_cancel_and_bad_base64() {
    let mut m = machine();
    feed(&mut m, b"a AUTHENTICATE PLAIN\r\n");
    let (ev, out) = feed(&mut m, b"*\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (PreAuthEvent::NeedInput, "a BAD AUTHENTICATE cancelled.\r\n")
    );
    let (_, out) = feed(&mut m, b"b AUTHENTICATE PLAIN !!!\r\n");
    assert_eq!(out, "b BAD Invalid base64 data.\r\n");
    let (_, out) = feed(&mut m, b"c AUTHENTICATE CRAM-MD5\r\n");
    assert_eq!(out, "c NO Unsupported authentication mechanism.\r\n");
}

#[test]
fn authenticate_plain_with_foreign_authzid_fails_without_backend() {
    let b64 = auth::encode_base64(b"admin\0alice\0pw");
    let (ev, out) = feed(
        &mut machine(),
        format!("a AUTHENTICATE PLAIN {b64}\r\n").as_bytes(),
    );
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

#[test]
fn authenticate_login_mechanism() {
    let mut m = machine();
    let (_, out) = feed(&mut m, b"a AUTHENTICATE LOGIN\r\n");
    assert_eq!(out, SASL_USERNAME_PROMPT);
    let (_, out) = feed(
        &mut m,
        format!("{}\r\n", auth::encode_base64(b"erin")).as_bytes(),
    );
    assert_eq!(out, SASL_PASSWORD_PROMPT);
    let (ev, _) = feed(
        &mut m,
        format!("{}\r\n", auth::encode_base64(b"pw pw")).as_bytes(),
    );
    expect_login(ev, "erin", b"pw pw");

    let ir = auth::encode_base64(b"frank");
    let mut m = machine();
    let (_, out) = feed(&mut m, format!("a AUTHENTICATE LOGIN {ir}\r\n").as_bytes());
    assert_eq!(out, SASL_PASSWORD_PROMPT);
}

#[test]
fn other_commands_get_tagged_bad() {
    let (ev, out) = feed(
        &mut machine(),
        b"t1 SELECT INBOX\r\nt2 LOGIN onlyuser\r\nt3 NOOP extra\r\n",
    );
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "t1 BAD Unknown command or not allowed before login.\r\n\
         t2 BAD LOGIN expects a user name and a password.\r\n\
         t3 BAD Invalid arguments.\r\n"
    );
}

#[test]
fn malformed_lines_get_bad_and_session_continues() {
    let mut m = machine();
    let (ev, out) = feed(&mut m, b"\r\nt LOGIN \"open\r\nq NOOP\r\n");
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "* BAD missing or invalid tag\r\nt BAD unterminated quoted string\r\nq OK NOOP completed.\r\n"
    );
}

#[test]
fn nul_in_login_is_refused() {
    let (_, out) = feed(&mut machine(), b"t LOGIN a\0b c\r\n");
    assert_eq!(out, "t BAD expected a space between arguments\r\n");
}

#[test]
fn line_limit_boundary() {
    // max_line = 128: "t NOOP " + padding, measured without CRLF.
    let line = |len: usize| {
        let mut l = b"t ID NIL".to_vec();
        l.resize(len, b' ');
        l
    };
    let mut at_limit = line(128);
    at_limit.extend_from_slice(b"\r\n");
    let (ev, out) = feed(&mut machine(), &at_limit);
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert!(out.starts_with("t BAD"), "{out}");

    let mut over = line(129);
    over.extend_from_slice(b"\r\n");
    let (ev, out) = feed(&mut machine(), &over);
    assert_eq!(ev, PreAuthEvent::Close);
    assert_eq!(out, "t BAD [TOOBIG] command line too long\r\n* BYE Input limit exceeded, closing connection.\r\n");
}

#[test]
fn one_mebibyte_line_is_refused_with_bounded_memory() {
    let mut m = machine();
    let chunk = vec![b'a'; 4096];
    let mut closed = false;
    for _ in 0..256 {
        m.receive(&chunk);
        if m.poll() == PreAuthEvent::Close {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a 1 MiB line must be refused before it is all buffered"
    );
    assert!(String::from_utf8(m.take_output())
        .unwrap()
        .contains("BAD [TOOBIG]"));
    assert!(m.input.capacity() < 64 * 1024);
}

#[test]
fn literal_limit_boundaries() {
    let (ev, out) = feed(&mut machine(), b"a LOGIN {32}\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (PreAuthEvent::NeedInput, "+ Ready for literal data.\r\n")
    );
    let (ev, out) = feed(&mut machine(), b"a LOGIN {33}\r\n");
    assert_eq!(ev, PreAuthEvent::Close);
    assert!(out.starts_with("a BAD [TOOBIG] literal too large"), "{out}");
    let (ev, _) = feed(&mut machine(), b"a LOGIN {33+}\r\n");
    assert_eq!(ev, PreAuthEvent::Close);
}

#[test]
fn timeout_says_bye_and_closes() {
    let mut m = machine();
    feed(&mut m, b"a LOGIN {5}\r\nal");
    m.timed_out();
    assert_eq!(m.poll(), PreAuthEvent::Close);
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        "* BYE Autologout; idle for too long.\r\n"
    );
}

#[test]
fn byte_by_byte_input_gives_the_same_login() {
    let script = b"a LOGIN {5}\r\nalice \"pw\"\r\nb NOOP\r\n";
    let mut m = machine();
    let mut login = None;
    for &b in script.iter() {
        m.receive(&[b]);
        if let PreAuthEvent::Login(c) = m.poll() {
            login = Some(c);
        }
    }
    let c = login.expect("login seen");
    assert_eq!(
        (c.user.as_str(), c.password.expose()),
        ("alice", &b"pw"[..])
    );
    let done = m.login_succeeded(&BackendGreeting::default());
    assert_eq!(done.to_backend, b"b NOOP\r\n".to_vec());
}

#[test]
fn non_utf8_user_fails_like_a_wrong_password() {
    let (_, out) = feed(&mut machine(), b"a LOGIN \"\xff\" pw\r\n");
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

fn starttls_machine(require_tls: bool) -> ImapPreAuth {
    let mut m = ImapPreAuth::new(Rc::new(ImapSettings {
        starttls: true,
        require_tls,
        ..ImapSettings::default()
    }));
    m.take_output();
    m
}

#[test]
fn starttls_listener_requiring_tls_disables_login_until_tls() {
    let mut m = starttls_machine(true);
    let (_, out) = feed(&mut m, b"a CAPABILITY\r\n");
    assert!(
        out.contains("STARTTLS") && out.contains("LOGINDISABLED") && !out.contains("AUTH="),
        "{out}"
    );
    let (ev, out) = feed(&mut m, b"b LOGIN u p\r\nc AUTHENTICATE PLAIN\r\n");
    assert_eq!(ev, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "b NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS.\r\n\
         c NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS.\r\n"
    );
    let (ev, out) = feed(&mut m, b"d STARTTLS\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (
            PreAuthEvent::StartTls,
            "d OK Begin TLS negotiation now.\r\n"
        )
    );
    m.tls_started();
    let (_, out) = feed(&mut m, b"e CAPABILITY\r\n");
    assert!(
        !out.contains("STARTTLS") && !out.contains("LOGINDISABLED") && out.contains("AUTH=PLAIN"),
        "{out}"
    );
    let (ev, _) = feed(&mut m, b"f LOGIN u p\r\n");
    expect_login(ev, "u", b"p");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let mut m = starttls_machine(false);
    let (ev, out) = feed(&mut m, b"a STARTTLS\r\nb LOGIN injected pw\r\nc NOOP\r\n");
    assert_eq!(
        (ev, out.as_str()),
        (
            PreAuthEvent::StartTls,
            "a OK Begin TLS negotiation now.\r\n"
        )
    );
    m.tls_started();
    assert_eq!(
        m.poll(),
        PreAuthEvent::NeedInput,
        "nothing left to interpret"
    );
    assert!(m.take_output().is_empty());
}

#[test]
fn starttls_is_refused_after_tls_and_where_not_offered() {
    let mut m = starttls_machine(false);
    feed(&mut m, b"a STARTTLS\r\n");
    m.tls_started();
    let (_, out) = feed(&mut m, b"b STARTTLS\r\n");
    assert_eq!(out, "b BAD STARTTLS is not offered here.\r\n");
    let mut implicit = ImapPreAuth::with_tls(Rc::new(ImapSettings::default()), true);
    assert!(!String::from_utf8(implicit.take_output())
        .unwrap()
        .contains("STARTTLS"));
}

#[test]
fn starttls_offered_but_not_required_allows_plaintext_login() {
    let mut m = starttls_machine(false);
    let (_, out) = feed(&mut m, b"a CAPABILITY\r\n");
    assert!(
        out.contains("STARTTLS") && out.contains("AUTH=PLAIN") && !out.contains("LOGINDISABLED"),
        "{out}"
    );
    let (ev, _) = feed(&mut m, b"b LOGIN u p\r\n");
    expect_login(ev, "u", b"p");
}

#[test]
fn every_bad_is_counted_as_a_protocol_error_and_failed_logins_are_not() {
    let mut m = machine();
    let (_, out) = feed(&mut m, b"a FROB\r\nb LOGIN onlyuser\r\nc NOOP\r\n");
    assert_eq!(out.matches(" BAD ").count(), 2, "{out}");
    assert_eq!(m.take_protocol_errors(), 2);
    assert_eq!(m.take_protocol_errors(), 0, "taking resets the count");
    let (ev, _) = feed(&mut m, b"d LOGIN u p\r\n");
    expect_login(ev, "u", b"p");
    m.login_failed(LoginFailure::AuthFailed);
    let _ = m.poll();
    assert_eq!(m.take_protocol_errors(), 0);
    let (_, out) = feed(&mut m, &[b'x'; 200]);
    assert!(out.contains("BAD [TOOBIG]"), "{out}");
    assert_eq!(m.take_protocol_errors(), 1);
}

fn oauth_machine(max_token: usize) -> ImapPreAuth {
    let mut m = ImapPreAuth::new(Rc::new(ImapSettings {
        max_line: 128,
        oauth: Some(crate::login::OAuthOffer {
            mechanisms: crate::auth::oauth::BearerMechanism::ALL.to_vec(),
            max_token,
        }),
        ..ImapSettings::default()
    }));
    m.take_output();
    m
}

fn bearer_ir(user: &str, token: &str) -> String {
    auth::encode_base64(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes())
}

#[test]
fn bearer_mechanisms_are_announced_only_where_offered() {
    let mut m = oauth_machine(64);
    let (_, out) = feed(&mut m, b"a CAPABILITY\r\n");
    assert!(
        out.contains("AUTH=PLAIN AUTH=LOGIN AUTH=OAUTHBEARER AUTH=XOAUTH2"),
        "{out}"
    );
    let mut plain = machine();
    let (_, out) = feed(&mut plain, b"a CAPABILITY\r\n");
    assert!(!out.contains("OAUTHBEARER"), "{out}");
    let ir = bearer_ir("ann@example.org", "t0k");
    let (event, out) = feed(
        &mut plain,
        format!("b AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes(),
    );
    assert_eq!(event, PreAuthEvent::NeedInput);
    assert_eq!(out, "b NO Unsupported authentication mechanism.\r\n");
}

#[test]
fn an_oauthbearer_login_is_routed_by_its_authzid_and_refusals_run_the_error_exchange() {
    let mut m = oauth_machine(64);
    let ir = bearer_ir("ann@example.org", "t0k");
    let (event, _) = feed(
        &mut m,
        format!("a AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes(),
    );
    match event {
        PreAuthEvent::Login(c) => {
            assert_eq!(c.user, "ann@example.org");
            assert_eq!(c.password.expose(), b"t0k");
            assert_eq!(c.method(), "oauthbearer");
        }
        other => panic!("{other:?}"),
    }
    m.login_failed(LoginFailure::AuthFailed);
    let challenge = crate::auth::oauth::ERROR_CHALLENGE_BASE64;
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        format!("+ {challenge}\r\n")
    );
    let (event, out) = feed(&mut m, b"AQ==\r\n");
    assert_eq!(event, PreAuthEvent::NeedInput);
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    // A temporary failure is a plain NO: nothing to acknowledge.
    let (_, _) = feed(
        &mut m,
        format!("b AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes(),
    );
    m.login_failed(LoginFailure::Unavailable);
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        "b NO [UNAVAILABLE] Temporary failure, try again later.\r\n"
    );
}

#[test]
fn xoauth2_takes_its_message_after_a_continuation() {
    let mut m = oauth_machine(64);
    let (event, out) = feed(&mut m, b"a AUTHENTICATE XOAUTH2\r\n");
    assert_eq!((event, out.as_str()), (PreAuthEvent::NeedInput, "+ \r\n"));
    let message = auth::encode_base64(b"user=bob@example.org\x01auth=Bearer abc\x01\x01");
    let (event, _) = feed(&mut m, format!("{message}\r\n").as_bytes());
    assert!(
        matches!(event, PreAuthEvent::Login(c) if c.user == "bob@example.org" && c.method() == "xoauth2")
    );
}

#[test]
fn a_malformed_or_oversized_bearer_message_fails_after_the_error_exchange_without_a_lookup() {
    let mut m = oauth_machine(8);
    for message in [
        auth::encode_base64(b"x,a=u,\x01auth=Bearer abc\x01\x01"),
        bearer_ir("u", "123456789"),
    ] {
        let (event, out) = feed(
            &mut m,
            format!("a AUTHENTICATE OAUTHBEARER {message}\r\n").as_bytes(),
        );
        assert_eq!(event, PreAuthEvent::NeedInput);
        assert!(out.starts_with("+ eyJ"), "{out}");
        let (event, out) = feed(&mut m, b"AQ==\r\n");
        assert!(!matches!(event, PreAuthEvent::Login(_)), "{event:?}");
        assert!(out.contains("NO [AUTHENTICATIONFAILED]"), "{out}");
    }
    let (_, out) = feed(&mut m, b"a AUTHENTICATE OAUTHBEARER !!!\r\n");
    assert_eq!(out, "a BAD Invalid base64 data.\r\n");
}

#[test]
fn a_bearer_line_may_be_as_long_as_the_largest_message_and_no_longer() {
    let max_token = 300;
    let mut m = oauth_machine(max_token);
    let limit = m.settings.max_login_line();
    assert!(limit > 128, "raised above max_line for tokens");
    let prefix = "a AUTHENTICATE OAUTHBEARER ";
    let at_limit = format!("{prefix}{}\r\n", "A".repeat(limit - prefix.len()));
    let (event, out) = feed(&mut m, at_limit.as_bytes());
    assert_eq!(event, PreAuthEvent::NeedInput);
    assert!(!out.contains("TOOBIG"), "{out}");
    let mut m = oauth_machine(max_token);
    let over = format!("{prefix}{}\r\n", "A".repeat(limit - prefix.len() + 1));
    let (event, out) = feed(&mut m, over.as_bytes());
    assert_eq!(event, PreAuthEvent::Close);
    assert!(out.contains("BAD [TOOBIG]"), "{out}");
}

#[test]
fn bearer_mechanisms_wait_for_tls_where_login_does() {
    let mut m = ImapPreAuth::new(Rc::new(ImapSettings {
        starttls: true,
        require_tls: true,
        oauth: Some(crate::login::OAuthOffer {
            mechanisms: crate::auth::oauth::BearerMechanism::ALL.to_vec(),
            max_token: 64,
        }),
        ..ImapSettings::default()
    }));
    m.take_output();
    let (_, out) = feed(&mut m, b"a CAPABILITY\r\n");
    assert!(
        !out.contains("OAUTHBEARER") && out.contains("LOGINDISABLED"),
        "{out}"
    );
    let ir = bearer_ir("ann", "t0k");
    let (_, out) = feed(
        &mut m,
        format!("b AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes(),
    );
    assert!(out.starts_with("b NO [PRIVACYREQUIRED]"), "{out}");
    let (event, _) = feed(&mut m, b"c STARTTLS\r\n");
    assert_eq!(event, PreAuthEvent::StartTls);
    m.tls_started();
    let (_, out) = feed(&mut m, b"d CAPABILITY\r\n");
    assert!(out.contains("AUTH=OAUTHBEARER AUTH=XOAUTH2"), "{out}");
}

#[test]
fn the_greeting_fits_the_room_it_is_allocated_with() {
    // The longest capability list: every bearer mechanism and STARTTLS.
    let settings = Rc::new(ImapSettings {
        starttls: true,
        oauth: Some(crate::login::OAuthOffer {
            mechanisms: crate::auth::oauth::BearerMechanism::ALL.to_vec(),
            max_token: 64,
        }),
        ..ImapSettings::default()
    });
    let greeting_len = settings.greeting.len();
    let mut m = ImapPreAuth::new(settings);
    let caps = m.capabilities();
    assert!(
        caps.contains("AUTH=XOAUTH2") && caps.contains("STARTTLS"),
        "{caps}"
    );
    let out = m.take_output();
    assert_eq!(
        out,
        format!("* OK [CAPABILITY {caps}] {}\r\n", m.settings.greeting).into_bytes()
    );
    assert_eq!(
        out.capacity(),
        GREETING_ROOM + greeting_len,
        "allocated once, never grown"
    );
}
