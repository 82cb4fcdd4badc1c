//! The simulated back end's IMAP side.
//!
//! After `COMPRESS DEFLATE` (RFC 4978) the connection reads inflate and
//! writes deflate with mailgate's own codec. A `FETCH` answer is sent as
//! deflated once at start: a stream from a fresh compressor that ends on a
//! sync flush is valid anywhere in the connection's stream (it refers back
//! only into itself), provided what follows does not refer back across it
//! — so the session's deflater starts afresh after one.

use super::Served;
use crate::compress::{Deflater, Inflater};
use crate::imap::command::{self, Token};
use crate::imap::framing::{Frame, Framer};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAPABILITIES: &str =
    "IMAP4rev1 LITERAL+ SASL-IR IDLE ID AUTH=PLAIN AUTH=OAUTHBEARER AUTH=XOAUTH2";
const LIMIT: usize = 64 * 1024;
/// Dovecot's default `imap_compress_deflate_level`.
const DEFLATE_LEVEL: u32 = 6;

/// `data` deflated alone: a fresh compressor, a sync flush at the end.
pub(super) fn deflate_alone(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    Deflater::new(DEFLATE_LEVEL)
        .write(data, &mut out)
        .expect("deflating into memory");
    out
}

/// The connection: plain, or compressed after `COMPRESS DEFLATE`.
struct Wire {
    stream: TcpStream,
    deflate: Option<Box<Deflating>>,
}

struct Deflating {
    deflater: Deflater,
    inflater: Inflater,
    /// Compressed bytes received and not yet inflated.
    raw: Vec<u8>,
    out: Vec<u8>,
}

impl Wire {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.deflate {
            None => self.stream.write_all(bytes).await,
            Some(d) => {
                d.out.clear();
                d.deflater.write(bytes, &mut d.out)?;
                self.stream.write_all(&d.out).await
            }
        }
    }

    /// Message `i`'s `FETCH` answer, deflated at start when compressed.
    async fn write_fetch(&mut self, served: &Served, i: usize) -> io::Result<()> {
        match &mut self.deflate {
            None => self.stream.write_all(&served.imap_fetch[i]).await,
            Some(d) => {
                d.deflater = Deflater::new(DEFLATE_LEVEL);
                self.stream.write_all(&served.imap_fetch_deflated[i]).await
            }
        }
    }

    /// Appends what arrives (inflated when compressed) to `buf`; 0 at EOF.
    /// Reads go straight into the growing buffers (no read buffer lives in
    /// the session while it waits).
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        const CHUNK: usize = 16 * 1024;
        let Wire { stream, deflate } = self;
        let Some(d) = deflate else {
            let start = buf.len();
            buf.resize(start + CHUNK, 0);
            let n = stream.read(&mut buf[start..]).await?;
            buf.truncate(start + n);
            return Ok(n);
        };
        loop {
            if !d.raw.is_empty() {
                buf.reserve(64 * 1024);
                let (used, n) = d.inflater.read(&d.raw, buf)?;
                d.raw.drain(..used);
                if n > 0 {
                    return Ok(n);
                }
            }
            let start = d.raw.len();
            d.raw.resize(start + CHUNK, 0);
            let n = stream.read(&mut d.raw[start..]).await?;
            d.raw.truncate(start + n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

/// Client bytes not yet consumed, read in chunks.
struct Input {
    buf: Vec<u8>,
}

impl Input {
    async fn fill(&mut self, stream: &mut Wire) -> io::Result<bool> {
        Ok(stream.read(&mut self.buf).await? > 0)
    }

    /// Reads one whole command (literals included, `+` sent for the
    /// synchronizing ones); its length in `buf`, or `None` at EOF.
    async fn command(&mut self, stream: &mut Wire) -> io::Result<Option<usize>> {
        let mut framer = Framer::new(LIMIT, LIMIT);
        loop {
            match framer.scan(&self.buf) {
                Frame::Complete(len) => return Ok(Some(len)),
                Frame::Error(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                Frame::Incomplete { continue_literal } => {
                    if continue_literal {
                        stream.write_all(b"+ go ahead\r\n").await?;
                    }
                    if !self.fill(stream).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads one line (for SASL responses and `DONE`).
    async fn line(&mut self, stream: &mut Wire) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf[..lf].trim_ascii_end().to_vec();
                self.buf.drain(..=lf);
                return Ok(Some(line));
            }
            if self.buf.len() > LIMIT || !self.fill(stream).await? {
                return Ok(None);
            }
        }
    }
}

pub(super) async fn serve(stream: TcpStream, served: Arc<Served>) -> io::Result<()> {
    let mut stream = Wire {
        stream,
        deflate: None,
    };
    stream
        .write_all(
            format!("* OK [CAPABILITY {CAPABILITIES}] Simulated back end ready.\r\n").as_bytes(),
        )
        .await?;
    let mut input = Input { buf: Vec::new() };
    let mut logged_in = false;
    let mut reply = Vec::new();
    while let Some(len) = input.command(&mut stream).await? {
        let raw = input.buf[..len].to_vec();
        input.buf.drain(..len);
        reply.clear();
        let Ok(cmd) = command::parse(&raw) else {
            stream.write_all(b"* BAD parse error\r\n").await?;
            continue;
        };
        let tag = cmd.tag;
        let name = cmd.name.as_str();
        match (name, logged_in) {
            ("CAPABILITY", _) => {
                let compress = if logged_in && served.compress && stream.deflate.is_none() {
                    " COMPRESS=DEFLATE"
                } else {
                    ""
                };
                reply = format!("* CAPABILITY {CAPABILITIES}{compress}\r\n{tag} OK done\r\n")
                    .into_bytes();
            }
            ("NOOP", _) => reply = format!("{tag} OK done\r\n").into_bytes(),
            ("ID", _) => {
                reply = format!("* ID (\"name\" \"simulated\")\r\n{tag} OK done\r\n").into_bytes()
            }
            ("LOGOUT", _) => {
                stream
                    .write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            ("LOGIN", false) => {
                let password = cmd.args.get(1).and_then(Token::as_astring);
                logged_in = password.is_some_and(|p| served.password_ok(p));
                reply = login_reply(tag, logged_in, served.compress);
            }
            ("AUTHENTICATE", false) => {
                let ir = match cmd.args.get(1).and_then(Token::as_astring) {
                    Some(ir) => ir.to_vec(),
                    None => {
                        stream.write_all(b"+ \r\n").await?;
                        input.line(&mut stream).await?.unwrap_or_default()
                    }
                };
                let mechanism = cmd.args.first().and_then(Token::as_astring).unwrap_or(b"");
                logged_in = super::sasl_ok(mechanism, &ir, &served);
                reply = login_reply(tag, logged_in, served.compress);
            }
            (_, false) => reply = format!("{tag} BAD not logged in\r\n").into_bytes(),
            ("COMPRESS", true) if served.compress && stream.deflate.is_none() => {
                stream
                    .write_all(format!("{tag} OK DEFLATE active\r\n").as_bytes())
                    .await?;
                stream.deflate = Some(Box::new(Deflating {
                    deflater: Deflater::new(DEFLATE_LEVEL),
                    inflater: Inflater::new(),
                    raw: std::mem::take(&mut input.buf),
                    out: Vec::new(),
                }));
                continue;
            }
            ("SELECT" | "EXAMINE", true) => {
                let n = served.sizes.len();
                reply = format!(
                    "* FLAGS (\\Seen)\r\n* {n} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {}] ok\r\n{tag} OK [READ-WRITE] done\r\n",
                    served.uid_validity,
                    n + 1
                )
                .into_bytes();
            }
            ("LIST", true) => {
                reply = format!("* LIST (\\HasNoChildren) \"/\" INBOX\r\n{tag} OK done\r\n")
                    .into_bytes()
            }
            ("IDLE", true) => {
                stream.write_all(b"+ idling\r\n").await?;
                if input.line(&mut stream).await?.is_none() {
                    return Ok(());
                }
                reply = format!("{tag} OK idle done\r\n").into_bytes();
            }
            ("FETCH", true) => fetch(&mut stream, tag, &cmd.args, &served, &mut reply).await?,
            ("UID", true)
                if cmd
                    .args
                    .first()
                    .and_then(Token::as_astring)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"FETCH")) =>
            {
                fetch(&mut stream, tag, &cmd.args[1..], &served, &mut reply).await?
            }
            _ => reply = format!("{tag} BAD unsupported\r\n").into_bytes(),
        }
        stream.write_all(&reply).await?;
    }
    Ok(())
}

fn login_reply(tag: &str, ok: bool, compress: bool) -> Vec<u8> {
    if ok {
        let compress = if compress { " COMPRESS=DEFLATE" } else { "" };
        format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE{compress}] Logged in\r\n")
            .into_bytes()
    } else {
        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n").into_bytes()
    }
}

/// `FETCH n BODY[]` (any data item: the whole message is always sent).
async fn fetch(
    stream: &mut Wire,
    tag: &str,
    args: &[Token<'_>],
    served: &Served,
    reply: &mut Vec<u8>,
) -> io::Result<()> {
    match args
        .first()
        .and_then(Token::as_astring)
        .and_then(|n| served.index(n))
    {
        Some(i) => {
            stream.write_fetch(served, i).await?;
            *reply = format!("{tag} OK Fetch completed.\r\n").into_bytes();
        }
        None => *reply = format!("{tag} BAD invalid message number\r\n").into_bytes(),
    }
    Ok(())
}
