//! A small blocking IMAP/POP3 client: `mailgate demo --check` and the
//! integration tests drive real sessions through the proxy with it.
//!
//! It reads responses the way a real client must (IMAP literals, POP3
//! multi-line responses with dot-unstuffing), so a test can compare the
//! message bytes it received with the bytes the back end holds.

use crate::imap::framing::literal_announcement;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read/write timeout for every socket operation of this client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> io::Result<BufReader<TcpStream>> {
    prepare(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?)
}

fn prepare(stream: TcpStream) -> io::Result<BufReader<TcpStream>> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    Ok(line)
}

fn protocol_error(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A tagged IMAP response with everything that came before it.
#[derive(Debug, Default)]
pub struct ImapResponse {
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The tagged line after the status.
    pub text: String,
    /// Untagged and continuation lines, as received (literals excluded).
    pub lines: Vec<String>,
    /// Literal contents, in order.
    pub literals: Vec<Vec<u8>>,
}

impl ImapResponse {
    /// True for a tagged `OK`.
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

/// A blocking IMAP client.
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    next_tag: u32,
    /// The server's greeting line.
    pub greeting: String,
}

impl ImapClient {
    /// The socket, for tests that go on by hand (bytes the client had
    /// buffered are dropped: call between commands).
    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }

    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        Self::greeted(connect(addr)?)
    }

    /// Reads the greeting on a connection already open (one bound to a
    /// chosen source address, or after a PROXY header).
    pub fn from_stream(stream: TcpStream) -> io::Result<Self> {
        Self::greeted(prepare(stream)?)
    }

    fn greeted(mut reader: BufReader<TcpStream>) -> io::Result<Self> {
        let greeting = String::from_utf8_lossy(&read_line(&mut reader)?)
            .trim_end()
            .to_owned();
        if !greeting.starts_with("* OK") {
            return Err(protocol_error(format!("unexpected greeting: {greeting}")));
        }
        Ok(Self {
            reader,
            next_tag: 1,
            greeting,
        })
    }

    /// Sends raw bytes (for pipelining and hostile-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one raw line (CRLF included).
    pub fn read_raw_line(&mut self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&read_line(&mut self.reader)?).into_owned())
    }

    /// Sends `TAG command` and reads up to the tagged response.
    pub fn command(&mut self, command: &str) -> io::Result<ImapResponse> {
        let tag = format!("c{}", self.next_tag);
        self.next_tag += 1;
        self.send_raw(format!("{tag} {command}\r\n").as_bytes())?;
        self.read_response(&tag)
    }

    /// Reads lines (and literals) until the line tagged `tag`.
    pub fn read_response(&mut self, tag: &str) -> io::Result<ImapResponse> {
        let mut response = ImapResponse::default();
        loop {
            let mut line = read_line(&mut self.reader)?;
            // A line may announce literals; the line continues after each.
            let mut text = Vec::new();
            loop {
                let trimmed = line.trim_ascii_end();
                match literal_announcement(trimmed) {
                    Some((size, _)) => {
                        text.extend_from_slice(trimmed);
                        let mut literal = vec![0; size];
                        self.reader.read_exact(&mut literal)?;
                        response.literals.push(literal);
                        line = read_line(&mut self.reader)?;
                    }
                    None => {
                        text.extend_from_slice(trimmed);
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            if let Some(rest) = text.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let (status, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                response.status = status.to_ascii_uppercase();
                response.text = tail.to_owned();
                return Ok(response);
            }
            response.lines.push(text);
        }
    }

    /// `LOGIN` with quoted strings.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<ImapResponse> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
    }

    /// `SELECT INBOX`, then `FETCH n BODY[]`: the message's bytes.
    pub fn fetch_message(&mut self, number: usize) -> io::Result<Vec<u8>> {
        let select = self.command("SELECT INBOX")?;
        if !select.is_ok() {
            return Err(protocol_error(format!("SELECT failed: {}", select.text)));
        }
        let mut fetch = self.command(&format!("FETCH {number} BODY[]"))?;
        if !fetch.is_ok() || fetch.literals.len() != 1 {
            return Err(protocol_error(format!(
                "FETCH failed: {} {}",
                fetch.status, fetch.text
            )));
        }
        Ok(fetch.literals.remove(0))
    }

    /// `LOGOUT`.
    pub fn logout(&mut self) -> io::Result<ImapResponse> {
        self.command("LOGOUT")
    }
}

/// An IMAP quoted string.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A blocking POP3 client.
pub struct Pop3Client {
    reader: BufReader<TcpStream>,
    /// The server's greeting line.
    pub greeting: String,
}

impl Pop3Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let mut reader = connect(addr)?;
        let greeting = String::from_utf8_lossy(&read_line(&mut reader)?)
            .trim_end()
            .to_owned();
        if !greeting.starts_with("+OK") {
            return Err(protocol_error(format!("unexpected greeting: {greeting}")));
        }
        Ok(Self { reader, greeting })
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one status line, CRLF removed.
    pub fn read_status(&mut self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&read_line(&mut self.reader)?)
            .trim_end()
            .to_owned())
    }

    /// Sends a command line and reads its status line.
    pub fn command(&mut self, line: &str) -> io::Result<String> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        self.read_status()
    }

    /// Reads a multi-line body after a `+OK`, removing dot-stuffing.
    pub fn read_multiline(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = read_line(&mut self.reader)?;
            if line == b".\r\n" || line == b".\n" {
                return Ok(body);
            }
            let unstuffed = if line.starts_with(b"..") {
                &line[1..]
            } else {
                &line[..]
            };
            body.extend_from_slice(unstuffed);
        }
    }

    /// `USER` + `PASS`: the final status line.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<String> {
        let status = self.command(&format!("USER {user}"))?;
        if !status.starts_with("+OK") {
            return Ok(status);
        }
        self.command(&format!("PASS {password}"))
    }

    /// `RETR n`: the message's bytes.
    pub fn retrieve(&mut self, number: usize) -> io::Result<Vec<u8>> {
        let status = self.command(&format!("RETR {number}"))?;
        if !status.starts_with("+OK") {
            return Err(protocol_error(format!("RETR failed: {status}")));
        }
        self.read_multiline()
    }
}
