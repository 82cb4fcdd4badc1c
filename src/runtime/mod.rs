//! Threads, listeners and the io_uring reactors; the only module that builds
//! live objects ([`live`]).
//!
//! [`start`] binds every listener once per worker (`SO_REUSEPORT`), starts one
//! pinned worker thread per CPU, each with its own tokio-uring runtime, and
//! returns once every worker's io_uring is up — or a clear error saying why it
//! could not be. [`RunningServer::shutdown`] stops accepting and lets sessions
//! drain for the configured grace period.

pub mod admission;
pub mod listener;
pub mod live;
pub mod moves;
pub mod pid_file;
pub mod privileges;
pub mod proxied;
pub mod timer_floor;
pub mod worker;

pub use live::Live;

use crate::config::Protocol;
use crate::directory::changes::{FirstContact, WatchStatus};
use crate::directory::{CacheCounters, Invalidations};
use crate::metrics::SharedRecorder;
use crate::registry::Registry;
use crate::session::connection_cache::{CacheBounds, PasswordKey};
use crate::session::parking_lot::ParkingLot;
use crate::session::rate_limit::LoginFailures;
use crate::tls::SwappableServerConfig;
use crate::transport::{self, Io, IoMode};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A listener could not be bound.
    #[error("cannot listen on {address} ({protocol}): {source}")]
    Bind {
        /// Protocol of the listener.
        protocol: Protocol,
        /// Configured address.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// io_uring is unavailable and `[runtime] io = "uring"` asked for it.
    #[error("cannot set up io_uring: {source}. {IO_URING_HELP}")]
    IoUring {
        /// The error from io_uring_setup.
        source: std::io::Error,
    },
    /// The epoll reactor could not be set up.
    #[error("cannot set up the epoll reactor: {0}")]
    Reactor(std::io::Error),
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    /// The system's random number generator failed (the connection cache's
    /// key needs it).
    #[error("the system's random number generator failed")]
    Random,
    /// A worker died before reporting.
    #[error("worker {0} exited during start-up")]
    WorkerLost(usize),
    /// `[directory] watch` cannot work with this directory.
    #[error("[directory] watch: {0}")]
    Watch(String),
}

/// How long `reload` waits for every worker to take the new configuration.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a reloaded configuration was not put in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A listener the new configuration adds could not be bound.
    #[error("cannot listen on {address} ({protocol}): {source}; nothing was reloaded")]
    Bind {
        /// Protocol of the listener.
        protocol: Protocol,
        /// Configured address.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// What identifies a listener across reloads: a `[[listen]]` entry with
/// the same protocol, address and TLS mode keeps its sockets; any other is
/// a new listener (and the old one closes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerShape {
    protocol: Protocol,
    address: SocketAddr,
    tls: crate::config::TlsMode,
}

/// The shapes of `live`'s listeners, in `[[listen]]` order.
pub fn listener_shapes(live: &Live) -> Vec<ListenerShape> {
    live.loaded
        .config
        .listen
        .iter()
        .map(|l| ListenerShape {
            protocol: l.protocol,
            address: l.address,
            tls: l.tls_mode(),
        })
        .collect()
}

/// The listeners running now.
struct Listening {
    shapes: Vec<ListenerShape>,
    addresses: Vec<(Protocol, SocketAddr)>,
    tls: Vec<Option<SwappableServerConfig>>,
}

/// What to do where io_uring cannot be set up.
pub const IO_URING_HELP: &str = "EPERM usually means it is disabled by `sysctl \
    kernel.io_uring_disabled` (set it to 0) or blocked by a seccomp profile (allow \
    io_uring_setup, io_uring_enter and io_uring_register; Docker blocks them by default: \
    --security-opt seccomp=PROFILE); ENOMEM means RLIMIT_MEMLOCK is too low for \
    `runtime.ring_entries` (raise the limit or lower the entries); ENOSYS means the kernel \
    has no io_uring (Linux >= 5.11 is needed). Or set `[runtime] io = \"epoll\"`";

/// The reactor `mode` comes to on this host: `auto` probes io_uring once
/// (a ring of `entries`) and falls back to epoll with one warning that names
/// the cause and the fix; `uring` fails where the probe fails.
pub fn resolve_io(mode: IoMode, entries: u32) -> Result<Io, RuntimeError> {
    match mode {
        IoMode::Epoll => Ok(Io::Epoll),
        IoMode::Uring => transport::probe_uring(entries)
            .map(|()| Io::Uring)
            .map_err(|source| RuntimeError::IoUring { source }),
        IoMode::Auto => match transport::probe_uring(entries) {
            Ok(()) => Ok(Io::Uring),
            Err(e) => {
                tracing::warn!(
                    "io_uring cannot be set up ({e}): running on epoll. {IO_URING_HELP} to say so and silence this"
                );
                Ok(Io::Epoll)
            }
        },
    }
}

/// What the admin interface reads of one worker.
#[derive(Clone)]
pub struct WorkerState {
    /// Counters and histograms.
    pub metrics: SharedRecorder,
    /// Relaying sessions.
    pub registry: Arc<Registry>,
    /// Directory cache counters.
    pub cache: Arc<CacheCounters>,
    /// Whether this worker's directory reached its servers last time.
    pub directory_ok: Arc<AtomicBool>,
    /// The last reloaded configuration this worker put in place (0: the
    /// one it started with).
    pub generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for WorkerState {
    /// A directory counts as reachable until a lookup says otherwise.
    fn default() -> Self {
        Self {
            metrics: SharedRecorder::default(),
            registry: Arc::new(Registry::default()),
            cache: Arc::new(CacheCounters::default()),
            directory_ok: Arc::new(AtomicBool::new(true)),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

/// A started server.
pub struct RunningServer {
    io: Io,
    watch: Option<Arc<WatchStatus>>,
    /// Per worker: recorder, relaying sessions, cache counters.
    pub workers_state: Vec<WorkerState>,
    invalidations: Arc<Invalidations>,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    listening: std::sync::Mutex<Listening>,
    admission: Arc<admission::Admission>,
    login_failures: worker::SharedLoginFailures,
    shared_routes: worker::SharedRouteLayer,
    parking: Arc<ParkingLot>,
    reload: watch::Sender<Arc<worker::Reload>>,
}

/// The connection cache's bounds in `config`.
fn cache_bounds(config: &crate::config::Config) -> CacheBounds {
    let c = &config.connection_cache;
    CacheBounds {
        ttl: c.ttl,
        max_per_user: c.max_per_user,
        max: c.max,
        check_after: c.check_after,
        max_age: c.max_age,
    }
}

/// The process's failed-login counts for `limits`; `None` when the limit
/// is off.
fn login_failures_of(limits: &crate::config::Limits) -> Option<Arc<LoginFailures>> {
    LoginFailures::new(
        limits.max_failures_per_address,
        limits.failure_window,
        crate::session::rate_limit::DEFAULT_CAPACITY,
    )
    .map(Arc::new)
}

impl RunningServer {
    /// The reactor the workers run.
    pub fn io(&self) -> Io {
        self.io
    }

    /// The directory watch's state, when `[directory] watch` is on.
    pub fn watch(&self) -> Option<Arc<WatchStatus>> {
        self.watch.clone()
    }

    /// The bound address of each configured listener, in config order.
    pub fn addresses(&self) -> Vec<(Protocol, SocketAddr)> {
        self.listening().addresses.clone()
    }

    fn listening(&self) -> std::sync::MutexGuard<'_, Listening> {
        self.listening.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a reloaded configuration in place: new connections get its
    /// directory (a re-read static map, LDAP settings), limits, back-end
    /// settings and certificates; running sessions keep what they started
    /// with. Refused, changing nothing, when the listeners differ.
    pub fn reload(&self, live: Live) -> Result<(), ReloadError> {
        let mut listening = self.listening();
        let shapes = listener_shapes(&live);
        let config = &live.loaded.config;
        // Bind what is new first: if that fails, nothing has changed.
        let mut added = Vec::new();
        let mut addresses = Vec::new();
        let mut tls = Vec::new();
        // Certificates of kept listeners, swapped in once every bind worked.
        let mut new_certificates = Vec::new();
        for (index, shape) in shapes.iter().enumerate() {
            let listen = &config.listen[index];
            let new_tls = live.listener_tls[index].clone();
            if let Some(at) = listening.shapes.iter().position(|s| s == shape) {
                addresses.push(listening.addresses[at]);
                let holder = listening.tls[at].clone();
                if let (Some(holder), Some(config)) = (&holder, new_tls) {
                    new_certificates.push((holder.clone(), config));
                }
                tls.push(holder);
                continue;
            }
            let bind_error = |source| ReloadError::Bind {
                protocol: listen.protocol,
                address: listen.address,
                source,
            };
            let sockets = listener::bind_reuseport(
                listen.address,
                self.threads.len(),
                config.relay.keep_alive(),
                listener::Sharing::Exclusive,
            )
            .map_err(bind_error)?;
            let address = sockets[0].local_addr().map_err(bind_error)?;
            let holder = new_tls.map(|c| Arc::new(ArcSwap::new(c)));
            addresses.push((listen.protocol, address));
            tls.push(holder.clone());
            added.push(worker::AddedListener {
                shape: shape.clone(),
                plan: worker::ListenerPlan {
                    index,
                    address,
                    tls: holder,
                },
                sockets: std::sync::Mutex::new(sockets.into_iter().map(Some).collect()),
            });
        }
        let removed = listening
            .shapes
            .iter()
            .filter(|s| !shapes.contains(s))
            .count();
        if !added.is_empty() || removed > 0 {
            tracing::info!(
                added = added.len(),
                removed,
                "reload: listeners changed (removed ones take no new connections; their sessions go on)"
            );
        }
        for (holder, config) in new_certificates {
            holder.store(config);
        }
        *listening = Listening {
            shapes,
            addresses,
            tls,
        };
        drop(listening);
        // Back-end sessions logged in under the old configuration (its
        // routes, allowed networks, back-end TLS) are not parked again, and
        // parked ones are dropped.
        self.invalidations.set_form(live.name_form());
        self.invalidations.invalidate_all();
        self.admission.set_caps(
            &live.loaded.config.limits,
            descriptor_limit(),
            live.loaded.relay.max_pipes,
        );
        // Fresh counts under the new limits, for every worker at once.
        self.login_failures
            .store(login_failures_of(&live.loaded.config.limits));
        self.shared_routes
            .store(live.shared_routes(&self.invalidations));
        self.parking.set_bounds(cache_bounds(&live.loaded.config));
        let generation = self.reload.borrow().generation + 1;
        let _ = self.reload.send(Arc::new(worker::Reload {
            generation,
            live: Arc::new(live),
            added,
        }));
        // Return once every worker uses it (they do within microseconds;
        // bounded in case one is stuck).
        let start = std::time::Instant::now();
        let behind = || {
            self.workers_state
                .iter()
                .filter(|w| w.generation.load(std::sync::atomic::Ordering::Acquire) < generation)
                .count()
        };
        while behind() > 0 && start.elapsed() < RELOAD_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        match behind() {
            0 => {
                tracing::debug!(generation, waited = ?start.elapsed(), "every worker took the reload")
            }
            n => tracing::warn!(
                generation,
                workers = n,
                "workers have not taken the reload yet"
            ),
        }
        Ok(())
    }

    /// Drops cached routes of a user on every worker.
    pub fn invalidations(&self) -> Arc<Invalidations> {
        self.invalidations.clone()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Stops accepting; sessions drain for the grace period.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// The figures of the process-wide parking lot (parked sessions,
    /// sweeps), merged with the workers' by the metrics.
    pub fn parking_recorder(&self) -> SharedRecorder {
        self.parking.recorder()
    }

    /// Waits for every worker to finish (after `shutdown`), then closes the
    /// parked back-end sessions.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
        self.parking.clear();
    }
}

/// Number of workers for `configured` (0 = one per usable CPU) and the CPUs to pin to.
fn plan_cores(configured: usize, pin: bool) -> (usize, Vec<Option<core_affinity::CoreId>>) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let count = match configured {
        0 => cores.len().max(1),
        n => n,
    };
    let pins = (0..count)
        .map(|i| (pin && !cores.is_empty()).then(|| cores[i % cores.len()]))
        .collect();
    (count, pins)
}

/// Every listener bound `count` times: per worker, its sockets.
struct Bound {
    addresses: Vec<(Protocol, SocketAddr)>,
    per_worker: Vec<Vec<(std::net::TcpListener, worker::ListenerPlan)>>,
    tls: Vec<Option<SwappableServerConfig>>,
}

fn bind_listeners(
    live: &Live,
    count: usize,
    sharing: listener::Sharing,
) -> Result<Bound, RuntimeError> {
    let config = &live.loaded.config;
    let mut bound = Bound {
        addresses: Vec::new(),
        per_worker: (0..count).map(|_| Vec::new()).collect(),
        tls: live
            .listener_tls
            .iter()
            .map(|c| c.clone().map(|c| Arc::new(ArcSwap::new(c))))
            .collect(),
    };
    for (index, listen) in config.listen.iter().enumerate() {
        let bind_error = |source| RuntimeError::Bind {
            protocol: listen.protocol,
            address: listen.address,
            source,
        };
        let keepalive = live.loaded.config.relay.keep_alive();
        let sockets = listener::bind_reuseport(listen.address, count, keepalive, sharing)
            .map_err(bind_error)?;
        let address = sockets[0].local_addr().map_err(bind_error)?;
        bound.addresses.push((listen.protocol, address));
        for (worker, socket) in sockets.into_iter().enumerate() {
            let plan = worker::ListenerPlan {
                index,
                address,
                tls: bound.tls[index].clone(),
            };
            bound.per_worker[worker].push((socket, plan));
        }
    }
    Ok(bound)
}

/// Binds the listeners and starts the workers; a port another process
/// listens on is an error unless `sharing` says this start is a handover.
pub fn start(live: Live, sharing: listener::Sharing) -> Result<RunningServer, RuntimeError> {
    let runtime = &live.loaded.config.runtime;
    let io = resolve_io(runtime.io, runtime.ring_entries)?;
    let (count, pins) = plan_cores(runtime.workers, runtime.pin_workers);
    let Bound {
        addresses,
        per_worker,
        tls,
    } = bind_listeners(&live, count, sharing)?;
    let admission = Arc::new(admission::Admission::new(
        &live.loaded.config.limits,
        descriptor_limit(),
        live.loaded.relay.max_pipes,
    ));
    tracing::debug!(
        max_connections = admission.max_total(),
        max_preauth_connections = admission.max_preauth(),
        "connection caps"
    );
    let shapes = listener_shapes(&live);
    let live = Arc::new(live);
    let (reload, reload_rx) = watch::channel(Arc::new(worker::Reload {
        generation: 0,
        live: live.clone(),
        added: Vec::new(),
    }));
    let invalidations = Arc::new(Invalidations::with_form(live.name_form()));
    let password_key = Arc::new(PasswordKey::random().map_err(|_| RuntimeError::Random)?);
    let parking = Arc::new(ParkingLot::new(
        cache_bounds(&live.loaded.config),
        password_key,
        invalidations.clone(),
    ));
    ParkingLot::sweep_every_second(&parking).map_err(RuntimeError::Thread)?;
    let login_failures: worker::SharedLoginFailures = Arc::new(arc_swap::ArcSwapOption::new(
        login_failures_of(&live.loaded.config.limits),
    ));
    let shared_routes: worker::SharedRouteLayer = Arc::new(arc_swap::ArcSwapOption::new(
        live.shared_routes(&invalidations),
    ));
    let workers_state: Vec<WorkerState> = (0..count).map(|_| WorkerState::default()).collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut threads = Vec::with_capacity(count);
    let mut readies = Vec::with_capacity(count);
    for (index, (listeners, core)) in per_worker.into_iter().zip(pins).enumerate() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let plan = worker::WorkerPlan {
            index,
            core,
            io,
            listeners,
            live: live.clone(),
            state: workers_state[index].clone(),
            invalidations: invalidations.clone(),
            admission: admission.clone(),
            shutdown: shutdown_rx.clone(),
            parking: parking.clone(),
            login_failures: login_failures.clone(),
            shared_routes: shared_routes.clone(),
            reload: reload_rx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("mailgate-w{index}"))
            .spawn(move || worker::run(plan, ready_tx))
            .map_err(RuntimeError::Thread)?;
        threads.push(thread);
        readies.push(ready_rx);
    }
    let watch = match start_watch(&live, &invalidations, &workers_state) {
        Ok(watch) => watch,
        Err(e) => {
            let _ = shutdown.send(true);
            for thread in threads {
                let _ = thread.join();
            }
            return Err(e);
        }
    };
    let server = RunningServer {
        io,
        watch,
        workers_state,
        invalidations,
        shutdown,
        threads,
        listening: std::sync::Mutex::new(Listening {
            shapes,
            addresses,
            tls,
        }),
        admission,
        login_failures,
        shared_routes,
        parking,
        reload,
    };
    for (index, ready) in readies.into_iter().enumerate() {
        let result = ready.recv().unwrap_or(Err(RuntimeError::WorkerLost(index)));
        if let Err(e) = result {
            server.shutdown();
            server.join();
            return Err(e);
        }
    }
    Ok(server)
}

/// The soft `RLIMIT_NOFILE` (after [`raise_fd_limit`]).
pub fn descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

/// Starts the directory watch when `[directory] watch` is on; fails when the
/// server refuses content sync (an unreachable server is retried).
fn start_watch(
    live: &Live,
    invalidations: &Arc<Invalidations>,
    workers: &[WorkerState],
) -> Result<Option<Arc<WatchStatus>>, RuntimeError> {
    let Some(feed) = live.directory.watch() else {
        return Ok(None);
    };
    let status = Arc::new(WatchStatus::default());
    let moves = moves::Moves {
        invalidations: invalidations.clone(),
        registries: workers.iter().map(|w| w.registry.clone()).collect(),
        kick_on_move: live.loaded.config.directory.kick_on_move.unwrap_or(true),
        status: status.clone(),
    };
    let first = feed
        .start(status.clone(), Box::new(move |change| moves.apply(change)))
        .map_err(RuntimeError::Thread)?;
    let wait = feed.first_contact_within();
    match first.recv_timeout(wait) {
        Ok(FirstContact::Up) => {}
        Ok(FirstContact::Refused(why)) => return Err(RuntimeError::Watch(why)),
        Ok(FirstContact::Unreachable(why)) => {
            tracing::warn!("directory watch not up yet ({why}); retrying in the background")
        }
        Err(_) => tracing::warn!("directory watch not up yet; retrying in the background"),
    }
    Ok(Some(status))
}

/// Each session holds two descriptors: raise the soft `RLIMIT_NOFILE` to
/// the hard one (the hard one needs `CAP_SYS_RESOURCE` or the operator).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which
    // lives on this stack frame for the duration of the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::debug!(
                    from = limit.rlim_cur,
                    to = limit.rlim_max,
                    "raised RLIMIT_NOFILE"
                );
            }
        }
    }
}
