//! ManageSieve's entry in the protocol registry.

use super::{ManageSieveBackendLogin, ManageSievePreAuth, ManageSieveSettings, SieveCapabilities};
use crate::login::{
    BackendGreeting, BackendLogin, BackendLoginRequest, ListenerSettings, MachineFactory, PreAuth,
    ProtocolSpec,
};
use std::cell::RefCell;
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
    compression: false,
    listener,
    backend_login,
};

/// A listener's machines: they greet with the Sieve capabilities of the
/// last back end this worker logged in to (Pigeonhole 0.5's defaults until
/// then), so clients see what the boxes behind really offer.
struct Listener {
    settings: RefCell<Rc<ManageSieveSettings>>,
    /// The capability lines the settings were last learned from: a login
    /// that brings the same lines (the usual case) parses nothing.
    learned_from: RefCell<String>,
}

impl MachineFactory for Listener {
    fn preauth(&self, tls_active: bool) -> Box<dyn PreAuth> {
        let settings = self.settings.borrow().clone();
        Box::new(ManageSievePreAuth::with_tls(settings, tls_active))
    }

    fn learned(&self, greeting: &BackendGreeting) {
        let Some(lines) = &greeting.capability else {
            return;
        };
        if *self.learned_from.borrow() == *lines {
            return;
        }
        let Some(capabilities) = SieveCapabilities::from_lines(lines) else {
            return;
        };
        lines.clone_into(&mut self.learned_from.borrow_mut());
        let mut settings = self.settings.borrow_mut();
        if settings.capabilities != capabilities {
            *settings = Rc::new(ManageSieveSettings {
                listener: settings.listener.clone(),
                capabilities,
            });
        }
    }
}

fn listener(settings: &ListenerSettings) -> Rc<dyn MachineFactory> {
    Rc::new(Listener {
        settings: RefCell::new(Rc::new(ManageSieveSettings {
            listener: settings.clone(),
            ..ManageSieveSettings::default()
        })),
        learned_from: RefCell::new(String::new()),
    })
}

/// ManageSieve has SASL only: every `BackendAuth` is `PLAIN` (a bearer
/// token keeps its own mechanism).
fn backend_login(request: BackendLoginRequest<'_>) -> Box<dyn BackendLogin> {
    let mut machine = ManageSieveBackendLogin::new(request.user, request.password);
    if let Some(client) = request.client_address {
        machine = machine.with_client_address(client);
    }
    if request.starttls {
        machine = machine.with_starttls();
    }
    if let Some(bearer) = request.bearer {
        machine = machine.with_bearer(bearer);
    }
    Box::new(machine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_follows_the_back_ends_capabilities() {
        let factory = listener(&ListenerSettings::default());
        let greeting = |f: &Rc<dyn MachineFactory>| {
            let mut m = f.preauth(false);
            String::from_utf8(m.take_output()).unwrap()
        };
        assert!(greeting(&factory).contains("\"IMPLEMENTATION\" \"Dovecot Pigeonhole\""));
        factory.learned(&BackendGreeting {
            capability: Some(
                "\"IMPLEMENTATION\" \"Box 7\"\r\n\"SIEVE\" \"fileinto vacation\"\r\n\"SASL\" \"PLAIN\"\r\n".into(),
            ),
            untagged: Vec::new(),
            compression: Default::default(),
        });
        let now = greeting(&factory);
        assert!(now.contains("\"IMPLEMENTATION\" \"Box 7\"\r\n\"SIEVE\" \"fileinto vacation\"\r\n"));
        assert!(
            !now.contains("NOTIFY"),
            "the back end announced none: {now}"
        );
        assert!(
            now.contains("\"SASL\" \"PLAIN LOGIN\""),
            "mailgate's own SASL list"
        );
        // Lines that do not parse change nothing.
        factory.learned(&BackendGreeting {
            capability: Some("garbage\r\n".into()),
            untagged: Vec::new(),
            compression: Default::default(),
        });
        assert_eq!(greeting(&factory), now);
    }
}
