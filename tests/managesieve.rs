//! ManageSieve (RFC 5804) through mailgate to a real Dovecot with
//! Pigeonhole's managesieve (`dovecot-managesieved`), routed by a real
//! slapd: logins with and without an initial response, refusals (a wrong
//! password, an unknown user, a held one), the client's address through
//! `XCLIENT`, and `sieve-connect` over STARTTLS uploading, listing,
//! activating, downloading and deleting a script.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::certs::TestCa;
use support::sieve::{dovecot_with_sieve, sieve_connect};
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::stack::*;
use support::{Dovecot, Mailgate};

/// Dovecot with ManageSieve on a port of its own, and mailgate with a
/// `managesieve` listener (listener 2) whose `tls` is `tls`.
struct Sieve {
    mailgate: Mailgate,
    _slapd: Slapd,
    dovecot: Dovecot,
    /// Dovecot's ManageSieve listener.
    direct: SocketAddr,
    ca: TestCa,
}

impl Sieve {
    fn start(tls: &str) -> Self {
        Self::start_with(tls, "")
    }

    /// Like `start`, with `dovecot_extra` in dovecot.conf.
    fn start_with(tls: &str, dovecot_extra: &str) -> Self {
        Self::start_full(tls, dovecot_extra, "")
    }

    /// Like `start_with`, with `extra` appended to mailgate's config.
    fn start_full(tls: &str, dovecot_extra: &str, extra: &str) -> Self {
        let (dovecot, direct) = dovecot_with_sieve(&directory_users(), dovecot_extra);
        let ca = TestCa::new();
        let (cert, key) = ca.issue("mail", &["localhost"], &["127.0.0.1"]);
        let listener = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [[listen]]\nprotocol = \"managesieve\"\naddress = \"127.0.0.1:0\"\ntls = \"{tls}\"\n{extra}",
            cert.display(),
            key.display()
        );
        // Alice and Bob have mailboxes on box1; Carol's is being moved;
        // anyone else is unknown.
        let people =
            [(ALICE, "active"), (BOB, "active"), (CAROL, "moving")].map(|(mail, status)| Person {
                mail,
                host: "box1",
                status,
            });
        let slapd = Slapd::start(&people, Options::default()).unwrap();
        let directory = format!(
            "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
             timeout = \"1s\"\nhold_filter = \"(status=moving)\"\n\
             [directory.hosts]\nbox1 = \"127.0.0.1\"\n",
            slapd.url()
        );
        let config = support::mailgate::config(
            dovecot.imap.port(),
            dovecot.pop3.port(),
            &format!("managesieve_port = {}", direct.port()),
            &listener,
        )
        .replace("kind = \"static\"\nmap = \"users.map\"\n", &directory)
        // One worker: the greeting learned from a login is the next one's.
        .replace("workers = 2", "workers = 1");
        Self {
            mailgate: Mailgate::start(&config, ""),
            _slapd: slapd,
            dovecot,
            direct,
            ca,
        }
    }

    fn connect(&self) -> SieveClient {
        SieveClient::connect(self.mailgate.addr(2))
    }

    /// Dovecot's successful ManageSieve logins of `user`.
    fn backend_logins(&self, user: &str) -> usize {
        self.dovecot
            .log()
            .matches(&format!("managesieve-login: Info: Login: user=<{user}>"))
            .count()
    }
}

/// A raw ManageSieve client.
struct SieveClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SieveClient {
    fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).unwrap())
    }

    /// Connects from `local` (a loopback address other than 127.0.0.1).
    fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(local, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        Self::over(socket.into())
    }

    fn over(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = client.response();
        assert!(greeting.last().unwrap().starts_with("OK"), "{greeting:?}");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Lines up to and including the `OK`/`NO`/`BYE` answer (a literal's
    /// bytes are read whole and kept in the line that announced them).
    fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = self.line();
            assert!(!line.is_empty(), "connection closed after {lines:?}");
            if let Some(size) = literal_size(&line) {
                let mut bytes = vec![0; size];
                self.reader.read_exact(&mut bytes).unwrap();
                line.push_str(&String::from_utf8_lossy(&bytes));
                line.push_str(&self.line());
            }
            let done = ["OK", "NO", "BYE"]
                .iter()
                .any(|w| line.starts_with(w) && line[w.len()..].starts_with([' ', '\r']));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    fn command(&mut self, bytes: &[u8]) -> Vec<String> {
        self.send(bytes);
        self.response()
    }
}

fn literal_size(line: &str) -> Option<usize> {
    let inner = line.trim_end().strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

fn plain(user: &str, password: &str) -> String {
    mailgate::auth::encode_base64(format!("\0{user}\0{password}").as_bytes())
}

const SCRIPT: &str = "require \"fileinto\";\r\nif header :contains \"subject\" \"[list]\" {\r\n  fileinto \"Lists\";\r\n}\r\n";

#[test]
fn authenticate_plain_with_an_initial_response_then_scripts_are_relayed() {
    let s = Sieve::start("none");
    let mut c = s.connect();
    let caps = c.command(b"CAPABILITY\r\n");
    assert!(
        caps.iter().any(|l| l == "\"SASL\" \"PLAIN LOGIN\"\r\n"),
        "{caps:?}"
    );
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW));
    let answer = c.command(line.as_bytes());
    assert_eq!(answer, ["OK \"Logged in.\"\r\n"], "{}", s.mailgate.log());
    let put = format!("PUTSCRIPT \"mg\" {{{}+}}\r\n{SCRIPT}\r\n", SCRIPT.len());
    let answer = c.command(put.as_bytes());
    assert!(answer.last().unwrap().starts_with("OK"), "{answer:?}");
    let list = c.command(b"LISTSCRIPTS\r\n");
    assert_eq!(list[0], "\"mg\"\r\n", "{list:?}");
    let got = c.command(b"GETSCRIPT \"mg\"\r\n");
    assert!(got[0].contains(SCRIPT), "byte-exact: {got:?}");
    assert!(c.command(b"LOGOUT\r\n").last().unwrap().starts_with("OK"));
    assert_eq!(s.backend_logins(ALICE), 1);
}

#[test]
fn authenticate_plain_with_a_continuation() {
    let s = Sieve::start("none");
    let mut c = s.connect();
    c.send(b"AUTHENTICATE \"PLAIN\"\r\n");
    assert_eq!(c.line(), "\"\"\r\n");
    let response = plain(BOB, BOB_PW);
    let answer = c.command(format!("{{{}+}}\r\n{response}\r\n", response.len()).as_bytes());
    assert_eq!(answer, ["OK \"Logged in.\"\r\n"], "{}", s.mailgate.log());
    let list = c.command(b"LISTSCRIPTS\r\n");
    assert!(list.last().unwrap().starts_with("OK"), "{list:?}");
}

#[test]
fn a_wrong_password_and_an_unknown_user_are_no_without_a_back_end_login() {
    let s = Sieve::start("none");
    let mut c = s.connect();
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, "wrong"));
    assert_eq!(
        c.command(line.as_bytes()),
        ["NO \"Authentication failed.\"\r\n"]
    );
    let line = format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain("dave@example.org", "x")
    );
    assert_eq!(
        c.command(line.as_bytes()),
        ["NO \"Authentication failed.\"\r\n"]
    );
    assert_eq!(s.backend_logins(ALICE), 0);
}

#[test]
fn a_held_user_is_told_to_try_later_without_a_back_end_login() {
    let s = Sieve::start("none");
    let mut c = s.connect();
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(CAROL, CAROL_PW));
    assert_eq!(
        c.command(line.as_bytes()),
        ["NO (TRYLATER) \"Temporary failure, try again later.\"\r\n"]
    );
    // Found only by the hold filter (the main filter wants `active`): a
    // temporary failure, never "wrong password", and no back end asked.
    assert_eq!(s.backend_logins(CAROL), 0);
}

#[test]
fn sieve_connect_over_starttls_uploads_lists_activates_downloads_and_deletes() {
    let s = Sieve::start("starttls");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("mg.sieve");
    std::fs::write(&local, SCRIPT).unwrap();
    let ca = s.ca.ca();
    let run = |port: u16, args: &[&str]| {
        sieve_connect(port, &ca, (ALICE, ALICE_PW), dir.path(), args)
            .unwrap_or_else(|e| panic!("{e}\n{}", s.mailgate.log()))
    };
    let port = s.mailgate.addr(2).port();
    let local_arg = local.display().to_string();
    run(
        port,
        &[
            "--upload",
            "--localsieve",
            &local_arg,
            "--remotesieve",
            "mg",
        ],
    );
    run(port, &["--activate", "--remotesieve", "mg"]);
    let through = run(port, &["--list"]);
    assert!(through.contains("mg"), "{through}");
    // The same listing as Dovecot's own (over plaintext: it has no TLS here).
    let mut direct = SieveClient::connect(s.direct);
    let login = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW));
    assert!(direct
        .command(login.as_bytes())
        .last()
        .unwrap()
        .starts_with("OK"));
    let listing = direct.command(b"LISTSCRIPTS\r\n");
    assert_eq!(listing[0], "\"mg\" ACTIVE\r\n", "{listing:?}");
    let downloaded = dir.path().join("back.sieve");
    let downloaded_arg = downloaded.display().to_string();
    run(
        port,
        &[
            "--download",
            "--remotesieve",
            "mg",
            "--localsieve",
            &downloaded_arg,
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&downloaded).unwrap(),
        SCRIPT,
        "byte-exact"
    );
    run(port, &["--deactivate"]);
    run(port, &["--delete", "--remotesieve", "mg"]);
    let listing = direct.command(b"LISTSCRIPTS\r\n");
    assert_eq!(listing.len(), 1, "deleted: {listing:?}");
}

#[test]
fn dovecot_hears_the_client_address_through_xclient() {
    let s = Sieve::start_with("none", "login_trusted_networks = 127.0.0.1/32\n");
    let from = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut c = SieveClient::connect_from(from, s.mailgate.addr(2));
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW));
    assert_eq!(c.command(line.as_bytes()), ["OK \"Logged in.\"\r\n"]);
    let log = s.dovecot.log();
    let login = log
        .lines()
        .find(|l| l.contains("managesieve-login: Info: Login:"))
        .expect("login logged");
    assert!(login.contains("rip=127.0.0.2"), "{login}");
}

/// Everything up to the server's close.
fn read_to_close(c: &mut SieveClient) -> String {
    let mut rest = String::new();
    let _ = c.reader.read_to_string(&mut rest);
    rest
}

#[test]
fn a_stranger_is_bounded_in_literal_size_line_length_errors_and_time() {
    let s = Sieve::start_full("none", "", "[limits]\npreauth_timeout = \"1s\"\n");
    // A literal one byte over the bound (8 KiB by default).
    let mut c = s.connect();
    c.send(format!("NOOP {{{}+}}\r\n", 8 * 1024 + 1).as_bytes());
    assert_eq!(read_to_close(&mut c), "BYE \"literal too large.\"\r\n");
    // At the bound: read and answered.
    let mut c = s.connect();
    let at = format!("NOOP {{{}+}}\r\n{}\r\n", 8 * 1024, "x".repeat(8 * 1024));
    let answer = c.command(at.as_bytes());
    assert!(answer[0].starts_with("OK (TAG "), "{:?}", &answer[0][..20]);
    // A line over the bound.
    let mut c = s.connect();
    c.send(format!("NOOP \"{}\"\r\n", "x".repeat(8 * 1024 + 1)).as_bytes());
    assert_eq!(read_to_close(&mut c), "BYE \"command line too long.\"\r\n");
    // Ten refused commands (the default `max_protocol_errors`).
    let mut c = s.connect();
    c.send(&b"BOGUS\r\n".repeat(10));
    let rest = read_to_close(&mut c);
    assert_eq!(rest.matches("NO ").count(), 10, "{rest}");
    assert!(
        rest.ends_with("BYE \"Too many invalid commands.\"\r\n"),
        "{rest}"
    );
    // Silence until the pre-auth deadline.
    let mut c = s.connect();
    assert_eq!(
        read_to_close(&mut c),
        "BYE \"Disconnected for inactivity.\"\r\n"
    );
}

#[test]
fn the_greeting_announces_the_sieve_extensions_the_back_end_announces() {
    let s = Sieve::start("none");
    let sieve_line = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("\"SIEVE\""))
            .cloned()
            .unwrap()
    };
    let mut direct = SieveClient::connect(s.direct);
    let dovecots = sieve_line(&direct.command(b"CAPABILITY\r\n"));
    let mut c = s.connect();
    let line = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW));
    assert!(c.command(line.as_bytes())[0].starts_with("OK"));
    let mut next = s.connect();
    let ours = sieve_line(&next.command(b"CAPABILITY\r\n"));
    // Not Pigeonhole's default list: this Dovecot allows three extensions.
    assert_eq!(dovecots, "\"SIEVE\" \"fileinto envelope vacation\"\r\n");
    assert_eq!(ours, dovecots);
}

/// `openssl s_client` to 127.0.0.1:`port` (`-starttls sieve` when asked),
/// sending `input`; what it printed.
fn s_client(ca: &std::path::Path, port: u16, starttls: bool, input: &str) -> String {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-CAfile", ca.to_str().unwrap(), "-verify_return_error"])
        .args(["-servername", "localhost", "-crlf", "-ign_eof"]);
    if starttls {
        cmd.args(["-starttls", "sieve"]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_logs_in_over_implicit_tls_and_starttls_and_metrics_say_managesieve() {
    let s = Sieve::start_full(
        "starttls",
        "",
        "[[listen]]\nprotocol = \"managesieve\"\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let input = format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\nLISTSCRIPTS\nLOGOUT\n",
        plain(ALICE, ALICE_PW)
    );
    let ca = s.ca.ca();
    for (listener, starttls) in [(3, false), (2, true)] {
        let text = s_client(&ca, s.mailgate.addr(listener).port(), starttls, &input);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{listener}: {text}"
        );
        assert!(
            text.contains("OK \"Logged in.\""),
            "{listener}: {text}\n{}",
            s.mailgate.log()
        );
    }
    let metrics = mailgate_testkit::admin::AdminClient::new(s.mailgate.addr(4), None)
        .run(&mailgate_testkit::admin::Action::Metrics)
        .unwrap()
        .body;
    let logins = support::metric(
        &metrics,
        "mailgate_logins_total{protocol=\"managesieve\",outcome=\"ok\"}",
    );
    assert_eq!(logins, 2.0, "{metrics}");
}
