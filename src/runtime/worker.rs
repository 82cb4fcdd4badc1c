//! One worker: a pinned thread running its own io_uring reactor, accepting on
//! its own listeners and running every session it accepted to the end.
//!
//! Nothing here is shared with other workers except the read-only config, the
//! invalidation log and the shutdown signal; session counts are per worker.

use super::{Live, RuntimeError, WorkerState};
use crate::directory::Invalidations;
use crate::session::rate_limit::{self, LoginRateLimit};
use crate::session::{self, BackendPolicy, ListenerContext, SessionContext, WorkerShared};
use crate::tls::SwappableServerConfig;
use crate::transport::{UringConnector, UringStream};
use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One listener, as a worker is given it.
pub struct ListenerPlan {
    /// Index in `[[listen]]`.
    pub index: usize,
    /// The bound address (port 0 resolved).
    pub address: SocketAddr,
    /// Its TLS config, shared with the reload.
    pub tls: Option<SwappableServerConfig>,
}

/// What a worker is given at start.
pub struct WorkerPlan {
    /// Index, for thread names and logs.
    pub index: usize,
    /// CPU to pin to, if pinning.
    pub core: Option<core_affinity::CoreId>,
    /// This worker's listening sockets.
    pub listeners: Vec<(TcpListener, ListenerPlan)>,
    /// The configuration and what it loaded.
    pub live: Arc<Live>,
    /// What the admin interface reads of this worker.
    pub state: WorkerState,
    /// Cache invalidations from the admin interface.
    pub invalidations: Arc<Invalidations>,
    /// Becomes `true` when the server should stop.
    pub shutdown: watch::Receiver<bool>,
}

/// Pause after a failed accept (e.g. EMFILE), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How often draining checks whether sessions are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs a worker to completion; `ready` learns whether io_uring came up.
pub fn run(plan: WorkerPlan, ready: std::sync::mpsc::Sender<Result<(), RuntimeError>>) {
    if let Some(core) = plan.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                worker = plan.index,
                core = core.id,
                "could not pin worker to its CPU"
            );
        }
    }
    let entries = plan.live.loaded.config.runtime.ring_entries;
    let runtime = match tokio_uring::Runtime::new(tokio_uring::builder().entries(entries)) {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(RuntimeError::IoUring { source }));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    runtime.block_on(serve(plan));
}

/// The state this worker's sessions share, built on its thread.
fn worker_shared(plan: &WorkerPlan) -> WorkerShared {
    let config = &plan.live.loaded.config;
    let limits = &config.limits;
    let metrics_on = config.admin.as_ref().is_some_and(|admin| admin.metrics);
    WorkerShared {
        directory: plan.live.directory(
            plan.invalidations.clone(),
            plan.state.cache.clone(),
            plan.state.directory_ok.clone(),
        ),
        metrics: metrics_on.then(|| plan.state.metrics.clone()),
        registry: plan.state.registry.clone(),
        login_limit: LoginRateLimit::new(
            limits.max_failures_per_address,
            limits.failure_window,
            rate_limit::DEFAULT_CAPACITY,
        )
        .map(RefCell::new),
    }
}

/// The context of each listener's sessions on this worker.
fn contexts(plan: &WorkerPlan, shared: Rc<WorkerShared>) -> Vec<Rc<SessionContext>> {
    let loaded = &plan.live.loaded;
    let config = &loaded.config;
    let backend = Rc::new(BackendPolicy::new(loaded, plan.live.backend_tls.clone()));
    let handshake_timeout = config
        .tls
        .as_ref()
        .map_or(crate::config::DEFAULT_HANDSHAKE_TIMEOUT, |t| {
            t.handshake_timeout
        });
    plan.listeners
        .iter()
        .map(|(_, listener)| {
            let context = ListenerContext::new(
                &config.listen[listener.index],
                &config.limits,
                handshake_timeout,
                listener.address,
                listener.tls.clone(),
            );
            Rc::new(SessionContext::new(
                context,
                backend.clone(),
                shared.clone(),
            ))
        })
        .collect()
}

async fn serve(mut plan: WorkerPlan) {
    let active = Rc::new(Cell::new(0usize));
    let shared = Rc::new(worker_shared(&plan));
    let contexts = contexts(&plan, shared);
    let mut accept_tasks = Vec::new();
    let mut stoppers = Vec::new();
    for ((listener, _), ctx) in plan.listeners.drain(..).zip(contexts) {
        // A second handle on the same socket: shutting it down stops accepts
        // at once, even while an accept operation is in flight.
        match listener.try_clone() {
            Ok(stopper) => stoppers.push(stopper),
            Err(e) => tracing::warn!(error = %e, "cannot keep a handle to stop the listener"),
        }
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        accept_tasks.push(tokio_uring::spawn(accept_loop(
            listener,
            ctx,
            active.clone(),
        )));
    }
    let _ = plan.shutdown.wait_for(|stop| *stop).await;
    for stopper in &stoppers {
        let _ = socket2::SockRef::from(stopper).shutdown(Shutdown::Read);
    }
    for task in &accept_tasks {
        task.abort();
    }
    let grace = plan.live.loaded.config.runtime.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    while active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    if active.get() > 0 {
        tracing::info!(
            worker = plan.index,
            sessions = active.get(),
            "grace period over, closing sessions"
        );
    }
}

async fn accept_loop(
    listener: tokio_uring::net::TcpListener,
    ctx: Rc<SessionContext>,
    active: Rc<Cell<usize>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // TCP_NODELAY is inherited from the listening socket.
                active.set(active.get() + 1);
                let session = session::run(
                    ctx.clone(),
                    UringConnector,
                    UringStream(stream),
                    peer,
                    ActiveGuard(active.clone()),
                );
                tracing::trace!(bytes = std::mem::size_of_val(&session), "session task size");
                tokio_uring::spawn(session);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Decrements the worker's session count however the session ends.
struct ActiveGuard(Rc<Cell<usize>>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
