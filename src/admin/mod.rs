//! The admin listener (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, and the actions a mailbox move needs — `POST
//! /cache/invalidate?user=…`, `POST /sessions/kick?user=…`, `GET
//! /sessions?user=…` — protected by a bearer token; and [`client`], the
//! client for it.
//!
//! It runs on its own thread with blocking I/O: admin traffic is rare and
//! small, and must never compete with the workers' reactors. It reads the
//! workers' recorders and registries; it never touches a session's socket
//! except through [`crate::registry::Registry::kick`].

pub mod client;
mod http;

use crate::directory::{CacheStats, Invalidations};
use crate::metrics::{self, prometheus, Recorder};
use crate::runtime::WorkerState;
use http::{Body, Status};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

pub use http::MAX_HEAD;

/// Bound on reading a request and on writing its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
                let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
                let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
                if let Err(e) = admin.handle(stream) {
                    tracing::debug!("admin request: {e}");
                }
            }
        })?;
    Ok(())
}

/// One line of `GET /sessions`.
#[derive(serde::Serialize)]
struct SessionLine<'a> {
    user: &'a str,
    client: String,
    backend: String,
    since: u64,
}

impl Admin {
    fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let Some(req) = http::read_request(&stream)? else {
            return http::respond(&mut stream, Status::BadRequest, Body::Text, "bad request\n");
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
            return http::respond(
                &mut stream,
                Status::Unauthorized,
                Body::Text,
                "a valid bearer token is required\n",
            );
        }
        let (status, kind, body) = self.answer(&req);
        http::respond(&mut stream, status, kind, &body)
    }

    fn answer(&self, req: &http::Request) -> (Status, Body, String) {
        let text = |status, body: &str| (status, Body::Text, body.to_owned());
        match (req.method.as_str(), req.path.as_str(), &req.user) {
            ("GET", "/healthz", _) => text(Status::Ok, "ok\n"),
            ("GET", "/readyz", _) if self.ready() => text(Status::Ok, "ready\n"),
            ("GET", "/readyz", _) => text(
                Status::Unavailable,
                "directory unreachable and cache cold\n",
            ),
            ("GET", "/metrics", _) => (Status::Ok, Body::Prometheus, self.metrics()),
            ("POST", "/cache/invalidate", Some(user)) => {
                self.invalidations.invalidate(user);
                tracing::info!(user = %user.escape_debug(), "admin: cache entry invalidated");
                text(Status::Ok, &format!("invalidated {user}\n"))
            }
            ("POST", "/sessions/kick", Some(user)) => {
                let kicked: usize = self.workers.iter().map(|w| w.registry.kick(user)).sum();
                tracing::info!(user = %user.escape_debug(), kicked, "admin: sessions kicked");
                text(Status::Ok, &format!("kicked {kicked}\n"))
            }
            ("GET", "/sessions", user) => (Status::Ok, Body::JsonLines, self.sessions(user)),
            (_, "/cache/invalidate" | "/sessions/kick", None) => {
                text(Status::BadRequest, "user= is required\n")
            }
            _ => text(Status::NotFound, "not found\n"),
        }
    }

    fn sessions(&self, user: &Option<String>) -> String {
        let mut body = String::new();
        for w in &self.workers {
            for s in w.registry.list(user.as_deref()) {
                let line = SessionLine {
                    user: &s.user,
                    client: s.client.to_string(),
                    backend: s.backend.to_string(),
                    since: s
                        .since
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                };
                if let Ok(json) = serde_json::to_string(&line) {
                    body.push_str(&json);
                    body.push('\n');
                }
            }
        }
        body
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
        let mut merged = Recorder::default();
        let mut cache = CacheStats::default();
        for w in &self.workers {
            metrics::with(&w.metrics, |r| merged.merge(r));
            cache.add(&w.cache.snapshot());
        }
        prometheus::render(&merged, &cache)
    }
}
