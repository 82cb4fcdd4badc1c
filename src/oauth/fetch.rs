//! The HTTP/1.1 requests the token checker makes — a GET for a key set, a
//! POST for introspection — over TCP or TLS, one request per connection
//! (`Connection: close`), each bounded in time (the caller's timeout) and
//! in bytes (the answer's head and body). The request and answer formats
//! are plain functions, tested without sockets.

use crate::auth::Secret;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest answer head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// Where a request goes, from an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    /// Host name or address (brackets removed from IPv6).
    pub host: String,
    /// Port (80 or 443 unless given).
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
}

impl Endpoint {
    /// Parses `url`; no user information, no fragment.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || path.contains('#') {
            return Err(format!(
                "`{url}`: no user or fragment in the URL (credentials go in files)"
            ));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "`{url}`: the path has spaces or control characters"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse()
                    .map_err(|_| format!("`{url}`: `{port}` is not a port"))?,
            ),
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `host[:port]` as the `Host` header says it.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An https URL and no TLS client config.
    #[error("https needs [oauth] ca_file")]
    NoTls,
    /// The host name cannot be checked against a certificate.
    #[error("`{0}` cannot be checked against a certificate")]
    BadName(String),
    /// The answer is not HTTP/1.x, or too large.
    #[error("unusable answer: {0}")]
    Answer(&'static str),
    /// Not a 200.
    #[error("HTTP status {0}")]
    Status(u16),
}

/// A request to send: method, extra headers, body (secret: it may carry a
/// token or client credentials).
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// `Authorization` header value, if any.
    pub authorization: Option<&'a Secret>,
    /// Body (form data) for a POST.
    pub body: Option<&'a Secret>,
}

/// The request bytes for `endpoint` (wiped by the caller: a [`Secret`]).
pub fn request_bytes(endpoint: &Endpoint, request: &Request<'_>) -> Secret {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(request.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(endpoint.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(endpoint.authority().as_bytes());
    out.extend_from_slice(
        b"\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: mailgate\r\n",
    );
    if let Some(auth) = request.authorization {
        out.extend_from_slice(b"Authorization: ");
        out.extend_from_slice(auth.expose());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = request.body {
        out.extend_from_slice(b"Content-Type: application/x-www-form-urlencoded\r\n");
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.expose().len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = request.body {
        out.extend_from_slice(body.expose());
    }
    Secret::new(out)
}

/// The body of a complete answer (read until the server closed): status
/// 200 required; `Content-Length`, chunked or close-delimited bodies.
pub fn answer_body(answer: &[u8], max_body: usize) -> Result<Vec<u8>, FetchError> {
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FetchError::Answer("no end of head"))?;
    if head_end > MAX_HEAD {
        return Err(FetchError::Answer("head too long"));
    }
    let head = std::str::from_utf8(&answer[..head_end])
        .map_err(|_| FetchError::Answer("head is not text"))?;
    let body = &answer[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(FetchError::Answer("no HTTP/1.x status line"))?;
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| FetchError::Answer("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(body, max_body)?
    } else if let Some(length) = length {
        if length > max_body {
            return Err(FetchError::Answer("body too large"));
        }
        body.get(..length)
            .ok_or(FetchError::Answer("body shorter than Content-Length"))?
            .to_vec()
    } else {
        body.to_vec()
    };
    if body.len() > max_body {
        return Err(FetchError::Answer("body too large"));
    }
    Ok(body)
}

/// A chunked body (RFC 9112 §7.1) joined; trailers ignored.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Vec<u8>, FetchError> {
    let bad = || FetchError::Answer("bad chunked body");
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > max_body {
            return Err(FetchError::Answer("body too large"));
        }
        body.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
        rest = rest
            .get(size + 2..)
            .filter(|r| !r.is_empty())
            .ok_or_else(bad)?;
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Sends `request` to `endpoint` and returns the body of its 200 answer,
/// at most `max_body` bytes. The caller bounds the time.
pub async fn send(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    request: &Request<'_>,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = if endpoint.tls {
        let config = tls.ok_or(FetchError::NoTls)?.clone();
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|_| FetchError::BadName(endpoint.host.clone()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        Box::new(connector.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let bytes = request_bytes(endpoint, request);
    stream.write_all(bytes.expose()).await?;
    stream.flush().await?;
    drop(bytes);
    let limit = (MAX_HEAD + 4 + max_body + max_body / 8 + 64) as u64;
    let mut answer = Vec::new();
    (&mut stream)
        .take(limit + 1)
        .read_to_end(&mut answer)
        .await?;
    if answer.len() as u64 > limit {
        return Err(FetchError::Answer("answer too large"));
    }
    answer_body(&answer, max_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_endpoints() {
        let e =
            Endpoint::parse("https://idp.example.org/realms/mail/protocol/openid-connect/certs")
                .unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "idp.example.org", 443)
        );
        assert_eq!(e.path, "/realms/mail/protocol/openid-connect/certs");
        let e = Endpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(e.authority(), "[::1]:8080");
        for bad in [
            "ftp://x/",
            "http://u:p@x/",
            "http://x:port/",
            "http:///p",
            "http://x/a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_post_carries_its_headers_and_body() {
        let e = Endpoint::parse("http://127.0.0.1:9000/introspect").unwrap();
        let auth = Secret::new(b"Basic bWc6cw==".to_vec());
        let body = Secret::new(b"token=abc".to_vec());
        let bytes = request_bytes(
            &e,
            &Request {
                method: "POST",
                authorization: Some(&auth),
                body: Some(&body),
            },
        );
        let text = String::from_utf8(bytes.expose().to_vec()).unwrap();
        assert!(text.starts_with("POST /introspect HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(text.contains("Authorization: Basic bWc6cw==\r\n"));
        assert!(text.ends_with("Content-Length: 9\r\n\r\ntoken=abc"));
    }

    #[test]
    fn answers_are_read_by_length_chunks_or_close_and_bounded() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx";
        assert_eq!(answer_body(by_length, 10).unwrap(), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(answer_body(chunked, 10).unwrap(), b"abcde");
        let closed = b"HTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(answer_body(closed, 10).unwrap(), b"body");
        assert!(matches!(answer_body(closed, 3), Err(FetchError::Answer(_))));
        assert!(matches!(
            answer_body(chunked, 4),
            Err(FetchError::Answer(_))
        ));
        assert!(matches!(
            answer_body(b"HTTP/1.1 404 Not Found\r\n\r\n", 10),
            Err(FetchError::Status(404))
        ));
        assert!(matches!(
            answer_body(b"garbage", 10),
            Err(FetchError::Answer(_))
        ));
        let truncated = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(matches!(
            answer_body(truncated, 10),
            Err(FetchError::Answer(_))
        ));
    }
}
