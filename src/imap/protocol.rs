//! IMAP's entry in the protocol registry: what the rest of mailgate asks
//! of IMAP (its machines, the one-line answers written outside them, the
//! webmail cache).

use super::{ImapBackendAuth, ImapBackendLogin, ImapPreAuth, ImapSettings};
use crate::login::{
    BackendAuth, BackendLogin, BackendLoginRequest, ListenerSettings, MachineFactory, PreAuth,
    ProtocolSpec,
};
use std::rc::Rc;

/// IMAP (RFC 3501, RFC 9051).
pub static IMAP: ProtocolSpec = ProtocolSpec {
    name: "imap",
    default_backend_port: 143,
    implicit_tls_port: Some(993),
    too_many_connections: b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n",
    queue_full: b"* BYE [UNAVAILABLE] Connection queue full, try again later.\r\n",
    shutting_down: b"* BYE Server shutting down.\r\n",
    connection_cache: true,
    compression: true,
    listener,
    backend_login,
};

struct Listener(Rc<ImapSettings>);

impl MachineFactory for Listener {
    fn preauth(&self, tls_active: bool) -> Box<dyn PreAuth> {
        Box::new(ImapPreAuth::with_tls(self.0.clone(), tls_active))
    }
}

fn listener(settings: &ListenerSettings) -> Rc<dyn MachineFactory> {
    let settings: ImapSettings = settings.clone();
    Rc::new(Listener(Rc::new(settings)))
}

impl From<ImapBackendAuth> for BackendAuth {
    fn from(auth: ImapBackendAuth) -> Self {
        match auth {
            ImapBackendAuth::Auto => BackendAuth::Auto,
            ImapBackendAuth::Plain => BackendAuth::Plain,
            ImapBackendAuth::Login => BackendAuth::Native,
        }
    }
}

fn backend_login(request: BackendLoginRequest<'_>) -> Box<dyn BackendLogin> {
    let method = match request.auth {
        BackendAuth::Auto => ImapBackendAuth::Auto,
        BackendAuth::Plain => ImapBackendAuth::Plain,
        BackendAuth::Native => ImapBackendAuth::Login,
    };
    let mut machine = ImapBackendLogin::new(request.user, request.password, method);
    if let Some(client) = request.client_address {
        machine = machine.with_client_address(client);
    }
    if request.starttls {
        machine = machine.with_starttls();
    }
    if let Some(bearer) = request.bearer {
        machine = machine.with_bearer(bearer);
    }
    if request.compress {
        machine = machine.with_compression();
    }
    if let Some(offers) = request.offers.filter(|_| request.early_login) {
        machine = machine.with_offers(offers);
    }
    Box::new(machine)
}
