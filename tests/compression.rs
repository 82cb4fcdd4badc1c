//! Compressed back-end legs (`[backend] compress = "deflate"`, IMAP
//! `COMPRESS=DEFLATE`, RFC 4978) against a real Dovecot with its
//! `imap_zlib` plugin, driven by Python's imaplib: byte-exact fetches and
//! appends through the compressed leg, the client's own `COMPRESS` in both
//! modes, and a back end without the capability.

mod support;

use std::process::Command;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

/// Dovecot listens on 127.0.0.2 too, where mailgate reaches it as another
/// host would be reached: a connection to 127.0.0.2 leaves from 127.0.0.1
/// (the loopback route's source), the address the clients connect to is
/// 127.0.0.1. A back end on this host is never compressed (no VPN to save).
const ANOTHER_HOST: &str = "listen = 127.0.0.1, 127.0.0.2\n";

/// Dovecot's `imap_zlib` plugin on IMAP sessions (and [`ANOTHER_HOST`]).
const IMAP_ZLIB: &str =
    "listen = 127.0.0.1, 127.0.0.2\nprotocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n";

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
        &format!("{ANOTHER_HOST}{extra}"),
    )
}

/// mailgate routing Alice to Dovecot at 127.0.0.2 (another host).
fn mailgate(dovecot: &Dovecot, compress: &str) -> Mailgate {
    mailgate_routing(dovecot, compress, "127.0.0.2")
}

fn mailgate_routing(dovecot: &Dovecot, compress: &str, host: &str) -> Mailgate {
    let config = support::mailgate::config(
        dovecot.imap.port(),
        dovecot.pop3.port(),
        &format!("compress = \"{compress}\""),
        "[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    Mailgate::start(&config, &format!("*@example.org  {host}\n"))
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
    let (ok, stdout, stderr) = run_script(
        PYTHON,
        mg,
        dir.path(),
        &[if client_compress { "yes" } else { "no" }],
    );
    assert!(
        ok && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{stderr}\nmailgate:\n{}",
        mg.log()
    );
    stdout
}

/// Runs a Python `script` as Alice through `mg` with the messages in
/// `folder` and `extra` arguments: whether it succeeded, its output and
/// its errors.
fn run_script(
    script: &str,
    mg: &Mailgate,
    folder: &std::path::Path,
    extra: &[&str],
) -> (bool, String, String) {
    let port = mg.addr(0).port().to_string();
    let out = Command::new("python3")
        .args(["-c", script, "127.0.0.1", &port, ALICE, ALICE_PW])
        .arg(folder)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Appends every message in a folder to a new mailbox, then fetches each
/// back and compares bytes.
const CORPUS_PY: &str = r#"
import imaplib, os, socket, sys
socket.setdefaulttimeout(30)
host, port, user, pw, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
messages = [open(os.path.join(folder, f), 'rb').read() for f in sorted(os.listdir(folder))]
m = imaplib.IMAP4(host, port)
m.login(user, pw)
typ, data = m.create('Corpus')
assert typ == 'OK', data
for body in messages:
    typ, data = m.append('Corpus', None, None, body)
    assert typ == 'OK', data
typ, data = m.select('Corpus')
assert typ == 'OK' and int(data[0]) == len(messages), data
for i, body in enumerate(messages):
    typ, data = m.fetch(str(i + 1), '(BODY.PEEK[])')
    assert typ == 'OK', data
    assert data[0][1] == body, 'message %d differs (%d bytes, got %d)' % (i + 1, len(body), len(data[0][1]))
m.logout()
print('ok', len(messages), sum(map(len, messages)))
"#;

/// The test kit's corpus (mail made of real files: text, HTML, base64
/// images, PDFs and archives, some over 1 MiB) goes up by APPEND and comes
/// back by FETCH through a compressed leg, every message byte-exact;
/// literals cross the compressed stream's block boundaries both ways.
#[test]
fn every_corpus_message_goes_up_and_comes_back_exact_through_a_compressed_leg() {
    let dovecot = dovecot(IMAP_ZLIB);
    let mg = mailgate(&dovecot, "deflate");
    let corpus = mailgate_testkit::corpus::build(&mailgate_testkit::corpus::Options {
        messages: 60,
        seed: 25,
        ..Default::default()
    })
    .expect("a corpus from /usr/share");
    assert!(corpus.attachments.iter().sum::<usize>() > 0 && corpus.with_html > 0);
    let dir = tempfile::tempdir().unwrap();
    for (i, message) in corpus.messages.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:03}.eml")), message).unwrap();
    }
    let (ok, stdout, stderr) = run_script(CORPUS_PY, &mg, dir.path(), &[]);
    assert!(
        ok && stdout.starts_with("ok 60"),
        "{stdout}\n{stderr}\nmailgate:\n{}",
        mg.log()
    );
    let text = mg.metrics();
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
    assert!(plain as usize > 2 * corpus.bytes(), "up and down: {plain}");
    assert!(wire < plain, "compressed on the wire: {wire} of {plain}");
}

#[test]
fn a_compressed_back_end_leg_is_byte_exact_and_smaller_on_the_wire() {
    let dovecot = dovecot(IMAP_ZLIB);
    let mg = mailgate(&dovecot, "deflate");
    python(&mg, &dovecot, false);
    let text = mg.metrics();
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
    let down_wire = sample(&text, "mailgate_backend_bytes_total{backend=\"127.0.0.2");
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
    let text = mg.metrics();
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

/// A back end on this host (127.0.0.1: the connection leaves from the
/// address it goes to) is relayed uncompressed, spliced, and counted:
/// compression only pays where a leg crosses the VPN.
#[test]
fn a_back_end_on_this_host_is_not_compressed() {
    let dovecot = dovecot(IMAP_ZLIB);
    let mg = mailgate_routing(&dovecot, "deflate", "127.0.0.1");
    python(&mg, &dovecot, false);
    let text = mg.metrics();
    assert_eq!(
        sample(
            &text,
            "mailgate_backend_compression_total{result=\"same_host\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mailgate_backend_compression_total{result=\"deflate\"}"
        ),
        0
    );
    assert_eq!(
        sample(&text, "mailgate_backend_bytes_total{"),
        sample(&text, "mailgate_backend_uncompressed_bytes_total{")
    );
    assert!(sample(&text, "mailgate_relay_bytes_total{method=\"splice\"}") > 0);
}

/// An IMAP connection through `addr`, logged in as Alice with INBOX
/// selected; lines are read with a deadline.
fn selected(
    addr: std::net::SocketAddr,
) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>) {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    write!(stream, "a LOGIN {ALICE} {ALICE_PW}\r\nb SELECT INBOX\r\n").unwrap();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
        if line.starts_with("b ") {
            assert!(line.starts_with("b OK"), "{line}");
            return (stream, reader);
        }
    }
}

#[test]
fn idle_notifications_come_through_a_compressed_leg() {
    use std::io::{BufRead, Write};
    let dovecot = dovecot(IMAP_ZLIB);
    let mg = mailgate(&dovecot, "deflate");
    let (mut stream, mut reader) = selected(mg.addr(0));
    stream.write_all(b"c IDLE\r\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with('+'), "{line}");
    // Another session delivers a message: the idle one hears of it.
    let (mut other, mut other_reader) = selected(mg.addr(0));
    let message = b"Subject: new\r\n\r\nhello\r\n";
    write!(other, "d APPEND INBOX {{{}+}}\r\n", message.len()).unwrap();
    other.write_all(message).unwrap();
    other.write_all(b"\r\n").unwrap();
    loop {
        line.clear();
        other_reader.read_line(&mut line).unwrap();
        if line.starts_with("d ") {
            assert!(line.starts_with("d OK"), "{line}");
            break;
        }
    }
    let count = alice_messages().len() + 2;
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed while idling"
        );
        if line.trim_end() == format!("* {count} EXISTS") {
            break;
        }
    }
    stream.write_all(b"DONE\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("c ") {
            assert!(line.starts_with("c OK"), "{line}");
            break;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_highly_compressible_flood_waits_for_the_client_instead_of_filling_memory() {
    use std::io::{Read, Write};
    // 96 MiB of one repeated line: a few hundred KiB on the compressed leg.
    let line = b"0000000000000000000000000000000000000000000000000000000000000000000000\r\n";
    let mut flood = b"Subject: flood\r\n\r\n".to_vec();
    while flood.len() < 96 << 20 {
        flood.extend_from_slice(line);
    }
    let dovecot = Dovecot::start_with(
        &[TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages: vec![flood.clone()],
        }],
        IMAP_ZLIB,
    );
    let mg = mailgate(&dovecot, "deflate");
    let (mut stream, mut reader) = selected(mg.addr(0));
    let before = rss_kib(mg.pid());
    stream.write_all(b"f FETCH 1 BODY.PEEK[]\r\n").unwrap();
    // The client reads nothing for a while: whatever mailgate inflated
    // waits in socket buffers, the rest compressed at the back end.
    let mut peak = before;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        peak = peak.max(rss_kib(mg.pid()));
    }
    assert!(
        peak < before + 24 * 1024,
        "mailgate grew from {before} to {peak} KiB while the client did not read"
    );
    // Then it reads everything, byte-exact.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"}\r\n") {
        reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut body = vec![0u8; flood.len()];
    reader.read_exact(&mut body).unwrap();
    assert!(body == flood, "the flood arrives intact");
}
