//! Compressed back-end legs (`[backend] compress = "deflate"`, IMAP
//! `COMPRESS=DEFLATE`, RFC 4978) against a real Dovecot with its
//! `imap_zlib` plugin, driven by Python's imaplib: byte-exact fetches and
//! appends through the compressed leg, the client's own `COMPRESS` in both
//! modes, and a back end without the capability.

mod support;

use std::process::Command;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

/// Dovecot's `imap_zlib` plugin on IMAP sessions.
const IMAP_ZLIB: &str = "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n";

/// A message of real text (the GPL, as Debian ships it): what mail mostly is.
fn text_message() -> Vec<u8> {
    let body = std::fs::read("/usr/share/common-licenses/GPL-3").expect("Debian's common-licenses");
    let mut message =
        b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: licence\r\n\r\n".to_vec();
    for line in body.split(|&b| b == b'\n') {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message
}

fn dovecot(extra: &str) -> Dovecot {
    let mut messages = alice_messages();
    messages.push(text_message());
    Dovecot::start_with(
        &[TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages,
        }],
        extra,
    )
}

fn mailgate(dovecot: &Dovecot, compress: &str) -> Mailgate {
    let config = support::mailgate::config(
        dovecot.imap.port(),
        dovecot.pop3.port(),
        &format!("compress = \"{compress}\""),
        "[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    Mailgate::start(&config, "*@example.org  127.0.0.1\n")
}

fn metrics(mg: &Mailgate) -> String {
    let admin = *mg.addresses.last().expect("admin listener");
    mailgate_testkit::admin::AdminClient::new(admin, None)
        .request("GET", "/metrics")
        .expect("metrics")
        .body
}

fn sample(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

const PYTHON: &str = r#"
import imaplib, socket, sys, zlib
socket.setdefaulttimeout(20)
host, port, user, pw, folder, client_compress = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
import os
expected = [open(os.path.join(folder, f), 'rb').read() for f in sorted(os.listdir(folder))]
m = imaplib.IMAP4(host, port)
m.login(user, pw)
if client_compress == 'yes':
    imaplib.Commands['COMPRESS'] = ('AUTH', 'SELECTED')
    typ, data = m._simple_command('COMPRESS', 'DEFLATE')
    print('client COMPRESS:', typ, data)
    if typ == 'OK':
        # From here on the client's own leg is deflate (RFC 4978).
        class Z:
            pass
        d, c = zlib.decompressobj(-15), zlib.compressobj(1, zlib.DEFLATED, -15)
        sock = m.sock
        raw_read, raw_send = m.file, m.send
        m._zbuf = b''
        def read(size):
            while len(m._zbuf) < size:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                m._zbuf += d.decompress(chunk)
            out, m._zbuf = m._zbuf[:size], m._zbuf[size:]
            return out
        def readline():
            while b'\n' not in m._zbuf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                m._zbuf += d.decompress(chunk)
            i = m._zbuf.find(b'\n')
            i = len(m._zbuf) - 1 if i < 0 else i
            out, m._zbuf = m._zbuf[:i + 1], m._zbuf[i + 1:]
            return out
        def send(data):
            sock.sendall(c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))
        m.read, m.readline, m.send = read, readline, send
typ, data = m.select('INBOX')
assert typ == 'OK', data
for i, body in enumerate(expected):
    typ, data = m.fetch(str(i + 1), '(BODY.PEEK[])')
    assert typ == 'OK', data
    assert data[0][1] == body, 'message %d differs' % (i + 1)
# APPEND up through the leg, then fetch it back.
big = b'Subject: appended\r\n\r\n' + b''.join(b'line %d of an appended message\r\n' % n for n in range(20000))
typ, data = m.append('INBOX', None, None, big)
assert typ == 'OK', data
typ, data = m.select('INBOX')
n = int(data[0])
typ, data = m.fetch(str(n), '(BODY.PEEK[])')
assert data[0][1] == big, 'the appended message differs'
m.logout()
print('ok')
"#;

/// Fetches every message of Alice's and appends one, through `mg`,
/// checking bytes; `client_compress`: the client sends its own COMPRESS
/// first. The client's output.
fn python(mg: &Mailgate, dovecot: &Dovecot, client_compress: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let count = alice_messages().len() + 1;
    for i in 0..count {
        let body = std::fs::read(dovecot.message_path(ALICE, i)).unwrap();
        std::fs::write(dir.path().join(format!("{i:03}")), body).unwrap();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            PYTHON,
            "127.0.0.1",
            &mg.addr(0).port().to_string(),
            ALICE,
            ALICE_PW,
            dir.path().to_str().unwrap(),
            if client_compress { "yes" } else { "no" },
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{}\nmailgate:\n{}",
        String::from_utf8_lossy(&out.stderr),
        mg.log()
    );
    stdout
}

#[test]
fn a_compressed_back_end_leg_is_byte_exact_and_smaller_on_the_wire() {
    let dovecot = dovecot(IMAP_ZLIB);
    let mg = mailgate(&dovecot, "deflate");
    python(&mg, &dovecot, false);
    let text = metrics(&mg);
    assert_eq!(
        sample(
            &text,
            "mailgate_backend_compression_total{result=\"deflate\"}"
        ),
        1,
        "{text}"
    );
    let wire = sample(&text, "mailgate_backend_bytes_total{");
    let plain = sample(&text, "mailgate_backend_uncompressed_bytes_total{");
    assert!(plain > 5 * 1024 * 1024, "{plain}");
    assert!(wire < plain, "compressed on the wire: {wire} of {plain}");
    let down_wire = sample(&text, "mailgate_backend_bytes_total{backend=\"127.0.0.1");
    assert!(down_wire > 0);
}

#[test]
fn a_clients_own_compress_is_refused_as_active_or_passes_through() {
    let dovecot = dovecot(IMAP_ZLIB);
    // The back-end leg compressed by mailgate: the back end answers the
    // client's COMPRESS with NO [COMPRESSIONACTIVE]; the client goes on
    // uncompressed.
    let mg = mailgate(&dovecot, "deflate");
    let out = python(&mg, &dovecot, true);
    assert!(out.contains("client COMPRESS: NO"), "{out}");
    // Without mailgate's compression the client's COMPRESS reaches the back
    // end, and the relay carries its deflate both ways byte for byte.
    let mg = mailgate(&dovecot, "off");
    let out = python(&mg, &dovecot, true);
    assert!(out.contains("client COMPRESS: OK"), "{out}");
}

#[test]
fn a_back_end_without_compress_is_relayed_uncompressed_and_counted() {
    let dovecot = dovecot("");
    let mg = mailgate(&dovecot, "deflate");
    python(&mg, &dovecot, false);
    let text = metrics(&mg);
    assert_eq!(
        sample(
            &text,
            "mailgate_backend_compression_total{result=\"not_offered\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        sample(&text, "mailgate_backend_bytes_total{"),
        sample(&text, "mailgate_backend_uncompressed_bytes_total{")
    );
}
