//! Real third-party clients through mailgate to a real Dovecot: curl's IMAP
//! and POP3 support, Python's imaplib and poplib.

mod support;

use std::process::Command;
use support::run_client;
use support::stack::*;

/// Fetches every message of alice with curl (`url(n)` for message n) and
/// compares each with what Dovecot stores.
fn curl_fetches_all_byte_exact(url: impl Fn(usize) -> String) {
    for (i, expected) in alice_messages().iter().enumerate() {
        let body = run_client(Command::new("curl").args([
            "-sS",
            "--max-time",
            "60",
            &url(i + 1),
            "-u",
            &format!("{ALICE}:{ALICE_PW}"),
        ]));
        assert!(
            body == *expected,
            "message {} differs ({} bytes)",
            i + 1,
            body.len()
        );
    }
}

#[test]
fn curl_imap_fetches_messages_byte_exact() {
    let stack = Stack::start("");
    curl_fetches_all_byte_exact(|n| format!("imap://{}/INBOX;MAILINDEX={n}", stack.imap()));
    // A wrong password makes curl fail with its login-denied code (67).
    let status = Command::new("curl")
        .args([
            "-sS",
            &format!("imap://{}/INBOX;MAILINDEX=1", stack.imap()),
            "-u",
            &format!("{ALICE}:nope"),
        ])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(67));
}

#[test]
fn curl_pop3_retrieves_messages_byte_exact() {
    let stack = Stack::start("");
    curl_fetches_all_byte_exact(|n| format!("pop3://{}/{n}", stack.pop3()));
}

const PYTHON_IMAP: &str = r#"
import imaplib, sys, base64
host, port, user, pw, expected_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
expected = open(expected_path, 'rb').read()
m = imaplib.IMAP4(host, port)
m.login(user, pw)
typ, data = m.select('INBOX')
assert typ == 'OK', data
typ, data = m.fetch('3', '(BODY.PEEK[])')
assert typ == 'OK', data
assert data[0][1] == expected, 'fetched body differs'
m.logout()
# AUTHENTICATE PLAIN (imaplib sends the response after the continuation)
m = imaplib.IMAP4(host, port)
typ, _ = m.authenticate('PLAIN', lambda _: ('\0%s\0%s' % (user, pw)).encode())
assert typ == 'OK'
m.select('INBOX')
m.logout()
# A wrong password raises imaplib's error with the tagged NO.
m = imaplib.IMAP4(host, port)
try:
    m.login(user, 'wrong')
    raise SystemExit('wrong password accepted')
except imaplib.IMAP4.error as e:
    assert 'AUTHENTICATIONFAILED' in str(e), e
print('ok')
"#;

const PYTHON_POP3: &str = r#"
import poplib, sys
host, port, user, pw, expected_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
expected = open(expected_path, 'rb').read()
p = poplib.POP3(host, port)
p.user(user)
p.pass_(pw)
count, size = p.stat()
assert count == 3, count
resp, lines, octets = p.retr(3)
assert b'\r\n'.join(lines) + b'\r\n' == expected, 'retrieved body differs'
p.quit()
print('ok')
"#;

#[test]
fn python_imaplib_login_authenticate_and_fetch() {
    let stack = Stack::start("");
    let expected = stack.dovecot.message_path(ALICE, 2);
    let out = run_client(Command::new("python3").args([
        "-c",
        PYTHON_IMAP,
        "127.0.0.1",
        &stack.imap().port().to_string(),
        ALICE,
        ALICE_PW,
        expected.to_str().unwrap(),
    ]));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}

#[test]
fn python_poplib_user_pass_and_retr() {
    let stack = Stack::start("");
    let expected = stack.dovecot.message_path(ALICE, 2);
    let out = run_client(Command::new("python3").args([
        "-c",
        PYTHON_POP3,
        "127.0.0.1",
        &stack.pop3().port().to_string(),
        ALICE,
        ALICE_PW,
        expected.to_str().unwrap(),
    ]));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}
