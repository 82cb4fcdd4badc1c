//! IMAP logins through mailgate to a real Dovecot: every way a client can
//! present credentials, failures, and commands pipelined after the login.

mod support;

use mailgate::auth::encode_base64;
use mailgate::check_client::{quote, ImapClient};
use support::stack::*;

#[test]
fn login_with_atom_quoted_literal_and_literal_plus() {
    let stack = Stack::start("");
    // Atom (alice's name and password are atoms).
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(
        !c.greeting.contains("Dovecot"),
        "back-end banner leaked: {}",
        c.greeting
    );
    let r = c.command(&format!("LOGIN {ALICE} {ALICE_PW}")).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(
        r.text.starts_with("[CAPABILITY IMAP4rev1"),
        "back-end capability passed on: {}",
        r.text
    );

    // Quoted, with escapes and UTF-8 (bob).
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(BOB, BOB_PW).unwrap().is_ok());

    // Synchronizing literals: wait for "+" before each.
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(format!("a LOGIN {{{}}}\r\n", BOB.len()).as_bytes())
        .unwrap();
    assert!(c.read_raw_line().unwrap().starts_with('+'));
    c.send_raw(format!("{BOB} {{{}}}\r\n", BOB_PW.len()).as_bytes())
        .unwrap();
    assert!(c.read_raw_line().unwrap().starts_with('+'));
    c.send_raw(format!("{BOB_PW}\r\n").as_bytes()).unwrap();
    assert!(c.read_response("a").unwrap().is_ok());

    // LITERAL+: everything at once.
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(
        format!(
            "a LOGIN {{{}+}}\r\n{BOB} {{{}+}}\r\n{BOB_PW}\r\n",
            BOB.len(),
            BOB_PW.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response("a").unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(
        r.lines.is_empty(),
        "no continuation expected: {:?}",
        r.lines
    );
}

#[test]
fn authenticate_plain_with_and_without_sasl_ir_and_authenticate_login() {
    let stack = Stack::start("");
    let plain = encode_base64(format!("\0{BOB}\0{BOB_PW}").as_bytes());

    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c
        .command(&format!("AUTHENTICATE PLAIN {plain}"))
        .unwrap()
        .is_ok());

    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(b"a AUTHENTICATE PLAIN\r\n").unwrap();
    assert_eq!(c.read_raw_line().unwrap(), "+ \r\n");
    c.send_raw(format!("{plain}\r\n").as_bytes()).unwrap();
    assert!(c.read_response("a").unwrap().is_ok());

    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(b"a AUTHENTICATE LOGIN\r\n").unwrap();
    assert!(c.read_raw_line().unwrap().starts_with("+ "));
    c.send_raw(format!("{}\r\n", encode_base64(ALICE.as_bytes())).as_bytes())
        .unwrap();
    assert!(c.read_raw_line().unwrap().starts_with("+ "));
    c.send_raw(format!("{}\r\n", encode_base64(ALICE_PW.as_bytes())).as_bytes())
        .unwrap();
    assert!(c.read_response("a").unwrap().is_ok());
}

#[test]
fn wrong_password_then_right_one_on_one_connection() {
    let stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let r = c.login(ALICE, "wrong").unwrap();
    assert_eq!(
        (r.status.as_str(), r.text.as_str()),
        ("NO", "[AUTHENTICATIONFAILED] Authentication failed.")
    );
    let r = c.login(ALICE, ALICE_PW).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
}

#[test]
fn unknown_user_gets_the_same_answer_as_a_wrong_password() {
    let stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let unknown = c.login("nobody@unknown.test", "x").unwrap();
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let wrong = c.login(ALICE, "x").unwrap();
    assert_eq!((unknown.status, unknown.text), (wrong.status, wrong.text));
}

#[test]
fn back_end_down_is_a_temporary_failure_and_others_are_unaffected() {
    let stack = Stack::start("");
    let mut ghost = ImapClient::connect(stack.imap()).unwrap();
    let r = ghost.login(GHOST, "x").unwrap();
    assert_eq!(r.status, "NO");
    assert!(r.text.starts_with("[UNAVAILABLE]"), "{}", r.text);
    // The connection stays usable and other users log in meanwhile.
    let mut alice = ImapClient::connect(stack.imap()).unwrap();
    assert!(alice.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(ghost.command("NOOP").unwrap().is_ok());
}

#[test]
fn commands_pipelined_after_login_are_all_answered() {
    let stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(
        format!(
            "p1 LOGIN {} {}\r\np2 SELECT INBOX\r\np3 FETCH 1 BODY[]\r\np4 NOOP\r\np5 LOGOUT\r\n",
            quote(ALICE),
            quote(ALICE_PW)
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(c.read_response("p1").unwrap().is_ok());
    assert!(c.read_response("p2").unwrap().is_ok());
    let fetch = c.read_response("p3").unwrap();
    assert!(fetch.is_ok());
    assert_eq!(fetch.literals, vec![alice_messages()[0].clone()]);
    assert!(c.read_response("p4").unwrap().is_ok());
    assert!(c.read_response("p5").unwrap().is_ok());
}

#[test]
fn pre_login_commands_are_answered_by_the_proxy() {
    let stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let caps = c.command("CAPABILITY").unwrap();
    assert!(caps.is_ok());
    assert!(caps.lines[0].contains("AUTH=PLAIN") && !caps.lines[0].contains("STARTTLS"));
    assert!(c.command("NOOP").unwrap().is_ok());
    assert!(c.command("ID (\"name\" \"test\")").unwrap().is_ok());
    assert_eq!(c.command("SELECT INBOX").unwrap().status, "BAD");
    let bye = c.command("LOGOUT").unwrap();
    assert!(bye.is_ok() && bye.lines[0].starts_with("* BYE"));
}

#[test]
fn login_mode_sends_literals_for_eight_bit_passwords() {
    let stack = Stack::start_with("imap_auth = \"login\"", "");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(BOB, BOB_PW).unwrap().is_ok());
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert_eq!(c.login(BOB, "wrong").unwrap().status, "NO");
}

#[test]
fn a_workers_next_imap_login_goes_before_the_greeting() {
    assert!(support::have("curl"));
    let rig = BehindARecorder::start(false);
    let (dovecot, recorder) = (&rig.dovecot, &rig.recorder);
    let curl_from = |source: &str, mailgate: &support::Mailgate| {
        let url = format!("imap://{}/INBOX;MAILINDEX=1", mailgate.addr(0));
        // An empty INBOX: curl reports that the message is not there,
        // after the login.
        let (ok, said) = curl_as_alice_from(source, &url);
        assert!(ok || said.contains("(78)"), "{said}");
    };
    let mailgate = rig.mailgate("");

    // The first login to the back end waits for its greeting and learns
    // what it offers.
    curl_from("127.0.0.2", &mailgate);
    let first = recorder.sent(0);
    assert!(!recorder.spoke_first(0), "{first}");
    assert!(first.contains("AUTHENTICATE PLAIN "), "{first}");
    // The next one is sent at once: ID (still ahead of the login, so
    // Dovecot logs the real client) and the login before the greeting.
    curl_from("127.0.0.3", &mailgate);
    let second = recorder.sent(1);
    assert!(recorder.spoke_first(1), "{second}");
    assert!(
        second.starts_with("mgid ID (\"x-originating-ip\" \"127.0.0.3\""),
        "{second}"
    );
    let logins = dovecot.login_lines("imap", 2);
    assert!(
        logins.len() == 2 && logins[1].contains("rip=127.0.0.3"),
        "{logins:?}"
    );
    // A wrong password sent early is refused once, not tried again.
    let mut c = ImapClient::connect(mailgate.addr(0)).unwrap();
    let reply = c.login(ALICE, "wrong").unwrap();
    assert_eq!(reply.status, "NO", "{reply:?}");
    drop(c);
    let third = recorder.sent(2);
    assert!(recorder.spoke_first(2), "{third}");
    assert_eq!(third.matches("AUTHENTICATE").count(), 1, "{third}");
    drop(mailgate);

    // `early_login = false`: every login waits for the greeting.
    let mailgate = rig.mailgate("early_login = false\n");
    curl_from("127.0.0.2", &mailgate);
    curl_from("127.0.0.2", &mailgate);
    for n in [3, 4] {
        let sent = recorder.sent(n);
        assert!(!recorder.spoke_first(n), "{n}: {sent}");
    }
    assert_eq!(dovecot.login_lines("imap", 4).len(), 4);
}
