//! Back-end trouble becomes a temporary failure for the client, quickly and
//! without affecting other sessions: silent, rude and closed back ends.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use support::Mailgate;

/// A listener that runs `behaviour` on every connection, on its own thread.
fn fake_backend(behaviour: fn(std::net::TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || behaviour(stream));
        }
    });
    addr
}

fn silent(stream: std::net::TcpStream) {
    std::thread::sleep(std::time::Duration::from_secs(30));
    drop(stream);
}

fn rude(mut stream: std::net::TcpStream) {
    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    std::thread::sleep(std::time::Duration::from_secs(30));
}

fn closes(stream: std::net::TcpStream) {
    drop(stream);
}

#[test]
fn silent_rude_and_closing_back_ends_give_temporary_failures() {
    let silent = fake_backend(silent);
    let rude = fake_backend(rude);
    let closes = fake_backend(closes);
    let map = format!(
        "silent@x.test 127.0.0.1:{}\nrude@x.test 127.0.0.1:{}\ncloses@x.test 127.0.0.1:{}\n",
        silent.port(),
        rude.port(),
        closes.port()
    );
    let config = support::mailgate::config(1, 1, "", "")
        .replace("login_timeout = \"5s\"", "login_timeout = \"1s\"");
    let mailgate = Mailgate::start(&config, &map);

    for user in ["silent@x.test", "rude@x.test", "closes@x.test"] {
        let mut imap = ImapClient::connect(mailgate.addr(0)).unwrap();
        let r = imap.login(user, "pw").unwrap();
        assert_eq!(r.status, "NO", "{user}");
        assert!(r.text.starts_with("[UNAVAILABLE]"), "{user}: {}", r.text);
        assert!(
            imap.command("NOOP").unwrap().is_ok(),
            "{user}: session still usable"
        );

        let mut pop3 = Pop3Client::connect(mailgate.addr(1)).unwrap();
        let status = pop3.login(user, "pw").unwrap();
        assert!(status.starts_with("-ERR [SYS/TEMP]"), "{user}: {status}");
    }
    let log = mailgate.log();
    assert!(log.contains("login timed out"), "{log}");
    assert!(log.contains("unexpected greeting"), "{log}");
    assert!(log.contains("connection closed during login"), "{log}");
}
