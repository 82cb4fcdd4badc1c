//! `kind = "http"`: routing (and optionally authentication) by an HTTP
//! server that speaks nginx's `auth_http` protocol, so a site's existing
//! auth server routes mailgate unchanged.
//!
//! Each worker keeps up to `pool_size` connections open (keep-alive) and
//! has at most `pool_size` requests in flight; a lookup is bounded by
//! `timeout` per request (connect, write, answer head), asks again after
//! `Auth-Status: WAIT` at most [`MAX_ASKS`] times, and retries once on a
//! fresh connection when a kept one turns out closed. The protocol itself
//! (request, answer) is in `exchange.rs`, without I/O.
//!
//! Unlike LDAP and SQL, such a server may check the password: its refusal
//! is about one login (never cached, never handed to another login), and a
//! route carrying `Auth-Pass` is never cached either.

mod config;
pub mod exchange;

pub use config::{HttpKind, HttpSettings, KIND};

use super::{
    Directory, DirectoryError, Lookup, LookupFuture, LookupRequest, Route, ServerFailures,
};
use exchange::{Answer, Ask, Garbage, MAX_HEAD};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// How errors name this kind.
const KIND_NAME: &str = "HTTP";
/// Most times one lookup asks (the first, and again after `WAIT`).
pub const MAX_ASKS: u32 = 3;

/// A connection to the auth server, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
type Conn = Box<dyn Io>;

/// One worker's auth_http client.
pub struct HttpDirectory {
    settings: Arc<HttpSettings>,
    tls: Option<tokio_rustls::TlsConnector>,
    idle: RefCell<Vec<Conn>>,
    slots: tokio::sync::Semaphore,
    health: Arc<AtomicBool>,
}

/// Why one exchange failed.
enum Failure {
    /// A kept connection was closed by the server before it answered.
    Stale,
    /// The server could not be reached.
    Connect(String),
    /// The connection failed mid-exchange.
    Io(String),
    /// The answer is not usable.
    Garbage(Garbage),
}

impl HttpDirectory {
    /// A client that connects on first use; `tls` when the URL is https.
    pub fn new(
        settings: Arc<HttpSettings>,
        tls: Option<Arc<rustls::ClientConfig>>,
        health: Arc<AtomicBool>,
    ) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(settings.pool_size.max(1)),
            idle: RefCell::new(Vec::new()),
            tls: tls.map(tokio_rustls::TlsConnector::from),
            settings,
            health,
        }
    }

    async fn route(&self, request: LookupRequest<'_>) -> Result<Option<Route>, DirectoryError> {
        let key = self.settings.name_form.key(request.user);
        let ask = Ask {
            user: &key,
            password: request
                .password
                .filter(|_| self.settings.send_password)
                .map(|p| p.expose()),
            protocol: request.protocol,
            client_ip: request.client,
            attempt: request.attempt,
        };
        let url = &self.settings.url;
        let bytes = exchange::request(&url.path, &url.host_header, &self.settings.headers, &ask);
        let limit = self.settings.timeout;
        for _ in 0..MAX_ASKS {
            // A slot per ask: a `WAIT` sleeps without holding one.
            let slot = self.slots.acquire().await.expect("never closed");
            let asked = tokio::time::timeout(limit, self.exchange(bytes.expose())).await;
            drop(slot);
            let answer = match asked {
                Err(_) => {
                    return Err(DirectoryError::Timeout {
                        kind: KIND_NAME,
                        after: limit,
                    })
                }
                Ok(Err(failure)) => return Err(self.failed(failure)),
                Ok(Ok(answer)) => answer,
            };
            self.health.store(true, Ordering::Relaxed);
            match answer {
                Answer::Route(route) => return Ok(Some(self.settings.hosts.apply(route))),
                Answer::AskAgain(wait) => tokio::time::sleep(wait).await,
                Answer::Refused {
                    reason,
                    temporary: true,
                    ..
                } => {
                    return Err(DirectoryError::Query {
                        kind: KIND_NAME,
                        detail: format!("{} answered a temporary failure: {reason}", url.text),
                    })
                }
                Answer::Refused { reason, wait, .. } => {
                    return Err(DirectoryError::Refused {
                        kind: KIND_NAME,
                        reason,
                        wait,
                    })
                }
            }
        }
        Err(DirectoryError::Query {
            kind: KIND_NAME,
            detail: format!("{} still answered WAIT after {MAX_ASKS} asks", url.text),
        })
    }

    fn failed(&self, failure: Failure) -> DirectoryError {
        let url = &self.settings.url.text;
        match failure {
            Failure::Connect(why) => {
                self.health.store(false, Ordering::Relaxed);
                DirectoryError::Unreachable {
                    kind: KIND_NAME,
                    failures: ServerFailures(vec![(url.clone(), why)]),
                }
            }
            Failure::Stale => DirectoryError::Query {
                kind: KIND_NAME,
                detail: format!("{url} closed the connection without answering"),
            },
            Failure::Io(why) => DirectoryError::Query {
                kind: KIND_NAME,
                detail: format!("{url}: {why}"),
            },
            Failure::Garbage(garbage) => DirectoryError::Query {
                kind: KIND_NAME,
                detail: format!("{url} answered unusably: {garbage}"),
            },
        }
    }

    /// One request and its answer: on a kept connection if there is one
    /// (once more on a fresh one if it was closed), else a fresh one.
    async fn exchange(&self, request: &[u8]) -> Result<Answer, Failure> {
        let kept = self.idle.borrow_mut().pop();
        if let Some(conn) = kept {
            match self.on(conn, request, true).await {
                Err(Failure::Stale) => {}
                other => return other,
            }
        }
        let conn = self.connect().await?;
        self.on(conn, request, false).await
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let url = &self.settings.url;
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| Failure::Connect(format!("TLS name {:?}: {e}", url.host)))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Connect(format!("TLS: {e}")))?;
        Ok(Box::new(stream))
    }

    async fn on(&self, mut conn: Conn, request: &[u8], kept: bool) -> Result<Answer, Failure> {
        let stale_or = |e: std::io::Error| {
            if kept {
                Failure::Stale
            } else {
                Failure::Io(e.to_string())
            }
        };
        conn.write_all(request).await.map_err(stale_or)?;
        conn.flush().await.map_err(stale_or)?;
        // The answer may carry `Auth-Pass`: wiped when dropped.
        let mut buf = Zeroizing::new(Vec::with_capacity(1024));
        let mut chunk = Zeroizing::new([0u8; 2048]);
        let end = loop {
            if let Some(end) = exchange::head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                return Err(Failure::Garbage(Garbage::TooLong));
            }
            let n = conn.read(&mut chunk[..]).await.map_err(stale_or)?;
            if n == 0 {
                return Err(if kept && buf.is_empty() {
                    Failure::Stale
                } else {
                    Failure::Io("closed before the end of the answer's head".into())
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = exchange::parse_head(&buf[..end]).map_err(Failure::Garbage)?;
        let body_read = (buf.len() - end) as u64;
        if let (true, Some(body)) = (head.keep_alive, head.body_to_skip()) {
            if body >= body_read && skip(&mut conn, body - body_read).await {
                let mut idle = self.idle.borrow_mut();
                if idle.len() < self.settings.pool_size {
                    idle.push(conn);
                }
            }
        }
        head.answer().map_err(Failure::Garbage)
    }
}

/// Reads past `n` body bytes; false if the connection failed.
async fn skip(conn: &mut Conn, mut n: u64) -> bool {
    let mut sink = [0u8; 1024];
    while n > 0 {
        let want = n.min(sink.len() as u64) as usize;
        match conn.read(&mut sink[..want]).await {
            Ok(0) | Err(_) => return false,
            Ok(got) => n -= got as u64,
        }
    }
    true
}

impl Directory for HttpDirectory {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        Box::pin(async move { self.route(request).await.map(Lookup::direct) })
    }
}
