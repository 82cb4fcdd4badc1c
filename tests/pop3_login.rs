//! POP3 logins through mailgate to a real Dovecot.

mod support;

use mailgate::auth::encode_base64;
use mailgate::check_client::Pop3Client;
use support::recorder::Recorder;
use support::stack::*;

#[test]
fn user_pass_then_retr() {
    let stack = Stack::start("");
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    assert!(!c.greeting.contains("Dovecot"), "{}", c.greeting);
    assert_eq!(c.login(BOB, BOB_PW).unwrap(), "+OK Logged in.");
    assert!(c.command("STAT").unwrap().starts_with("+OK 1 "));
    assert_eq!(
        c.retrieve(1).unwrap(),
        mailgate::simulated_backend::message(7, 900)
    );
    assert!(c.command("QUIT").unwrap().starts_with("+OK"));
}

#[test]
fn auth_plain_with_initial_response_and_with_continuation() {
    let stack = Stack::start("");
    let plain = encode_base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes());
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    assert_eq!(
        c.command(&format!("AUTH PLAIN {plain}")).unwrap(),
        "+OK Logged in."
    );

    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    assert_eq!(c.command("AUTH PLAIN").unwrap(), "+");
    assert_eq!(c.command(&plain).unwrap(), "+OK Logged in.");
    assert!(c.command("STAT").unwrap().starts_with("+OK 3 "));
}

#[test]
fn wrong_password_then_right_one_and_unknown_user() {
    let stack = Stack::start("");
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    assert_eq!(
        c.login(ALICE, "wrong").unwrap(),
        "-ERR [AUTH] Authentication failed."
    );
    assert_eq!(
        c.login("nobody@unknown.test", "x").unwrap(),
        "-ERR [AUTH] Authentication failed."
    );
    assert_eq!(c.login(ALICE, ALICE_PW).unwrap(), "+OK Logged in.");
}

#[test]
fn back_end_down_is_a_temporary_failure() {
    let stack = Stack::start("");
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    assert_eq!(
        c.login(GHOST, "x").unwrap(),
        "-ERR [SYS/TEMP] Temporary failure, try again later."
    );
    assert_eq!(c.login(ALICE, ALICE_PW).unwrap(), "+OK Logged in.");
}

#[test]
fn both_back_end_login_methods_work_with_dovecot() {
    for method in ["user", "plain", "auto"] {
        let stack = Stack::start_with(&format!("pop3_auth = \"{method}\""), "");
        let mut c = Pop3Client::connect(stack.pop3()).unwrap();
        assert_eq!(c.login(BOB, BOB_PW).unwrap(), "+OK Logged in.", "{method}");
        let mut c = Pop3Client::connect(stack.pop3()).unwrap();
        assert_eq!(
            c.login(BOB, "bad").unwrap(),
            "-ERR [AUTH] Authentication failed.",
            "{method}"
        );
    }
}

#[test]
fn commands_pipelined_after_pass_are_answered() {
    let stack = Stack::start("");
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    c.send_raw(format!("USER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\nRETR 1\r\nQUIT\r\n").as_bytes())
        .unwrap();
    assert_eq!(c.read_status().unwrap(), "+OK");
    assert_eq!(c.read_status().unwrap(), "+OK Logged in.");
    assert!(c.read_status().unwrap().starts_with("+OK 3 "));
    assert!(c.read_status().unwrap().starts_with("+OK"));
    assert_eq!(c.read_multiline().unwrap(), alice_messages()[0]);
    assert!(c.read_status().unwrap().starts_with("+OK"));
}

#[test]
fn apop_is_refused_clearly() {
    let stack = Stack::start("");
    let mut c = Pop3Client::connect(stack.pop3()).unwrap();
    let reply = c
        .command(&format!("APOP {ALICE} 0123456789abcdef0123456789abcdef"))
        .unwrap();
    assert!(reply.starts_with("-ERR APOP is not supported"), "{reply}");
}

#[test]
fn a_workers_next_login_to_a_back_end_skips_capa_and_a_refusal_asks_again() {
    let dovecot = support::Dovecot::start_with(
        &[support::TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages: vec![],
        }],
        "",
    );
    let recorder = Recorder::start(dovecot.pop3.port());
    // One worker: one memory, every login after the first meets it.
    let config = support::mailgate::config(dovecot.imap.port(), recorder.port, "", "")
        .replace("workers = 2", "workers = 1");
    let mg = support::Mailgate::start(&config, "*@example.org 127.0.0.1\n");
    let login = |password: &str| {
        let mut c = Pop3Client::connect(mg.addr(1)).unwrap();
        let answer = c.login(ALICE, password).unwrap();
        let _ = c.command("QUIT");
        answer
    };
    let plain = format!(
        "AUTH PLAIN {}",
        encode_base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes())
    );

    // The first login asks CAPA; Dovecot lists SASL PLAIN.
    assert_eq!(login(ALICE_PW), "+OK Logged in.");
    let first = recorder.sent(0);
    assert!(first.starts_with("CAPA\r\n"), "{first:?}");
    assert!(first.contains(&plain), "{first:?}");
    // The next one goes straight to AUTH PLAIN.
    assert_eq!(login(ALICE_PW), "+OK Logged in.");
    let second = recorder.sent(1);
    assert!(!second.contains("CAPA"), "{second:?}");
    assert!(second.contains(&plain), "{second:?}");
    // A refusal is checked against a fresh CAPA (PLAIN is still there: the
    // refusal stands, and the password is not tried another way).
    assert_eq!(login("wrong"), "-ERR [AUTH] Authentication failed.");
    let third = recorder.sent(2);
    let capa = third.find("CAPA\r\n").expect("asked again");
    assert!(third.find("AUTH PLAIN").unwrap() < capa, "{third:?}");
    assert!(
        !third.contains("USER ") && !third.contains("PASS "),
        "{third:?}"
    );
    // And the memory still holds.
    assert_eq!(login(ALICE_PW), "+OK Logged in.");
    assert!(!recorder.sent(3).contains("CAPA"));
}

#[test]
fn a_workers_next_pop3_login_goes_before_the_greeting() {
    assert!(support::have("curl"));
    // Trusted: Dovecot offers XCLIENT in its greeting (`+OK [XCLIENT]`).
    let rig = BehindARecorder::start(true);
    let (dovecot, recorder) = (&rig.dovecot, &rig.recorder);
    let curl_from = |source: &str, mailgate: &support::Mailgate| {
        let (ok, said) = curl_as_alice_from(source, &format!("pop3://{}/", mailgate.addr(1)));
        assert!(ok, "{said}");
    };
    let mailgate = rig.mailgate("");

    // The first login waits for the greeting and asks CAPA.
    curl_from("127.0.0.2", &mailgate);
    let first = recorder.sent(0);
    assert!(!recorder.spoke_first(0), "{first:?}");
    assert!(first.starts_with("CAPA\r\n"), "{first:?}");
    // The next one goes at once: XCLIENT (Dovecot logs the real client)
    // and AUTH PLAIN, before the greeting, in one write.
    curl_from("127.0.0.3", &mailgate);
    let second = recorder.sent(1);
    assert!(recorder.spoke_first(1), "{second:?}");
    assert!(
        second.starts_with("XCLIENT ADDR=127.0.0.3 PORT=") && second.contains("\r\nAUTH PLAIN "),
        "{second:?}"
    );
    let seen = dovecot.login_lines("pop3", 2);
    assert!(
        seen.len() == 2 && seen[1].contains("rip=127.0.0.3"),
        "{seen:?}"
    );
    // A wrong password sent early is refused once; CAPA confirms PLAIN,
    // and the password is not tried another way.
    let mut c = Pop3Client::connect(mailgate.addr(1)).unwrap();
    assert_eq!(
        c.login(ALICE, "wrong").unwrap(),
        "-ERR [AUTH] Authentication failed."
    );
    drop(c);
    let third = recorder.sent(2);
    assert!(recorder.spoke_first(2), "{third:?}");
    assert_eq!(third.matches("AUTH PLAIN").count(), 1, "{third:?}");
    assert!(!third.contains("USER "), "{third:?}");
    drop(mailgate);

    // `early_login = false`: every login waits for the greeting (and
    // still skips CAPA on what it remembers).
    let mailgate = rig.mailgate("early_login = false\n");
    curl_from("127.0.0.2", &mailgate);
    curl_from("127.0.0.2", &mailgate);
    for n in [3, 4] {
        let sent = recorder.sent(n);
        assert!(!recorder.spoke_first(n), "{n}: {sent:?}");
    }
    assert!(!recorder.sent(4).contains("CAPA"), "{:?}", recorder.sent(4));
    assert_eq!(dovecot.login_lines("pop3", 4).len(), 4);
}
