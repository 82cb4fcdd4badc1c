//! A mail corpus made of real files found on a Debian system, for
//! measuring what compression does to mail (and serving it byte-exact).
//!
//! Random bytes say nothing about deflate; real mail is headers, text,
//! HTML made from that text, and base64 attachments that are mostly
//! already compressed. So every message here is built from files the
//! system already has:
//!
//! * text bodies from `/usr/share/common-licenses`, the packages'
//!   `/usr/share/doc/*/copyright` and their gzipped changelogs (read
//!   decompressed);
//! * an HTML alternative (in [`HTML_SHARE`] of the messages) made from
//!   the same text the way mail clients make one (paragraphs, escaping);
//! * attachments, in messages of [`ATTACHMENT_FROM`] bytes and more: real
//!   images (PNG, JPEG, GIF), PDFs and gzip archives from `/usr/share`,
//!   base64 in 76-column lines, a file cut short where the message's size
//!   ends (cutting keeps the bytes as incompressible as they were);
//! * headers as a provider's mailbox holds them: `Received` lines, a
//!   DKIM signature (its base64 is random, as a real one's is), the usual
//!   addressing and MIME headers.
//!
//! Sizes are drawn from [`Sizes`]: by default a log-normal (the shape
//! measured for e-mail sizes on a university's mail server, Matsubara,
//! "Fluctuations in email size", Eur. Phys. J. Plus 132, 2017) whose
//! median and spread are our assumption, stated in
//! [`Sizes::DEFAULT`]; a site with its own figures gives a table instead
//! ([`Sizes::parse_table`]). The same seed on the same system gives the
//! same corpus. Every line ends in CRLF, no line is longer than 998
//! bytes, no NUL or bare CR: an IMAP server stores and serves it as is.
//!
//! Owns finding files and composing messages; never does I/O beyond
//! reading the files it found, and bounds what it reads ([`SCAN_LIMIT`]
//! directory entries, [`MAX_READ`] per file, [`MAX_MESSAGE`] per message).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Messages this large and larger carry attachments.
pub const ATTACHMENT_FROM: usize = 24 * 1024;
/// Largest message built (the size distribution's tail is cut here).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// Smallest message built (headers and a line of text).
pub const MIN_MESSAGE: usize = 1024;
/// Directory entries looked at while finding files.
pub const SCAN_LIMIT: usize = 200_000;
/// Most bytes read from one file.
pub const MAX_READ: u64 = 4 * 1024 * 1024;
/// Share of messages with an HTML alternative.
pub const HTML_SHARE: f64 = 0.6;

/// Why a corpus could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// No text files under the root.
    #[error(
        "no text files found under {0} (common-licenses, doc/*/copyright, doc/*/changelog*.gz)"
    )]
    NoText(PathBuf),
    /// No image, PDF or archive under the root.
    #[error("no images, PDFs or gzip archives found under {0} to attach")]
    NoAttachments(PathBuf),
    /// A size table's line is not `bytes share`.
    #[error("size table line {line}: {reason}")]
    Table {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The distribution message sizes are drawn from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sizes {
    /// Log-normal: half the messages are below `median` bytes; `sigma` is
    /// the standard deviation of the size's natural logarithm.
    LogNormal {
        /// Median size in bytes.
        median: f64,
        /// Spread (of ln size).
        sigma: f64,
    },
    /// Sizes and their shares (need not sum to 1): `(bytes, share)`.
    Table(Vec<(usize, f64)>),
}

impl Sizes {
    /// The default: median 8 KiB, σ 1.8 — so about 27 % of messages are
    /// over 24 KiB (and carry attachments), 8 % over 100 KiB, 0.4 % over
    /// 1 MiB, and the mean (≈ 40 KiB) is five times the median, as a
    /// heavy tail of attachments makes it. These two numbers are our
    /// assumption, not a measurement; a site should give its own table.
    pub const DEFAULT: Sizes = Sizes::LogNormal {
        median: 8192.0,
        sigma: 1.8,
    };

    /// A table, one `bytes share` pair per line (`#` starts a comment),
    /// for instance from a site's own mailboxes:
    /// `doveadm fetch -A size.physical ALL | awk …`, bucketed.
    pub fn parse_table(text: &str) -> Result<Self, CorpusError> {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: &str| CorpusError::Table {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let mut fields = line.split_whitespace();
            let (Some(size), Some(share), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected two fields: bytes share"));
            };
            let size: usize = size.parse().map_err(|_| bad("bytes is not a number"))?;
            let share: f64 = share.parse().map_err(|_| bad("share is not a number"))?;
            if !(MIN_MESSAGE..=MAX_MESSAGE).contains(&size) {
                return Err(bad(&format!(
                    "bytes must be {MIN_MESSAGE} ..= {MAX_MESSAGE}"
                )));
            }
            if !(share.is_finite() && share > 0.0) {
                return Err(bad("share must be positive"));
            }
            rows.push((size, share));
        }
        if rows.is_empty() {
            return Err(CorpusError::Table {
                line: 0,
                reason: "no rows".into(),
            });
        }
        Ok(Sizes::Table(rows))
    }

    /// One size, within [`MIN_MESSAGE`] ..= [`MAX_MESSAGE`].
    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let size = match self {
            Sizes::LogNormal { median, sigma } => {
                // Box–Muller: a standard normal from two uniforms.
                let (u1, u2) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (median * (sigma * z).exp()) as usize
            }
            Sizes::Table(rows) => {
                let total: f64 = rows.iter().map(|r| r.1).sum();
                let mut pick = rng.f64() * total;
                let mut size = rows[rows.len() - 1].0;
                for &(bytes, share) in rows {
                    if pick < share {
                        size = bytes;
                        break;
                    }
                    pick -= share;
                }
                size
            }
        };
        size.clamp(MIN_MESSAGE, MAX_MESSAGE)
    }
}

/// How a corpus is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// Messages to build.
    pub messages: usize,
    /// Seed of every choice (sizes, files, offsets).
    pub seed: u64,
    /// Size distribution.
    pub sizes: Sizes,
    /// Where files are found (`/usr/share` on a Debian system).
    pub root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            messages: 200,
            seed: 1,
            sizes: Sizes::DEFAULT,
            root: PathBuf::from("/usr/share"),
        }
    }
}

/// What an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Pdf,
    Archive,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" | "jpg" | "jpeg" | "gif" => Some(Kind::Image),
            "pdf" => Some(Kind::Pdf),
            "gz" => Some(Kind::Archive),
            _ => None,
        }
    }

    fn content_type(self, path: &Path) -> &'static str {
        match (self, path.extension().and_then(|e| e.to_str())) {
            (Kind::Image, Some("png")) => "image/png",
            (Kind::Image, Some("gif")) => "image/gif",
            (Kind::Image, _) => "image/jpeg",
            (Kind::Pdf, _) => "application/pdf",
            (Kind::Archive, _) => "application/gzip",
        }
    }
}

/// Built messages and what went into them.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The messages (RFC 5322, CRLF).
    pub messages: Vec<Vec<u8>>,
    /// Text files available / images, PDFs, archives available.
    pub found: [usize; 4],
    /// Messages with an HTML alternative.
    pub with_html: usize,
    /// Attachments by kind: images, PDFs, archives.
    pub attachments: [usize; 3],
    /// Bytes of the messages that are base64 attachment lines.
    pub attachment_bytes: usize,
}

impl Corpus {
    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }

    /// One line: counts, sizes and where they came from.
    pub fn summary(&self) -> String {
        let mut sizes: Vec<usize> = self.messages.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        let at = |q: f64| {
            sizes
                .get(((sizes.len() as f64 * q) as usize).min(sizes.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        format!(
            "{} messages, {:.2} MiB (median {} B, p90 {} B, largest {} B); {:.0} % of the bytes are base64 attachments; {} with an HTML part; attachments: {} images, {} PDFs, {} gzip archives (from {} text files, {} images, {} PDFs, {} archives found)",
            self.messages.len(),
            self.bytes() as f64 / (1024.0 * 1024.0),
            at(0.5),
            at(0.9),
            sizes.last().copied().unwrap_or(0),
            100.0 * self.attachment_bytes as f64 / self.bytes().max(1) as f64,
            self.with_html,
            self.attachments[0],
            self.attachments[1],
            self.attachments[2],
            self.found[0],
            self.found[1],
            self.found[2],
            self.found[3],
        )
    }
}

/// Files found under the root, sorted (the same system gives the same lists).
#[derive(Debug, Default)]
struct Found {
    text: Vec<PathBuf>,
    attachments: [Vec<PathBuf>; 3],
}

fn find(root: &Path) -> Found {
    let mut found = Found::default();
    let mut pending = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SCAN_LIMIT {
                break;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if is_text(root, &path) && len >= 256 {
                found.text.push(path.clone());
            }
            if let Some(kind) = Kind::of(&path).filter(|_| len >= 2048) {
                found.attachments[kind as usize].push(path);
            }
        }
    }
    found.text.sort();
    for list in &mut found.attachments {
        list.sort();
    }
    found
}

fn is_text(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let parts: Vec<_> = rel.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["common-licenses", _] => true,
        ["doc", _, name] => {
            *name == "copyright" || (name.starts_with("changelog") && name.ends_with(".gz"))
        }
        _ => false,
    }
}

/// Up to [`MAX_READ`] bytes of `path` (decompressed when it is a gzipped
/// text), or nothing when it cannot be read.
fn read(path: &Path, decompress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return out;
    };
    let _ = if decompress && path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .take(MAX_READ)
            .read_to_end(&mut out)
    } else {
        file.take(MAX_READ).read_to_end(&mut out)
    };
    out
}

/// Builds the corpus.
pub fn build(options: &Options) -> Result<Corpus, CorpusError> {
    let found = find(&options.root);
    if found.text.is_empty() {
        return Err(CorpusError::NoText(options.root.clone()));
    }
    let kinds: Vec<usize> = (0..3)
        .filter(|&k| !found.attachments[k].is_empty())
        .collect();
    if kinds.is_empty() {
        return Err(CorpusError::NoAttachments(options.root.clone()));
    }
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut corpus = Corpus {
        found: [
            found.text.len(),
            found.attachments[0].len(),
            found.attachments[1].len(),
            found.attachments[2].len(),
        ],
        ..Corpus::default()
    };
    let mut texts = TextSource {
        files: &found.text,
        lines: Vec::new(),
    };
    for number in 1..=options.messages {
        let size = options.sizes.sample(&mut rng);
        let mut message = headers(number, &mut rng);
        let html = rng.f64() < HTML_SHARE;
        corpus.with_html += usize::from(html);
        let attach = size >= ATTACHMENT_FROM;
        let text_budget = if attach {
            rng.usize(1024..8 * 1024)
        } else {
            size.saturating_sub(message.len() + 200)
        };
        // With an HTML part the text is about half the budget (the HTML
        // made from it takes the other half and a little more).
        let text = texts.take(
            &mut rng,
            if html {
                text_budget * 9 / 20
            } else {
                text_budget
            }
            .max(80),
        );
        let subject = subject(&text);
        message.extend_from_slice(format!("Subject: {subject}\r\n").as_bytes());
        let outer = format!("=_outer_{number:06}");
        let alt = format!("=_alt_{number:06}");
        if attach {
            message.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"{outer}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--{outer}\r\n").as_bytes(),
            );
        }
        if html {
            message.extend_from_slice(
                format!(
                    "Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n--{alt}\r\n"
                )
                .as_bytes(),
            );
        }
        message.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        message.extend_from_slice(&text);
        if html {
            message.extend_from_slice(format!("\r\n--{alt}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").as_bytes());
            message.extend_from_slice(&to_html(&text));
            message.extend_from_slice(format!("\r\n--{alt}--\r\n").as_bytes());
        }
        if attach {
            let mut left = size.saturating_sub(message.len());
            while left > 1024 {
                let kind = kinds[rng.usize(0..kinds.len())];
                let files = &found.attachments[kind];
                let path = &files[rng.usize(0..files.len())];
                // base64 in 76-column lines: 78 bytes carry 57.
                let want = (left - 300) * 57 / 78;
                let mut data = read(path, false);
                data.truncate(want);
                if data.is_empty() {
                    break;
                }
                corpus.attachments[kind] += 1;
                corpus.attachment_bytes +=
                    attachment(&mut message, &outer, kind_of(kind), path, &data);
                left = size.saturating_sub(message.len());
            }
            message.extend_from_slice(format!("\r\n--{outer}--\r\n").as_bytes());
        }
        if !message.ends_with(b"\r\n") {
            message.extend_from_slice(b"\r\n");
        }
        corpus.messages.push(message);
    }
    Ok(corpus)
}

fn kind_of(index: usize) -> Kind {
    [Kind::Image, Kind::Pdf, Kind::Archive][index]
}

/// Lines of text, taken from the text files in order from a random start.
struct TextSource<'a> {
    files: &'a [PathBuf],
    lines: Vec<Vec<u8>>,
}

impl TextSource<'_> {
    /// About `budget` bytes of CRLF text: whole lines from random files,
    /// each from a random line on.
    fn take(&mut self, rng: &mut fastrand::Rng, budget: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(budget + 1024);
        let mut tries = 0;
        while out.len() < budget && tries < 1000 {
            tries += 1;
            if self.lines.is_empty() {
                let path = &self.files[rng.usize(0..self.files.len())];
                let text = clean(&read(path, true));
                let mut lines: Vec<Vec<u8>> =
                    text.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
                let start = rng.usize(0..lines.len().max(1));
                lines.drain(..start.min(lines.len()));
                lines.reverse();
                self.lines = lines;
            }
            while out.len() < budget {
                let Some(line) = self.lines.pop() else { break };
                out.extend_from_slice(&line);
                out.extend_from_slice(b"\r\n");
            }
        }
        if out.is_empty() {
            out.extend_from_slice(b"(no text)\r\n");
        }
        out
    }
}

/// Text made safe for a message: no control bytes but tab, no CR (lines
/// end in LF here, CRLF in the message), lines cut at 900 bytes.
fn clean(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut column = 0;
    for &b in text {
        match b {
            b'\n' => {
                out.push(b'\n');
                column = 0;
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                if column >= 900 {
                    out.push(b'\n');
                    column = 0;
                }
                out.push(b);
                column += 1;
            }
            _ => {}
        }
    }
    out
}

fn subject(text: &[u8]) -> String {
    let first = text
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim().to_owned())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let ascii: String = first
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(70)
        .collect();
    if ascii.is_empty() {
        "(no subject)".into()
    } else {
        ascii
    }
}

/// The HTML a mail client makes from `text`: paragraphs at blank lines,
/// lines joined by `<br>`, the text escaped.
fn to_html(text: &[u8]) -> Vec<u8> {
    let mut out = b"<!DOCTYPE html>\r\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>\r\n<body><div dir=\"ltr\" style=\"font-family:Arial,Helvetica,sans-serif;font-size:small\">\r\n<p>".to_vec();
    let mut first = true;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            if !first {
                out.extend_from_slice(b"</p>\r\n<p>");
                first = true;
            }
            continue;
        }
        if !first {
            out.extend_from_slice(b"<br>\r\n");
        }
        first = false;
        for &b in line {
            match b {
                b'<' => out.extend_from_slice(b"&lt;"),
                b'>' => out.extend_from_slice(b"&gt;"),
                b'&' => out.extend_from_slice(b"&amp;"),
                b'"' => out.extend_from_slice(b"&quot;"),
                _ => out.push(b),
            }
        }
    }
    out.extend_from_slice(b"</p>\r\n</div></body></html>\r\n");
    out
}

fn headers(number: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let day = 1 + number % 28;
    let (h, m, s) = (number % 24, (number * 7) % 60, (number * 13) % 60);
    let signature: String = (0..344)
        .map(|_| {
            const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            B64[rng.usize(0..64)] as char
        })
        .collect();
    let (sig1, sig2) = signature.split_at(172);
    format!(
        "Return-Path: <sender{n}@lists.example.net>\r\n\
Delivered-To: user@example.org\r\n\
Received: from mx1.example.org ([10.0.0.25])\r\n\tby box1.example.org with LMTP\r\n\tid {id:016x}; Mon, {day} Nov 2026 {h:02}:{m:02}:{s:02} +0000\r\n\
Received: from mail.example.net (mail.example.net [198.51.100.{o}])\r\n\tby mx1.example.org (Postfix) with ESMTPS id {qid:010X}\r\n\tfor <user@example.org>; Mon, {day} Nov 2026 {h:02}:{m:02}:{s:02} +0000 (UTC)\r\n\
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net;\r\n\ts=mail2026; t={t}; bh={bh};\r\n\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type;\r\n\tb={sig1}\r\n\t {sig2}\r\n\
From: Sender {n} <sender{n}@lists.example.net>\r\n\
To: User <user@example.org>\r\n\
Date: Mon, {day} Nov 2026 {h:02}:{m:02}:{s:02} +0000\r\n\
Message-ID: <{id:016x}.{n}@mail.example.net>\r\n\
MIME-Version: 1.0\r\n",
        n = number,
        id = rng.u64(..),
        qid = rng.u64(..1 << 40),
        o = 1 + number % 250,
        t = 1_790_000_000 + number * 3600,
        bh = &signature[..44],
    )
    .into_bytes()
}

/// Appends a base64 attachment part; the bytes of its base64 lines.
fn attachment(
    message: &mut Vec<u8>,
    boundary: &str,
    kind: Kind,
    path: &Path,
    data: &[u8],
) -> usize {
    use base64::Engine;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("attachment")
        .replace(['"', '\\'], "_");
    message.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: {}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            kind.content_type(path)
        )
        .as_bytes(),
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let start = message.len();
    for line in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message.len() - start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(messages: usize, seed: u64) -> Corpus {
        build(&Options {
            messages,
            seed,
            ..Options::default()
        })
        .expect("a Debian system has text and attachments under /usr/share")
    }

    #[test]
    fn messages_are_well_formed_and_the_same_for_a_seed() {
        let a = corpus(60, 7);
        assert_eq!(a.messages.len(), 60);
        for m in &a.messages {
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.contains(&0));
            for (i, b) in m.iter().enumerate() {
                if *b == b'\n' {
                    assert!(i > 0 && m[i - 1] == b'\r', "bare LF");
                }
                if *b == b'\r' {
                    assert_eq!(m.get(i + 1), Some(&b'\n'), "bare CR");
                }
            }
            assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 1000));
            let head_end = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&m[..head_end]);
            assert!(head.contains("Subject: ") && head.contains("MIME-Version: 1.0"));
        }
        assert_eq!(a.messages, corpus(60, 7).messages);
        assert_ne!(a.messages, corpus(60, 8).messages);
    }

    #[test]
    fn large_messages_carry_attachments_and_some_have_html() {
        let c = build(&Options {
            messages: 40,
            seed: 3,
            sizes: Sizes::Table(vec![(4096, 1.0), (200_000, 1.0)]),
            root: PathBuf::from("/usr/share"),
        })
        .unwrap();
        for m in &c.messages {
            let text = String::from_utf8_lossy(m);
            if m.len() >= ATTACHMENT_FROM {
                assert!(text.contains("Content-Transfer-Encoding: base64"));
                assert!(text.contains("multipart/mixed"));
                // Filled to about the size drawn.
                assert!(m.len() > 150_000 && m.len() < 220_000, "{}", m.len());
            } else {
                assert!(!text.contains("base64\r\n\r\n"));
            }
        }
        assert!(c.with_html > 0 && c.with_html < 40);
        assert!(c.attachments.iter().sum::<usize>() >= 10);
    }

    #[test]
    fn default_sizes_follow_the_stated_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut sizes: Vec<usize> = (0..20_000)
            .map(|_| Sizes::DEFAULT.sample(&mut rng))
            .collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2] as f64;
        assert!((7000.0..9500.0).contains(&median), "{median}");
        let over_100k = sizes.iter().filter(|&&s| s > 100 * 1024).count() as f64 / 20_000.0;
        assert!((0.06..0.10).contains(&over_100k), "{over_100k}");
        assert!(sizes[0] >= MIN_MESSAGE && *sizes.last().unwrap() <= MAX_MESSAGE);
    }

    #[test]
    fn size_tables_are_checked() {
        assert_eq!(
            Sizes::parse_table("# a site\n4096 0.7\n\n1048576 0.3 # big\n").unwrap(),
            Sizes::Table(vec![(4096, 0.7), (1_048_576, 0.3)])
        );
        for bad in [
            "",
            "4096",
            "4096 x",
            "10 0.5",
            "4096 0",
            "4096 1 2",
            "99999999 1",
        ] {
            assert!(Sizes::parse_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn html_is_escaped_and_paragraphed() {
        let html = String::from_utf8(to_html(b"a <b> & \"c\"\r\nd\r\n\r\ne\r\n")).unwrap();
        assert!(html.contains("a &lt;b&gt; &amp; &quot;c&quot;<br>\r\nd</p>\r\n<p>e</p>"));
    }

    #[test]
    fn a_root_without_files_is_an_error() {
        let empty = tempfile::tempdir().unwrap();
        let options = Options {
            root: empty.path().to_path_buf(),
            ..Options::default()
        };
        assert!(matches!(build(&options), Err(CorpusError::NoText(_))));
    }
}
