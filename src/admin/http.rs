//! The admin listener's HTTP/1.1 subset: one request per connection, a
//! request line and headers (no body), the `user` query parameter and a
//! bearer token; answers with `Connection: close`.
//!
//! The whole request head is bounded by [`MAX_HEAD`] bytes and by the
//! caller's deadline (checked before every read, so a client dribbling a byte
//! at a time cannot stretch it). Nothing here knows what a path means.

use percent_encoding::percent_decode_str;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(super) struct Request {
    pub method: String,
    pub path: String,
    /// The `user=` query parameter, percent-decoded, if not empty.
    pub user: Option<String>,
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<String>,
}

/// Reads from a socket, each read bounded by what is left until a deadline.
struct UntilDeadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for UntilDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

/// Reads one request head before `deadline`; `None` for a malformed
/// request line.
pub(super) fn read_request(
    stream: &TcpStream,
    deadline: Instant,
) -> std::io::Result<Option<Request>> {
    let bounded = UntilDeadline { stream, deadline };
    let mut reader = BufReader::new(bounded.take(MAX_HEAD as u64));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let user = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .map(|u| percent_decode_str(u).decode_utf8_lossy().into_owned())
        .filter(|u| !u.is_empty());
    let mut bearer = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                bearer = value.trim().strip_prefix("Bearer ").map(str::to_owned);
            }
        }
    }
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        user,
        bearer,
    }))
}

/// HTTP status codes the admin listener answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Unauthorized => "401 Unauthorized",
            Status::Forbidden => "403 Forbidden",
            Status::NotFound => "404 Not Found",
            Status::Unavailable => "503 Service Unavailable",
        }
    }
}

/// Content types of the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// Plain text.
    Text,
    /// Prometheus text exposition, format 0.0.4.
    Prometheus,
    /// One JSON object per line.
    JsonLines,
}

/// Writes a whole response.
pub(super) fn respond(
    stream: &mut TcpStream,
    status: Status,
    kind: Body,
    body: &str,
) -> std::io::Result<()> {
    let content_type = match kind {
        Body::Text => "text/plain",
        Body::Prometheus => "text/plain; version=0.0.4",
        Body::JsonLines => "application/x-ndjson",
    };
    write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.line(),
        body.len()
    )
}

/// Compares a secret in time that depends on the lengths only, not on where
/// the first differing byte is.
pub(super) fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    let difference = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"token", b"token2"));
        assert!(!same_secret(b"token", b""));
    }
}
