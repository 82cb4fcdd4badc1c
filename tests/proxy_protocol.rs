//! The PROXY protocol against real parts: HAProxy in front of mailgate
//! (`send-proxy-v2`, and a hand-written v1 line), Dovecot behind it with a
//! `haproxy = yes` listener. The client's address — not the balancer's, not
//! mailgate's — is what mailgate logs and what Dovecot's login line shows.

mod support;

use mailgate::check_client::ImapClient;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::recorder::Recorder;
use support::stack::*;
use support::{free_port, have, Dovecot, Mailgate};

/// mailgate with its IMAP listener behind a balancer on 127.0.0.1; Dovecot
/// trusts mailgate's ID (so Dovecot logs the address mailgate says).
fn behind_a_balancer() -> (Dovecot, Mailgate) {
    let dovecot = Dovecot::start_with(
        &directory_users(),
        "login_trusted_networks = 127.0.0.1/32\n",
    );
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replacen(
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\n",
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\ntrusted_networks = [\"127.0.0.1/32\"]\n",
            1,
        );
    let mailgate = Mailgate::start(&config, "* 127.0.0.1\n");
    (dovecot, mailgate)
}

/// HAProxy in TCP mode on a free port, sending `send_proxy` to `to`.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(to: SocketAddr, send_proxy: &str) -> Self {
        assert!(
            have("haproxy"),
            "haproxy is missing: tests/setup.sh installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
             backend b\n  server mailgate {to} {send_proxy}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "haproxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection from `source` (a loopback address) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// LOGIN and SELECT as alice over `stream`; panics unless both succeed.
fn log_in(stream: TcpStream) {
    let mut c = ImapClient::from_stream(stream).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
}

fn dovecot_login_line(dovecot: &Dovecot) -> String {
    let lines = dovecot.login_lines("imap", 1);
    let line = lines.first().unwrap_or_else(|| panic!("{}", dovecot.log()));
    line.clone()
}

#[test]
fn haproxy_send_proxy_v2_gives_mailgate_and_dovecot_the_real_client() {
    let (dovecot, mailgate) = behind_a_balancer();
    let haproxy = Haproxy::start(mailgate.addr(0), "send-proxy-v2");
    log_in(connect_from(
        "127.0.0.2",
        format!("127.0.0.1:{}", haproxy.port).parse().unwrap(),
    ));
    // (Two sessions: the first is this test's probe that HAProxy is up.)
    let ends = mailgate.wait_for_session_ends("imap", 2);
    let alice = ends
        .iter()
        .find(|l| l.contains(&format!("user=\"{ALICE}\"")))
        .expect("alice's session");
    assert!(alice.contains("client=127.0.0.2:"), "{alice}");
    let line = dovecot_login_line(&dovecot);
    assert!(line.contains("rip=127.0.0.2"), "{line}");
}

#[test]
fn a_v1_line_names_the_client_and_a_bad_or_missing_header_closes() {
    let (dovecot, mailgate) = behind_a_balancer();
    let mut s = TcpStream::connect(mailgate.addr(0)).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.9 4711 993\r\n")
        .unwrap();
    log_in(s);
    let ends = mailgate.wait_for_session_ends("imap", 1);
    assert!(ends[0].contains("client=192.0.2.7:4711"), "{}", ends[0]);
    // Where the client connected to (the balancer's address) reaches the
    // back end too, not mailgate's own.
    let line = dovecot_login_line(&dovecot);
    assert!(
        line.contains("rip=192.0.2.7") && line.contains("lip=198.51.100.9"),
        "{line}"
    );
    // No header: a command where the header should be.
    for first in [
        &b"A1 LOGIN alice secret\r\n"[..],
        b"PROXY TCP4 192.0.2.7 x 1 2\r\n",
    ] {
        let mut s = TcpStream::connect(mailgate.addr(0)).unwrap();
        s.write_all(first).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.is_empty(), "answered without a header: {got:?}");
    }
    mailgate.wait_for_log("no valid PROXY header", Duration::from_secs(5));
    // A balancer outside trusted_networks is closed at accept.
    let mut s = connect_from("127.0.0.3", mailgate.addr(0));
    s.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 4711 143\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn backend_proxy_protocol_tells_a_haproxy_listener_of_dovecot_the_client() {
    let haproxy_port = free_port();
    let pop3_haproxy_port = free_port();
    // A second IMAP and POP3 listener on Dovecot that expect a PROXY header
    // from 127.0.0.1; mailgate's own ID/XCLIENT forwarding is off, so only
    // the header can carry the address.
    let dovecot = Dovecot::start_with(
        &directory_users(),
        &format!(
            "haproxy_trusted_networks = 127.0.0.1/32\n\
             service imap-login {{\n  inet_listener imap_haproxy {{\n    port = {haproxy_port}\n    haproxy = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3_haproxy {{\n    port = {pop3_haproxy_port}\n    haproxy = yes\n  }}\n}}\n"
        ),
    );
    // In between, relays that note whether mailgate spoke before any
    // greeting (Dovecot trusts their address, 127.0.0.1, for the header).
    let recorder = Recorder::noting_who_speaks_first(haproxy_port, Duration::from_secs(2));
    let pop3 = Recorder::noting_who_speaks_first(pop3_haproxy_port, Duration::from_secs(2));
    // One worker: the second login meets what the first learned.
    let config = support::mailgate::config(
        recorder.port,
        pop3.port,
        "forward_client_address = false\nproxy_protocol = true\n",
        "",
    )
    .replace("workers = 2", "workers = 1");
    let mailgate = Mailgate::start(&config, "* 127.0.0.1\n");
    log_in(connect_from("127.0.0.2", mailgate.addr(0)));
    let line = dovecot_login_line(&dovecot);
    assert!(line.contains("rip=127.0.0.2"), "{line}");
    // The second login goes before the greeting, in the header's write.
    log_in(connect_from("127.0.0.3", mailgate.addr(0)));
    let sent = recorder.sent(1);
    assert!(recorder.spoke_first(1), "{sent:?}");
    let header = b"\r\n\r\n\0\r\nQUIT\n";
    assert!(sent.as_bytes().starts_with(header), "{sent:?}");
    assert!(sent.contains("mg1 AUTHENTICATE PLAIN "), "{sent:?}");
    let logged = |what: &str| {
        let start = Instant::now();
        while !dovecot.log().lines().any(|l| l.contains(what)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what}: {}",
                dovecot.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    logged("rip=127.0.0.3");

    // POP3 likewise: the second login (AUTH PLAIN on what the first
    // learned from CAPA) goes with the header, before the greeting.
    let pop3_from = |source: &str| {
        let (ok, said) = curl_as_alice_from(source, &format!("pop3://{}/", mailgate.addr(1)));
        assert!(ok, "{said}");
    };
    pop3_from("127.0.0.4");
    logged("pop3-login: Info: Login: user=<alice@example.org>, method=PLAIN, rip=127.0.0.4");
    pop3_from("127.0.0.5");
    let sent = pop3.sent(1);
    assert!(pop3.spoke_first(1), "{sent:?}");
    assert!(sent.as_bytes().starts_with(header), "{sent:?}");
    assert!(sent.contains("AUTH PLAIN "), "{sent:?}");
    logged("rip=127.0.0.5");
}
