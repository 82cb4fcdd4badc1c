//! Faults survived, each with real Dovecot next to a misbehaving peer: back
//! ends that hang after their greeting, flood untagged lines during the
//! login, or die in the middle of a FETCH; clients that vanish mid-FETCH; a
//! session that panics; SIGTERM with sessions open. The client at fault gets
//! a clean answer or a clean close, and every other session goes on.

mod support;

use mailgate::check_client::ImapClient;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::stack::*;

/// A one-line-at-a-time IMAP back end played by `script` on each connection.
fn fake_backend(script: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || script(stream));
        }
    });
    addr
}

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake ready\r\n";

/// Reads one line from `stream` (the back end's view of mailgate).
fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

fn greets_then_hangs(mut s: TcpStream) {
    let _ = s.write_all(GREETING);
    std::thread::sleep(Duration::from_secs(30));
}

fn floods_untagged_lines_during_login(mut s: TcpStream) {
    let _ = s.write_all(GREETING);
    let _ = read_line(&mut s);
    let flood = b"* OK still thinking\r\n".repeat(1000);
    while s.write_all(&flood).is_ok() {}
}

/// Logs anyone in, then answers a FETCH with half a literal and dies.
fn dies_mid_fetch(mut s: TcpStream) {
    let _ = s.write_all(GREETING);
    let Some(login) = read_line(&mut s) else {
        return;
    };
    let tag = login.split(' ').next().unwrap_or("x").to_owned();
    let _ = s.write_all(format!("{tag} OK [CAPABILITY IMAP4rev1] in\r\n").as_bytes());
    let Some(_fetch) = read_line(&mut s) else {
        return;
    };
    let _ = s.write_all(b"* 1 FETCH (BODY[] {100000}\r\n");
    let _ = s.write_all(&[b'x'; 1000]);
    // Dropped: the connection ends mid-literal.
}

fn mailgate_with(map: &str, extra: &str) -> support::Mailgate {
    let config = support::mailgate::config(1, 1, "", extra)
        .replace("login_timeout = \"5s\"", "login_timeout = \"1s\"");
    support::Mailgate::start(&config, map)
}

fn dovecot_stack_map(dovecot: &support::Dovecot) -> String {
    format!("*@example.org  127.0.0.1:{}\n", dovecot.imap.port())
}

#[test]
fn back_ends_that_hang_after_greeting_or_flood_untagged_lines_are_temporary_failures() {
    let stack = Stack::start("");
    let hangs = fake_backend(greets_then_hangs);
    let floods = fake_backend(floods_untagged_lines_during_login);
    let map = format!(
        "{}hangs@x.test 127.0.0.1:{}\nfloods@x.test 127.0.0.1:{}\n",
        dovecot_stack_map(&stack.dovecot),
        hangs.port(),
        floods.port()
    );
    let mg = mailgate_with(&map, "");
    let mut ordinary = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(ordinary.login(ALICE, ALICE_PW).unwrap().is_ok());
    for user in ["hangs@x.test", "floods@x.test"] {
        let mut c = ImapClient::connect(mg.addr(0)).unwrap();
        let r = c.login(user, "pw").unwrap();
        assert_eq!(r.status, "NO", "{user}");
        assert!(r.text.starts_with("[UNAVAILABLE]"), "{user}: {}", r.text);
    }
    let log = mg.log();
    assert!(log.contains("login timed out"), "{log}");
    assert!(log.contains("too many untagged lines"), "{log}");
    assert!(
        ordinary.command("SELECT INBOX").unwrap().is_ok(),
        "others unaffected"
    );
}

#[test]
fn a_back_end_dying_mid_fetch_closes_that_client_cleanly_and_no_other() {
    let stack = Stack::start("");
    let dies = fake_backend(dies_mid_fetch);
    let map = format!(
        "{}dies@x.test 127.0.0.1:{}\n",
        dovecot_stack_map(&stack.dovecot),
        dies.port()
    );
    let mg = mailgate_with(&map, "");
    let mut ordinary = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(ordinary.login(ALICE, ALICE_PW).unwrap().is_ok());
    let mut c = TcpStream::connect(mg.addr(0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"a LOGIN dies@x.test pw\r\nb FETCH 1 BODY[]\r\n")
        .unwrap();
    let mut received = Vec::new();
    match c.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("a OK"), "{text}");
    assert!(
        text.ends_with(&"x".repeat(1000)),
        "every byte the back end sent"
    );
    let body = ordinary.fetch_message(1).unwrap();
    assert_eq!(body, alice_messages()[0], "others unaffected");
}

#[test]
fn a_client_vanishing_mid_fetch_ends_its_session_only() {
    let stack = Stack::start("");
    let mut ordinary = ImapClient::connect(stack.imap()).unwrap();
    assert!(ordinary.login(BOB, BOB_PW).unwrap().is_ok());
    for _ in 0..5 {
        let mut c = ImapClient::connect(stack.imap()).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
        let mut raw = c.into_stream();
        raw.write_all(b"v FETCH 3 BODY[]\r\n").unwrap();
        let mut first = [0u8; 4096];
        let _ = raw.read(&mut first).unwrap();
        // Gone with most of the 5 MiB still to come: a reset, not a FIN.
        socket2::SockRef::from(&raw)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(raw);
    }
    let ends = stack.mailgate.wait_for_session_ends("imap", 5);
    assert!(
        ends.iter()
            .all(|l| l.contains(&format!("user=\"{ALICE}\""))),
        "{ends:?}"
    );
    assert!(
        ordinary.command("SELECT INBOX").unwrap().is_ok(),
        "others unaffected"
    );
    let mut again = ImapClient::connect(stack.imap()).unwrap();
    assert!(again.login(ALICE, ALICE_PW).unwrap().is_ok());
}

#[test]
fn a_panicking_session_leaves_its_worker_and_the_others_running() {
    let dovecot_stack = Stack::start_one_worker("");
    let map = dovecot_stack_map(&dovecot_stack.dovecot);
    let config = support::mailgate::config(
        dovecot_stack.dovecot.imap.port(),
        dovecot_stack.dovecot.pop3.port(),
        "",
        "",
    )
    .replace("workers = 2", "workers = 1");
    let mg = support::Mailgate::start_with_env(
        &config,
        &map,
        "debug",
        &[("MAILGATE_TEST_PANIC_USER", "panic@example.org")],
    );
    let mut before = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(before.login(ALICE, ALICE_PW).unwrap().is_ok());
    let mut doomed = ImapClient::connect(mg.addr(0)).unwrap();
    let answer = doomed.login("panic@example.org", "pw");
    assert!(
        answer.is_err(),
        "closed, no answer: {answer:?}\n{}",
        mg.log()
    );
    assert!(mg.log().contains("forced by MAILGATE_TEST_PANIC_USER"));
    assert!(
        before.command("SELECT INBOX").unwrap().is_ok(),
        "same worker, still relaying"
    );
    let mut after = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(
        after.login(BOB, BOB_PW).unwrap().is_ok(),
        "new sessions still served"
    );
}

#[test]
fn sigterm_says_goodbye_before_login_after_a_last_call_and_to_relaying_sessions_at_the_end() {
    let mut stack = Stack::start_one_worker("");
    let mut relaying = ImapClient::connect(stack.imap()).unwrap();
    assert!(relaying.login(ALICE, ALICE_PW).unwrap().is_ok());
    let mut waiting = TcpStream::connect(stack.imap()).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut greeting = [0u8; 512];
    let _ = waiting.read(&mut greeting).unwrap();
    stack.mailgate.process().signal(libc::SIGTERM);
    let mut goodbye = String::new();
    let _ = waiting.read_to_string(&mut goodbye);
    assert_eq!(goodbye, "* BYE Server shutting down.\r\n");
    // The relaying session goes on during the grace period...
    assert!(relaying.command("SELECT INBOX").unwrap().is_ok());
    // ...and hears goodbye when it ends.
    let mut raw = relaying.into_stream();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = String::new();
    let _ = raw.read_to_string(&mut rest);
    assert_eq!(rest, "* BYE Server shutting down.\r\n");
    let status = stack
        .mailgate
        .wait_exit(Duration::from_secs(20))
        .expect("exits after the grace period");
    assert!(status.success(), "{status}");
}
