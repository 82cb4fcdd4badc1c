//! Behaviour of the IMAP back-end login driver, fed scripted server replies.

// Steps that only feed bytes ignore the event they return.
#![allow(unused_must_use)]

use super::*;

fn login(method: ImapBackendAuth, password: &[u8]) -> ImapBackendLogin {
    ImapBackendLogin::new("alice@example.org", Secret::new(password.to_vec()), method)
}

fn step(m: &mut ImapBackendLogin, server: &[u8]) -> (BackendEvent, String) {
    m.receive(server);
    let ev = m.poll();
    (ev, String::from_utf8_lossy(&m.take_output()).into_owned())
}

const DOVECOT_GREETING: &[u8] =
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n";

#[test]
fn auto_uses_authenticate_plain_with_sasl_ir() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    let (ev, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!(ev, BackendEvent::NeedInput);
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    assert_eq!(out, format!("mg1 AUTHENTICATE PLAIN {b64}\r\n"));
    let (ev, _) = step(
        &mut m,
        b"mg1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n* 3 EXISTS\r\n",
    );
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some("IMAP4rev1 IDLE MOVE".into()),
                untagged: vec![],
                compression: Default::default(),
            },
            leftover: b"* 3 EXISTS\r\n".to_vec(),
        })
    );
}

#[test]
fn plain_without_sasl_ir_waits_for_continuation() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    let (_, out) = step(&mut m, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
    assert_eq!(out, "mg1 AUTHENTICATE PLAIN\r\n");
    let (_, out) = step(&mut m, b"+ \r\n");
    assert_eq!(
        out,
        format!("{}\r\n", auth::encode_base64(b"\0alice@example.org\0pw"))
    );
}

#[test]
fn greeting_without_capability_asks_for_it() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    let (_, out) = step(&mut m, b"* OK ready\r\n");
    assert_eq!(out, "mg0 CAPABILITY\r\n");
    let (_, out) = step(&mut m, b"* CAPABILITY IMAP4rev1\r\nmg0 OK done\r\n");
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" \"pw\"\r\n");
}

#[test]
fn login_quotes_and_escapes() {
    let mut m = login(ImapBackendAuth::Login, b"a\"b\\c d");
    let (_, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" \"a\\\"b\\\\c d\"\r\n");
}

#[test]
fn login_uses_literal_plus_for_eight_bit_password() {
    let mut m = login(ImapBackendAuth::Login, "pässword".as_bytes());
    let (_, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" {9+}\r\npässword\r\n");
}

#[test]
fn login_chunks_are_never_regrown_even_at_the_worst_case() {
    // A buffer that grows leaves the bytes it held in the freed one,
    // unwiped: each chunk must be allocated once at a size it cannot
    // outgrow (the machine asserts it in test builds). The worst cases: a
    // quoted value at its longest with every byte escaped, and literals.
    let quoted = vec![b'"'; MAX_QUOTED_VALUE];
    let literal = vec![0xe4; MAX_QUOTED_VALUE * 4];
    for password in [&quoted[..], &literal[..], b"p\r\nw", b"\\"] {
        for greeting in [DOVECOT_GREETING, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"] {
            let mut m = login(ImapBackendAuth::Login, password);
            let chunks = {
                step(&mut m, greeting);
                m.login_chunks().expect("no NUL")
            };
            let sent: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert!(
                sent.starts_with(b"mg1 LOGIN "),
                "{}",
                String::from_utf8_lossy(&sent)
            );
            assert!(
                sent.windows(password.len()).any(|w| w == password) || password == &quoted[..],
                "the password is sent as it is (literal) or escaped (quoted)"
            );
        }
    }
}

#[test]
fn login_uses_sync_literal_without_literal_plus() {
    let mut m = login(ImapBackendAuth::Login, b"p\r\nw");
    let (_, out) = step(&mut m, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" {4}\r\n");
    let (ev, out) = step(&mut m, b"+ go ahead\r\n");
    assert_eq!(ev, BackendEvent::NeedInput);
    assert_eq!(out, "p\r\nw\r\n");
    let (ev, _) = step(&mut m, b"mg1 OK Logged in\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
}

#[test]
fn wrong_password_is_rejected() {
    let mut m = login(ImapBackendAuth::Auto, b"bad");
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(
        &mut m,
        b"mg1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    );
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
}

#[test]
fn temporary_codes_are_unavailable_not_auth_failures() {
    for code in ["UNAVAILABLE", "SERVERBUG", "LIMIT"] {
        let mut m = login(ImapBackendAuth::Auto, b"pw");
        step(&mut m, DOVECOT_GREETING);
        let (ev, _) = step(&mut m, format!("mg1 NO [{code}] try later\r\n").as_bytes());
        assert!(
            matches!(ev, BackendEvent::Done(BackendOutcome::Unavailable(_))),
            "{code}"
        );
    }
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(&mut m, b"mg1 NO [INUSE] locked\r\n");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::InUse))
    );
}

#[test]
fn bad_greetings_are_unavailable() {
    for greeting in [
        &b"* BYE too busy\r\n"[..],
        b"* PREAUTH hi\r\n",
        b"garbage\r\n",
    ] {
        let mut m = login(ImapBackendAuth::Auto, b"pw");
        let (ev, _) = step(&mut m, greeting);
        assert!(matches!(
            ev,
            BackendEvent::Done(BackendOutcome::Unavailable(_))
        ));
    }
}

#[test]
fn post_login_untagged_capability_is_used() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(
        &mut m,
        b"* CAPABILITY IMAP4rev1 X\r\n* OK [ALERT] hi\r\nmg1 OK done\r\n",
    );
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some("IMAP4rev1 X".into()),
                untagged: b"* OK [ALERT] hi\r\n".to_vec(),
                compression: Default::default(),
            },
            leftover: vec![],
        })
    );
}

#[test]
fn logindisabled_without_plain_is_unavailable() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    let (ev, _) = step(&mut m, b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
}

#[test]
fn endless_backend_line_is_bounded() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    let (ev, _) = step(&mut m, &vec![b'x'; MAX_BACKEND_LINE + 10]);
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
}

#[test]
fn replies_split_across_reads_are_reassembled() {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    for chunk in DOVECOT_GREETING.chunks(7) {
        m.receive(chunk);
        m.poll();
    }
    assert!(String::from_utf8(m.take_output())
        .unwrap()
        .starts_with("mg1 AUTHENTICATE PLAIN "));
}

#[test]
fn client_address_goes_in_an_id_before_the_login_and_its_reply_is_skipped() {
    let client = ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "[2001:db8::1]:143".parse().unwrap(),
    };
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_client_address(client);
    let (_, out) = step(&mut m, DOVECOT_GREETING);
    assert!(
        out.starts_with(
            "mgid ID (\"x-originating-ip\" \"192.0.2.7\" \"x-originating-port\" \"40000\" \"x-connected-ip\" \"2001:db8::1\" \"x-connected-port\" \"143\")\r\nmg1 AUTHENTICATE PLAIN "
        ),
        "{out}"
    );
    let (ev, _) = step(
        &mut m,
        b"* ID (\"name\" \"Dovecot\")\r\nmgid OK ID completed.\r\nmg1 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
    );
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some("IMAP4rev1".into()),
                untagged: vec![],
                compression: Default::default(),
            },
            leftover: vec![],
        })
    );
}

#[test]
fn no_id_without_the_capability() {
    let client = ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "198.51.100.1:143".parse().unwrap(),
    };
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_client_address(client);
    let (_, out) = step(
        &mut m,
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n",
    );
    assert!(out.starts_with("mg1 AUTHENTICATE PLAIN "), "{out}");
}

#[test]
fn starttls_upgrades_then_asks_capabilities_again() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_starttls();
    let (ev, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!(
        (ev, out.as_str()),
        (BackendEvent::NeedInput, "mgtls STARTTLS\r\n")
    );
    let (ev, _) = step(&mut m, b"mgtls OK Begin TLS negotiation now.\r\n");
    assert_eq!(ev, BackendEvent::StartTls);
    m.tls_started();
    let (ev, out) = step(&mut m, b"");
    assert_eq!(
        (ev, out.as_str()),
        (BackendEvent::NeedInput, "mg0 CAPABILITY\r\n")
    );
    let (_, out) = step(
        &mut m,
        b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\nmg0 OK done\r\n",
    );
    assert!(out.starts_with("mg1 AUTHENTICATE PLAIN "), "{out}");
}

#[test]
fn starttls_refused_or_with_injected_bytes_is_unavailable() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_starttls();
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(&mut m, b"mgtls BAD no TLS here\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_starttls();
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(&mut m, b"mgtls OK go\r\n* OK injected\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(_))
    ));
}

#[test]
fn untagged_lines_during_login_are_bounded_in_bytes() {
    // One line of exactly `len` bytes with its CRLF.
    let line = |len: usize| format!("* OK {}\r\n", "x".repeat(len - 7));
    let at = |total: usize| {
        let mut m = login(ImapBackendAuth::Auto, b"pw");
        step(&mut m, DOVECOT_GREETING);
        let mut lines = String::new();
        let chunk = 1000;
        for _ in 0..total / chunk {
            lines.push_str(&line(chunk));
        }
        if total % chunk > 0 {
            lines.push_str(&line(total % chunk));
        }
        lines.push_str("mg1 OK done\r\n");
        step(&mut m, lines.as_bytes()).0
    };
    assert!(matches!(
        at(MAX_UNTAGGED - 8),
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
    assert!(matches!(
        at(MAX_UNTAGGED),
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
    assert_eq!(
        at(MAX_UNTAGGED + 8),
        BackendEvent::Done(BackendOutcome::Unavailable(BackendFault::TooManyUntagged))
    );
}

#[test]
fn debug_never_shows_the_password() {
    let mut m = login(ImapBackendAuth::Login, b"hunter2");
    step(&mut m, DOVECOT_GREETING);
    assert!(!format!("{m:?}").contains("hunter2"));
}

fn bearer_login(mechanism: crate::auth::oauth::BearerMechanism) -> ImapBackendLogin {
    ImapBackendLogin::new(
        "ann@example.org",
        Secret::new(b"t0k".to_vec()),
        ImapBackendAuth::Login,
    )
    .with_bearer(crate::auth::oauth::Bearer {
        mechanism,
        host: Some("mail.example.org".into()),
        port: Some(993),
    })
}

const OAUTH_GREETING: &[u8] =
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN AUTH=OAUTHBEARER AUTH=XOAUTH2] Dovecot ready.\r\n";

#[test]
fn a_bearer_token_is_replayed_with_its_mechanism_whatever_the_method() {
    use crate::auth::oauth::BearerMechanism;
    let mut m = bearer_login(BearerMechanism::OAuthBearer);
    let (_, out) = step(&mut m, OAUTH_GREETING);
    let message = auth::encode_base64(
        b"n,a=ann@example.org,\x01host=mail.example.org\x01port=993\x01auth=Bearer t0k\x01\x01",
    );
    assert_eq!(out, format!("mg1 AUTHENTICATE OAUTHBEARER {message}\r\n"));
    let (ev, _) = step(&mut m, b"mg1 OK Logged in\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
    let mut m = bearer_login(BearerMechanism::XOAuth2);
    let (_, out) = step(&mut m, OAUTH_GREETING);
    let message = auth::encode_base64(b"user=ann@example.org\x01auth=Bearer t0k\x01\x01");
    assert_eq!(out, format!("mg1 AUTHENTICATE XOAUTH2 {message}\r\n"));
}

#[test]
fn a_refused_token_s_error_challenge_is_acknowledged_and_the_no_is_a_failed_login() {
    use crate::auth::oauth::BearerMechanism;
    for (mechanism, ack) in [
        (BearerMechanism::OAuthBearer, "AQ==\r\n"),
        (BearerMechanism::XOAuth2, "\r\n"),
    ] {
        let mut m = bearer_login(mechanism);
        step(&mut m, OAUTH_GREETING);
        let (ev, out) = step(&mut m, b"+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
        assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, ack));
        let (ev, _) = step(
            &mut m,
            b"mg1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        );
        assert_eq!(
            ev,
            BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
        );
    }
    // A second challenge is not part of the exchange.
    let mut m = bearer_login(BearerMechanism::OAuthBearer);
    step(&mut m, OAUTH_GREETING);
    step(&mut m, b"+ e30=\r\n");
    let (ev, _) = step(&mut m, b"+ e30=\r\n");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(
            BackendFault::UnexpectedContinuation
        ))
    );
}

#[test]
fn a_back_end_without_the_mechanism_is_a_fault_naming_the_fix() {
    let mut m = bearer_login(crate::auth::oauth::BearerMechanism::OAuthBearer);
    let (ev, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!(out, "");
    match ev {
        BackendEvent::Done(BackendOutcome::Unavailable(fault)) => {
            let text = fault.to_string();
            assert!(
                text.contains("OAUTHBEARER") && text.contains("auth_mechanisms"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn compress_deflate_follows_the_login_when_offered_and_hands_over_the_deflate_bytes() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_compression();
    step(&mut m, DOVECOT_GREETING);
    let (ev, out) = step(
        &mut m,
        b"mg1 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE MOVE] Logged in\r\n* 2 EXISTS\r\n",
    );
    assert_eq!(
        (ev, out.as_str()),
        (BackendEvent::NeedInput, "mgz COMPRESS DEFLATE\r\n")
    );
    let (ev, _) = step(&mut m, b"mgz OK Begin compression.\r\n\x00\x01\x02");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some("IMAP4rev1 IDLE MOVE".into()),
                untagged: b"* 2 EXISTS\r\n".to_vec(),
                compression: Compression::Deflate,
            },
            leftover: b"\x00\x01\x02".to_vec(),
        })
    );
}

#[test]
fn compression_not_offered_or_refused_leaves_the_leg_plain() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_compression();
    step(&mut m, DOVECOT_GREETING);
    let (ev, out) = step(&mut m, b"mg1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
    assert_eq!(out, "");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { ref greeting, .. })
            if greeting.compression == Compression::NotOffered
    ));
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_compression();
    step(&mut m, DOVECOT_GREETING);
    step(
        &mut m,
        b"mg1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] Logged in\r\n",
    );
    let (ev, _) = step(
        &mut m,
        b"mgz NO [COMPRESSIONACTIVE] Already.\r\n* 1 EXISTS\r\n",
    );
    match ev {
        BackendEvent::Done(BackendOutcome::LoggedIn { greeting, leftover }) => {
            assert_eq!(greeting.compression, Compression::Refused);
            assert_eq!(
                greeting.capability.as_deref(),
                Some("IMAP4rev1 COMPRESS=DEFLATE")
            );
            assert_eq!(leftover, b"* 1 EXISTS\r\n", "plain bytes for the client");
        }
        other => panic!("{other:?}"),
    }
    // Without compression asked for, nothing changes.
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    step(&mut m, DOVECOT_GREETING);
    let (ev, _) = step(
        &mut m,
        b"mg1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] Logged in\r\n",
    );
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { ref greeting, .. })
            if greeting.compression == Compression::Off
    ));
}

/// What Dovecot's greeting (`DOVECOT_GREETING`) offers a login.
fn dovecot_offers() -> BackendOffers {
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    step(&mut m, DOVECOT_GREETING);
    m.offers().expect("learned from the greeting")
}

fn early_client() -> ClientAddress {
    ClientAddress {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "192.0.2.1:143".parse().unwrap(),
    }
}

#[test]
fn a_greeting_hands_out_what_it_offers_a_login() {
    let offers = dovecot_offers();
    assert_eq!(
        capabilities_of(offers),
        "ID AUTH=PLAIN SASL-IR LITERAL+",
        "{offers:?}"
    );
    assert_ne!(offers.0 & OFFERS_IN_GREETING, 0);
    // Case and order do not matter; what a login does not use is left out.
    assert_eq!(
        offers_of(Some("imap4rev1 literal+ idle id")),
        offers_of(Some("ID LITERAL+"))
    );
    // A greeting without a list offers nothing to go early on.
    let mut m = login(ImapBackendAuth::Auto, b"pw");
    step(&mut m, b"* OK ready\r\n");
    assert_eq!(m.offers(), Some(BackendOffers(0)));
    // Every capability survives the round trip through the bits.
    let all = LOGIN_CAPABILITIES.join(" ");
    assert_eq!(capabilities_of(offers_of(Some(&all))), all);
}

#[test]
fn with_remembered_offers_the_login_goes_before_the_greeting() {
    let mut m = login(ImapBackendAuth::Auto, b"pw")
        .with_client_address(early_client())
        .with_offers(dovecot_offers());
    // Nothing received yet: ID and the login are already out.
    let (ev, out) = step(&mut m, b"");
    assert_eq!(ev, BackendEvent::NeedInput);
    let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
    assert!(
        out.starts_with("mgid ID (\"x-originating-ip\" \"192.0.2.7\""),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(")\r\nmg1 AUTHENTICATE PLAIN {b64}\r\n")),
        "{out}"
    );
    // The greeting alone: read, nothing more to send.
    let (ev, out) = step(&mut m, DOVECOT_GREETING);
    assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, ""));
    let (ev, out) = step(
        &mut m,
        b"* ID NIL\r\nmgid OK ID completed.\r\nmg1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
    );
    assert_eq!(out, "");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting {
                capability: Some("IMAP4rev1 IDLE".into()),
                untagged: vec![],
                compression: Default::default(),
            },
            leftover: vec![],
        })
    );
    assert_eq!(m.offers(), Some(dovecot_offers()));
}

#[test]
fn an_early_refusal_on_what_the_greeting_offers_stands() {
    let mut m = login(ImapBackendAuth::Auto, b"bad").with_offers(dovecot_offers());
    let (_, out) = step(&mut m, b"");
    assert!(out.starts_with("mg1 AUTHENTICATE PLAIN "), "{out}");
    let (ev, out) = step(
        &mut m,
        &[
            DOVECOT_GREETING,
            b"mg1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ]
        .concat(),
    );
    assert_eq!(out, "", "not tried again");
    assert_eq!(
        ev,
        BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    );
}

#[test]
fn an_early_login_refused_on_stale_offers_is_sent_again_as_the_greeting_says() {
    let mut m = login(ImapBackendAuth::Auto, b"pw")
        .with_client_address(early_client())
        .with_offers(dovecot_offers());
    let (_, early) = step(&mut m, b"");
    assert!(early.contains("mg1 AUTHENTICATE PLAIN "), "{early}");
    // The back end no longer offers SASL-IR: the early login is refused,
    // and the refusal is not the answer.
    let (ev, out) = step(
        &mut m,
        b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] ready\r\n* ID NIL\r\nmgid OK ID done\r\nmg1 BAD Unknown command\r\n",
    );
    assert_eq!(ev, BackendEvent::NeedInput);
    assert_eq!(out, "mg1 AUTHENTICATE PLAIN\r\n", "no second ID");
    let (_, out) = step(&mut m, b"+ \r\n");
    assert_eq!(
        out,
        format!("{}\r\n", auth::encode_base64(b"\0alice@example.org\0pw"))
    );
    let (ev, _) = step(&mut m, b"mg1 OK Logged in\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
    // What this greeting offered replaces what was remembered.
    assert_eq!(
        m.offers().map(capabilities_of).as_deref(),
        Some("ID AUTH=PLAIN")
    );
}

#[test]
fn a_refusal_that_judged_the_password_stands_on_stale_offers_too() {
    // The greeting's offers changed (no more LITERAL+), but the back end
    // understood the login and judged the credentials: sending it again
    // would count a second failed attempt against the user there.
    let changed = b"* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=PLAIN] ready\r\n";
    for (code, failure) in [
        ("AUTHENTICATIONFAILED", LoginFailure::AuthFailed),
        ("authorizationfailed", LoginFailure::AuthFailed),
        ("EXPIRED", LoginFailure::AuthFailed),
    ] {
        let mut m = login(ImapBackendAuth::Auto, b"pw").with_offers(dovecot_offers());
        let (_, early) = step(&mut m, b"");
        assert!(early.contains("mg1 AUTHENTICATE PLAIN "), "{early}");
        let refusal = format!("mg1 NO [{code}] Authentication failed.\r\n");
        let (ev, out) = step(&mut m, &[changed, refusal.as_bytes()].concat());
        assert_eq!(out, "", "{code}: not tried again");
        assert_eq!(ev, BackendEvent::Done(BackendOutcome::Rejected(failure)));
    }
    // Any other refusal on stale offers may be the mechanism's: sent again.
    for refusal in [
        &b"mg1 NO [CANNOT] Unsupported mechanism\r\n"[..],
        b"mg1 NO Authentication failed.\r\n",
        b"mg1 BAD Unknown command\r\n",
    ] {
        let mut m = login(ImapBackendAuth::Auto, b"pw").with_offers(dovecot_offers());
        step(&mut m, b"");
        let (ev, out) = step(&mut m, &[changed, refusal].concat());
        assert_eq!(ev, BackendEvent::NeedInput);
        assert!(out.starts_with("mg1 AUTHENTICATE PLAIN "), "{out}");
    }
}

#[test]
fn an_early_login_on_stale_offers_asks_capability_when_the_greeting_lists_none() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_offers(dovecot_offers());
    step(&mut m, b"");
    let (ev, out) = step(&mut m, b"* OK ready\r\nmg1 NO nope\r\n");
    assert_eq!(ev, BackendEvent::NeedInput);
    assert_eq!(out, "mg0 CAPABILITY\r\n");
    let (_, out) = step(&mut m, b"* CAPABILITY IMAP4rev1\r\nmg0 OK done\r\n");
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" \"pw\"\r\n");
    // Stale or not, an OK stands.
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_offers(dovecot_offers());
    step(&mut m, b"");
    let (ev, _) = step(&mut m, b"* OK ready\r\nmg1 OK Logged in\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::LoggedIn { .. })
    ));
}

#[test]
fn an_early_login_meets_a_refusing_greeting_as_before() {
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_offers(dovecot_offers());
    step(&mut m, b"");
    let (ev, _) = step(&mut m, b"* BYE too many connections\r\n");
    assert!(matches!(
        ev,
        BackendEvent::Done(BackendOutcome::Unavailable(
            BackendFault::UnexpectedGreeting(_)
        ))
    ));
}

#[test]
fn no_login_goes_early_when_it_needs_the_greeting_first() {
    let offers = dovecot_offers();
    let literal_offers = offers_of(Some("IMAP4rev1"));
    let cases: Vec<(&str, ImapBackendLogin)> = vec![
        (
            "offers without a greeting's list",
            login(ImapBackendAuth::Auto, b"pw").with_offers(BackendOffers(0)),
        ),
        (
            "STARTTLS first",
            login(ImapBackendAuth::Auto, b"pw")
                .with_starttls()
                .with_offers(offers),
        ),
        (
            "a synchronizing literal waits for +",
            login(ImapBackendAuth::Login, b"p\r\nw").with_offers(literal_offers),
        ),
        (
            "LOGIN disabled",
            login(ImapBackendAuth::Login, b"pw").with_offers(offers_of(Some("LOGINDISABLED"))),
        ),
    ];
    for (why, mut m) in cases {
        let (ev, out) = step(&mut m, b"");
        assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, ""), "{why}");
    }
    // A bearer token's login always waits for the greeting.
    let mut m = login(ImapBackendAuth::Auto, b"token")
        .with_bearer(crate::auth::oauth::Bearer {
            mechanism: crate::auth::oauth::BearerMechanism::OAuthBearer,
            host: None,
            port: None,
        })
        .with_offers(offers_of(Some("AUTH=OAUTHBEARER SASL-IR")));
    let (ev, out) = step(&mut m, b"");
    assert_eq!((ev, out.as_str()), (BackendEvent::NeedInput, ""));
    // Without STARTTLS nor a bearer, a literal with LITERAL+ goes early.
    let mut m = login(ImapBackendAuth::Login, "pässword".as_bytes()).with_offers(offers);
    let (_, out) = step(&mut m, b"");
    assert_eq!(out, "mg1 LOGIN \"alice@example.org\" {9+}\r\npässword\r\n");
}

#[test]
fn the_longest_id_command_fits_its_room() {
    // The longest IPv6 text: eight groups of four digits.
    let full = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]";
    let mut m = login(ImapBackendAuth::Auto, b"pw").with_client_address(ClientAddress {
        peer: format!("{full}:65535").parse().unwrap(),
        local: format!("{full}:65534").parse().unwrap(),
    });
    step(&mut m, DOVECOT_GREETING);
    m.id_sent = false;
    let id = m.id_command(0).expect("ID offered");
    assert!(
        id.contains("\"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\""),
        "{id}"
    );
    assert!(id.len() <= ID_ROOM, "{} > {ID_ROOM}: {id}", id.len());
    assert_eq!(id.capacity(), ID_ROOM, "never regrown");
}
