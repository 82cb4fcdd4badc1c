//! `mailgate import-perdition`: a Perdition 2.x configuration (and its
//! popmap) as an equivalent mailgate configuration.
//!
//! [`file`] reads Perdition's syntax, [`defaults`] the init script's
//! `/etc/default/perdition` (modes and command-line flags), [`options`]
//! knows its option names, [`popmap`] converts user maps and [`translate`]
//! writes the TOML. Every
//! option in the file either becomes a mailgate setting or is listed at the
//! end of the output as `# not carried over: line N: … (why)`; nothing is
//! dropped silently.

pub mod defaults;
pub mod file;
pub mod options;
pub mod popmap;
pub mod translate;

pub use translate::{import, Imported, Input, Mode};
