//! ManageSieve's entry in the protocol registry.

use super::{ManageSieveBackendLogin, ManageSievePreAuth, ManageSieveSettings};
use crate::login::{
    BackendLogin, BackendLoginRequest, ListenerSettings, MachineFactory, PreAuth, ProtocolSpec,
};
use std::rc::Rc;

/// ManageSieve (RFC 5804).
pub static MANAGESIEVE: ProtocolSpec = ProtocolSpec {
    name: "managesieve",
    default_backend_port: 4190,
    // ManageSieve has no implicit-TLS port: STARTTLS on 4190.
    implicit_tls_port: None,
    too_many_connections: b"BYE (TRYLATER) \"Too many connections, try again later.\"\r\n",
    queue_full: b"BYE (TRYLATER) \"Connection queue full, try again later.\"\r\n",
    shutting_down: b"BYE (TRYLATER) \"Server shutting down.\"\r\n",
    connection_cache: false,
    listener,
    backend_login,
};

struct Listener(Rc<ManageSieveSettings>);

impl MachineFactory for Listener {
    fn preauth(&self, tls_active: bool) -> Box<dyn PreAuth> {
        Box::new(ManageSievePreAuth::with_tls(self.0.clone(), tls_active))
    }
}

fn listener(settings: &ListenerSettings) -> Rc<dyn MachineFactory> {
    Rc::new(Listener(Rc::new(ManageSieveSettings {
        listener: settings.clone(),
        ..ManageSieveSettings::default()
    })))
}

/// ManageSieve has SASL only: every `BackendAuth` is `PLAIN`.
fn backend_login(request: BackendLoginRequest<'_>) -> Box<dyn BackendLogin> {
    let mut machine = ManageSieveBackendLogin::new(request.user, request.password);
    if let Some(client) = request.client_address {
        machine = machine.with_client_address(client);
    }
    if request.starttls {
        machine = machine.with_starttls();
    }
    Box::new(machine)
}
