//! Importers: another proxy's configuration in, a mailgate TOML out.
//!
//! Owns reading foreign configuration formats and writing the equivalent
//! mailgate configuration as text, with a comment for everything that does
//! not carry over. Pure functions on text: it must never open sockets, start
//! the runtime or read files itself (the command-line front end does that),
//! so every rule is unit-tested on strings.

pub mod perdition;
