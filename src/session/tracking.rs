//! The connection cache's IMAP tracker as the relay's [`Inspector`]: the
//! one place that knows both the protocol's steps (`imap::tracker`) and the
//! relay's (`relay::inspect`), so neither has to import the other.
//!
//! This module only translates; what is parkable is the tracker's call.

use crate::imap::tracker::{self, SessionTracker};
use crate::relay::inspect::{ClientStep, Inspector, ServerStep};

/// An IMAP session tracker the tracked relay can drive.
pub(super) struct ImapInspector(pub SessionTracker);

impl Inspector for ImapInspector {
    fn client(&mut self, buf: &[u8]) -> ClientStep {
        match self.0.client(buf) {
            tracker::ClientStep::Forward(n) => ClientStep::Forward(n),
            tracker::ClientStep::Park {
                forward,
                logout_tag,
                internal,
            } => ClientStep::Park {
                forward,
                logout_tag,
                internal,
            },
        }
    }

    fn server(&mut self, buf: &[u8]) -> ServerStep {
        match self.0.server(buf) {
            tracker::ServerStep::Forward(n) => ServerStep::Forward(n),
            tracker::ServerStep::Internal { forward, len, ok } => {
                ServerStep::Internal { forward, len, ok }
            }
        }
    }
}
