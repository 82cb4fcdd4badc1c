//! Behaviour of the POP3 back-end login machine, fed bytes without sockets.

// Steps that only feed bytes ignore the event they return.
#![allow(unused_must_use)]

use super::*;

fn login(method: Pop3BackendAuth, password: &[u8]) -> Pop3BackendLogin {
    Pop3BackendLogin::new("alice@example.org", Secret::new(password.to_vec()), method)
}

fn step(m: &mut Pop3BackendLogin, server: &[u8]) -> (BackendEvent, String) {
    m.receive(server);
    let ev = m.poll();
    (ev, String::from_utf8_lossy(&m.take_output()).into_owned())
}

fn logged_in(leftover: &[u8]) -> BackendEvent {
    BackendEvent::Done(BackendOutcome::LoggedIn {
        greeting: BackendGreeting::default(),
        leftover: leftover.to_vec(),
    })
}

#[test]
fn auto_prefers_auth_plain_when_capa_lists_it() {
    let mut m = login(Pop3BackendAuth::Auto, b"pw");
    let (_, out) = step(&mut m, b"+OK Dovecot ready.\r\n");
    assert_eq!(out, "CAPA\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nCAPA\r\nTOP\r\nSASL PLAIN LOGIN\r\n.\r\n");
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    assert_eq!(out, format!("AUTH PLAIN {b64}\r\n"));
    let (ev, _) = step(&mut m, b"+OK Logged in.\r\n");
    assert_eq!(ev, logged_in(b""));
}

#[test]
fn auto_falls_back_to_user_pass() {
    let mut m = login(Pop3BackendAuth::Auto, b"p w");
    step(&mut m, b"+OK hi\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nUSER\r\n.\r\n");
    assert_eq!(out, "USER alice@example.org\r\n");
    let (_, out) = step(&mut m, b"+OK\r\n");
    assert_eq!(out, "PASS p w\r\n");
    let (ev, _) = step(&mut m, b"+OK Logged in.\r\n");
    assert_eq!(ev, logged_in(b""));
}

#[test]
fn capa_error_falls_back_to_user() {
    let mut m = login(Pop3BackendAuth::Auto, b"pw");
    step(&mut m, b"+OK hi\r\n");
    let (_, out) = step(&mut m, b"-ERR unknown command\r\n");
    assert_eq!(out, "USER alice@example.org\r\n");
}

#[test]
fn response_codes_classify_failures() {
    for (reply, expected) in [
        (
            &b"-ERR [AUTH] Authentication failed.\r\n"[..],
            Some(LoginFailure::AuthFailed),
        ),
        (b"-ERR nope\r\n", Some(LoginFailure::AuthFailed)),
        (b"-ERR [IN-USE] locked\r\n", Some(LoginFailure::InUse)),
        (b"-ERR [SYS/TEMP] later\r\n", None),
    ] {
        let mut m = login(Pop3BackendAuth::Plain, b"pw");
        step(&mut m, b"+OK hi\r\n");
        let (ev, _) = step(&mut m, reply);
        match (ev, expected) {
            (BackendEvent::Done(BackendOutcome::Rejected(f)), Some(e)) => assert_eq!(f, e),
            (BackendEvent::Done(BackendOutcome::Unavailable(_)), None) => {}
            (ev, e) => panic!(
                "{:?}: got {ev:?}, expected {e:?}",
                String::from_utf8_lossy(reply)
            ),
        }
    }
}

#[test]
fn bad_greeting_is_unavailable() {
    let mut m = login(Pop3BackendAuth::Auto, b"pw");
    let (ev, _) = step(&mut m, b"-ERR go away\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
}

#[test]
fn user_mode_cannot_send_user_with_space() {
    let mut m = Pop3BackendLogin::new("a b", Secret::new(b"pw".to_vec()), Pop3BackendAuth::User);
    let (ev, _) = step(&mut m, b"+OK hi\r\n");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
}

#[test]
fn xclient_is_sent_when_offered_and_a_client_address_is_known() {
    let client = ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "198.51.100.1:110".parse().unwrap(),
    };
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client);
    step(&mut m, b"+OK hi\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nXCLIENT\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
    let (_, out) = step(&mut m, b"-ERR not trusted\r\n");
    assert!(out.starts_with("AUTH PLAIN "), "{out}");

    // Not offered: straight to the login.
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client);
    step(&mut m, b"+OK hi\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    assert!(out.starts_with("AUTH PLAIN "), "{out}");
}

#[test]
fn xclient_announced_in_the_greeting_is_used_in_every_mode() {
    let client = ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "198.51.100.1:110".parse().unwrap(),
    };
    let mut m = login(Pop3BackendAuth::Plain, b"pw").with_client_address(client);
    let (_, out) = step(&mut m, b"+OK [XCLIENT] Dovecot ready.\r\n");
    assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
    let (_, out) = step(&mut m, b"+OK\r\n");
    assert!(out.starts_with("AUTH PLAIN "), "{out}");
}

#[test]
fn stls_upgrades_before_the_login() {
    let mut m = login(Pop3BackendAuth::Plain, b"pw").with_starttls();
    let (_, out) = step(&mut m, b"+OK hi\r\n");
    assert_eq!(out, "STLS\r\n");
    let (ev, _) = step(&mut m, b"+OK Begin TLS\r\n");
    assert_eq!(ev, BackendEvent::StartTls);
    m.tls_started();
    let (_, out) = step(&mut m, b"");
    assert!(out.starts_with("AUTH PLAIN "), "{out}");
    let mut refused = login(Pop3BackendAuth::Plain, b"pw").with_starttls();
    step(&mut refused, b"+OK hi\r\n");
    let (ev, _) = step(&mut refused, b"-ERR no\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
}

#[test]
fn a_login_refused_right_after_stls_is_a_failed_login_not_a_fault() {
    // USER cannot carry a name with a space: after the TLS upgrade the
    // machine refuses at once, and `poll` must report that refusal.
    let mut m = Pop3BackendLogin::new("a b", Secret::new(b"pw".to_vec()), Pop3BackendAuth::User)
        .with_starttls();
    step(&mut m, b"+OK hi\r\n");
    let (ev, _) = step(&mut m, b"+OK Begin TLS\r\n");
    assert_eq!(ev, BackendEvent::StartTls);
    m.tls_started();
    let (ev, out) = step(&mut m, b"");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
    assert_eq!(out, "");
}

#[test]
fn leftover_after_login_is_kept() {
    let mut m = login(Pop3BackendAuth::Plain, b"pw");
    step(&mut m, b"+OK hi\r\n");
    let (ev, _) = step(&mut m, b"+OK Logged in.\r\n+OK 2 messages\r\n");
    assert_eq!(ev, logged_in(b"+OK 2 messages\r\n"));
}

fn bearer_login() -> Pop3BackendLogin {
    Pop3BackendLogin::new("ann", Secret::new(b"t0k".to_vec()), Pop3BackendAuth::User).with_bearer(
        crate::auth::oauth::Bearer {
            mechanism: crate::auth::oauth::BearerMechanism::OAuthBearer,
            host: None,
            port: None,
        },
    )
}

#[test]
fn a_bearer_token_asks_capa_then_auth_with_the_clients_mechanism() {
    let mut m = bearer_login();
    let (_, out) = step(&mut m, b"+OK Dovecot ready.\r\n");
    assert_eq!(out, "CAPA\r\n", "whatever pop3_auth says");
    let (_, out) = step(&mut m, b"+OK\r\nSASL PLAIN OAUTHBEARER\r\n.\r\n");
    let message = auth::encode_base64(b"n,a=ann,\x01auth=Bearer t0k\x01\x01");
    assert_eq!(out, format!("AUTH OAUTHBEARER {message}\r\n"));
    let (ev, out) = step(&mut m, b"+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
    assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, "AQ==\r\n"));
    let (ev, _) = step(&mut m, b"-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
    let mut m = bearer_login();
    step(&mut m, b"+OK Dovecot ready.\r\n");
    step(&mut m, b"+OK\r\nSASL PLAIN OAUTHBEARER\r\n.\r\n");
    assert_eq!(step(&mut m, b"+OK Logged in.\r\n").0, logged_in(b""));
}

#[test]
fn a_pop3_back_end_without_the_mechanism_is_a_fault() {
    let mut m = bearer_login();
    step(&mut m, b"+OK Dovecot ready.\r\n");
    let (ev, _) = step(&mut m, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::MechanismMissing(
            "OAUTHBEARER",
            _
        )))
    ));
}

fn client() -> ClientAddress {
    ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "198.51.100.1:110".parse().unwrap(),
    }
}

#[test]
fn capa_is_handed_out_to_be_remembered_and_pipelining_sends_xclient_with_the_login() {
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client());
    assert_eq!(m.offers(), None, "nothing asked yet");
    step(&mut m, b"+OK [XCLIENT] Dovecot ready.\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n");
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    assert_eq!(
        out,
        format!("XCLIENT ADDR=192.0.2.7 PORT=40000\r\nAUTH PLAIN {b64}\r\n"),
        "one write"
    );
    let greeted = OFFERS_GREETED | OFFERS_XCLIENT_GREETING;
    assert_eq!(
        m.offers(),
        Some(BackendOffers(
            OFFERS_SASL_PLAIN | OFFERS_PIPELINING | greeted
        ))
    );
    let (ev, out) = step(&mut m, b"+OK\r\n+OK Logged in.\r\nleft");
    assert_eq!((ev, out.as_str()), (logged_in(b"left"), ""));

    // Without PIPELINING: XCLIENT's reply first, as before.
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client());
    step(&mut m, b"+OK [XCLIENT] Dovecot ready.\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
    assert_eq!(m.offers(), Some(BackendOffers(OFFERS_SASL_PLAIN | greeted)));
    let (_, out) = step(&mut m, b"+OK\r\n");
    assert_eq!(out, format!("AUTH PLAIN {b64}\r\n"));
}

#[test]
fn remembered_plain_skips_capa() {
    let remembered = BackendOffers(OFFERS_SASL_PLAIN | OFFERS_PIPELINING);
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    let mut m = login(Pop3BackendAuth::Auto, b"pw")
        .with_client_address(client())
        .with_offers(remembered);
    let (_, out) = step(&mut m, b"+OK [XCLIENT] Dovecot ready.\r\n");
    assert_eq!(
        out,
        format!("XCLIENT ADDR=192.0.2.7 PORT=40000\r\nAUTH PLAIN {b64}\r\n")
    );
    let (ev, _) = step(&mut m, b"+OK\r\n+OK Logged in.\r\n");
    assert_eq!(ev, logged_in(b""));
    // The greeting's offers join what CAPA said before.
    assert_eq!(
        m.offers(),
        Some(BackendOffers(
            remembered.0 | OFFERS_GREETED | OFFERS_XCLIENT_GREETING
        ))
    );
    // XCLIENT listed by CAPA only (not in the greeting) is remembered too.
    let mut m = login(Pop3BackendAuth::Auto, b"pw")
        .with_client_address(client())
        .with_offers(BackendOffers(remembered.0 | OFFERS_XCLIENT_CAPA));
    let (_, out) = step(&mut m, b"+OK ready.\r\n");
    assert!(out.starts_with("XCLIENT ADDR=192.0.2.7 "), "{out}");

    // Remembered without PLAIN (or without anything): CAPA as always.
    for remembered in [BackendOffers(OFFERS_PIPELINING), BackendOffers(0)] {
        let mut m = login(Pop3BackendAuth::Auto, b"pw").with_offers(remembered);
        let (_, out) = step(&mut m, b"+OK hi\r\n");
        assert_eq!(out, "CAPA\r\n");
    }
    // A bearer login must see its mechanism listed: CAPA still.
    let mut m = bearer_login().with_offers(BackendOffers(OFFERS_SASL_PLAIN));
    let (_, out) = step(&mut m, b"+OK hi\r\n");
    assert_eq!(out, "CAPA\r\n");
}

#[test]
fn a_refusal_on_remembered_offers_stands_only_if_plain_is_still_listed() {
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    let remembered = BackendOffers(OFFERS_SASL_PLAIN);
    // A wrong password: CAPA still lists PLAIN, the refusal stands.
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_offers(remembered);
    let (_, out) = step(&mut m, b"+OK hi\r\n");
    assert_eq!(out, format!("AUTH PLAIN {b64}\r\n"));
    let (ev, out) = step(&mut m, b"-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, "CAPA\r\n"));
    let (ev, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\n.\r\n");
    assert_eq!(out, "", "the password is not sent again");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
    assert_eq!(
        m.offers(),
        Some(BackendOffers(OFFERS_SASL_PLAIN | OFFERS_GREETED))
    );

    // PLAIN gone since: USER/PASS instead, and the memory corrected.
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_offers(remembered);
    step(&mut m, b"+OK hi\r\n");
    step(&mut m, b"-ERR Unsupported authentication mechanism.\r\n");
    let (_, out) = step(&mut m, b"+OK\r\nUSER\r\n.\r\n");
    assert_eq!(out, "USER alice@example.org\r\n");
    assert_eq!(m.offers(), Some(BackendOffers(OFFERS_GREETED)));
    let (_, out) = step(&mut m, b"+OK\r\n");
    assert_eq!(out, "PASS pw\r\n");
    let (ev, _) = step(&mut m, b"+OK Logged in.\r\n");
    assert_eq!(ev, logged_in(b""));

    // CAPA itself refused on the re-check: the refusal stands.
    let mut m = login(Pop3BackendAuth::Auto, b"pw").with_offers(remembered);
    step(&mut m, b"+OK hi\r\n");
    step(&mut m, b"-ERR no\r\n");
    let (ev, out) = step(&mut m, b"-ERR unknown command\r\n");
    assert_eq!(out, "");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );

    // In use or a temporary failure: no question asked, it stands.
    for (reply, unavailable) in [
        (&b"-ERR [IN-USE] locked\r\n"[..], false),
        (b"-ERR [SYS/TEMP] later\r\n", true),
    ] {
        let mut m = login(Pop3BackendAuth::Auto, b"pw").with_offers(remembered);
        step(&mut m, b"+OK hi\r\n");
        let (ev, out) = step(&mut m, reply);
        assert_eq!(out, "");
        match ev {
            BackendEvent::Done(BackendOutcome::Unavailable(_)) => assert!(unavailable),
            BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::InUse)) => {
                assert!(!unavailable)
            }
            other => panic!("{other:?}"),
        }
    }
}

/// What a worker remembers of Dovecot: CAPA's PLAIN and PIPELINING, and a
/// greeting that offered XCLIENT.
const DOVECOT: BackendOffers =
    BackendOffers(OFFERS_SASL_PLAIN | OFFERS_PIPELINING | OFFERS_GREETED | OFFERS_XCLIENT_GREETING);

fn early(method: Pop3BackendAuth, offers: BackendOffers) -> Pop3BackendLogin {
    login(method, b"pw")
        .with_client_address(client())
        .with_offers(offers)
        .with_early_login()
}

#[test]
fn on_remembered_greeting_offers_the_login_goes_before_the_greeting() {
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    let mut m = early(Pop3BackendAuth::Auto, DOVECOT);
    // Nothing received yet: XCLIENT and AUTH PLAIN go at once, one write.
    let (ev, out) = step(&mut m, b"");
    assert_eq!(ev, BackendEvent::NeedInput);
    assert_eq!(
        out,
        format!("XCLIENT ADDR=192.0.2.7 PORT=40000\r\nAUTH PLAIN {b64}\r\n")
    );
    // The greeting, XCLIENT's reply and the login's, in one read.
    let (ev, out) = step(
        &mut m,
        b"+OK [XCLIENT] Dovecot ready.\r\n+OK\r\n+OK Logged in.\r\nleft",
    );
    assert_eq!((ev, out.as_str()), (logged_in(b"left"), ""));
    assert_eq!(m.offers(), Some(DOVECOT), "nothing new to remember");

    // In separate reads, and a refusal: checked against CAPA as always.
    let mut m = early(Pop3BackendAuth::Auto, DOVECOT);
    step(&mut m, b"");
    assert_eq!(
        step(&mut m, b"+OK [XCLIENT] ready.\r\n").0,
        BackendEvent::NeedInput
    );
    assert_eq!(step(&mut m, b"+OK\r\n").0, BackendEvent::NeedInput);
    let (_, out) = step(&mut m, b"-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(out, "CAPA\r\n");
    let (ev, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n");
    assert_eq!(out, "");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );

    // `plain` and `user` go early too, on what the greeting offered.
    let greeted = BackendOffers(OFFERS_GREETED);
    let mut m = early(Pop3BackendAuth::Plain, greeted);
    assert_eq!(step(&mut m, b"").1, format!("AUTH PLAIN {b64}\r\n"));
    let mut m = early(Pop3BackendAuth::User, greeted);
    assert_eq!(step(&mut m, b"").1, "USER alice@example.org\r\n");
    step(&mut m, b"+OK hi\r\n");
    assert_eq!(step(&mut m, b"+OK\r\n").1, "PASS pw\r\n");
    // `auto` without PLAIN remembered: CAPA goes early, and the greeting
    // that comes decides whether XCLIENT follows (here it now offers it).
    let mut m = early(Pop3BackendAuth::Auto, greeted);
    assert_eq!(step(&mut m, b"").1, "CAPA\r\n");
    let (_, out) = step(&mut m, b"+OK [XCLIENT] ready.\r\n+OK\r\nUSER\r\n.\r\n");
    assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
    let (_, out) = step(&mut m, b"+OK\r\n");
    assert_eq!(out, "USER alice@example.org\r\n");
    // And where it no longer offers it, none goes.
    let mut m = early(
        Pop3BackendAuth::Auto,
        BackendOffers(OFFERS_GREETED | OFFERS_XCLIENT_GREETING),
    );
    assert_eq!(step(&mut m, b"").1, "CAPA\r\n");
    let (_, out) = step(&mut m, b"+OK ready.\r\n+OK\r\nUSER\r\n.\r\n");
    assert_eq!(out, "USER alice@example.org\r\n");
}

#[test]
fn an_early_login_still_checks_the_greeting_and_learns_a_changed_one() {
    // A greeting that is no +OK: the back end is unusable, as ever.
    let mut m = early(Pop3BackendAuth::Auto, DOVECOT);
    step(&mut m, b"");
    let (ev, _) = step(&mut m, b"-ERR [SYS/TEMP] going down\r\n");
    assert!(
        matches!(
            ev,
            BackendEvent::Done(BackendOutcome::Unavailable(
                BackendFault::UnexpectedGreeting(_)
            ))
        ),
        "{ev:?}"
    );

    // XCLIENT no longer offered: its refusal is ignored, the login goes
    // on, and the memory is corrected.
    let mut m = early(Pop3BackendAuth::Auto, DOVECOT);
    step(&mut m, b"");
    let (ev, _) = step(
        &mut m,
        b"+OK ready.\r\n-ERR You're not trusted\r\n+OK Logged in.\r\n",
    );
    assert_eq!(ev, logged_in(b""));
    let without = DOVECOT.0 & !OFFERS_XCLIENT_GREETING;
    assert_eq!(m.offers(), Some(BackendOffers(without)));

    // XCLIENT newly offered: not sent this time (the login went without
    // it), remembered for the next.
    let mut m = early(Pop3BackendAuth::Auto, BackendOffers(without));
    let (_, out) = step(&mut m, b"");
    assert!(out.starts_with("AUTH PLAIN "), "{out}");
    let (ev, _) = step(&mut m, b"+OK [XCLIENT] ready.\r\n+OK Logged in.\r\n");
    assert_eq!(ev, logged_in(b""));
    assert_eq!(m.offers(), Some(DOVECOT));
}

#[test]
fn nothing_goes_early_without_a_remembered_greeting_or_with_stls_or_a_token() {
    let waits = |mut m: Pop3BackendLogin| {
        let (ev, out) = step(&mut m, b"");
        assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, ""));
    };
    // Offers from CAPA only, with no greeting's part: not enough.
    waits(early(
        Pop3BackendAuth::Auto,
        BackendOffers(OFFERS_SASL_PLAIN | OFFERS_PIPELINING),
    ));
    // `early_login = false`.
    waits(
        login(Pop3BackendAuth::Auto, b"pw")
            .with_client_address(client())
            .with_offers(DOVECOT),
    );
    waits(early(Pop3BackendAuth::Auto, DOVECOT).with_starttls());
    let token = bearer_login().with_offers(DOVECOT).with_early_login();
    waits(token);
}
