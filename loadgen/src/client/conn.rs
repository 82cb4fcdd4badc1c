//! One client connection: TCP from a chosen source address, implicit TLS or
//! STARTTLS/STLS, lines read with a bound, and the operations the scenarios
//! call, each dispatched to the protocol's way of doing it.

use super::{check_body, imap, Endpoint, ErrorKind, Failure, Protocol, Result, TlsMode};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A plain or TLS stream.
pub(super) struct AnyStream(pub(super) Box<dyn Io>);

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
    pub(super) stream: BufReader<AnyStream>,
    pub(super) protocol: Protocol,
    pub(super) mechanism: super::Mechanism,
    pub(super) next_tag: u32,
    /// Every byte read from the server.
    pub bytes_in: u64,
    pub(super) line: Vec<u8>,
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
            mechanism: endpoint.mechanism,
            next_tag: 0,
            bytes_in: 0,
            line: Vec::with_capacity(256),
        };
        if endpoint.protocol == Protocol::Managesieve {
            conn.sieve_answer()
                .await
                .map_err(|e| Failure::new(ErrorKind::Greeting, e.detail))?;
        } else {
            let greeting = conn.read_line().await?;
            let ok = match endpoint.protocol {
                Protocol::Imap => greeting.starts_with(b"* OK"),
                _ => greeting.starts_with(b"+OK"),
            };
            if !ok {
                return Err(Failure::new(
                    ErrorKind::Greeting,
                    String::from_utf8_lossy(&greeting).into_owned(),
                ));
            }
        }
        if endpoint.tls == TlsMode::Starttls {
            match endpoint.protocol {
                Protocol::Imap => {
                    conn.imap_command("STARTTLS").await?.ok()?;
                }
                Protocol::Pop3 => conn.pop3_command("STLS").await?,
                Protocol::Managesieve => conn.sieve_command("STARTTLS").await?,
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
            if endpoint.protocol == Protocol::Managesieve {
                // RFC 5804 §2.2: the capabilities again, then OK.
                conn.sieve_answer().await?;
            }
        }
        Ok(conn)
    }

    pub(super) async fn read_line(&mut self) -> Result<Vec<u8>> {
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

    pub(super) async fn send(&mut self, line: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(line).await?;
        stream.flush().await?;
        Ok(())
    }

    /// Logs in (`LOGIN` / `USER`+`PASS`, or the endpoint's SASL
    /// mechanism with an initial response).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        if let Some((name, response)) = self.mechanism.initial_response(user, password) {
            return self.sasl_login(name, &response).await;
        }
        match self.protocol {
            Protocol::Imap => {
                let r = self
                    .imap_command(&format!(
                        "LOGIN {} {}",
                        imap::quote(user),
                        imap::quote(password)
                    ))
                    .await?;
                r.ok()
            }
            Protocol::Pop3 => {
                self.pop3_command(&format!("USER {user}")).await?;
                self.pop3_command(&format!("PASS {password}")).await
            }
            Protocol::Managesieve => self.sieve_login(user, password).await,
        }
    }

    /// `AUTHENTICATE`/`AUTH` `name` with `response` as initial response; a
    /// server challenge (a refused token's error challenge) is
    /// acknowledged, then the answer decides.
    async fn sasl_login(&mut self, name: &str, response: &str) -> Result<()> {
        let ack = self.mechanism.error_acknowledgement();
        match self.protocol {
            Protocol::Imap => {
                self.next_tag += 1;
                let tag = format!("t{}", self.next_tag);
                self.send(format!("{tag} AUTHENTICATE {name} {response}\r\n").as_bytes())
                    .await?;
                loop {
                    let line = self.read_line().await?;
                    if line.starts_with(b"+") {
                        self.send(format!("{ack}\r\n").as_bytes()).await?;
                    } else if line.starts_with(format!("{tag} ").as_bytes()) {
                        let status = String::from_utf8_lossy(&line[tag.len() + 1..]);
                        return super::imap::ImapResponse {
                            tagged: status.trim_end().to_owned(),
                            ..Default::default()
                        }
                        .ok();
                    }
                }
            }
            Protocol::Pop3 => {
                self.send(format!("AUTH {name} {response}\r\n").as_bytes())
                    .await?;
                let mut line = self.read_line().await?;
                if line.starts_with(b"+ ") {
                    self.send(format!("{ack}\r\n").as_bytes()).await?;
                    line = self.read_line().await?;
                }
                super::pop3::pop3_status(&line)
            }
            Protocol::Managesieve => {
                self.sieve_command(&format!("AUTHENTICATE \"{name}\" \"{response}\""))
                    .await
            }
        }
    }

    /// `SELECT INBOX` (IMAP; nothing for POP3): the mailbox's
    /// `UIDVALIDITY`, when the server said it.
    pub async fn select(&mut self) -> Result<Option<u32>> {
        match self.protocol {
            Protocol::Imap => {
                let response = self.imap_command("SELECT INBOX").await?;
                response.ok()?;
                Ok(response.uid_validity)
            }
            Protocol::Pop3 | Protocol::Managesieve => Ok(None),
        }
    }

    /// Fetches (IMAP `FETCH n BODY.PEEK[]`) or retrieves (POP3 `RETR n`)
    /// message `number` and checks it against `expected`; returns its size.
    pub async fn fetch(&mut self, number: usize, expected: &[u8]) -> Result<u64> {
        let body = match self.protocol {
            Protocol::Imap => self.imap_fetch(number).await?,
            Protocol::Pop3 => self.pop3_retr(number, expected.len()).await?,
            Protocol::Managesieve => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "ManageSieve has no messages to fetch",
                ))
            }
        };
        check_body(&body, expected)?;
        Ok(body.len() as u64)
    }

    /// `FETCH n BODY.PEEK[]` (IMAP) without checking the body: its size.
    pub async fn fetch_unchecked(&mut self, number: usize) -> Result<u64> {
        Ok(self.imap_fetch(number).await?.len() as u64)
    }

    /// `IDLE` until `until` (IMAP); POP3 sessions just stay connected and
    /// send `NOOP` at the end to prove they are up.
    pub async fn idle(&mut self, until: tokio::time::Instant) -> Result<()> {
        match self.protocol {
            Protocol::Imap => self.imap_idle(until).await,
            Protocol::Pop3 => {
                tokio::time::sleep_until(until).await;
                self.pop3_command("NOOP").await
            }
            Protocol::Managesieve => {
                tokio::time::sleep_until(until).await;
                self.sieve_command("NOOP").await
            }
        }
    }

    /// `LOGOUT` / `QUIT`.
    pub async fn logout(&mut self) -> Result<()> {
        match self.protocol {
            Protocol::Imap => self.imap_command("LOGOUT").await?.ok(),
            Protocol::Pop3 => self.pop3_command("QUIT").await,
            Protocol::Managesieve => self.sieve_command("LOGOUT").await,
        }
    }
}
