//! Bounded input before login: hostile clients get a protocol error and a
//! close, never a hang or a crash, and other sessions are unaffected.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use std::io::{Read, Write};
use std::net::TcpStream;
use support::stack::*;

/// Reads until EOF (the proxy closed): everything received.
fn read_to_close(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "connection not closed: {e}; got {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut greeting = [0u8; 256];
    let n = s.read(&mut greeting).unwrap();
    assert!(n > 0);
    s
}

#[test]
fn one_mebibyte_line_gets_bad_and_close_and_others_continue() {
    let stack = Stack::start("");
    let mut hostile = connect(stack.imap());
    let mut line = b"a LOGIN ".to_vec();
    line.resize(1024 * 1024, b'x');
    // The proxy may close before all of it is written; that is the point.
    let _ = hostile.write_all(&line);
    let got = read_to_close(&mut hostile);
    assert!(
        got.contains("a BAD [TOOBIG]") && got.contains("* BYE"),
        "{got}"
    );

    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
}

#[test]
fn literal_over_the_limit_is_refused() {
    let stack = Stack::start("[limits]\nmax_literal = 100\n");
    let mut s = connect(stack.imap());
    s.write_all(b"a LOGIN {101}\r\n").unwrap();
    let got = read_to_close(&mut s);
    assert!(got.starts_with("a BAD [TOOBIG] literal too large"), "{got}");

    let mut s = connect(stack.imap());
    s.write_all(b"a LOGIN {100}\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"+ "),
        "at the limit the literal is accepted"
    );
}

#[test]
fn too_many_failed_logins_close_the_connection() {
    let stack = Stack::start("[limits]\nmax_auth_failures = 2\n");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert_eq!(c.login(ALICE, "bad").unwrap().status, "NO");
    let r = c.login(ALICE, "bad").unwrap();
    assert_eq!(r.status, "NO");
    assert!(c.read_raw_line().unwrap().starts_with("* BYE"));
    assert!(c.read_raw_line().is_err(), "closed after the limit");

    let mut p = Pop3Client::connect(stack.pop3()).unwrap();
    assert!(p.login(ALICE, "bad").unwrap().starts_with("-ERR [AUTH]"));
    assert!(p.login(ALICE, "bad").unwrap().starts_with("-ERR [AUTH]"));
    assert!(p.read_status().is_err(), "closed after the limit");
}

#[test]
fn silent_client_is_logged_out_after_the_preauth_timeout() {
    let stack = Stack::start("[limits]\npreauth_timeout = \"1s\"\n");
    let mut s = connect(stack.imap());
    assert_eq!(
        read_to_close(&mut s),
        "* BYE Autologout; idle for too long.\r\n"
    );
    let mut s = connect(stack.pop3());
    assert_eq!(
        read_to_close(&mut s),
        "-ERR Autologout; idle for too long.\r\n"
    );
    let lines = stack.mailgate.wait_for_session_ends("imap", 1);
    assert!(
        lines[0].contains("outcome=\"preauth_timeout\""),
        "{}",
        lines[0]
    );
}

#[test]
fn garbage_and_nul_bytes_get_protocol_errors() {
    let stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    c.send_raw(b"\0\0\0\r\n").unwrap();
    assert!(c.read_raw_line().unwrap().starts_with("* BAD"));
    c.send_raw(b"x LOGIN a\0b c\r\n").unwrap();
    assert!(c.read_raw_line().unwrap().starts_with("x BAD"));
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok(), "still usable");

    let mut p = Pop3Client::connect(stack.pop3()).unwrap();
    assert!(p.command("\u{1}\u{2}").unwrap().starts_with("-ERR"));
    let mut long = String::from("USER ");
    long.push_str(&"y".repeat(9000));
    p.send_raw(format!("{long}\r\n").as_bytes()).unwrap();
    assert_eq!(
        p.read_status().unwrap(),
        "-ERR Line too long, closing connection."
    );
}
