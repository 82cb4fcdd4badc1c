//! A small simulated IMAP4rev1/POP3 back end, for the demo and for tests that
//! need a back end without installing Dovecot.
//!
//! Every user name is accepted with one configured password; the mailbox
//! holds deterministic synthetic messages ([`message`]), so a client can check
//! what it received byte for byte. Blocking I/O, one thread per connection:
//! it is meant to be simple and obviously correct, not fast. It reuses the
//! proxy's own IMAP framer and parser for client commands.

use crate::auth;
use crate::imap::command::{self, Token};
use crate::imap::framing::{Frame, Framer};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the simulated back end serves.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The password every user must give.
    pub password: String,
    /// Sizes of the messages, in order (message 1 first).
    pub message_sizes: Vec<usize>,
}

/// Message `number` (1-based) of `size` bytes: headers, then CRLF text lines,
/// some starting with `.` (to exercise POP3 dot-stuffing).
pub fn message(number: usize, size: usize) -> Vec<u8> {
    let mut out = format!(
        "From: sim@example.org\r\nTo: user@example.org\r\nSubject: message {number}\r\nMessage-ID: <{number}@sim.example.org>\r\n\r\n"
    )
    .into_bytes();
    let mut state = (number as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut column = 0;
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let byte = if column == 0 && state % 11 == 0 {
            b'.'
        } else if column >= 70 || (column > 0 && state % 53 == 0) {
            column = 0;
            out.push(b'\r');
            b'\n'
        } else {
            b' ' + (state % 94) as u8
        };
        if byte != b'\n' {
            column += 1;
        }
        out.push(byte);
    }
    out.truncate(size.saturating_sub(2));
    if let Some(last) = out.last_mut().filter(|b| **b == b'\r') {
        *last = b'x';
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A running simulated back end (stops when dropped).
pub struct SimulatedBackend {
    /// IMAP address.
    pub imap: SocketAddr,
    /// POP3 address.
    pub pop3: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SimulatedBackend {
    /// Starts IMAP and POP3 listeners on `127.0.0.1` with free ports.
    pub fn start(mailbox: Mailbox) -> io::Result<Self> {
        let imap = TcpListener::bind("127.0.0.1:0")?;
        let pop3 = TcpListener::bind("127.0.0.1:0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let backend = Self {
            imap: imap.local_addr()?,
            pop3: pop3.local_addr()?,
            stop: stop.clone(),
        };
        let mailbox = Arc::new(mailbox);
        spawn_acceptor(imap, mailbox.clone(), stop.clone(), serve_imap);
        spawn_acceptor(pop3, mailbox, stop, serve_pop3);
        Ok(backend)
    }
}

impl Drop for SimulatedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptors so they see the flag.
        let _ = TcpStream::connect(self.imap);
        let _ = TcpStream::connect(self.pop3);
    }
}

fn spawn_acceptor(
    listener: TcpListener,
    mailbox: Arc<Mailbox>,
    stop: Arc<AtomicBool>,
    serve: fn(TcpStream, &Mailbox) -> io::Result<()>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let mailbox = mailbox.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &mailbox);
            });
        }
    });
}

/// Reads one IMAP command (with literals, answering `+` for sync ones).
fn read_imap_command(reader: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut framer = Framer::new(64 * 1024, 64 * 1024);
    buf.clear();
    loop {
        match framer.scan(buf) {
            Frame::Complete(_) => return Ok(true),
            Frame::Error(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "too long")),
            Frame::Incomplete { continue_literal } => {
                if continue_literal {
                    reader.get_mut().write_all(b"+ go ahead\r\n")?;
                }
                let chunk = reader.fill_buf()?;
                if chunk.is_empty() {
                    return Ok(false);
                }
                // Take at most up to the next LF so a pipelined command stays buffered.
                let take = chunk
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(chunk.len(), |i| i + 1);
                buf.extend_from_slice(&chunk[..take]);
                reader.consume(take);
            }
        }
    }
}

fn serve_imap(stream: TcpStream, mailbox: &Mailbox) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE AUTH=PLAIN] Simulated back end ready.\r\n")?;
    let mut logged_in = false;
    let mut buf = Vec::new();
    while read_imap_command(&mut reader, &mut buf)? {
        let Ok(cmd) = command::parse(&buf) else {
            out.write_all(b"* BAD parse error\r\n")?;
            continue;
        };
        let tag = cmd.tag;
        let reply = match (cmd.name.as_str(), logged_in) {
            ("CAPABILITY", _) => format!(
                "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE AUTH=PLAIN\r\n{tag} OK done\r\n"
            ),
            ("NOOP", _) => format!("{tag} OK done\r\n"),
            ("LOGOUT", _) => {
                out.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())?;
                return Ok(());
            }
            ("LOGIN", false) => {
                let password = cmd.args.get(1).and_then(Token::as_astring);
                logged_in = password == Some(mailbox.password.as_bytes());
                login_reply(tag, logged_in)
            }
            ("AUTHENTICATE", false) => {
                let ir = match cmd.args.get(1).and_then(Token::as_astring) {
                    Some(ir) => ir.to_vec(),
                    None => {
                        out.write_all(b"+ \r\n")?;
                        let mut line = Vec::new();
                        reader.read_until(b'\n', &mut line)?;
                        line.trim_ascii_end().to_vec()
                    }
                };
                logged_in = auth::decode_plain(&ir)
                    .is_ok_and(|c| c.password.expose() == mailbox.password.as_bytes());
                login_reply(tag, logged_in)
            }
            (_, false) => format!("{tag} BAD not logged in\r\n"),
            ("SELECT" | "EXAMINE", true) => {
                let n = mailbox.message_sizes.len();
                format!(
                    "* FLAGS (\\Seen)\r\n* {n} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT {}] ok\r\n{tag} OK [READ-WRITE] done\r\n",
                    n + 1
                )
            }
            ("LIST", true) => format!("* LIST (\\HasNoChildren) \"/\" INBOX\r\n{tag} OK done\r\n"),
            ("IDLE", true) => {
                out.write_all(b"+ idling\r\n")?;
                let mut line = Vec::new();
                reader.read_until(b'\n', &mut line)?;
                format!("{tag} OK idle done\r\n")
            }
            ("FETCH", true) => fetch_reply(tag, &cmd.args, mailbox, &mut out)?,
            ("UID", true)
                if cmd
                    .args
                    .first()
                    .and_then(Token::as_astring)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"FETCH")) =>
            {
                fetch_reply(tag, &cmd.args[1..], mailbox, &mut out)?
            }
            _ => format!("{tag} BAD unsupported\r\n"),
        };
        out.write_all(reply.as_bytes())?;
    }
    Ok(())
}

fn login_reply(tag: &str, ok: bool) -> String {
    if ok {
        format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] Logged in\r\n")
    } else {
        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    }
}

/// `FETCH n BODY[]` (or `BODY.PEEK[]`, `RFC822`) for a single message number.
fn fetch_reply(
    tag: &str,
    args: &[Token],
    mailbox: &Mailbox,
    out: &mut TcpStream,
) -> io::Result<String> {
    let number = args
        .first()
        .and_then(Token::as_astring)
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
    let Some(number) = number.filter(|n| (1..=mailbox.message_sizes.len()).contains(n)) else {
        return Ok(format!("{tag} BAD invalid message number\r\n"));
    };
    let body = message(number, mailbox.message_sizes[number - 1]);
    out.write_all(
        format!(
            "* {number} FETCH (UID {number} BODY[] {{{}}}\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    out.write_all(&body)?;
    out.write_all(b")\r\n")?;
    Ok(format!("{tag} OK Fetch completed.\r\n"))
}

fn serve_pop3(stream: TcpStream, mailbox: &Mailbox) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream.take(u64::MAX));
    out.write_all(b"+OK Simulated back end ready.\r\n")?;
    let mut user = None;
    let mut logged_in = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
        let (keyword, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let sizes = &mailbox.message_sizes;
        let reply = match (keyword.to_ascii_uppercase().as_str(), logged_in) {
            ("CAPA", _) => {
                "+OK\r\nUSER\r\nSASL PLAIN\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n".to_owned()
            }
            ("QUIT", _) => {
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            ("USER", false) => {
                user = Some(arg.to_owned());
                "+OK\r\n".to_owned()
            }
            ("PASS", false) => {
                logged_in = user.is_some() && arg == mailbox.password;
                pop3_login_reply(logged_in)
            }
            ("AUTH", false) => {
                let ir = arg.strip_prefix("PLAIN ").unwrap_or("");
                logged_in = auth::decode_plain(ir.as_bytes())
                    .is_ok_and(|c| c.password.expose() == mailbox.password.as_bytes());
                pop3_login_reply(logged_in)
            }
            (_, false) => "-ERR not logged in\r\n".to_owned(),
            ("NOOP" | "RSET", true) => "+OK\r\n".to_owned(),
            ("STAT", true) => format!("+OK {} {}\r\n", sizes.len(), sizes.iter().sum::<usize>()),
            ("LIST", true) => {
                let mut r = format!("+OK {} messages\r\n", sizes.len());
                for (i, s) in sizes.iter().enumerate() {
                    r.push_str(&format!("{} {s}\r\n", i + 1));
                }
                r + ".\r\n"
            }
            ("UIDL", true) => {
                let mut r = "+OK\r\n".to_owned();
                for i in 1..=sizes.len() {
                    r.push_str(&format!("{i} sim-{i}\r\n"));
                }
                r + ".\r\n"
            }
            ("RETR", true) => match arg
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=sizes.len()).contains(n))
            {
                Some(n) => {
                    out.write_all(format!("+OK {} octets\r\n", sizes[n - 1]).as_bytes())?;
                    out.write_all(&dot_stuff(&message(n, sizes[n - 1])))?;
                    ".\r\n".to_owned()
                }
                None => "-ERR no such message\r\n".to_owned(),
            },
            ("DELE", true) => "+OK marked\r\n".to_owned(),
            _ => "-ERR unsupported\r\n".to_owned(),
        };
        out.write_all(reply.as_bytes())?;
    }
}

fn pop3_login_reply(ok: bool) -> String {
    if ok {
        "+OK Logged in.\r\n".to_owned()
    } else {
        "-ERR [AUTH] Authentication failed.\r\n".to_owned()
    }
}

/// POP3 byte-stuffing: a line starting with `.` gets another `.` (RFC 1939 §3).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_sized_and_crlf() {
        for size in [200, 1000, 65_536, 3_000_001] {
            let m = message(3, size);
            assert_eq!(m.len(), size);
            assert_eq!(m, message(3, size));
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
        assert_ne!(message(1, 5000), message(2, 5000));
        assert!(message(1, 100_000).windows(2).any(|w| w == b"\n."));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n".to_vec()
        );
    }
}
