//! One worker: a pinned thread running its own reactor (io_uring or epoll,
//! decided once at start), accepting on its own listeners and running every
//! session it accepted to the end. The same code serves both: it is generic
//! over the transport's `Acceptor` and `Connector`.
//!
//! Nothing here is shared with other workers except the read-only config, the
//! invalidation log and the shutdown signal; session counts are per worker.

use super::admission::{Admission, Admitted};
use super::{ListenerShape, Live, RuntimeError, WorkerState};
use crate::config::TlsMode;
use crate::directory::shared::SharedRoutes;
use crate::directory::Invalidations;
use crate::log_batch;
use crate::metrics::{self, Refusal};
use crate::session::parking_lot::ParkingLot;
use crate::session::rate_limit::LoginFailures;
use crate::session::{self, BackendPolicy, ListenerContext, SessionContext, Ticket, WorkerShared};
use crate::tls::SwappableServerConfig;
use crate::transport::{
    Acceptor, Connector, EpollConnector, EpollListener, Io, Reactor, UringConnector, UringListener,
};
use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One listener, as a worker is given it.
#[derive(Clone)]
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
    /// The reactor to run.
    pub io: Io,
    /// This worker's listening sockets.
    pub listeners: Vec<(TcpListener, ListenerPlan)>,
    /// The configuration and what it loaded.
    pub live: Arc<Live>,
    /// What the admin interface reads of this worker.
    pub state: WorkerState,
    /// Cache invalidations from the admin interface.
    pub invalidations: Arc<Invalidations>,
    /// The connection caps, shared by every worker.
    pub admission: Arc<Admission>,
    /// Becomes `true` when the server should stop.
    pub shutdown: watch::Receiver<bool>,
    /// The process's parking lot of the connection cache.
    pub parking: Arc<ParkingLot>,
    /// The process's failed-login counts (replaced at reload).
    pub login_failures: SharedLoginFailures,
    /// The process-wide layer of the route cache (replaced at reload).
    pub shared_routes: SharedRouteLayer,
    /// Reloaded configurations (SIGHUP): each replaces the last for new
    /// connections; running sessions keep the one they started with.
    pub reload: watch::Receiver<Arc<Reload>>,
}

/// A reloaded configuration as the workers get it.
pub struct Reload {
    /// Counts reloads from 1; each worker reports the last one it applied.
    pub generation: u64,
    /// The configuration and what it loaded.
    pub live: Arc<Live>,
    /// Listeners new in this configuration, bound by the main thread.
    pub added: Vec<AddedListener>,
}

/// A listener a reload added: one socket per worker, each taken once.
pub struct AddedListener {
    /// What identifies it.
    pub shape: ListenerShape,
    /// Its plan (index in the new `[[listen]]`, bound address, TLS).
    pub plan: ListenerPlan,
    /// Socket `i` is worker `i`'s.
    pub sockets: std::sync::Mutex<Vec<Option<TcpListener>>>,
}

/// What a worker keeps of its plan to build session contexts, at start and
/// at every reload.
#[derive(Clone)]
struct Parts {
    index: usize,
    state: WorkerState,
    invalidations: Arc<Invalidations>,
    shutdown: watch::Receiver<bool>,
    parking: Arc<ParkingLot>,
    login_failures: SharedLoginFailures,
    shared_routes: SharedRouteLayer,
}

/// The process-wide route layer, replaced whole at reload (with the new
/// cache settings; a reload invalidates every route anyway).
pub type SharedRouteLayer = Arc<arc_swap::ArcSwapOption<SharedRoutes>>;

/// The process's failed-login counts, replaced whole at reload (the counts
/// start afresh with the new limits).
pub type SharedLoginFailures = Arc<arc_swap::ArcSwapOption<LoginFailures>>;

/// First pause after a failed accept (e.g. EMFILE), doubled up to
/// [`ACCEPT_PAUSE_MAX`] while accepts keep failing, so the loop never spins.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval about failed accepts or refused
/// connections.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often draining checks whether sessions are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// After the grace period: how long closed sessions get to finish (and log).
const CLOSE_WAIT: Duration = Duration::from_millis(500);

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
    let reactor = match Reactor::new(plan.io, entries) {
        Ok(reactor) => reactor,
        Err(source) => {
            let error = match plan.io {
                Io::Uring => RuntimeError::IoUring { source },
                Io::Epoll => RuntimeError::Reactor(source),
            };
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // Dropped after the reactor stops (or while unwinding): what waits is
    // written then.
    let flush_interval = plan.live.loaded.config.log.flush_interval;
    let _batching = (!flush_interval.is_zero()).then(log_batch::Batching::start);
    match plan.io {
        Io::Uring => reactor.block_on(serve(plan, UringListener::new, UringConnector)),
        Io::Epoll => reactor.block_on(serve(plan, EpollListener::new, EpollConnector)),
    }
}

/// The state this worker's sessions share, built on its thread from `live`.
fn worker_shared(live: &Live, parts: &Parts) -> WorkerShared {
    let config = &live.loaded.config;
    let limits = &config.limits;
    let metrics_on = config.admin.as_ref().is_some_and(|admin| admin.metrics);
    WorkerShared {
        directory: live.directory(
            parts.invalidations.clone(),
            parts.state.cache.clone(),
            parts.state.directory_ok.clone(),
            parts.shared_routes.load_full(),
        ),
        metrics: metrics_on.then(|| parts.state.metrics.clone()),
        registry: parts.state.registry.clone(),
        login_limit: parts.login_failures.load_full(),
        exempt_networks: limits.exempt_networks.clone(),
        shutdown: parts.shutdown.clone(),
        invalidations: parts.invalidations.clone(),
        parking: parts.parking.clone(),
        oauth: live.oauth.clone(),
        backend_offers: Default::default(),
    }
}

/// The context of each listener's sessions on this worker, from `live`.
fn contexts(
    live: &Live,
    listeners: &[ListenerPlan],
    shared: Rc<WorkerShared>,
) -> Vec<Rc<SessionContext>> {
    let loaded = &live.loaded;
    let config = &loaded.config;
    let backend = Rc::new(BackendPolicy::new(
        loaded,
        live.backend_tls.clone(),
        live.allowed_ports(),
    ));
    let handshake_timeout = config
        .tls
        .as_ref()
        .map_or(crate::config::DEFAULT_HANDSHAKE_TIMEOUT, |t| {
            t.handshake_timeout
        });
    listeners
        .iter()
        .map(|listener| {
            let context = ListenerContext::new(
                &config.listen[listener.index],
                &config.limits,
                loaded.oauth_offer(listener.index),
                loaded.compress_level(listener.index),
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

/// Each listener's current session context: what its next connection gets.
type Slot = Rc<RefCell<Rc<SessionContext>>>;

/// A listener this worker accepts on.
struct Accepting {
    shape: ListenerShape,
    plan: ListenerPlan,
    slot: Slot,
    /// A second handle on the socket: shutting it down stops accepts at
    /// once, even while an accept operation is in flight.
    stopper: Option<TcpListener>,
    /// Set before the socket is shut down: the accept loop then ends at its
    /// first failed accept, after serving any connection it already took
    /// (aborting it could drop one just accepted, closing it unanswered).
    closing: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Accepting {
    fn stop(&self) {
        self.closing.set(true);
        match &self.stopper {
            Some(stopper) => {
                let _ = socket2::SockRef::from(stopper).shutdown(Shutdown::Read);
            }
            None => self.task.abort(),
        }
    }
}

/// What starting an accept loop needs besides the socket.
struct Acceptance<L, C> {
    worker: usize,
    listen: fn(TcpListener) -> std::io::Result<L>,
    connector: C,
    active: Rc<Cell<usize>>,
    admission: Arc<Admission>,
}

impl<L, C> Acceptance<L, C>
where
    L: Acceptor + 'static,
    C: Connector<Stream = L::Stream> + Clone + 'static,
{
    /// Starts accepting on `socket` with `ctx`.
    fn start(
        &self,
        socket: TcpListener,
        shape: ListenerShape,
        plan: ListenerPlan,
        ctx: Rc<SessionContext>,
    ) -> Option<Accepting> {
        let stopper = match socket.try_clone() {
            Ok(stopper) => Some(stopper),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep a handle to stop the listener");
                None
            }
        };
        let listener = match (self.listen)(socket) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(worker = self.worker, error = %e, "cannot use a listening socket");
                return None;
            }
        };
        let slot = Rc::new(RefCell::new(ctx));
        let closing = Rc::new(Cell::new(false));
        let task = tokio::task::spawn_local(accept_loop(
            listener,
            self.connector.clone(),
            slot.clone(),
            self.active.clone(),
            self.admission.clone(),
            closing.clone(),
        ));
        Some(Accepting {
            shape,
            plan,
            slot,
            stopper,
            closing,
            task,
        })
    }
}

/// Puts each reloaded configuration in place: listeners it keeps get new
/// contexts (and their new place in `[[listen]]`), new ones start
/// accepting, removed ones stop (their sessions go on). The process-wide
/// state (parked back-end sessions, the route layer, failure counts) is
/// the runtime's, which puts the reloaded settings in place itself.
async fn follow_reloads<L, C>(
    mut reload: watch::Receiver<Arc<Reload>>,
    parts: Parts,
    acceptance: Acceptance<L, C>,
    accepting: Rc<RefCell<Vec<Accepting>>>,
) where
    L: Acceptor + 'static,
    C: Connector<Stream = L::Stream> + Clone + 'static,
{
    while reload.changed().await.is_ok() {
        let next = reload.borrow_and_update().clone();
        let live = &next.live;
        let shared = Rc::new(worker_shared(live, &parts));
        let mut old = std::mem::take(&mut *accepting.borrow_mut());
        // In the new `[[listen]]` order: kept ones (their plan re-indexed)
        // and added ones (with this worker's socket).
        let mut plans = Vec::new();
        let mut sockets = Vec::new();
        for (index, shape) in super::listener_shapes(live).into_iter().enumerate() {
            if let Some(at) = old.iter().position(|a| a.shape == shape) {
                let mut kept = old.swap_remove(at);
                kept.plan.index = index;
                plans.push(kept.plan.clone());
                sockets.push(Err(kept));
            } else if let Some(added) = next.added.iter().find(|a| a.shape == shape) {
                let socket = added
                    .sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(parts.index)
                    .and_then(Option::take);
                plans.push(added.plan.clone());
                sockets.push(Ok((shape, socket)));
            }
        }
        for removed in old {
            removed.stop();
            tracing::debug!(worker = parts.index, address = %removed.plan.address, "listener closed by a reload");
        }
        let contexts = contexts(live, &plans, shared);
        let mut now = Vec::new();
        for ((entry, ctx), plan) in sockets.into_iter().zip(contexts).zip(plans) {
            match entry {
                Err(kept) => {
                    *kept.slot.borrow_mut() = ctx;
                    now.push(kept);
                }
                Ok((shape, Some(socket))) => {
                    now.extend(acceptance.start(socket, shape, plan, ctx));
                }
                Ok((_, None)) => tracing::error!(
                    worker = parts.index,
                    "a listener added by the reload has no socket for this worker"
                ),
            }
        }
        *accepting.borrow_mut() = now;
        parts
            .state
            .generation
            .store(next.generation, std::sync::atomic::Ordering::Release);
        tracing::debug!(
            worker = parts.index,
            generation = next.generation,
            "new connections use the reloaded configuration"
        );
    }
}

async fn serve<L, C>(
    mut plan: WorkerPlan,
    listen: fn(TcpListener) -> std::io::Result<L>,
    connector: C,
) where
    L: Acceptor + 'static,
    C: Connector<Stream = L::Stream> + Clone + 'static,
{
    // Writes this worker's log batches (ends at once without batching).
    let flush_interval = plan.live.loaded.config.log.flush_interval;
    tokio::task::spawn_local(log_batch::flush_every(flush_interval));
    let active = Rc::new(Cell::new(0usize));
    let parts = Parts {
        index: plan.index,
        state: plan.state.clone(),
        invalidations: plan.invalidations.clone(),
        shutdown: plan.shutdown.clone(),
        parking: plan.parking.clone(),
        login_failures: plan.login_failures.clone(),
        shared_routes: plan.shared_routes.clone(),
    };
    let acceptance = Acceptance {
        worker: plan.index,
        listen,
        connector,
        active: active.clone(),
        admission: plan.admission.clone(),
    };
    let plans: Vec<ListenerPlan> = plan.listeners.iter().map(|(_, l)| l.clone()).collect();
    let shared = Rc::new(worker_shared(&plan.live, &parts));
    let contexts = contexts(&plan.live, &plans, shared);
    let shapes = super::listener_shapes(&plan.live);
    let accepting: Vec<Accepting> = plan
        .listeners
        .drain(..)
        .zip(contexts)
        .zip(shapes)
        .filter_map(|(((socket, listener), ctx), shape)| {
            acceptance.start(socket, shape, listener, ctx)
        })
        .collect();
    let accepting = Rc::new(RefCell::new(accepting));
    let follower = tokio::task::spawn_local(follow_reloads(
        plan.reload.clone(),
        parts,
        acceptance,
        accepting.clone(),
    ));
    let floor = tokio::task::spawn_local(super::timer_floor::run());
    let _ = plan.shutdown.wait_for(|stop| *stop).await;
    follower.abort();
    for listener in accepting.borrow().iter() {
        listener.stop();
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
        plan.state.registry.close_all();
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
    floor.abort();
}

async fn accept_loop<L: Acceptor, C: Connector<Stream = L::Stream> + Clone + 'static>(
    listener: L,
    connector: C,
    slot: Slot,
    active: Rc<Cell<usize>>,
    admission: Arc<Admission>,
    closing: Rc<Cell<bool>>,
) where
    L::Stream: 'static,
{
    let mut failures = AcceptFailures::default();
    let mut refusals = Refusals::default();
    let mut untrusted = Untrusted::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) if closing.get() => return,
            Err(e) => {
                tokio::time::sleep(failures.pause_after(&e)).await;
                continue;
            }
        };
        failures.reset();
        let ctx = slot.borrow().clone();
        if !ctx.listener.trusts(peer.ip()) {
            untrusted.note(peer);
            continue;
        }
        if ctx.listener.proxy_protocol {
            // Admitted once the header names the client.
            active.set(active.get() + 1);
            let guard = ActiveGuard(active.clone());
            let session = proxied(
                stream,
                peer,
                ctx,
                connector.clone(),
                admission.clone(),
                guard,
            );
            tokio::task::spawn_local(session);
            continue;
        }
        // TCP_NODELAY is inherited from the listening socket.
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(reason) => {
                refuse(&stream, &ctx, reason);
                refusals.note(reason, peer);
                continue;
            }
        };
        count_eviction(&ctx, &admitted);
        active.set(active.get() + 1);
        let ticket = SessionTicket {
            _active: ActiveGuard(active.clone()),
            admitted,
        };
        let endpoints = session::Endpoints { peer, local: None };
        let session = session::run(ctx, connector.clone(), stream, endpoints, ticket);
        tracing::trace!(bytes = std::mem::size_of_val(&session), "session task size");
        tokio::task::spawn_local(session);
    }
}

/// A connection on a `proxy_protocol` listener: its header, then admission
/// and the session, both with the client the header names.
async fn proxied<S: crate::transport::Stream + 'static, C: Connector<Stream = S>>(
    stream: S,
    balancer: SocketAddr,
    ctx: Rc<SessionContext>,
    connector: C,
    admission: Arc<Admission>,
    active: ActiveGuard,
) {
    let header = match super::proxied::read_header(&stream).await {
        Ok(header) => header,
        Err(super::proxied::ProxiedError::Closed { after: 0 }) => {
            tracing::debug!(%balancer, "closed before sending anything (a health check?)");
            return;
        }
        Err(e) => {
            tracing::warn!(%balancer, error = %e, "connection closed: no valid PROXY header");
            return;
        }
    };
    let client = header.source.unwrap_or(balancer);
    let admitted = match admission.admit(client.ip()) {
        Ok(admitted) => admitted,
        Err(reason) => {
            refuse(&stream, &ctx, reason);
            tracing::debug!(%client, %balancer, cap = reason.as_str(), "connection refused at a cap");
            return;
        }
    };
    count_eviction(&ctx, &admitted);
    let ticket = SessionTicket {
        _active: active,
        admitted,
    };
    let endpoints = session::Endpoints {
        peer: client,
        local: header.destination,
    };
    session::run(ctx, connector, stream, endpoints, ticket).await;
}

/// Tells a refused client why in one line (when the listener speaks
/// plaintext first), counts the refusal, and closes.
fn refuse(stream: &impl std::os::fd::AsRawFd, ctx: &SessionContext, reason: Refusal) {
    if ctx.listener.tls_mode != TlsMode::Implicit {
        let line = ctx.listener.spec.too_many_connections;
        // Best effort, never waiting: a fresh socket has room for one line.
        let fd = stream.as_raw_fd();
        // SAFETY: `fd` belongs to `stream`, borrowed for this whole call.
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        crate::transport::send_now(socket, line);
    }
    if let Some(recorder) = &ctx.worker.metrics {
        metrics::with(recorder, |r| r.refused(ctx.listener.label, reason));
    }
}

/// Counts the eviction an admission made (the evicted session logs its
/// own end).
fn count_eviction(ctx: &SessionContext, admitted: &Admitted) {
    if admitted.evicted_another() {
        if let Some(recorder) = &ctx.worker.metrics {
            metrics::with(recorder, |r| {
                r.refused(ctx.listener.label, Refusal::PreAuthEvicted)
            });
        }
    }
}

/// Failed accepts (out of descriptors, memory): an exponential pause, and
/// one log line per [`LOG_INTERVAL`] however many fail.
#[derive(Default)]
struct AcceptFailures {
    pause: Option<Duration>,
    since_log: u64,
    logged: Option<Instant>,
}

impl AcceptFailures {
    fn pause_after(&mut self, error: &std::io::Error) -> Duration {
        let pause = self
            .pause
            .map_or(ACCEPT_PAUSE_FIRST, |p| (p * 2).min(ACCEPT_PAUSE_MAX));
        self.pause = Some(pause);
        self.since_log += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
            tracing::warn!(%error, failed = self.since_log, ?pause, "accept failing; pausing");
            self.logged = Some(Instant::now());
            self.since_log = 0;
        }
        pause
    }

    fn reset(&mut self) {
        self.pause = None;
    }
}

/// Refused connections: one log line per [`LOG_INTERVAL`].
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, reason: Refusal, peer: SocketAddr) {
        self.since_log += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
            tracing::warn!(
                client = %peer,
                cap = reason.as_str(),
                refused = self.since_log,
                "connections refused at a cap"
            );
            self.logged = Some(Instant::now());
            self.since_log = 0;
        }
    }
}

/// Connections closed at accept because their address is not in the
/// listener's `trusted_networks`; logged at most once per interval.
#[derive(Default)]
struct Untrusted {
    since_log: u64,
    logged: Option<Instant>,
}

impl Untrusted {
    fn note(&mut self, peer: SocketAddr) {
        self.since_log += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
            tracing::warn!(
                client = %peer,
                closed = self.since_log,
                "connection from outside the listener's trusted_networks closed"
            );
            self.logged = Some(Instant::now());
            self.since_log = 0;
        }
    }
}

/// What a session holds while it lives: its place in the worker's count and
/// under the connection caps.
struct SessionTicket {
    _active: ActiveGuard,
    admitted: Admitted,
}

impl Ticket for SessionTicket {
    fn logged_in(&self) {
        self.admitted.logged_in();
    }

    fn progressed(&self) {
        self.admitted.progressed();
    }

    fn evicted(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        self.admitted.evicted()
    }

    fn claim_user(&self, canonical: &dyn Fn() -> String) -> bool {
        self.admitted.claim_user(canonical)
    }

    fn release_user(&self) {
        self.admitted.release_user()
    }
}

/// Decrements the worker's session count however the session ends.
struct ActiveGuard(Rc<Cell<usize>>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
