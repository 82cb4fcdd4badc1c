//! The admin listener (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, and the actions a mailbox move needs — `POST
//! /cache/invalidate?user=…`, `POST /sessions/kick?user=…`, `GET
//! /sessions?user=…` — protected by an optional bearer token.
//!
//! It runs on its own thread with blocking I/O: admin traffic is rare and
//! small, and must never compete with the workers' reactors. Requests are
//! bounded (8 KiB of head, 5 s to send it).

use super::prometheus;
use crate::directory::{CacheStats, Invalidations};
use crate::runtime::WorkerState;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// What the admin thread serves from.
pub struct Admin {
    /// Per-worker state.
    pub workers: Vec<WorkerState>,
    /// Cache invalidation log.
    pub invalidations: Arc<Invalidations>,
    /// Required bearer token for actions, if configured.
    pub token: Option<String>,
}

/// Serves `listener` forever on a new thread.
pub fn spawn(listener: TcpListener, admin: Admin) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mailgate-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                if let Err(e) = admin.handle(stream) {
                    tracing::debug!("admin request: {e}");
                }
            }
        })?;
    Ok(())
}

struct Request {
    method: String,
    path: String,
    user: Option<String>,
    bearer: Option<String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream.take_ref(MAX_HEAD as u64));
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
        .map(crate::directory::ldap::query::percent_decode)
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

trait TakeRef {
    fn take_ref(&self, limit: u64) -> std::io::Take<&TcpStream>;
}

impl TakeRef for TcpStream {
    fn take_ref(&self, limit: u64) -> std::io::Take<&TcpStream> {
        std::io::Read::take(self, limit)
    }
}

impl Admin {
    fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let Some(req) = read_request(&stream)? else {
            return respond(&mut stream, 400, "bad request\n");
        };
        let authorized = match &self.token {
            None => true,
            Some(token) => req.bearer.as_deref() == Some(token.as_str()),
        };
        let needs_token = matches!(
            req.path.as_str(),
            "/cache/invalidate" | "/sessions/kick" | "/sessions"
        );
        if needs_token && !authorized {
            return respond(&mut stream, 401, "a valid bearer token is required\n");
        }
        match (req.method.as_str(), req.path.as_str(), req.user) {
            ("GET", "/healthz", _) => respond(&mut stream, 200, "ok\n"),
            ("GET", "/readyz", _) => {
                if self.ready() {
                    respond(&mut stream, 200, "ready\n")
                } else {
                    respond(&mut stream, 503, "directory unreachable and cache cold\n")
                }
            }
            ("GET", "/metrics", _) => respond(&mut stream, 200, &self.metrics()),
            ("POST", "/cache/invalidate", Some(user)) => {
                self.invalidations.invalidate(&user);
                tracing::info!(user, "admin: cache entry invalidated");
                respond(&mut stream, 200, &format!("invalidated {user}\n"))
            }
            ("POST", "/sessions/kick", Some(user)) => {
                let kicked: usize = self.workers.iter().map(|w| w.registry.kick(&user)).sum();
                tracing::info!(user, kicked, "admin: sessions kicked");
                respond(&mut stream, 200, &format!("kicked {kicked}\n"))
            }
            ("GET", "/sessions", user) => {
                let mut body = String::new();
                for w in &self.workers {
                    for s in w.registry.list(user.as_deref()) {
                        let since = s
                            .since
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        body.push_str(&format!(
                            "{{\"user\":{:?},\"client\":\"{}\",\"backend\":\"{}\",\"since\":{since}}}\n",
                            s.user, s.client, s.backend
                        ));
                    }
                }
                respond(&mut stream, 200, &body)
            }
            (_, "/cache/invalidate" | "/sessions/kick", None) => {
                respond(&mut stream, 400, "user= is required\n")
            }
            _ => respond(&mut stream, 404, "not found\n"),
        }
    }

    /// Listeners are bound once this runs; ready unless no worker's
    /// directory reached its servers last time and no cache has served a
    /// route (hits or stale answers).
    fn ready(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.workers.iter().any(|w| {
            let cache = w.cache.snapshot();
            w.directory_ok.load(Ordering::Relaxed) || cache.hits + cache.stale > 0
        })
    }

    fn metrics(&self) -> String {
        let mut merged = super::Recorder::default();
        let mut cache = CacheStats::default();
        for w in &self.workers {
            super::with(&w.metrics, |r| merged.merge(r));
            let c = w.cache.snapshot();
            cache.hits += c.hits;
            cache.negative_hits += c.negative_hits;
            cache.misses += c.misses;
            cache.coalesced += c.coalesced;
            cache.stale += c.stale;
            cache.errors += c.errors;
        }
        prometheus::render(&merged, &cache)
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let content_type = if body.starts_with("# HELP") {
        "text/plain; version=0.0.4"
    } else {
        "text/plain"
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
