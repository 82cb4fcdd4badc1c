//! The simulated back end's IMAP side.

use super::Served;
use crate::imap::command::{self, Token};
use crate::imap::framing::{Frame, Framer};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAPABILITIES: &str =
    "IMAP4rev1 LITERAL+ SASL-IR IDLE ID AUTH=PLAIN AUTH=OAUTHBEARER AUTH=XOAUTH2";
const LIMIT: usize = 64 * 1024;

/// Client bytes not yet consumed, read in chunks.
struct Input {
    buf: Vec<u8>,
}

impl Input {
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + 16 * 1024, 0);
        let n = stream.read(&mut self.buf[start..]).await?;
        self.buf.truncate(start + n);
        Ok(n > 0)
    }

    /// Reads one whole command (literals included, `+` sent for the
    /// synchronizing ones); its length in `buf`, or `None` at EOF.
    async fn command(&mut self, stream: &mut TcpStream) -> io::Result<Option<usize>> {
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
    async fn line(&mut self, stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
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

pub(super) async fn serve(mut stream: TcpStream, served: Arc<Served>) -> io::Result<()> {
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
                reply = format!("* CAPABILITY {CAPABILITIES}\r\n{tag} OK done\r\n").into_bytes();
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
                reply = login_reply(tag, logged_in);
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
                reply = login_reply(tag, logged_in);
            }
            (_, false) => reply = format!("{tag} BAD not logged in\r\n").into_bytes(),
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

fn login_reply(tag: &str, ok: bool) -> Vec<u8> {
    if ok {
        format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] Logged in\r\n").into_bytes()
    } else {
        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n").into_bytes()
    }
}

/// `FETCH n BODY[]` (any data item: the whole message is always sent).
async fn fetch(
    stream: &mut TcpStream,
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
            stream.write_all(&served.imap_fetch[i]).await?;
            *reply = format!("{tag} OK Fetch completed.\r\n").into_bytes();
        }
        None => *reply = format!("{tag} BAD invalid message number\r\n").into_bytes(),
    }
    Ok(())
}
