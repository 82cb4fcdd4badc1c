//! nginx's `auth_http` protocol without I/O: the request a login becomes,
//! and what an answer's head means. Pure functions over bytes, unit-tested
//! and fuzzed without sockets.
//!
//! The request is nginx's mail module's: `GET <path>` with `Host`,
//! `Auth-Method`, `Auth-User`, `Auth-Pass`, `Auth-Protocol`,
//! `Auth-Login-Attempt` and `Client-IP`, name and password escaped as
//! nginx escapes them (`%XX` for controls, space, `%` and non-ASCII bytes).
//! It is sent as HTTP/1.1 with `Connection: keep-alive` (nginx sends
//! HTTP/1.0 and closes): an answer that allows it leaves the connection
//! open for the next login.
//!
//! The answer is read from its head only (the body is ignored, as nginx
//! ignores it): `Auth-Status: OK` with `Auth-Server` and `Auth-Port` (and
//! optionally `Auth-User`, `Auth-Pass`) is a route; `Auth-Status: WAIT`
//! asks again after `Auth-Wait` seconds; any other status is a refusal
//! (with `Auth-Wait`, the delay before it is answered), or a temporary
//! failure when `Auth-Error-Code` is a 4xx SMTP code. Every value is
//! checked before it is used; a head longer than [`MAX_HEAD`] or with more
//! than [`MAX_HEADERS`] lines is garbage.

use crate::auth::Secret;
use crate::directory::Route;
use std::time::Duration;

/// Longest answer head read (status line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines in an answer.
pub const MAX_HEADERS: usize = 64;
/// Longest body read past to keep a connection (a longer one closes it).
pub const MAX_BODY_SKIPPED: u64 = 64 * 1024;
/// Longest `Auth-Wait` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What the request says of one login.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The name as typed.
    pub user: &'a str,
    /// The password, when the site has it sent.
    pub password: Option<&'a [u8]>,
    /// `imap`, `pop3`, `managesieve`.
    pub protocol: &'a str,
    /// The client's address, as text.
    pub client_ip: Option<std::net::IpAddr>,
    /// 1 for a connection's first login.
    pub attempt: u32,
}

/// The request for `ask`: `GET path` to `host`, with `extra` headers
/// (`auth_http_header`) after nginx's. The buffer holds the password: the
/// caller wipes it after writing (it is a [`Secret`]).
pub fn request(path: &str, host: &str, extra: &[(String, String)], ask: &Ask<'_>) -> Secret {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nConnection: keep-alive\r\nAuth-Method: plain\r\nAuth-User: ");
    escape_into(&mut out, ask.user.as_bytes());
    if let Some(password) = ask.password {
        out.extend_from_slice(b"\r\nAuth-Pass: ");
        escape_into(&mut out, password);
    }
    out.extend_from_slice(b"\r\nAuth-Protocol: ");
    out.extend_from_slice(ask.protocol.as_bytes());
    out.extend_from_slice(format!("\r\nAuth-Login-Attempt: {}", ask.attempt).as_bytes());
    if let Some(ip) = ask.client_ip {
        out.extend_from_slice(format!("\r\nClient-IP: {ip}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Secret::new(out)
}

/// `%XX` for what nginx escapes in a mail login: controls, space, `%`,
/// DEL and bytes above ASCII. Nothing else changes.
fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        if b <= b' ' || b == b'%' || b >= 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// An answer's head, as far as the protocol needs it.
#[derive(Debug, Default)]
pub struct Head {
    /// The HTTP status code.
    pub status: u16,
    /// Whether the connection may carry the next request.
    pub keep_alive: bool,
    /// The body's length, when the head says it.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` was given (the body's end is not known here).
    pub chunked: bool,
    auth_status: Option<String>,
    server: Option<String>,
    port: Option<String>,
    user: Option<String>,
    pass: Option<Secret>,
    wait: Option<String>,
    error_code: Option<String>,
}

/// Why an answer cannot be used (logged; the client gets a temporary
/// failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Garbage {
    /// The head is longer than [`MAX_HEAD`].
    #[error("answer head longer than {MAX_HEAD} bytes")]
    TooLong,
    /// More header lines than [`MAX_HEADERS`].
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// Not `HTTP/1.x NNN …`.
    #[error("not an HTTP status line: {0:?}")]
    StatusLine(String),
    /// A header line without a colon, or with bytes a header cannot hold.
    #[error("malformed header line: {0:?}")]
    Header(String),
    /// A status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// 2xx without `Auth-Status`.
    #[error("no Auth-Status header")]
    NoStatus,
    /// `Auth-Status: OK` without `Auth-Server` or `Auth-Port`.
    #[error("Auth-Status OK without Auth-Server and Auth-Port")]
    NoServer,
    /// A value that cannot be used (the header's name and why).
    #[error("{0}: {1}")]
    Value(&'static str, String),
}

/// The end of the head in `buf` (just past the blank line), if there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|at| at + 2))
}

/// Parses a complete head (`buf` up to [`head_end`]). Values are taken as
/// bytes: `Auth-Pass` as sent (a password need not be UTF-8), every other
/// value the protocol reads must be UTF-8.
pub fn parse_head(buf: &[u8]) -> Result<Head, Garbage> {
    if buf.len() > MAX_HEAD {
        return Err(Garbage::TooLong);
    }
    let mut lines = buf
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or(b"");
    let bad_status = || Garbage::StatusLine(quote_bytes(status_line));
    let text = std::str::from_utf8(status_line).map_err(|_| bad_status())?;
    let (version, rest) = text.split_once(' ').ok_or_else(bad_status)?;
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad_status()),
    };
    let code = rest.get(..3).ok_or_else(bad_status)?;
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c) && code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad_status)?;
    let mut head = Head {
        status,
        keep_alive: http11,
        ..Head::default()
    };
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(Garbage::TooManyHeaders);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .filter(|&at| at > 0 && line[..at].iter().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| Garbage::Header(quote_bytes(line)))?;
        let name = std::str::from_utf8(&line[..colon]).expect("ASCII");
        let value = line[colon + 1..].trim_ascii();
        if value.iter().any(|&b| b < b' ' && b != b'\t' || b == 0x7f) {
            return Err(Garbage::Header(name.to_owned()));
        }
        head.take(name, value)?;
    }
    Ok(head)
}

impl Head {
    fn take(&mut self, name: &str, raw: &[u8]) -> Result<(), Garbage> {
        let lower = name.to_ascii_lowercase();
        if lower == "auth-pass" {
            self.pass = Some(Secret::new(raw.to_vec()));
            return Ok(());
        }
        let value = std::str::from_utf8(raw).map_err(|_| Garbage::Header(name.to_owned()))?;
        let owned = || Some(value.to_owned());
        match lower.as_str() {
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    self.keep_alive = false;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    self.keep_alive = true;
                }
            }
            "content-length" => {
                let length = value
                    .parse()
                    .map_err(|_| Garbage::Value("Content-Length", quote(value)))?;
                self.content_length = Some(length);
            }
            "transfer-encoding" => self.chunked = true,
            "auth-status" => self.auth_status = owned(),
            "auth-server" => self.server = owned(),
            "auth-port" => self.port = owned(),
            "auth-user" => self.user = owned(),
            "auth-wait" => self.wait = owned(),
            "auth-error-code" => self.error_code = owned(),
            _ => {}
        }
        Ok(())
    }

    /// Whether the body can be read past to keep the connection (its
    /// length is known and small), and how long it is.
    pub fn body_to_skip(&self) -> Option<u64> {
        if self.chunked {
            return None;
        }
        match self.content_length {
            Some(n) if n <= MAX_BODY_SKIPPED => Some(n),
            Some(_) => None,
            None if self.status == 204 || self.status == 304 => Some(0),
            // A body that ends with the connection.
            None => None,
        }
    }

    /// What the answer means.
    pub fn answer(self) -> Result<Answer, Garbage> {
        if !(200..300).contains(&self.status) {
            return Err(Garbage::Status(self.status));
        }
        let status = self.auth_status.ok_or(Garbage::NoStatus)?;
        let wait = match &self.wait {
            None => None,
            Some(w) => Some(Duration::from_secs(
                w.parse::<u64>()
                    .map_err(|_| Garbage::Value("Auth-Wait", quote(w)))?,
            ))
            .map(|w| w.min(MAX_WAIT)),
        };
        if status == "OK" {
            let (Some(server), Some(port)) = (self.server, self.port) else {
                return Err(Garbage::NoServer);
            };
            return Ok(Answer::Route(route(&server, &port, self.user, self.pass)?));
        }
        if status == "WAIT" {
            return Ok(Answer::AskAgain(wait.unwrap_or_default()));
        }
        let temporary = self
            .error_code
            .as_deref()
            .is_some_and(|code| code.starts_with('4'));
        Ok(Answer::Refused {
            reason: quote(&status),
            wait,
            temporary,
        })
    }
}

/// What an answer means.
#[derive(Debug)]
pub enum Answer {
    /// `Auth-Status: OK`: where the user goes.
    Route(Route),
    /// `Auth-Status: WAIT`: ask again after the wait.
    AskAgain(Duration),
    /// Any other status: the login is refused.
    Refused {
        /// The status text.
        reason: String,
        /// `Auth-Wait`: how long to wait before answering the client.
        wait: Option<Duration>,
        /// `Auth-Error-Code` is a 4xx code: a temporary failure.
        temporary: bool,
    },
}

/// A route from `Auth-Server`, `Auth-Port` and the optional rewrites,
/// each checked.
fn route(
    server: &str,
    port: &str,
    user: Option<String>,
    pass: Option<Secret>,
) -> Result<Route, Garbage> {
    let host = server.trim_start_matches('[').trim_end_matches(']');
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !is_ip && !is_name {
        return Err(Garbage::Value("Auth-Server", quote(server)));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Garbage::Value("Auth-Port", quote(port)))?;
    if let Some(user) = &user {
        if user.is_empty() || crate::login::check_user_name(user).is_err() {
            return Err(Garbage::Value("Auth-User", quote(user)));
        }
    }
    Ok(Route {
        host: host.to_owned(),
        port: Some(port),
        login_user: user,
        login_password: pass,
    })
}

/// Bytes for a log line, as [`quote`] does for text.
fn quote_bytes(bytes: &[u8]) -> String {
    quote(&String::from_utf8_lossy(&bytes[..bytes.len().min(100)]))
}

/// A value for a log line: at most 100 characters, controls escaped.
fn quote(text: &str) -> String {
    let cut: String = text.chars().take(100).collect();
    cut.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Result<Answer, Garbage> {
        let end = head_end(text.as_bytes()).expect("a whole head");
        parse_head(&text.as_bytes()[..end])?.answer()
    }

    #[test]
    fn the_request_is_nginxs_with_name_and_password_escaped() {
        let ask = Ask {
            user: "al ice@x.org",
            password: Some("p%ss\r\nX: y é".as_bytes()),
            protocol: "imap",
            client_ip: Some("192.0.2.42".parse().unwrap()),
            attempt: 2,
        };
        let extra = [("X-Auth-Key".to_owned(), "secret".to_owned())];
        let sent = request("/auth", "auth.local:9000", &extra, &ask);
        let text = String::from_utf8(sent.expose().to_vec()).unwrap();
        assert_eq!(
            text,
            "GET /auth HTTP/1.1\r\nHost: auth.local:9000\r\nConnection: keep-alive\r\n\
             Auth-Method: plain\r\nAuth-User: al%20ice@x.org\r\n\
             Auth-Pass: p%25ss%0D%0AX:%20y%20%C3%A9\r\nAuth-Protocol: imap\r\n\
             Auth-Login-Attempt: 2\r\nClient-IP: 192.0.2.42\r\nX-Auth-Key: secret\r\n\r\n"
        );
        let ask = Ask {
            password: None,
            ..ask
        };
        let text = request("/", "a", &[], &ask);
        assert!(!String::from_utf8_lossy(text.expose()).contains("Auth-Pass"));
    }

    #[test]
    fn ok_is_a_route_with_its_rewrites() {
        let Answer::Route(route) = answer(
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 198.51.100.1\r\nAuth-Port: 10143\r\n\
             Auth-User: alice.smith\r\nAuth-Pass: master\r\n\r\n",
        )
        .unwrap() else {
            panic!("not a route")
        };
        assert_eq!(route.host, "198.51.100.1");
        assert_eq!(route.port, Some(10143));
        assert_eq!(route.login_user.as_deref(), Some("alice.smith"));
        assert_eq!(route.login_password.unwrap().expose(), b"master");
        let Answer::Route(route) = answer(
            "HTTP/1.1 204 No Content\nauth-status: OK\nAUTH-SERVER: box1.vpn\nAuth-Port: 143\n\n",
        )
        .unwrap() else {
            panic!("not a route")
        };
        assert_eq!(
            (route.host.as_str(), route.login_password),
            ("box1.vpn", None)
        );
    }

    #[test]
    fn other_statuses_are_refusals_with_their_wait() {
        let Answer::Refused {
            reason,
            wait,
            temporary,
        } = answer(
            "HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n\r\n",
        )
        .unwrap()
        else {
            panic!("not refused")
        };
        assert_eq!(reason, "Invalid login or password");
        assert_eq!(wait, Some(Duration::from_secs(3)));
        assert!(!temporary);
        let Answer::Refused { temporary, wait, .. } = answer(
            "HTTP/1.0 200 OK\r\nAuth-Status: Temporary server problem\r\nAuth-Error-Code: 451 4.3.0\r\nAuth-Wait: 9999\r\n\r\n",
        )
        .unwrap() else {
            panic!("not refused")
        };
        assert!(temporary);
        assert_eq!(wait, Some(MAX_WAIT));
        assert!(matches!(
            answer("HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 1\r\n\r\n").unwrap(),
            Answer::AskAgain(w) if w == Duration::from_secs(1)
        ));
    }

    #[test]
    fn garbage_is_named() {
        let cases: &[(&str, Garbage)] = &[
            (
                "SSH-2.0-OpenSSH\r\n\r\n",
                Garbage::StatusLine("SSH-2.0-OpenSSH".into()),
            ),
            ("HTTP/1.1 500 Oops\r\n\r\n", Garbage::Status(500)),
            ("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", Garbage::NoStatus),
            (
                "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Port: 1\r\n\r\n",
                Garbage::NoServer,
            ),
            (
                "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: a b\r\nAuth-Port: 1\r\n\r\n",
                Garbage::Value("Auth-Server", "a b".into()),
            ),
            (
                "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: a\r\nAuth-Port: 0\r\n\r\n",
                Garbage::Value("Auth-Port", "0".into()),
            ),
            (
                "HTTP/1.1 200 OK\r\nAuth-Status: x\r\nAuth-Wait: soon\r\n\r\n",
                Garbage::Value("Auth-Wait", "soon".into()),
            ),
            (
                "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                Garbage::Header("no colon".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(answer(text).err().as_ref(), Some(expected), "{text:?}");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(answer(&many).err(), Some(Garbage::TooManyHeaders));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEAD));
        assert_eq!(answer(&long).err(), Some(Garbage::TooLong));
    }

    #[test]
    fn a_password_need_not_be_utf8_but_other_values_must() {
        let head = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: a\r\nAuth-Port: 1\r\nAuth-Pass: \xe9t\xe9\r\n\r\n";
        let Answer::Route(route) = parse_head(head).unwrap().answer().unwrap() else {
            panic!("not a route")
        };
        assert_eq!(route.login_password.unwrap().expose(), b"\xe9t\xe9");
        let head = b"HTTP/1.0 200 OK\r\nAuth-User: \xe9\r\n\r\n";
        assert_eq!(
            parse_head(head).err(),
            Some(Garbage::Header("Auth-User".into()))
        );
        let head = b"HTTP/1.0 200 OK\r\nAuth-Pass: a\x00b\r\n\r\n";
        assert_eq!(
            parse_head(head).err(),
            Some(Garbage::Header("Auth-Pass".into()))
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let head = |t: &str| parse_head(t.as_bytes()).unwrap();
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").body_to_skip(),
            Some(12)
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").body_to_skip(), None);
        assert_eq!(head("HTTP/1.1 204 OK\r\n\r\n").body_to_skip(), Some(0));
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").body_to_skip(),
            None
        );
    }
}
