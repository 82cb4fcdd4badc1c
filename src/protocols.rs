//! The protocol registry: every protocol mailgate speaks, each mapped to
//! the [`ProtocolSpec`] its own folder defines. This is the one place that
//! names the protocols; everything above it asks a listener's
//! [`Protocol::spec`]. Adding a protocol is its folder, a variant and an
//! arm here, and its config keys.

use crate::login::ProtocolSpec;
use serde::Deserialize;

/// A mail protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1 / IMAP4rev2.
    Imap,
    /// POP3.
    Pop3,
    /// ManageSieve (`managesieve`).
    ManageSieve,
}

impl Protocol {
    /// Every protocol, in registry order.
    pub const ALL: [Protocol; 3] = [Protocol::Imap, Protocol::Pop3, Protocol::ManageSieve];

    /// What the protocol supplies.
    pub fn spec(self) -> &'static ProtocolSpec {
        match self {
            Protocol::Imap => &crate::imap::IMAP,
            Protocol::Pop3 => &crate::pop3::POP3,
            Protocol::ManageSieve => &crate::managesieve::MANAGESIEVE,
        }
    }

    /// Its name (`imap`, `pop3`, `managesieve`).
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Its place in [`Protocol::ALL`].
    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|p| *p == self)
            .expect("every protocol is in ALL")
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value per protocol (a port, a login method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerProtocol<T>(Vec<T>);

impl<T> PerProtocol<T> {
    /// `f(protocol)` for each protocol.
    pub fn from_fn(f: impl FnMut(Protocol) -> T) -> Self {
        Self(Protocol::ALL.into_iter().map(f).collect())
    }

    /// The value of `protocol`.
    pub fn get(&self, protocol: Protocol) -> &T {
        &self.0[protocol.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_has_its_own_name_and_answers_in_its_own_syntax() {
        let mut names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Protocol::ALL.len(), "names are unique");
        for p in Protocol::ALL {
            let spec = p.spec();
            assert_eq!(
                toml::from_str::<Wrapper>(&format!("p = \"{}\"", spec.name))
                    .unwrap()
                    .p,
                p
            );
            for line in [spec.too_many_connections, spec.queue_full] {
                assert!(line.ends_with(b"\r\n"), "{p}: one CRLF line");
            }
        }
        let per = PerProtocol::from_fn(|p| p.spec().default_backend_port);
        assert_eq!(
            (
                *per.get(Protocol::Imap),
                *per.get(Protocol::Pop3),
                *per.get(Protocol::ManageSieve)
            ),
            (143, 110, 4190)
        );
    }

    #[derive(Deserialize)]
    struct Wrapper {
        p: Protocol,
    }
}
