//! Passwords never reach a log line: every way a client can present one
//! (IMAP LOGIN with a quoted string, a synchronizing literal and a LITERAL+
//! literal, an 8-bit password; AUTHENTICATE PLAIN and LOGIN with and without
//! SASL-IR; POP3 USER/PASS and AUTH PLAIN with and without an initial
//! response), in plaintext and after STARTTLS/STLS, right and wrong, with
//! mailgate logging at `trace` against a real Dovecot. The log must hold
//! neither the password nor any base64 form a client sent. A user name with
//! a line break cannot forge a log line either.

mod support;

use mailgate_testkit::certs::TestCa;
use std::process::Command;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

/// Bob's password: quotes, a backslash, a space and 8-bit bytes.
const PASSWORD: &str = "Pw-Marker \"q\" \\ é-91";
/// A wrong password, just as distinctive.
const WRONG: &str = "Wrong-Marker-73 é";

/// The client side, in Python: each path on a fresh connection, first in
/// plaintext, then after STARTTLS/STLS. Prints one `path status` line each.
const CLIENT: &str = r#"
import base64, socket, ssl, sys
ca, imap_port, pop3_port, user, password, wrong = sys.argv[1:7]
pw, bad = password.encode(), wrong.encode()
ctx = ssl.create_default_context(cafile=ca)

class Conn:
    def __init__(self, port, tls, starttls_line, ok):
        self.s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        self.f = self.s.makefile("rb")
        self.line()
        if tls:
            self.send(starttls_line)
            assert self.line().split(b" ")[0 if ok == b"+OK" else 1] in (ok, b"OK"), "starttls"
            self.s = ctx.wrap_socket(self.s, server_hostname="localhost")
            self.f = self.s.makefile("rb")
    def send(self, data): self.s.sendall(data + b"\r\n")
    def raw(self, data): self.s.sendall(data)
    def line(self): return self.f.readline()
    def until(self, prefix):
        while True:
            l = self.line()
            if not l or l.startswith(prefix): return l

def b64(data): return base64.b64encode(data)

def imap_paths(p):
    u = user.encode()
    yield "login-quoted", lambda c: (c.send(b'a LOGIN "' + u + b'" "' + p.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'), c.until(b"a "))[1]
    def sync_literal(c):
        c.send(b"a LOGIN " + u + b" {" + str(len(p)).encode() + b"}")
        c.until(b"+"); c.send(p); return c.until(b"a ")
    yield "login-literal", sync_literal
    yield "login-literal-plus", lambda c: (c.send(b"a LOGIN " + u + b" {" + str(len(p)).encode() + b"+}\r\n" + p), c.until(b"a "))[1]
    yield "plain-ir", lambda c: (c.send(b"a AUTHENTICATE PLAIN " + b64(b"\0" + u + b"\0" + p)), c.until(b"a "))[1]
    def plain(c):
        c.send(b"a AUTHENTICATE PLAIN"); c.until(b"+"); c.send(b64(b"\0" + u + b"\0" + p)); return c.until(b"a ")
    yield "plain", plain
    def login_mech(c):
        c.send(b"a AUTHENTICATE LOGIN"); c.until(b"+"); c.send(b64(u)); c.until(b"+"); c.send(b64(p)); return c.until(b"a ")
    yield "login-mech", login_mech
    def login_mech_ir(c):
        c.send(b"a AUTHENTICATE LOGIN " + b64(u)); c.until(b"+"); c.send(b64(p)); return c.until(b"a ")
    yield "login-mech-ir", login_mech_ir

def pop3_paths(p):
    u = user.encode()
    def user_pass(c):
        c.send(b"USER " + u); c.line(); c.send(b"PASS " + p); return c.line()
    yield "user-pass", user_pass
    yield "auth-plain-ir", lambda c: (c.send(b"AUTH PLAIN " + b64(b"\0" + u + b"\0" + p)), c.line())[1]
    def auth_plain(c):
        c.send(b"AUTH PLAIN"); c.line(); c.send(b64(b"\0" + u + b"\0" + p)); return c.line()
    yield "auth-plain", auth_plain

for tls in (False, True):
    for secret, label in ((pw, "right"), (bad, "wrong")):
        for name, run in imap_paths(secret):
            c = Conn(imap_port, tls, b"s STARTTLS", b"OK")
            answer = run(c).split(b" ")[1].decode()
            print(f"imap {'starttls' if tls else 'plain'} {name} {label} {answer}")
        for name, run in pop3_paths(secret):
            c = Conn(pop3_port, tls, b"STLS", b"+OK")
            answer = run(c).split(b" ")[0].decode()
            print(f"pop3 {'stls' if tls else 'plain'} {name} {label} {answer}")

# A user name with a line break, in a literal.
c = Conn(imap_port, False, b"", b"")
evil = b"evil\r\nINJECTED forged line"
c.send(b"a LOGIN {" + str(len(evil)).encode() + b"}"); c.until(b"+")
c.send(evil + b" x"); c.until(b"a ")
print("injection done")
"#;

#[test]
fn no_login_path_puts_a_password_in_the_log() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("mail", &["localhost"], &["127.0.0.1"]);
    let dovecot = Dovecot::start(&[TestUser {
        name: BOB.into(),
        password: PASSWORD.into(),
        messages: vec![],
    }]);
    let listener = |protocol: &str| {
        format!("[[listen]]\nprotocol = \"{protocol}\"\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\nrequire_tls = false\n\n")
    };
    let config = format!(
        "{}{}[directory]\nkind = \"static\"\nmap = \"users.map\"\n\n\
         [backend]\nimap_port = {}\npop3_port = {}\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [limits]\nmax_auth_failures = 100\nmax_failures_per_address = 0\n\n\
         [runtime]\nworkers = 1\nshutdown_grace = \"1s\"\n",
        listener("imap"),
        listener("pop3"),
        dovecot.imap.port(),
        dovecot.pop3.port(),
        cert.display(),
        key.display(),
    );
    let mut mg = Mailgate::start_with_env(&config, "*@example.org 127.0.0.1\n", "trace", &[]);
    let out = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(ca.ca())
        .arg(mg.addr(0).port().to_string())
        .arg(mg.addr(1).port().to_string())
        .args([BOB, PASSWORD, WRONG])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every path ran, and the right password logged in on each.
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with("OK") || l.contains(" NO") || l.contains("-ERR"))
        .collect();
    assert_eq!(results.len(), 2 * 2 * (7 + 3), "{stdout}");
    for line in &results {
        let ok = line.ends_with(" OK") || line.ends_with(" +OK");
        assert_eq!(ok, line.contains(" right "), "{line}");
    }
    // Stopped first: every line it wrote is in the file (a worker's lines
    // wait for their batch while it runs).
    let stopped = mg.stop(std::time::Duration::from_secs(20));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let log = mg.log();
    assert!(log.lines().count() > 100, "trace logging is on");
    let b64 = |bytes: &[u8]| mailgate::auth::encode_base64(bytes);
    let user = BOB.as_bytes();
    for secret in [PASSWORD, WRONG] {
        let plain = [&[0u8][..], user, &[0], secret.as_bytes()].concat();
        for needle in [
            secret.to_owned(),
            secret.replace('\\', "\\\\").replace('"', "\\\""),
            b64(secret.as_bytes()),
            b64(&plain),
        ] {
            assert!(!log.contains(&needle), "{needle:?} is in the log");
        }
    }
    assert!(
        !log.lines().any(|l| l.starts_with("INJECTED")),
        "a user name forged a log line"
    );
    assert!(log.contains("INJECTED"), "the name is logged, escaped");
}
