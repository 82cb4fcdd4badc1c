//! The admin listener (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, and the actions a mailbox move needs — `POST
//! /cache/invalidate?user=…`, `POST /sessions/kick?user=…`, `GET
//! /sessions?user=…` — which always need the bearer token (without a
//! `token_file` they are off: 403); and [`client`], the client for it.
//!
//! It runs on threads of its own with blocking I/O: admin traffic is rare and
//! small, and must never compete with the workers' reactors. Each request
//! gets a thread (at most [`MAX_CONCURRENT`] at once; more are answered 503)
//! and [`REQUEST_TIMEOUT`] for the whole exchange, so a slow client stalls
//! nobody. It reads the workers' recorders and registries; it never touches a
//! session's socket except through [`crate::registry::Registry::kick`].

pub mod client;
mod http;

use crate::directory::{CacheStats, Invalidations};
use crate::metrics::{self, prometheus, Recorder, SharedRecorder};
use crate::runtime::WorkerState;
use http::{Body, Status};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use http::MAX_HEAD;

/// Bound on one whole request: reading its head and writing the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once; more are answered 503 at once.
pub const MAX_CONCURRENT: usize = 8;

/// What the admin thread serves from.
pub struct Admin {
    /// The reactor the workers run (`mailgate_info{io=…}`).
    pub io: crate::transport::Io,
    /// The directory watch, when `[directory] watch` is on.
    pub watch: Option<Arc<crate::directory::changes::WatchStatus>>,
    /// Per-worker state.
    pub workers: Vec<WorkerState>,
    /// Figures kept for the whole process rather than per worker (the
    /// connection cache's parking lot), merged with the workers'.
    pub process: Vec<SharedRecorder>,
    /// Cache invalidation log.
    pub invalidations: Arc<Invalidations>,
    /// The bearer token actions need; `None` turns the actions off.
    pub token: Option<String>,
}

/// Serves `listener` forever: an accepting thread, a thread per request.
pub fn spawn(listener: TcpListener, admin: Admin) -> std::io::Result<()> {
    if admin.token.is_none() {
        tracing::warn!(
            "admin actions (kick, invalidate, session list) are off: set [admin] token_file to use them"
        );
    }
    let admin = Arc::new(admin);
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("mailgate-admin".into())
        .spawn(move || {
            let mut pause = None;
            for accepted in listener.incoming() {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        // Out of descriptors or memory: pause, never spin.
                        let next = pause.map_or(ACCEPT_PAUSE_FIRST, |p: Duration| {
                            (p * 2).min(ACCEPT_PAUSE_MAX)
                        });
                        tracing::warn!(error = %e, pause = ?next, "admin accept failing; pausing");
                        std::thread::sleep(next);
                        pause = Some(next);
                        continue;
                    }
                };
                pause = None;
                let Some(slot) = Slot::take(&busy) else {
                    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
                    let mut stream = stream;
                    let _ = http::respond(&mut stream, Status::Unavailable, Body::Text, "busy\n");
                    continue;
                };
                let admin = admin.clone();
                // The slot is given back when the closure is dropped: after
                // the request, or at once if the thread cannot be started.
                let served = std::thread::Builder::new()
                    .name("mailgate-admin-request".into())
                    .spawn(move || {
                        let _slot = slot;
                        if let Err(e) = admin.handle(stream) {
                            tracing::debug!("admin request: {e}");
                        }
                    });
                if let Err(e) = served {
                    tracing::warn!("admin request not served: {e}");
                }
            }
        })?;
    Ok(())
}

/// First pause after a failed accept; doubled while accepts keep failing.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// One of [`MAX_CONCURRENT`] requests in service; given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(busy: &Arc<AtomicUsize>) -> Option<Self> {
        busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_CONCURRENT).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(busy.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let Some(req) = http::read_request(&stream, deadline)? else {
            return http::respond(&mut stream, Status::BadRequest, Body::Text, "bad request\n");
        };
        stream.set_write_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))?;
        let is_action = matches!(
            req.path.as_str(),
            "/cache/invalidate" | "/sessions/kick" | "/sessions"
        );
        if is_action {
            let refusal = match (&self.token, &req.bearer) {
                (None, _) => Some((
                    Status::Forbidden,
                    "admin actions are off: no [admin] token_file is configured\n",
                )),
                (Some(token), Some(bearer))
                    if http::same_secret(token.as_bytes(), bearer.as_bytes()) =>
                {
                    None
                }
                (Some(_), _) => Some((Status::Unauthorized, "a valid bearer token is required\n")),
            };
            if let Some((status, text)) = refusal {
                return http::respond(&mut stream, status, Body::Text, text);
            }
        }
        let (status, kind, body) = self.answer(&req);
        http::respond(&mut stream, status, kind, &body)
    }

    fn answer(&self, req: &http::Request) -> (Status, Body, String) {
        let text = |status, body: &str| (status, Body::Text, body.to_owned());
        match (req.method.as_str(), req.path.as_str(), &req.user) {
            ("GET", "/healthz", _) => text(Status::Ok, "ok\n"),
            ("GET", "/readyz", _) if self.ready() => text(Status::Ok, &self.ready_text()),
            ("GET", "/readyz", _) => text(
                Status::Unavailable,
                "directory unreachable and cache cold\n",
            ),
            ("GET", "/metrics", _) => (Status::Ok, Body::Prometheus, self.metrics()),
            ("POST", "/cache/invalidate", Some(user)) => {
                self.invalidations.invalidate(user);
                tracing::info!(user = user.as_str(), "admin: cache entry invalidated");
                text(Status::Ok, &format!("invalidated {user}\n"))
            }
            ("POST", "/sessions/kick", Some(user)) => {
                let canonical = self.invalidations.canonical(user);
                let names = [user.as_str(), canonical.as_str()];
                let kicked: usize = self.workers.iter().map(|w| w.registry.kick(&names)).sum();
                // Parked connection-cache sessions go with the next sweep.
                self.invalidations.invalidate(user);
                tracing::info!(user = user.as_str(), kicked, "admin: sessions kicked");
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

    /// `ready`, and whether routes follow moves at once or after `ttl`.
    fn ready_text(&self) -> String {
        use std::sync::atomic::Ordering;
        match &self.watch {
            Some(w) if !w.up.load(Ordering::Relaxed) => {
                "ready; directory watch down: cached routes live for their ttl\n".into()
            }
            Some(_) => "ready; directory watch up\n".into(),
            None => "ready\n".into(),
        }
    }

    fn metrics(&self) -> String {
        let mut merged = Recorder::default();
        let mut cache = CacheStats::default();
        for w in &self.workers {
            metrics::with(&w.metrics, |r| merged.merge(r));
            cache.add(&w.cache.snapshot());
        }
        for recorder in &self.process {
            metrics::with(recorder, |r| merged.merge(r));
        }
        let mut text = prometheus::render(&merged, &cache);
        text.push_str(&prometheus::info(self.io.as_str()));
        if let Some(watch) = &self.watch {
            use std::sync::atomic::Ordering;
            text.push_str(&prometheus::watch(
                watch.up.load(Ordering::Relaxed),
                watch.changes.load(Ordering::Relaxed),
                watch.kicked.load(Ordering::Relaxed),
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_slots_are_bounded_and_given_back_even_when_no_thread_ran() {
        let busy = Arc::new(AtomicUsize::new(0));
        let mut held: Vec<Slot> = (0..MAX_CONCURRENT)
            .map(|_| Slot::take(&busy).expect("under the bound"))
            .collect();
        assert!(Slot::take(&busy).is_none(), "MAX_CONCURRENT + 1");
        held.pop();
        let slot = Slot::take(&busy).expect("one was given back");
        // A request closure dropped without running (the thread could not
        // be started) gives its slot back.
        let closure = move || drop(slot);
        drop(closure);
        assert_eq!(busy.load(Ordering::Acquire), MAX_CONCURRENT - 1);
    }
}
