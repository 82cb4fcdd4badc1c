//! Configuration errors that point at the file, line and key.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (the message carries line, column and key).
    #[error("{path}: {message}")]
    Parse {
        /// File that failed.
        path: PathBuf,
        /// toml's own message with position and snippet.
        message: String,
    },
    /// A value that parsed but is not acceptable.
    #[error("{path}:{line}: `{key}`: {reason}")]
    Invalid {
        /// File that failed.
        path: PathBuf,
        /// 1-based line of the offending value (0 when the key is missing).
        line: usize,
        /// Dotted key, e.g. `listen[0].tls`.
        key: String,
        /// What is wrong and what to do.
        reason: String,
    },
}
