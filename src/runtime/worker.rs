//! One worker: a pinned thread running its own io_uring reactor, accepting on
//! its own listeners and running every session it accepted to the end.
//!
//! Nothing here is shared with other workers except the read-only config and
//! the shutdown signal; session counts are per worker.

use super::transport::{UringConnector, UringStream};
use super::RuntimeError;
use crate::directory::Directory;
use crate::metrics::registry::Registry;
use crate::metrics::SharedRecorder;
use crate::session::rate_limit::{self, LoginRateLimit};
use crate::session::{self, SessionContext};
use std::cell::{Cell, RefCell};
use std::net::{Shutdown, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a worker is given at start.
pub struct WorkerPlan {
    /// Index, for thread names and logs.
    pub index: usize,
    /// CPU to pin to, if pinning.
    pub core: Option<core_affinity::CoreId>,
    /// io_uring submission queue size.
    pub ring_entries: u32,
    /// This worker's listening sockets, each with the context of its listener.
    pub listeners: Vec<(TcpListener, ContextFactory)>,
    /// Builds this worker's directory (shared by its listeners).
    pub directory: DirectoryFactory,
    /// This worker's recorder.
    pub metrics: SharedRecorder,
    /// This worker's relaying sessions.
    pub registry: Arc<Registry>,
    /// `[limits] max_failures_per_address` and `failure_window`.
    pub login_limit: (u32, Duration),
    /// Becomes `true` when the server should stop.
    pub shutdown: watch::Receiver<bool>,
    /// How long sessions may run after shutdown begins.
    pub grace: Duration,
}

/// Builds a listener's session context on the worker's thread (so it may
/// hold `Rc`s and per-worker state such as the directory).
pub type ContextFactory = Box<dyn FnOnce(&WorkerParts) -> SessionContext + Send>;

/// Per-worker state shared by the worker's listeners.
pub struct WorkerParts {
    /// The directory (LDAP pool, cache).
    pub directory: Rc<dyn Directory>,
    /// The recorder.
    pub metrics: SharedRecorder,
    /// Relaying sessions, for the admin actions.
    pub registry: Arc<Registry>,
    /// Failed logins per client address; `None` when the limit is off.
    pub login_limit: Option<Rc<RefCell<LoginRateLimit>>>,
}

/// Builds a worker's directory (LDAP pool, cache) on its own thread.
pub type DirectoryFactory = Box<dyn FnOnce() -> Rc<dyn Directory> + Send>;

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
    let runtime = match tokio_uring::Runtime::new(tokio_uring::builder().entries(plan.ring_entries))
    {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(RuntimeError::IoUring { source }));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    runtime.block_on(serve(plan));
}

async fn serve(mut plan: WorkerPlan) {
    let active = Rc::new(Cell::new(0usize));
    let (max_failures, window) = plan.login_limit;
    let parts = WorkerParts {
        directory: (plan.directory)(),
        metrics: plan.metrics.clone(),
        registry: plan.registry.clone(),
        login_limit: LoginRateLimit::new(max_failures, window, rate_limit::DEFAULT_CAPACITY)
            .map(|limit| Rc::new(RefCell::new(limit))),
    };
    let mut accept_tasks = Vec::new();
    let mut stoppers = Vec::new();
    for (listener, factory) in plan.listeners.drain(..) {
        // A second handle on the same socket: shutting it down stops accepts
        // at once, even while an accept operation is in flight.
        match listener.try_clone() {
            Ok(stopper) => stoppers.push(stopper),
            Err(e) => tracing::warn!(error = %e, "cannot keep a handle to stop the listener"),
        }
        let ctx = Rc::new(factory(&parts));
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
    let deadline = tokio::time::Instant::now() + plan.grace;
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
