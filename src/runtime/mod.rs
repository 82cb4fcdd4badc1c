//! Threads, listeners and the io_uring reactors.
//!
//! [`start`] binds every listener once per worker (`SO_REUSEPORT`), starts one
//! pinned worker thread per CPU, each with its own tokio-uring runtime, and
//! returns once every worker's io_uring is up — or a clear error saying why it
//! could not be. [`RunningServer::shutdown`] stops accepting and lets sessions
//! drain for the configured grace period.

pub mod listener;
pub mod transport;
pub mod worker;

use crate::config::{Loaded, Protocol, TlsMode};
use arc_swap::ArcSwap;

/// A listener's TLS config, swapped on reload.
type TlsHolder = Arc<ArcSwap<rustls::ServerConfig>>;
use crate::directory::{CacheCounters, CachedDirectory, Directory, Invalidations, LdapDirectory};
use crate::imap::ImapSettings;
use crate::metrics::registry::Registry;
use crate::metrics::SharedRecorder;
use crate::pop3::{preauth::DEFAULT_CAPABILITIES, Pop3Settings};
use crate::relay::RelaySettings;
use crate::session::SessionContext;
use std::net::SocketAddr;
use std::rc::Rc;
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
    /// io_uring is unavailable.
    #[error(
        "cannot set up io_uring: {source}. mailgate's workers need io_uring (Linux ≥ 5.11). \
         EPERM usually means it is disabled by `sysctl kernel.io_uring_disabled` (set it to 0) \
         or blocked by a container's seccomp profile (allow io_uring_setup/io_uring_enter/\
         io_uring_register, e.g. docker --security-opt seccomp=…); ENOMEM means RLIMIT_MEMLOCK \
         is too low for `runtime.ring_entries` (raise the limit or lower the entries); \
         ENOSYS means the kernel has no io_uring"
    )]
    IoUring {
        /// The error from io_uring_setup.
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    /// A worker died before reporting.
    #[error("worker {0} exited during start-up")]
    WorkerLost(usize),
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
    pub directory_ok: Arc<std::sync::atomic::AtomicBool>,
}

/// A started server.
pub struct RunningServer {
    addresses: Vec<(Protocol, SocketAddr)>,
    /// Per worker: recorder, relaying sessions, cache counters.
    pub workers_state: Vec<WorkerState>,
    invalidations: Arc<Invalidations>,
    tls: Vec<Option<TlsHolder>>,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address of each configured listener, in config order.
    pub fn addresses(&self) -> &[(Protocol, SocketAddr)] {
        &self.addresses
    }

    /// Puts new TLS configs (one per listener, as from `tls::server_configs`)
    /// in place: new connections use them, running sessions keep theirs.
    pub fn reload_tls(&self, configs: Vec<Option<Arc<rustls::ServerConfig>>>) {
        for (holder, config) in self.tls.iter().zip(configs) {
            if let (Some(holder), Some(config)) = (holder, config) {
                holder.store(config);
            }
        }
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

    /// Waits for every worker to finish (after `shutdown`).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
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

/// Binds the listeners and starts the workers.
pub fn start(loaded: Arc<Loaded>) -> Result<RunningServer, RuntimeError> {
    let config = &loaded.config;
    let (count, pins) = plan_cores(config.runtime.workers, config.runtime.pin_workers);
    let mut per_worker: Vec<Vec<_>> = (0..count).map(|_| Vec::new()).collect();
    let mut addresses = Vec::new();
    let tls: Vec<Option<TlsHolder>> = loaded
        .tls
        .iter()
        .map(|c| c.clone().map(|c| Arc::new(ArcSwap::new(c))))
        .collect();
    for (index, listen) in config.listen.iter().enumerate() {
        let sockets = listener::bind_reuseport(listen.address, count).map_err(|source| {
            RuntimeError::Bind {
                protocol: listen.protocol,
                address: listen.address,
                source,
            }
        })?;
        let bound = sockets[0]
            .local_addr()
            .map_err(|source| RuntimeError::Bind {
                protocol: listen.protocol,
                address: listen.address,
                source,
            })?;
        addresses.push((listen.protocol, bound));
        for (worker, socket) in sockets.into_iter().enumerate() {
            let loaded = loaded.clone();
            let tls = tls[index].clone();
            let factory: worker::ContextFactory =
                Box::new(move |parts| session_context(&loaded, index, bound, parts, tls));
            per_worker[worker].push((socket, factory));
        }
    }
    let invalidations = Arc::new(Invalidations::default());
    let workers_state: Vec<WorkerState> = (0..count)
        .map(|_| WorkerState {
            metrics: SharedRecorder::default(),
            registry: Arc::new(Registry::default()),
            cache: Arc::new(CacheCounters::default()),
            directory_ok: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
        .collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut threads = Vec::with_capacity(count);
    let mut readies = Vec::with_capacity(count);
    for (index, (listeners, core)) in per_worker.into_iter().zip(pins).enumerate() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let plan = worker::WorkerPlan {
            index,
            core,
            ring_entries: config.runtime.ring_entries,
            listeners,
            directory: {
                let loaded = loaded.clone();
                let invalidations = invalidations.clone();
                let counters = workers_state[index].cache.clone();
                let health = workers_state[index].directory_ok.clone();
                Box::new(move || build_directory(&loaded, invalidations, counters, health))
            },
            metrics: workers_state[index].metrics.clone(),
            registry: workers_state[index].registry.clone(),
            login_limit: (
                config.limits.max_failures_per_address,
                config.limits.failure_window,
            ),
            shutdown: shutdown_rx.clone(),
            grace: config.runtime.shutdown_grace,
        };
        let thread = std::thread::Builder::new()
            .name(format!("mailgate-w{index}"))
            .spawn(move || worker::run(plan, ready_tx))
            .map_err(RuntimeError::Thread)?;
        threads.push(thread);
        readies.push(ready_rx);
    }
    let server = RunningServer {
        addresses,
        workers_state,
        invalidations,
        tls,
        shutdown,
        threads,
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

/// A worker's directory: LDAP or the static map, behind the cache if configured.
pub fn build_directory(
    loaded: &Arc<Loaded>,
    invalidations: Arc<Invalidations>,
    counters: Arc<CacheCounters>,
    health: Arc<std::sync::atomic::AtomicBool>,
) -> Rc<dyn Directory> {
    let base: Rc<dyn Directory> = match &loaded.ldap {
        Some(settings) => Rc::new(LdapDirectory::new(settings.clone()).with_health(health)),
        None => Rc::new(loaded.clone()),
    };
    match loaded.cache {
        Some(settings) => {
            Rc::new(CachedDirectory::new(base, settings, invalidations).with_counters(counters))
        }
        None => base,
    }
}

/// The context for listener `index`, built on a worker's thread.
fn session_context(
    loaded: &Arc<Loaded>,
    index: usize,
    bound: std::net::SocketAddr,
    parts: &worker::WorkerParts,
    tls: Option<TlsHolder>,
) -> SessionContext {
    let config = &loaded.config;
    let listen = &config.listen[index];
    let greeting = listen
        .greeting
        .clone()
        .unwrap_or_else(|| "mailgate ready.".into());
    let limits = &config.limits;
    SessionContext {
        protocol: listen.protocol,
        listener: crate::metrics::Listener {
            protocol: listen.protocol,
            address: bound,
        },
        imap: Rc::new(ImapSettings {
            greeting: greeting.clone(),
            max_line: limits.max_line,
            max_literal: limits.max_literal,
            max_auth_failures: limits.max_auth_failures,
            starttls: listen.tls_mode() == TlsMode::Starttls,
            require_tls: listen.requires_tls(),
        }),
        pop3: Rc::new(Pop3Settings {
            greeting,
            max_line: limits.max_line,
            max_auth_failures: limits.max_auth_failures,
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            starttls: listen.tls_mode() == TlsMode::Starttls,
            require_tls: listen.requires_tls(),
        }),
        directory: parts.directory.clone(),
        backend_port: match listen.protocol {
            Protocol::Imap => config.backend.imap_port,
            Protocol::Pop3 => config.backend.pop3_port,
        },
        connect_timeout: config.backend.connect_timeout,
        login_timeout: config.backend.login_timeout,
        imap_auth: config.backend.imap_auth,
        pop3_auth: config.backend.pop3_auth,
        forward_client_address: config.backend.forward_client_address,
        preauth_timeout: limits.preauth_timeout,
        relay: RelaySettings {
            buffer_size: config.relay.buffer_size,
            idle_timeout: config.relay.idle_timeout,
            splice: config.relay.splice,
            pipe_size: config.relay.pipe_size.max(4096),
        },
        tls_mode: listen.tls_mode(),
        tls,
        backend_tls_mode: *config.backend.tls.get_ref(),
        backend_tls: loaded.backend_tls.clone(),
        metrics: config
            .admin
            .as_ref()
            .is_some_and(|admin| admin.metrics)
            .then(|| parts.metrics.clone()),
        registry: parts.registry.clone(),
        login_limit: parts.login_limit.clone(),
        handshake_timeout: config
            .tls
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |t| t.handshake_timeout),
    }
}

/// The loaded config answers lookups from its static map.
impl Directory for Arc<Loaded> {
    fn lookup<'a>(&'a self, user: &'a str) -> crate::directory::LookupFuture<'a> {
        match &self.static_map {
            Some(map) => map.lookup(user),
            None => Box::pin(std::future::ready(Err(
                crate::directory::DirectoryError::Unavailable("no directory configured".into()),
            ))),
        }
    }
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
