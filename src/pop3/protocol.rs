//! POP3's entry in the protocol registry: what the rest of mailgate asks
//! of POP3 (its machines, the one-line answers written outside them).

use super::preauth::DEFAULT_CAPABILITIES;
use super::{Pop3BackendAuth, Pop3BackendLogin, Pop3PreAuth, Pop3Settings};
use crate::login::{
    BackendAuth, BackendLogin, BackendLoginRequest, ListenerSettings, MachineFactory, PreAuth,
    ProtocolSpec,
};
use std::rc::Rc;

/// POP3 (RFC 1939).
pub static POP3: ProtocolSpec = ProtocolSpec {
    name: "pop3",
    default_backend_port: 110,
    implicit_tls_port: Some(995),
    too_many_connections: b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
    queue_full: b"-ERR [SYS/TEMP] Connection queue full, try again later.\r\n",
    // POP3 has no unsolicited answer: the connection just closes.
    shutting_down: b"",
    connection_cache: false,
    compression: false,
    listener,
    backend_login,
};

struct Listener(Rc<Pop3Settings>);

impl MachineFactory for Listener {
    fn preauth(&self, tls_active: bool) -> Box<dyn PreAuth> {
        Box::new(Pop3PreAuth::with_tls(self.0.clone(), tls_active))
    }
}

fn listener(settings: &ListenerSettings) -> Rc<dyn MachineFactory> {
    Rc::new(Listener(Rc::new(Pop3Settings {
        greeting: settings.greeting.clone(),
        // Where bearer tokens are offered, a line may carry one.
        max_line: settings.max_login_line(),
        max_auth_failures: settings.max_auth_failures,
        max_commands: settings.max_commands,
        max_protocol_errors: settings.max_protocol_errors,
        capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        starttls: settings.starttls,
        require_tls: settings.require_tls,
        oauth: settings.oauth.clone(),
    })))
}

impl From<Pop3BackendAuth> for BackendAuth {
    fn from(auth: Pop3BackendAuth) -> Self {
        match auth {
            Pop3BackendAuth::Auto => BackendAuth::Auto,
            Pop3BackendAuth::Plain => BackendAuth::Plain,
            Pop3BackendAuth::User => BackendAuth::Native,
        }
    }
}

fn backend_login(request: BackendLoginRequest<'_>) -> Box<dyn BackendLogin> {
    let method = match request.auth {
        BackendAuth::Auto => Pop3BackendAuth::Auto,
        BackendAuth::Plain => Pop3BackendAuth::Plain,
        BackendAuth::Native => Pop3BackendAuth::User,
    };
    let mut machine = Pop3BackendLogin::new(request.user, request.password, method);
    if let Some(client) = request.client_address {
        machine = machine.with_client_address(client);
    }
    if request.starttls {
        machine = machine.with_starttls();
    }
    if let Some(bearer) = request.bearer {
        machine = machine.with_bearer(bearer);
    }
    if let Some(offers) = request.offers {
        machine = machine.with_offers(offers);
    }
    if request.early_login {
        machine = machine.with_early_login();
    }
    Box::new(machine)
}
