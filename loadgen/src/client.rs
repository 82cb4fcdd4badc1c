//! Async IMAP and POP3 clients, just what the scenarios need: connect (from a
//! chosen source address), greeting, STARTTLS/STLS or implicit TLS, login,
//! select, fetch/retr with the body checked byte for byte, IDLE, logout.
//!
//! Every failure carries an [`ErrorKind`], which is how the summary counts
//! errors. A body that differs from the expected one is
//! [`ErrorKind::Mismatch`]: the run fails on it.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed.
    Connect,
    /// The operation ran over `--timeout`.
    Timeout,
    /// TLS handshake failed.
    Tls,
    /// No `* OK` / `+OK` greeting.
    Greeting,
    /// The server refused the credentials.
    LoginRejected,
    /// A temporary failure (`[UNAVAILABLE]`, `[SYS/TEMP]`, `[IN-USE]`).
    Unavailable,
    /// Any other unexpected answer.
    Protocol,
    /// A message body differed from what the back end holds.
    Mismatch,
    /// The server closed the connection early.
    Closed,
    /// Any other I/O error.
    Io,
    /// Open loop only: too many operations in flight, this one was not started.
    Overload,
}

impl ErrorKind {
    /// Name in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Greeting => "greeting",
            ErrorKind::LoginRejected => "login_rejected",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Overload => "overload",
        }
    }
}

/// A failed step: its kind and what was seen.
#[derive(Debug)]
pub struct Failure {
    /// For counting.
    pub kind: ErrorKind,
    /// For the first-error line.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        Failure::new(kind, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// How the client speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext.
    None,
    /// STARTTLS (IMAP) / STLS (POP3) before login.
    Starttls,
    /// TLS from the first byte (993 / 995 style).
    Implicit,
}

/// Mail protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub tls: TlsMode,
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A plain or TLS stream.
struct AnyStream(Box<dyn Io>);

impl AsyncRead for AnyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for AnyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// One client connection, greeted and (after [`Conn::login`]) logged in.
pub struct Conn {
    stream: BufReader<AnyStream>,
    protocol: Protocol,
    next_tag: u32,
    /// Every byte read from the server.
    pub bytes_in: u64,
    line: Vec<u8>,
}

async fn tcp_connect(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::new(ErrorKind::Connect, e.to_string()))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| Failure::new(ErrorKind::Connect, format!("bind {ip}: {e}")))?;
    }
    let stream = socket
        .connect(target)
        .await
        .map_err(|e| Failure::new(ErrorKind::Connect, format!("{target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn tls_wrap(endpoint: &Endpoint, stream: impl Io + 'static) -> Result<AnyStream> {
    let config = endpoint
        .tls_config
        .clone()
        .ok_or_else(|| Failure::new(ErrorKind::Tls, "no TLS client config"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(endpoint.server_name.clone(), stream)
        .await
        .map_err(|e| Failure::new(ErrorKind::Tls, e.to_string()))?;
    Ok(AnyStream(Box::new(tls)))
}

impl Conn {
    /// Connects from `source` (if given), runs implicit TLS or STARTTLS as
    /// configured, and reads the greeting.
    pub async fn open(endpoint: &Endpoint, source: Option<IpAddr>) -> Result<Self> {
        let tcp = tcp_connect(endpoint.target, source).await?;
        let stream = match endpoint.tls {
            TlsMode::Implicit => tls_wrap(endpoint, tcp).await?,
            _ => AnyStream(Box::new(tcp)),
        };
        let mut conn = Conn {
            stream: BufReader::with_capacity(64 * 1024, stream),
            protocol: endpoint.protocol,
            next_tag: 0,
            bytes_in: 0,
            line: Vec::with_capacity(256),
        };
        let greeting = conn.read_line().await?;
        let ok = match endpoint.protocol {
            Protocol::Imap => greeting.starts_with(b"* OK"),
            Protocol::Pop3 => greeting.starts_with(b"+OK"),
        };
        if !ok {
            return Err(Failure::new(
                ErrorKind::Greeting,
                String::from_utf8_lossy(&greeting).into_owned(),
            ));
        }
        if endpoint.tls == TlsMode::Starttls {
            match endpoint.protocol {
                Protocol::Imap => {
                    conn.imap_command("STARTTLS").await?.ok()?;
                }
                Protocol::Pop3 => conn.pop3_command("STLS").await?,
            }
            if !conn.stream.buffer().is_empty() {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "bytes after the STARTTLS answer",
                ));
            }
            let plain = std::mem::replace(
                &mut conn.stream,
                BufReader::new(AnyStream(Box::new(tokio::io::duplex(1).0))),
            )
            .into_inner();
            conn.stream = BufReader::with_capacity(64 * 1024, tls_wrap(endpoint, plain).await?);
        }
        Ok(conn)
    }

    async fn read_line(&mut self) -> Result<Vec<u8>> {
        self.line.clear();
        let n = (&mut self.stream)
            .take(64 * 1024)
            .read_until(b'\n', &mut self.line)
            .await?;
        if n == 0 {
            return Err(Failure::new(ErrorKind::Closed, "connection closed"));
        }
        if !self.line.ends_with(b"\n") {
            return Err(Failure::new(ErrorKind::Protocol, "response line too long"));
        }
        self.bytes_in += n as u64;
        Ok(self.line.clone())
    }

    async fn send(&mut self, line: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(line).await?;
        stream.flush().await?;
        Ok(())
    }

    /// Sends an IMAP command and reads through its tagged answer.
    pub async fn imap_command(&mut self, command: &str) -> Result<ImapResponse> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.send(format!("{tag} {command}\r\n").as_bytes()).await?;
        self.imap_response(&tag).await
    }

    async fn imap_response(&mut self, tag: &str) -> Result<ImapResponse> {
        let mut response = ImapResponse::default();
        loop {
            let line = self.read_line().await?;
            if let Some(size) = literal_size(&line) {
                let mut literal = vec![0; size];
                self.stream.read_exact(&mut literal).await?;
                self.bytes_in += size as u64;
                response.literals.push(literal);
                continue;
            }
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            {
                response.tagged = String::from_utf8_lossy(rest.trim_ascii_end()).into_owned();
                return Ok(response);
            }
        }
    }

    /// Sends a POP3 command and checks for `+OK`.
    pub async fn pop3_command(&mut self, command: &str) -> Result<()> {
        self.send(format!("{command}\r\n").as_bytes()).await?;
        let line = self.read_line().await?;
        pop3_status(&line)
    }

    /// Logs in (`LOGIN` / `USER`+`PASS`).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        match self.protocol {
            Protocol::Imap => {
                let r = self
                    .imap_command(&format!("LOGIN {} {}", quote(user), quote(password)))
                    .await?;
                r.ok()
            }
            Protocol::Pop3 => {
                self.pop3_command(&format!("USER {user}")).await?;
                self.pop3_command(&format!("PASS {password}")).await
            }
        }
    }

    /// `SELECT INBOX` (IMAP; nothing for POP3).
    pub async fn select(&mut self) -> Result<()> {
        match self.protocol {
            Protocol::Imap => self.imap_command("SELECT INBOX").await?.ok(),
            Protocol::Pop3 => Ok(()),
        }
    }

    /// Fetches (IMAP `FETCH n BODY.PEEK[]`) or retrieves (POP3 `RETR n`)
    /// message `number` and checks it against `expected`; returns its size.
    pub async fn fetch(&mut self, number: usize, expected: &[u8]) -> Result<u64> {
        let body = match self.protocol {
            Protocol::Imap => {
                let mut r = self
                    .imap_command(&format!("FETCH {number} BODY.PEEK[]"))
                    .await?;
                r.ok()?;
                if r.literals.len() != 1 {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("FETCH returned {} literals", r.literals.len()),
                    ));
                }
                r.literals.pop().unwrap_or_default()
            }
            Protocol::Pop3 => {
                self.pop3_command(&format!("RETR {number}")).await?;
                self.pop3_multiline(expected.len()).await?
            }
        };
        check_body(&body, expected)?;
        Ok(body.len() as u64)
    }

    /// Reads a multi-line POP3 answer up to its `.` line, un-stuffing
    /// leading dots, a buffer at a time (not a line at a time: this is the
    /// hot loop of `retr`).
    async fn pop3_multiline(&mut self, size_hint: usize) -> Result<Vec<u8>> {
        #[derive(Clone, Copy)]
        enum At {
            LineStart,
            InLine,
            /// A `.` opened the line: a second `.` (stuffed) or CRLF (the end).
            Dot,
            /// `.` CR: only LF may follow.
            DotCr,
        }
        let mut body = Vec::with_capacity(size_hint + 2);
        let mut at = At::LineStart;
        loop {
            let buf = self.stream.fill_buf().await?;
            if buf.is_empty() {
                return Err(Failure::new(ErrorKind::Closed, "connection closed in RETR"));
            }
            let mut i = 0;
            let mut done = false;
            while i < buf.len() {
                match at {
                    At::LineStart if buf[i] == b'.' => {
                        at = At::Dot;
                        i += 1;
                    }
                    At::LineStart => at = At::InLine,
                    At::Dot if buf[i] == b'\r' => {
                        at = At::DotCr;
                        i += 1;
                    }
                    // The stuffed dot is dropped; this byte is content.
                    At::Dot => at = At::InLine,
                    At::DotCr if buf[i] == b'\n' => {
                        i += 1;
                        done = true;
                        break;
                    }
                    At::DotCr => {
                        return Err(Failure::new(ErrorKind::Protocol, "bad terminator in RETR"))
                    }
                    // Copy in bulk up to the next line that starts with a dot.
                    At::InLine => match memchr::memmem::find(&buf[i..], b"\n.") {
                        Some(p) => {
                            body.extend_from_slice(&buf[i..=i + p]);
                            i += p + 1;
                            at = At::LineStart;
                        }
                        None => {
                            body.extend_from_slice(&buf[i..]);
                            if buf.ends_with(b"\n") {
                                at = At::LineStart;
                            }
                            i = buf.len();
                        }
                    },
                }
            }
            self.bytes_in += i as u64;
            self.stream.consume(i);
            if done {
                return Ok(body);
            }
            if body.len() > size_hint.saturating_mul(2) + (1 << 20) {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "RETR answer far larger than expected",
                ));
            }
        }
    }

    /// `IDLE` until `hold` has passed, then `DONE` (IMAP); POP3 sessions
    /// just stay connected and send `NOOP` at the end to prove they are up.
    pub async fn idle(&mut self, until: tokio::time::Instant) -> Result<()> {
        match self.protocol {
            Protocol::Imap => {
                self.next_tag += 1;
                let tag = format!("t{}", self.next_tag);
                self.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
                let line = self.read_line().await?;
                if !line.starts_with(b"+") {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        String::from_utf8_lossy(&line).into_owned(),
                    ));
                }
                // Untagged updates may arrive while idling; a close is an error.
                let mut scratch = [0u8; 4096];
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        read = self.stream.read(&mut scratch) => match read? {
                            0 => return Err(Failure::new(ErrorKind::Closed, "closed while idling")),
                            n => self.bytes_in += n as u64,
                        }
                    }
                }
                self.send(b"DONE\r\n").await?;
                self.imap_response(&tag).await?.ok()
            }
            Protocol::Pop3 => {
                tokio::time::sleep_until(until).await;
                self.pop3_command("NOOP").await
            }
        }
    }

    /// `LOGOUT` / `QUIT`.
    pub async fn logout(&mut self) -> Result<()> {
        match self.protocol {
            Protocol::Imap => self.imap_command("LOGOUT").await?.ok(),
            Protocol::Pop3 => self.pop3_command("QUIT").await,
        }
    }
}

/// An IMAP command's answer.
#[derive(Debug, Default)]
pub struct ImapResponse {
    /// The tagged line after the tag.
    pub tagged: String,
    /// Literals, in order.
    pub literals: Vec<Vec<u8>>,
}

impl ImapResponse {
    /// `Ok` for a tagged `OK`, the failure's kind otherwise.
    pub fn ok(&self) -> Result<()> {
        if self.tagged.starts_with("OK") {
            return Ok(());
        }
        let kind = if self.tagged.contains("[UNAVAILABLE]") {
            ErrorKind::Unavailable
        } else if self.tagged.starts_with("NO") {
            ErrorKind::LoginRejected
        } else {
            ErrorKind::Protocol
        };
        Err(Failure::new(kind, self.tagged.clone()))
    }
}

fn pop3_status(line: &[u8]) -> Result<()> {
    if line.starts_with(b"+OK") {
        return Ok(());
    }
    let text = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
    let kind = if text.contains("[SYS/TEMP]") || text.contains("[IN-USE]") {
        ErrorKind::Unavailable
    } else if text.contains("[AUTH]") {
        ErrorKind::LoginRejected
    } else {
        ErrorKind::Protocol
    };
    Err(Failure::new(kind, text))
}

/// `{n}` at the end of a response line.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

/// A body differs: say where, so a bad relay can be found.
pub fn check_body(got: &[u8], expected: &[u8]) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    Err(Failure::new(
        ErrorKind::Mismatch,
        format!(
            "body of {} bytes differs from the expected {} bytes at offset {at}",
            got.len(),
            expected.len()
        ),
    ))
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sizes_are_read_off_the_line_end() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_size(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(literal_size(b"{x}\r\n"), None);
    }

    #[test]
    fn a_flipped_byte_is_a_mismatch_with_its_offset() {
        assert!(check_body(b"abc", b"abc").is_ok());
        let e = check_body(b"abX", b"abc").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Mismatch);
        assert!(e.detail.contains("offset 2"), "{}", e.detail);
        assert_eq!(
            check_body(b"ab", b"abc").unwrap_err().kind,
            ErrorKind::Mismatch
        );
    }

    #[tokio::test]
    async fn retr_bodies_are_unstuffed_across_any_buffer_boundary() {
        let body = mailgate::simulated_backend::message(3, 5000);
        assert!(
            body.windows(2).any(|w| w == b"\n."),
            "the body has dot lines"
        );
        let mut wire = b".starts with a dot\r\n".to_vec();
        wire.extend_from_slice(&mailgate::simulated_backend::dot_stuff(&body));
        wire.extend_from_slice(b".\r\nNEXT");
        let mut expected = b"starts with a dot\r\n".to_vec();
        expected.extend_from_slice(&body);
        for capacity in [1, 2, 3, 5, 7, 64, 4096] {
            let (mut server, client) = tokio::io::duplex(1 << 20);
            server.write_all(&wire).await.unwrap();
            drop(server); // a missed terminator ends in EOF, not a hang
            let mut conn = Conn {
                stream: BufReader::with_capacity(capacity, AnyStream(Box::new(client))),
                protocol: Protocol::Pop3,
                next_tag: 0,
                bytes_in: 0,
                line: Vec::new(),
            };
            let got = conn.pop3_multiline(expected.len()).await.unwrap();
            assert!(got == expected, "capacity {capacity}");
            assert_eq!(
                conn.bytes_in as usize,
                wire.len() - 4,
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            pop3_status(b"-ERR [AUTH] no\r\n").unwrap_err().kind,
            ErrorKind::LoginRejected
        );
        assert_eq!(
            pop3_status(b"-ERR [SYS/TEMP] x\r\n").unwrap_err().kind,
            ErrorKind::Unavailable
        );
        let r = ImapResponse {
            tagged: "NO [UNAVAILABLE] later".into(),
            ..Default::default()
        };
        assert_eq!(r.ok().unwrap_err().kind, ErrorKind::Unavailable);
    }
}
