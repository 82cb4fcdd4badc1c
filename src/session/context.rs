//! What a session knows, grouped by where it comes from: its listener
//! ([`ListenerContext`]), the back-end policy ([`BackendPolicy`]) and the
//! state its worker shares among sessions ([`WorkerShared`]). The runtime
//! builds one [`SessionContext`] per listener per worker.

use super::parking_lot::ParkingLot;
use super::rate_limit::LoginFailures;
use crate::config::{Limits, Listener, Loaded, Protocol, TlsMode};
use crate::directory::Directory;
use crate::directory::Invalidations;
use crate::login::{BackendAuth, ListenerSettings, MachineFactory, OAuthOffer, ProtocolSpec};
use crate::metrics::{self, Recorder, SharedRecorder};
use crate::netaddr::Network;
use crate::protocols::PerProtocol;
use crate::registry::Registry;
use crate::relay::RelaySettings;
use crate::tls::SwappableServerConfig;
use crate::transport::KeepAlive;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One listener, as its sessions see it.
pub struct ListenerContext {
    /// Protocol spoken to clients.
    pub protocol: Protocol,
    /// What the protocol supplies (machines, one-line answers).
    pub spec: &'static ProtocolSpec,
    /// The listener, as metrics label it.
    pub label: metrics::Listener,
    /// The pre-auth settings its machines are built with.
    pub settings: ListenerSettings,
    /// Makes each session's pre-auth machine.
    pub machines: Rc<dyn MachineFactory>,
    /// TLS mode towards clients.
    pub tls_mode: TlsMode,
    /// The listener's TLS config (swapped on reload).
    pub tls: Option<SwappableServerConfig>,
    /// Bound on a TLS handshake.
    pub handshake_timeout: Duration,
    /// Client connect → login bound.
    pub preauth_timeout: Duration,
    /// Delay before a failed login is answered.
    pub failure_delay: Duration,
    /// Park back-end sessions after LOGOUT for the user's next login.
    pub connection_cache: bool,
    /// Clients allowed (empty: anyone).
    pub trusted_networks: Vec<Network>,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The deflate level of the back-end leg, when it is compressed.
    pub compress: Option<u32>,
}

impl ListenerContext {
    /// Whether a client at `ip` may use this listener.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_networks.is_empty() || self.trusted_networks.iter().any(|n| n.contains(ip))
    }

    /// The local address of every connection this listener accepts, when it
    /// is bound to one address rather than a wildcard (then each connection
    /// would need its own `getsockname`).
    pub fn fixed_local_address(&self) -> Option<SocketAddr> {
        fixed_address(self.label.address)
    }

    /// The context of `listen`, bound at `bound`.
    pub fn new(
        listen: &Listener,
        limits: &Limits,
        oauth: Option<OAuthOffer>,
        compress: Option<u32>,
        handshake_timeout: Duration,
        bound: SocketAddr,
        tls: Option<SwappableServerConfig>,
    ) -> Self {
        let settings = ListenerSettings {
            greeting: listen.greeting().to_owned(),
            max_line: limits.max_line,
            max_literal: limits.max_literal,
            max_auth_failures: limits.max_auth_failures,
            max_commands: limits.max_preauth_commands,
            max_protocol_errors: limits.max_protocol_errors,
            starttls: listen.tls_mode() == TlsMode::Starttls,
            require_tls: listen.requires_tls(),
            oauth,
        };
        let spec = listen.protocol.spec();
        Self {
            protocol: listen.protocol,
            spec,
            label: metrics::Listener {
                protocol: listen.protocol,
                address: bound,
            },
            machines: (spec.listener)(&settings),
            settings,
            tls_mode: listen.tls_mode(),
            tls,
            handshake_timeout,
            preauth_timeout: limits.preauth_timeout,
            failure_delay: limits.failure_delay,
            connection_cache: listen.connection_cache,
            trusted_networks: listen.trusted_networks.clone(),
            proxy_protocol: listen.proxy_protocol,
            compress,
        }
    }
}

/// How back ends are reached and logged in to, and how sessions relay.
pub struct BackendPolicy {
    /// Each protocol's back-end port when a route names none.
    pub ports: PerProtocol<u16>,
    /// Back-end TCP connect bound.
    pub connect_timeout: Duration,
    /// Back-end greeting + login bound.
    pub login_timeout: Duration,
    /// Each protocol's back-end login method.
    pub auth: PerProtocol<BackendAuth>,
    /// Pass the client's address to back ends that accept it.
    pub forward_client_address: bool,
    /// Write a PROXY v2 header first on each back-end connection.
    pub proxy_protocol: bool,
    /// Send the login before the greeting when the back end's offers are
    /// remembered (IMAP and POP3).
    pub early_login: bool,
    /// TLS towards back ends.
    pub tls_mode: TlsMode,
    /// The TLS client config for back ends.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Relay settings.
    pub relay: RelaySettings,
    /// Networks a route may point into.
    pub allowed_networks: Vec<Network>,
    /// Ports a route may name.
    pub allowed_ports: Vec<u16>,
    /// Keepalive and `TCP_USER_TIMEOUT` for the back-end leg (the client's
    /// inherits them from its listening socket).
    pub keepalive: KeepAlive,
}

impl BackendPolicy {
    /// The policy of `loaded`, with the back-end TLS client config built
    /// from it and the ports routes may name.
    pub fn new(
        loaded: &Loaded,
        tls: Option<Arc<rustls::ClientConfig>>,
        allowed_ports: Vec<u16>,
    ) -> Self {
        let backend = &loaded.config.backend;
        Self {
            ports: PerProtocol::from_fn(|p| backend.port(p)),
            connect_timeout: backend.connect_timeout,
            login_timeout: backend.login_timeout,
            auth: PerProtocol::from_fn(|p| backend.auth(p)),
            forward_client_address: backend.forward_client_address,
            early_login: backend.early_login,
            proxy_protocol: backend.proxy_protocol,
            tls_mode: *backend.tls.get_ref(),
            tls,
            relay: loaded.relay,
            allowed_networks: backend.allowed_networks.clone(),
            allowed_ports,
            keepalive: loaded.config.relay.keep_alive(),
        }
    }

    /// The back-end port for `protocol` when a route names none.
    pub fn port(&self, protocol: Protocol) -> u16 {
        *self.ports.get(protocol)
    }
}

/// What the sessions of one worker share.
pub struct WorkerShared {
    /// The directory (with this worker's cache).
    pub directory: Rc<dyn Directory>,
    /// This worker's recorder; `None` when metrics are off.
    pub metrics: Option<SharedRecorder>,
    /// This worker's relaying sessions.
    pub registry: Arc<Registry>,
    /// The process's failed-login counts per client address (shared by
    /// every worker); `None` when the limit is off.
    pub login_limit: Option<std::sync::Arc<LoginFailures>>,
    /// Client networks the per-address failed-login limit skips.
    pub exempt_networks: Vec<Network>,
    /// Becomes `true` when the server stops: sessions before login say
    /// goodbye and close.
    pub shutdown: watch::Receiver<bool>,
    /// The process's invalidations (admin, mailbox moves, reloads): what
    /// they name loses its routes and its parked sessions.
    pub invalidations: Arc<Invalidations>,
    /// The process's parking lot of the connection cache.
    pub parking: Arc<ParkingLot>,
    /// The process's bearer-token checker (`[oauth] verify` other than
    /// `none`).
    pub oauth: Option<Arc<crate::oauth::TokenChecker>>,
    /// What back ends announced on this worker's earlier logins.
    pub backend_offers: super::backend_offers::RememberedOffers,
}

/// Everything a session needs, shared by the sessions of one listener on one worker.
pub struct SessionContext {
    /// The listener.
    pub listener: ListenerContext,
    /// The back-end policy.
    pub backend: Rc<BackendPolicy>,
    /// The worker's shared state.
    pub worker: Rc<WorkerShared>,
}

impl SessionContext {
    /// Groups the three parts.
    pub fn new(
        listener: ListenerContext,
        backend: Rc<BackendPolicy>,
        worker: Rc<WorkerShared>,
    ) -> Self {
        Self {
            listener,
            backend,
            worker,
        }
    }

    /// Records into this worker's recorder, if metrics are on.
    pub(super) fn record(&self, f: impl FnOnce(&mut Recorder)) {
        if let Some(recorder) = &self.worker.metrics {
            metrics::with(recorder, f);
        }
    }

    fn exempt(&self, peer: SocketAddr) -> bool {
        self.worker
            .exempt_networks
            .iter()
            .any(|n| n.contains(peer.ip()))
    }

    /// Whether logins from `peer` are refused for now.
    pub(super) fn login_limited(&self, peer: SocketAddr) -> bool {
        if self.exempt(peer) {
            return false;
        }
        self.worker
            .login_limit
            .as_ref()
            .is_some_and(|limit| limit.is_limited(peer.ip(), std::time::Instant::now()))
    }

    /// Counts a failed login from `peer` towards its limit.
    pub(super) fn login_failed_from(&self, peer: SocketAddr) {
        if self.exempt(peer) {
            return;
        }
        if let Some(limit) = &self.worker.login_limit {
            limit.record_failure(peer.ip(), std::time::Instant::now());
        }
    }
}

/// `bound` when connections accepted there all have it as their local
/// address: not a wildcard (`0.0.0.0`, `::`).
fn fixed_address(bound: SocketAddr) -> Option<SocketAddr> {
    Some(bound).filter(|a| !a.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::fixed_address;

    #[test]
    fn only_a_listener_bound_to_one_address_knows_its_connections_local_address() {
        for specific in [
            "127.0.0.1:143",
            "192.0.2.7:993",
            "[::1]:110",
            "[2001:db8::1]:995",
        ] {
            let a = specific.parse().unwrap();
            assert_eq!(fixed_address(a), Some(a), "{specific}");
        }
        for wildcard in ["0.0.0.0:143", "[::]:143"] {
            assert_eq!(fixed_address(wildcard.parse().unwrap()), None, "{wildcard}");
        }
    }
}
