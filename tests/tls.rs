//! TLS towards clients, with real clients (curl, Python's imaplib/poplib/ssl,
//! openssl s_client) through mailgate to a real Dovecot: implicit TLS and
//! STARTTLS for IMAP and POP3, the plaintext-login policy, STARTTLS command
//! injection, SNI, reload on SIGHUP, resumption, and hostile handshakes.

mod support;

use mailgate::check_client::ImapClient;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;
use support::certs::TestCa;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

/// mailgate with four TLS listeners: 0 IMAP STARTTLS, 1 IMAPS, 2 POP3 STLS, 3 POP3S.
struct TlsStack {
    mailgate: Mailgate,
    dovecot: Dovecot,
    ca: TestCa,
    cert_dir: tempfile::TempDir,
    /// The configuration it was started with.
    config: String,
}

impl TlsStack {
    fn start(extra: &str) -> Self {
        let ca = TestCa::new();
        let (cert, key) = ca.issue("mail", &["localhost", "mail.test"], &["127.0.0.1"]);
        let (other_cert, other_key) = ca.issue("other", &["other.test"], &[]);
        // Copies that the reload test may overwrite.
        let cert_dir = tempfile::tempdir().unwrap();
        std::fs::copy(&cert, cert_dir.path().join("mail.pem")).unwrap();
        std::fs::copy(&key, cert_dir.path().join("mail.key")).unwrap();
        let dovecot = Dovecot::start(&[TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages: alice_messages(),
        }]);
        let listener = |protocol: &str, tls: &str| {
            format!("[[listen]]\nprotocol = \"{protocol}\"\naddress = \"127.0.0.1:0\"\ntls = \"{tls}\"\n\n")
        };
        let config = format!(
            "{}{}{}{}[directory]\nkind = \"static\"\nmap = \"users.map\"\n\n\
             [backend]\nimap_port = {}\npop3_port = {}\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nhandshake_timeout = \"1s\"\n\
             [[tls.certificates]]\nnames = [\"other.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [runtime]\nworkers = 2\nshutdown_grace = \"1s\"\n{extra}",
            listener("imap", "starttls"),
            listener("imap", "implicit"),
            listener("pop3", "starttls"),
            listener("pop3", "implicit"),
            dovecot.imap.port(),
            dovecot.pop3.port(),
            cert_dir.path().join("mail.pem").display(),
            cert_dir.path().join("mail.key").display(),
            other_cert.display(),
            other_key.display(),
        );
        let mailgate = Mailgate::start(&config, "*@example.org 127.0.0.1\n");
        Self {
            mailgate,
            dovecot,
            ca,
            cert_dir,
            config,
        }
    }

    fn port(&self, listener: usize) -> u16 {
        self.mailgate.addr(listener).port()
    }

    fn curl(&self, url: &str, extra: &[&str]) -> std::process::Output {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "60",
                "--cacert",
                self.ca.ca().to_str().unwrap(),
                "-u",
                &format!("{ALICE}:{ALICE_PW}"),
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    }

    fn python(&self, script: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args([self.ca.ca().to_str().unwrap(), ALICE, ALICE_PW])
            .args((0..4).map(|i| self.port(i).to_string()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

#[test]
fn curl_over_imaps_pop3s_and_starttls_is_byte_exact() {
    let stack = TlsStack::start("");
    let expected = std::fs::read(stack.dovecot.message_path(ALICE, 2)).unwrap();
    for (url, extra) in [
        (
            format!("imaps://127.0.0.1:{}/INBOX;MAILINDEX=3", stack.port(1)),
            vec![],
        ),
        (
            format!("imap://127.0.0.1:{}/INBOX;MAILINDEX=3", stack.port(0)),
            vec!["--ssl-reqd"],
        ),
        (format!("pop3s://127.0.0.1:{}/3", stack.port(3)), vec![]),
        (
            format!("pop3://127.0.0.1:{}/3", stack.port(2)),
            vec!["--ssl-reqd"],
        ),
    ] {
        let out = stack.curl(&url, &extra);
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == expected,
            "{url}: {} bytes differ from the {} on disk",
            out.stdout.len(),
            expected.len()
        );
    }
}

const PYTHON_CLIENTS: &str = r#"
import imaplib, poplib, ssl, sys
ca, user, pw = sys.argv[1:4]
starttls, imaps, stls, pop3s = (int(p) for p in sys.argv[4:8])
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL('127.0.0.1', imaps, ssl_context=ctx)
m.login(user, pw); m.select('INBOX'); typ, data = m.fetch('1', '(BODY.PEEK[])'); assert typ == 'OK'
# A large upload through TLS (client to back end) comes back byte for byte.
big = b''.join(b'line %07d of an appended message through IMAPS\r\n' % i for i in range(60000))
big = b'Subject: big\r\n\r\n' + big
typ, data = m.append('INBOX', None, None, big); assert typ == 'OK', data
m.select('INBOX'); typ, data = m.fetch('4', '(BODY.PEEK[])'); assert typ == 'OK' and data[0][1] == big, 'appended message differs'
m.logout()
m = imaplib.IMAP4('127.0.0.1', starttls)
assert 'LOGINDISABLED' in m.capabilities and 'STARTTLS' in m.capabilities, m.capabilities
m.starttls(ssl_context=ctx)
assert 'LOGINDISABLED' not in m.capabilities and 'STARTTLS' not in m.capabilities, m.capabilities
m.login(user, pw); m.logout()
p = poplib.POP3_SSL('127.0.0.1', pop3s, context=ctx); p.user(user); p.pass_(pw); assert p.stat()[0] == 4; p.quit()
p = poplib.POP3('127.0.0.1', stls); assert 'STLS' in p.capa(); p.stls(context=ctx); p.user(user); p.pass_(pw); p.quit()
print('ok')
"#;

#[test]
fn python_imaps_starttls_pop3s_and_stls() {
    let stack = TlsStack::start("");
    assert_eq!(stack.python(PYTHON_CLIENTS), "ok");
}

const PYTHON_POLICY: &str = r#"
import imaplib, socket, ssl, sys
ca, user, pw = sys.argv[1:4]
starttls, imaps, stls, pop3s = (int(p) for p in sys.argv[4:8])
m = imaplib.IMAP4('127.0.0.1', starttls)
try:
    m.login(user, pw)
    raise SystemExit('plaintext login accepted')
except imaplib.IMAP4.error as e:
    assert 'PRIVACYREQUIRED' in str(e), e
# Injection: a command pipelined after STARTTLS must not run after the handshake.
s = socket.create_connection(('127.0.0.1', starttls))
f = s.makefile('rb')
f.readline()
s.sendall(b'a STARTTLS\r\nb LOGIN %s %s\r\n' % (user.encode(), pw.encode()))
assert f.readline().startswith(b'a OK'), 'no STARTTLS answer'
t = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname='localhost')
t.sendall(b'c NOOP\r\n')
line = t.recv(4096)
assert line.startswith(b'c OK'), line
print('ok')
"#;

#[test]
fn plaintext_login_is_refused_and_injected_commands_are_dropped() {
    let stack = TlsStack::start("");
    assert_eq!(stack.python(PYTHON_POLICY), "ok");
}

const PYTHON_SNI_AND_RESUMPTION: &str = r#"
import socket, ssl, sys
ca, user, pw = sys.argv[1:4]
imaps = int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
def subject(name):
    with socket.create_connection(('127.0.0.1', imaps)) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            return dict(x[0] for x in t.getpeercert()['subject'])['commonName']
assert subject('other.test') == 'other.test'
assert subject('localhost') == 'localhost'
ctx.check_hostname = False
assert subject(None) == 'localhost', 'no SNI: the default certificate'
# Resumption: TLS 1.3 tickets arrive after the handshake; read the greeting first.
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', imaps)), server_hostname='localhost')
s.recv(4096)
session = s.session
s.close()
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', imaps)), server_hostname='localhost', session=session)
s.recv(4096)
assert s.session_reused, 'session not resumed'
s.close()
print('ok')
"#;

#[test]
fn sni_picks_the_certificate_and_sessions_resume() {
    let stack = TlsStack::start("");
    assert_eq!(stack.python(PYTHON_SNI_AND_RESUMPTION), "ok");
}

#[test]
fn openssl_s_client_connects_with_implicit_tls_and_starttls() {
    let stack = TlsStack::start("");
    for (port, starttls, command, answer) in [
        (stack.port(1), None, "a LOGOUT\n", "* BYE"),
        (stack.port(0), Some("imap"), "a LOGOUT\n", "* BYE"),
        (stack.port(3), None, "QUIT\n", "+OK Bye."),
        (stack.port(2), Some("pop3"), "QUIT\n", "+OK Bye."),
    ] {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            stack.ca.ca().to_str().unwrap(),
            "-verify_return_error",
            "-servername",
            "localhost",
            "-crlf",
            "-ign_eof",
        ]);
        if let Some(proto) = starttls {
            cmd.args(["-starttls", proto]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The command makes the server close, which ends s_client.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(command.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{port}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(answer), "{port}: {text}");
    }
}

#[test]
fn sighup_reloads_certificates_and_open_sessions_continue() {
    let stack = TlsStack::start("");
    let fingerprint = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
                stack.port(1)
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = fingerprint();
    assert!(before.contains("Fingerprint"), "{before}");
    // An open plaintext-listener session (STARTTLS listener, not upgraded: pre-auth) keeps working.
    let mut open = ImapClient::connect(stack.mailgate.addr(0)).unwrap();
    // A bad new file is refused and the old certificate kept.
    std::fs::write(stack.cert_dir.path().join("mail.pem"), "not a certificate").unwrap();
    Command::new("kill")
        .args(["-HUP", &stack.mailgate.pid().to_string()])
        .status()
        .unwrap();
    stack
        .mailgate
        .wait_for_log("reload failed", Duration::from_secs(10));
    assert_eq!(fingerprint(), before);
    // A good new certificate in a reload that fails later (a new listener
    // on a port already taken) is not swapped in either: nothing changes.
    let (cert, key) = stack.ca.issue("renewed", &["localhost"], &["127.0.0.1"]);
    std::fs::copy(&key, stack.cert_dir.path().join("mail.key")).unwrap();
    std::fs::copy(&cert, stack.cert_dir.path().join("mail.pem")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Last, so that the kept TLS listeners come first.
    let unbindable = format!(
        "{}\n[[listen]]\nprotocol = \"imap\"\naddress = \"{}\"\ntls = \"none\"\n",
        stack.config,
        taken.local_addr().unwrap(),
    );
    let map = "*@example.org 127.0.0.1\n";
    stack.mailgate.rewrite(&unbindable, map);
    assert!(stack.mailgate.reload(2).contains("nothing was reloaded"));
    assert_eq!(
        fingerprint(),
        before,
        "a certificate swapped in by a failed reload"
    );
    // The same certificate in a reload that succeeds is used by new
    // connections.
    stack.mailgate.rewrite(&stack.config, map);
    assert!(stack.mailgate.reload(3).contains("configuration reloaded"));
    let after = fingerprint();
    assert!(
        after.contains("Fingerprint") && after != before,
        "{before} / {after}"
    );
    assert!(open.command("NOOP").unwrap().is_ok());
}

#[test]
fn garbage_or_stalled_handshakes_are_closed_and_others_unaffected() {
    let stack = TlsStack::start("");
    let mut garbage = std::net::TcpStream::connect(stack.mailgate.addr(1)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = garbage.read_to_end(&mut sink); // closed (maybe after an alert)
    assert!(
        !String::from_utf8_lossy(&sink).contains("* OK"),
        "no greeting without TLS"
    );

    let mut stalled = std::net::TcpStream::connect(stack.mailgate.addr(1)).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0x50]).unwrap(); // a record header, then nothing
                                                                 // Meanwhile a real client is served.
    let out = stack.curl(
        &format!("imaps://127.0.0.1:{}/INBOX;MAILINDEX=1", stack.port(1)),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sink = Vec::new();
    let closed = stalled.read_to_end(&mut sink);
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{closed:?}"
    );
    let lines = stack.mailgate.wait_for_session_ends("imap", 3);
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("outcome=\"tls_failed\""))
            .count()
            >= 2,
        "{lines:?}"
    );
}
