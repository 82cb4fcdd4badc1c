//! A compressed back-end leg next to a plain one, in one run (a
//! benchmark, not a test: run it explicitly):
//!
//!   cargo test --release --test perf_compression -- --ignored --nocapture --test-threads 1
//!
//! A real Dovecot with `imap_zlib`; two mailgates in front of it, `[backend]
//! compress = "off"` and `"deflate"`. The mailbox holds text (the licences
//! Debian ships in /usr/share/common-licenses, as messages) and, as the
//! worst case, already-compressed data (gzip files from /usr/share/doc,
//! base64-encoded as mail attachments are). Per mailgate: bytes on the
//! back-end leg per byte the client fetched (mailgate's own counters),
//! mailgate's CPU per MiB fetched, and the RSS an idle logged-in session
//! adds (200 sessions). A third mailbox holds the test kit's corpus (mail
//! built from real files: text, HTML, base64 images, PDFs, archives).
//!
//! `deflate_levels_on_the_corpus` measures what `[backend] compress_level`
//! governs — what mailgate itself deflates, the client's commands and
//! APPEND literals, here every corpus message as one APPEND — at each
//! level: bytes out per byte in and CPU per MiB, against level 1 in the
//! same run.

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use support::stack::{ALICE, ALICE_PW};
use support::{cpu_ticks, metric, Dovecot, Mailgate, TestUser};

/// `imap_zlib`, and Dovecot on 127.0.0.2 too: mailgate reaches it there as
/// another host (a back end on this host is never compressed).
const IMAP_ZLIB: &str =
    "listen = 127.0.0.1, 127.0.0.2\nprotocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n";
const IDLE_SESSIONS: usize = 200;
const ROUNDS: usize = 5;

fn licences() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/usr/share/common-licenses").unwrap() {
        let path = entry.unwrap().path();
        if let Ok(text) = std::fs::read(&path) {
            if text.len() > 4096 && !path.is_symlink() {
                let mut m = format!("Subject: {}\r\n\r\n", path.display()).into_bytes();
                for line in text.split(|&b| b == b'\n') {
                    m.extend_from_slice(line);
                    m.extend_from_slice(b"\r\n");
                }
                out.push(m);
            }
        }
    }
    out
}

fn attachments() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/usr/share/doc")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") && out.len() < 40 {
                let data = std::fs::read(&path).unwrap_or_default();
                if data.len() > 8192 {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
                    let mut m = b"Subject: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                        .to_vec();
                    for chunk in b64.as_bytes().chunks(76) {
                        m.extend_from_slice(chunk);
                        m.extend_from_slice(b"\r\n");
                    }
                    out.push(m);
                }
            }
        }
    }
    out
}

/// Logs in, fetches every message once, logs out: bytes fetched.
fn fetch_all(addr: SocketAddr, count: usize) -> u64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    write!(stream, "a LOGIN {ALICE} {ALICE_PW}\r\nb SELECT INBOX\r\n").unwrap();
    let until = |reader: &mut BufReader<TcpStream>, tag: &str| -> u64 {
        let mut bytes = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            reader.read_until(b'\n', &mut line).unwrap();
            if let Some(size) = line
                .strip_suffix(b"}\r\n")
                .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|at| &l[at + 1..]))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
            {
                let mut body = vec![0; size];
                reader.read_exact(&mut body).unwrap();
                bytes += size as u64;
            }
            if line.starts_with(tag.as_bytes()) {
                return bytes;
            }
        }
    };
    until(&mut reader, "b ");
    let mut total = 0;
    for n in 1..=count {
        write!(stream, "f{n} FETCH {n} BODY.PEEK[]\r\n").unwrap();
        total += until(&mut reader, &format!("f{n} "));
    }
    stream.write_all(b"z LOGOUT\r\n").unwrap();
    total
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn compressed_leg_next_to_plain() {
    let corpus = mailgate_testkit::corpus::build(&mailgate_testkit::corpus::Options::default())
        .expect("a corpus from /usr/share");
    for (name, messages) in [
        ("text (licences)", licences()),
        ("base64 gzip attachments", attachments()),
        ("corpus (mixed)", corpus.messages),
    ] {
        let count = messages.len();
        let size: usize = messages.iter().map(Vec::len).sum();
        let dovecot = Dovecot::start_with(
            &[TestUser {
                name: ALICE.into(),
                password: ALICE_PW.into(),
                messages,
            }],
            IMAP_ZLIB,
        );
        let start = |compress: &str| {
            let config = support::mailgate::config(
                dovecot.imap.port(),
                dovecot.pop3.port(),
                &format!("compress = \"{compress}\""),
                "[admin]\naddress = \"127.0.0.1:0\"\n",
            )
            .replace("workers = 2", "workers = 1");
            Mailgate::start_with_env(&config, "*@example.org 127.0.0.2\n", "warn", &[])
        };
        let plain = start("off");
        let deflate = start("deflate");
        println!("\n# {name}: {count} messages, {:.2} MiB, fetched {ROUNDS} times through each mailgate\n", size as f64 / 1048576.0);
        println!("| `compress` | back-end leg bytes per fetched byte | CPU ms per MiB fetched | KiB per idle session |");
        println!("| --- | --- | --- | --- |");
        for (label, mg) in [("off", &plain), ("deflate", &deflate)] {
            let ticks = cpu_ticks(mg.pid());
            let mut fetched = 0;
            for _ in 0..ROUNDS {
                fetched += fetch_all(mg.addr(0), count);
            }
            // Sessions are counted when they end, a moment after LOGOUT.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let (wire, plain_bytes) = loop {
                let text = mg.metrics();
                let wire = metric(&text, "mailgate_backend_bytes_total");
                let plain = metric(&text, "mailgate_backend_uncompressed_bytes_total");
                if plain >= fetched as f64 || std::time::Instant::now() > deadline {
                    break (wire, plain);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let cpu_ms = (cpu_ticks(mg.pid()) - ticks) as f64 * 10.0;
            assert!(plain_bytes >= fetched as f64, "every session counted");
            // Idle sessions: logged in, INBOX selected, nothing moving.
            let before = rss_kib(mg.pid());
            let idle: Vec<TcpStream> = (0..IDLE_SESSIONS)
                .map(|_| {
                    let mut s = TcpStream::connect(mg.addr(0)).unwrap();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    write!(s, "a LOGIN {ALICE} {ALICE_PW}\r\nb SELECT INBOX\r\n").unwrap();
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line.starts_with("b ") {
                            break;
                        }
                    }
                    s
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(500));
            let per_session = (rss_kib(mg.pid()) - before) as f64 / IDLE_SESSIONS as f64;
            drop(idle);
            println!(
                "| {label} | {:.3} | {:.2} | {per_session:.1} |",
                wire / plain_bytes,
                cpu_ms / (fetched as f64 / 1048576.0)
            );
        }
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn deflate_levels_on_the_corpus() {
    use mailgate::compress::Deflater;
    let corpus = mailgate_testkit::corpus::build(&mailgate_testkit::corpus::Options {
        messages: 400,
        ..Default::default()
    })
    .expect("a corpus from /usr/share");
    let text: Vec<Vec<u8>> = corpus
        .messages
        .iter()
        .filter(|m| m.len() < mailgate_testkit::corpus::ATTACHMENT_FROM)
        .cloned()
        .collect();
    println!("\n# {}\n", corpus.summary());
    println!("| level | out/in, whole corpus | CPU ms per MiB in | out/in, messages without attachments | CPU ms per MiB in | CPU vs level 1 (whole) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let run = |level: u32, messages: &[Vec<u8>]| {
        let input: usize = messages.iter().map(Vec::len).sum();
        let mut best = f64::MAX;
        let mut output = 0;
        // Best of 5: the least disturbed by the rest of the machine.
        for _ in 0..5 {
            let started = std::time::Instant::now();
            output = 0;
            let mut out = Vec::new();
            for m in messages {
                out.clear();
                Deflater::new(level).write(m, &mut out).unwrap();
                output += out.len();
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        (
            output as f64 / input as f64,
            best * 1000.0 / (input as f64 / 1048576.0),
        )
    };
    let mut base = 0.0;
    for level in [1, 2, 3, 4, 6, 9] {
        let (ratio, ms) = run(level, &corpus.messages);
        let (text_ratio, text_ms) = run(level, &text);
        if level == 1 {
            base = ms;
        }
        println!(
            "| {level} | {ratio:.3} | {ms:.2} | {text_ratio:.3} | {text_ms:.2} | {:.2}x |",
            ms / base
        );
    }
}
