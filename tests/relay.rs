//! The post-login relay: half-close, idle timeout, and many sessions at once,
//! against the in-process simulated back end (its behaviour on half-close is
//! known exactly) and against Dovecot.

mod support;

use mailgate::check_client::ImapClient;
use mailgate::simulated_backend::{message, Mailbox, SimulatedBackend};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use support::{stack::*, Mailgate};

fn simulated(sizes: Vec<usize>) -> SimulatedBackend {
    SimulatedBackend::start(Mailbox {
        password: "pw".into(),
        message_sizes: sizes,
        corrupt: false,
        uid_validity: 1,
        ..Default::default()
    })
    .unwrap()
}

fn mailgate_for(backend: &SimulatedBackend, extra: &str) -> Mailgate {
    let config = support::mailgate::config(backend.imap.port(), backend.pop3.port(), "", extra);
    Mailgate::start(&config, "* 127.0.0.1\n")
}

#[test]
fn client_half_close_still_delivers_the_whole_reply() {
    let backend = simulated(vec![3 * 1024 * 1024]);
    let mailgate = mailgate_for(&backend, "");
    let mut s = TcpStream::connect(mailgate.addr(0)).unwrap();
    s.write_all(b"a LOGIN u pw\r\nb FETCH 1 BODY[]\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.read_to_end(&mut got).unwrap();
    let body = message(1, 3 * 1024 * 1024);
    let header = format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", body.len());
    let start = find(&got, header.as_bytes()).expect("fetch reply") + header.len();
    assert!(got[start..start + body.len()] == body[..], "body differs");
    assert!(got.ends_with(b"b OK Fetch completed.\r\n"));
}

#[test]
fn idle_session_is_closed_after_the_idle_timeout() {
    let stack = Stack::start("[relay]\nidle_timeout = \"1s\"\n");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(
        c.read_raw_line().is_err(),
        "the proxy closes an idle session"
    );
    let line = &stack.mailgate.wait_for_session_ends("imap", 1)[0];
    assert!(line.contains("outcome=\"idle_timeout\""), "{line}");
}

#[test]
fn many_concurrent_sessions_relay_without_loss() {
    const SESSIONS: usize = 200;
    let backend = simulated(vec![20_000, 150_000]);
    // Every test client comes from 127.0.0.1: no per-address cap.
    let mailgate = mailgate_for(&backend, "[limits]\nmax_preauth_per_address = 0\n");
    let addr = mailgate.addr(0);
    let threads: Vec<_> = (0..SESSIONS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = ImapClient::connect(addr).unwrap();
                assert!(c
                    .login(&format!("user{i}@example.org"), "pw")
                    .unwrap()
                    .is_ok());
                let n = 1 + i % 2;
                let body = c.fetch_message(n).unwrap();
                assert!(
                    body == message(n, [20_000, 150_000][n - 1]),
                    "session {i} got a different body"
                );
                c.logout().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("session thread");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
