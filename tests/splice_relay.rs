//! The splice path against test back ends whose behaviour after login is
//! exact (echo, or a source that half-closes), compared with the copy path
//! (`[relay] splice = false`): byte-exact random payloads from a few bytes to
//! 64 MiB with half-close from either side, the path actually taken, and
//! 2 000 concurrent sessions.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::Mailgate;

/// What the test back end does after a successful LOGIN.
#[derive(Clone, Copy)]
enum AfterLogin {
    /// Echo every byte back; at EOF, half-close.
    Echo,
    /// Send `n` pseudo-random bytes, half-close, then read until EOF.
    Source(usize),
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A minimal IMAP back end: greeting, any LOGIN succeeds, then `after`.
fn test_backend(after: AfterLogin) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || serve(stream, after))
                .unwrap();
        }
    });
    addr
}

fn serve(mut stream: TcpStream, after: AfterLogin) {
    let _ = stream.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] test\r\n");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let tag = line.split(' ').next().unwrap_or("*").to_owned();
    let _ = stream.write_all(format!("{tag} OK Logged in\r\n").as_bytes());
    match after {
        AfterLogin::Echo => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // BufReader may hold bytes read ahead of the login line.
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            let _ = stream.shutdown(Shutdown::Write);
        }
        AfterLogin::Source(n) => {
            let _ = stream.write_all(&payload(n, n as u64));
            let _ = stream.shutdown(Shutdown::Write);
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        }
    }
}

fn mailgate(backend: SocketAddr, splice: bool) -> Mailgate {
    mailgate_with(backend, &format!("splice = {splice}\n"))
}

/// mailgate in front of `backend`, with `relay` in its `[relay]` table.
fn mailgate_with(backend: SocketAddr, relay: &str) -> Mailgate {
    let config = support::mailgate::config(
        backend.port(),
        backend.port(),
        "",
        // Every test client comes from 127.0.0.1: no per-address cap.
        &format!("[relay]\n{relay}[limits]\nmax_preauth_per_address = 0\n"),
    );
    Mailgate::start(&config, "* 127.0.0.1\n")
}

/// Logs in through mailgate; returns the socket ready to relay.
fn logged_in(mg: &Mailgate) -> TcpStream {
    let mut s = TcpStream::connect(mg.addr(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    s.write_all(b"a LOGIN u p\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("a OK"), "{line}");
    assert!(reader.buffer().is_empty());
    s
}

/// Sends `data` (then half-closes) while reading the echo to EOF.
fn echo_roundtrip(mut s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    s.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    echoed
}

#[test]
fn echo_payloads_are_byte_exact_on_both_paths_with_client_half_close() {
    let backend = test_backend(AfterLogin::Echo);
    for splice in [true, false] {
        let mg = mailgate(backend, splice);
        for (i, len) in [1usize, 7, 4096, 65_537, 1 << 20, 64 << 20]
            .into_iter()
            .enumerate()
        {
            let data = payload(len, i as u64 + 1);
            let echoed = echo_roundtrip(logged_in(&mg), data.clone());
            assert!(
                echoed == data,
                "splice={splice} len={len}: {} bytes back",
                echoed.len()
            );
        }
        let lines = mg.wait_for_session_ends("imap", 6);
        let method = if splice {
            "relay=\"splice\""
        } else {
            "relay=\"copy\""
        };
        assert!(
            lines
                .iter()
                .all(|l| l.contains(method) && l.contains("outcome=\"relayed\"")),
            "{lines:?}"
        );
    }
}

#[test]
fn without_a_pipe_to_be_had_a_splice_session_relays_by_copying() {
    // No pipe may exist: every burst of every session is copied instead.
    let mg = mailgate_with(
        test_backend(AfterLogin::Echo),
        "splice = true\nmax_pipes = 0\n",
    );
    for (i, len) in [1usize, 65_537, 8 << 20].into_iter().enumerate() {
        let data = payload(len, i as u64 + 7);
        let echoed = echo_roundtrip(logged_in(&mg), data.clone());
        assert!(echoed == data, "len={len}: {} bytes back", echoed.len());
    }
    let lines = mg.wait_for_session_ends("imap", 3);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("relay=\"splice\"") && l.contains("outcome=\"relayed\"")),
        "{lines:?}"
    );
}

#[test]
fn back_end_half_close_delivers_everything_and_the_client_may_still_send() {
    for splice in [true, false] {
        let len = 9 * 1024 * 1024 + 3;
        let backend = test_backend(AfterLogin::Source(len));
        let mg = mailgate(backend, splice);
        let mut s = logged_in(&mg);
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(
            got == payload(len, len as u64),
            "splice={splice}: {} bytes",
            got.len()
        );
        // The back end closed only its sending side: the client can still send.
        s.write_all(b"still here\r\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let line = &mg.wait_for_session_ends("imap", 1)[0];
        assert!(line.contains("outcome=\"relayed\""), "{line}");
        assert!(line.contains("bytes_up=12"), "{line}");
    }
}

#[test]
fn two_thousand_concurrent_sessions_relay_without_loss() {
    const SESSIONS: usize = 2000;
    let backend = test_backend(AfterLogin::Echo);
    let mg = mailgate(backend, true);
    let addr = mg.addr(0);
    // Open all sessions first, so that they are all relaying at once.
    let sockets: Vec<TcpStream> = (0..SESSIONS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut greeting = [0u8; 256];
            let _ = s.read(&mut greeting).unwrap();
            s.write_all(b"a LOGIN u p\r\n").unwrap();
            s
        })
        .collect();
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let ok = b"a OK Logged in\r\n";
                    let mut reply = vec![0u8; ok.len()];
                    s.read_exact(&mut reply).unwrap();
                    assert_eq!(reply, ok);
                    let data = payload(1000 + i * 7, i as u64 + 99);
                    s.write_all(&data).unwrap();
                    let mut back = vec![0u8; data.len()];
                    s.read_exact(&mut back).unwrap();
                    assert!(back == data, "session {i} got different bytes");
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().expect("session");
    }
}
