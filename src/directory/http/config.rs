//! `kind = "http"`: the auth_http keys of `[directory]` and their
//! validation into [`HttpSettings`].

use super::HttpDirectory;
use crate::directory::host_rewrite::HostRewrite;
use crate::directory::kind::{
    ClientTls, Invalid, KindSettings, KindSpec, Prepared, Problem, Setup,
};
use crate::directory::name_form::KeyFormat;
use crate::directory::Directory;
use serde::Deserialize;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The registration of `kind = "http"`.
pub const KIND: KindSpec = KindSpec {
    name: "http",
    // An auth server may check passwords, count failures or rate-limit:
    // asked for every login unless the site turns the cache on.
    cached_by_default: false,
    configure,
};

/// Most extra headers (`headers`).
const MAX_EXTRA_HEADERS: usize = 16;

/// The auth_http keys of `[directory]`.
#[derive(Debug, Deserialize)]
struct HttpConfig {
    /// `http://host[:port]/path` or `https://…` (nginx's `auth_http`).
    url: Option<toml::Spanned<String>>,
    /// CA certificates (PEM) for an https URL.
    ca_file: Option<toml::Spanned<PathBuf>>,
    /// Bound on each request: connect, write, the answer's head.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    /// Connections kept open, and requests in flight, per worker.
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    /// Whether `Auth-Pass` is sent (off: the server routes by name only).
    #[serde(default = "yes")]
    send_password: bool,
    /// Headers added to every request (nginx's `auth_http_header`), e.g. a
    /// shared secret the server checks.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_pool_size() -> usize {
    4
}

fn yes() -> bool {
    true
}

/// The auth server's address, parsed from the URL.
#[derive(Debug, Clone)]
pub struct AuthUrl {
    /// The URL as written (for messages).
    pub text: String,
    /// Whether it is https.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port (80 or 443 unless given).
    pub port: u16,
    /// The `Host` header: host and port as written.
    pub host_header: String,
    /// The request path (with query), `/` at least.
    pub path: String,
}

impl AuthUrl {
    /// Parses `http://host[:port][/path]` or `https://…`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err("an http:// or https:// URL".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().map_err(|_| "bad port")?),
                None if after.is_empty() => (host, default_port),
                None => return Err("junk after ]".into()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| "bad port")?),
                None => (authority, default_port),
            }
        };
        let clean = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if host.is_empty() || authority.contains('@') || !clean(authority) || !clean(path) {
            return Err("a host (no user part, no spaces) and a path without spaces".into());
        }
        Ok(Self {
            text: text.to_owned(),
            tls,
            host: host.to_owned(),
            port,
            host_header: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// Everything a worker's auth_http client needs.
#[derive(Debug)]
pub struct HttpSettings {
    /// The server.
    pub url: AuthUrl,
    /// CA file for https.
    pub ca_file: Option<PathBuf>,
    /// Bound on each request.
    pub timeout: Duration,
    /// Connections kept, and requests in flight, per worker.
    pub pool_size: usize,
    /// Whether `Auth-Pass` is sent.
    pub send_password: bool,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// How a typed name becomes `Auth-User`.
    pub name_form: KeyFormat,
    /// `Auth-Server` rewriting.
    pub hosts: HostRewrite,
}

fn configure(setup: &mut Setup<'_>) -> Result<Arc<dyn KindSettings>, Problem> {
    let d: HttpConfig = setup.read()?;
    let Some(url) = &d.url else {
        return Err(Invalid::new(
            "directory.url",
            None,
            "kind = \"http\" needs `url = \"http://host:port/path\"` (nginx's auth_http)",
        )
        .into());
    };
    let parsed = AuthUrl::parse(url.get_ref())
        .map_err(|e| Invalid::new("directory.url", Some(url.span()), e))?;
    if parsed.tls && d.ca_file.is_none() {
        return Err(Invalid::new(
            "directory.ca_file",
            Some(url.span()),
            "an https URL needs `ca_file` (the CA the server's certificate chains to)",
        )
        .into());
    }
    if d.pool_size == 0 {
        return Err(Invalid::new("directory.pool_size", None, "must be greater than 0").into());
    }
    if d.timeout.is_zero() {
        return Err(Invalid::new("directory.timeout", None, "must be greater than 0").into());
    }
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    let value = |s: &str| {
        s.bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    };
    if d.headers.len() > MAX_EXTRA_HEADERS || d.headers.iter().any(|(n, v)| !token(n) || !value(v))
    {
        return Err(Invalid::new(
            "directory.headers",
            None,
            format!(
                "at most {MAX_EXTRA_HEADERS} headers: names are tokens, values printable ASCII"
            ),
        )
        .into());
    }
    setup.locate("directory.ca_file", d.ca_file.as_ref().map(|f| f.span()));
    let common = setup.common();
    Ok(Arc::new(HttpKind(Arc::new(HttpSettings {
        url: parsed,
        ca_file: d
            .ca_file
            .as_ref()
            .map(|f| setup.base_dir().join(f.get_ref())),
        timeout: d.timeout,
        pool_size: d.pool_size,
        send_password: d.send_password,
        headers: d.headers.into_iter().collect(),
        name_form: common.name_form.clone(),
        hosts: common.hosts.clone(),
    }))))
}

/// A validated auth_http configuration.
#[derive(Debug)]
pub struct HttpKind(pub Arc<HttpSettings>);

impl KindSettings for HttpKind {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name_form(&self) -> KeyFormat {
        self.0.name_form.clone()
    }

    fn prepare(&self, tls: &ClientTls<'_>) -> Result<Arc<dyn Prepared>, Invalid> {
        let tls = match (&self.0.ca_file, self.0.url.tls) {
            (Some(ca), true) => {
                Some(tls(ca).map_err(|e| Invalid::new("directory.ca_file", None, e))?)
            }
            _ => None,
        };
        Ok(Arc::new(PreparedHttp {
            settings: self.0.clone(),
            tls,
        }))
    }
}

struct PreparedHttp {
    settings: Arc<HttpSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Prepared for PreparedHttp {
    fn worker(&self, health: Arc<AtomicBool>) -> Rc<dyn Directory> {
        Rc::new(HttpDirectory::new(
            self.settings.clone(),
            self.tls.clone(),
            health,
        ))
    }

    fn ports(&self) -> Vec<u16> {
        self.settings.hosts.ports().collect()
    }

    fn summary(&self) -> String {
        format!("auth_http at {}", self.settings.url.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_nginx_writes_them() {
        let u = AuthUrl::parse("http://127.0.0.1:9000/mail/auth?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/mail/auth?x=1")
        );
        assert_eq!(u.host_header, "127.0.0.1:9000");
        let u = AuthUrl::parse("https://auth.example.org").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/"));
        let u = AuthUrl::parse("http://[::1]:81/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        for bad in [
            "ftp://x/",
            "http://",
            "http://u@h/",
            "http://h:x/",
            "http://h/a b",
        ] {
            assert!(AuthUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
