//! `kind = "sql"`: routes from a table in PostgreSQL or MariaDB/MySQL —
//! Perdition's `tblPerdition` (`user | servername | port`) as it is, another
//! table of the same shape, or a SELECT of one's own.
//!
//! The user name is only ever a bound parameter; table and column names
//! are checked identifiers, quoted. One thread per process owns every
//! database connection (`pool.rs`); a worker's directory sends it the key
//! and awaits the rows, bounded by `timeout` per server. Drivers:
//! tokio-postgres (the rust-postgres project's async client) and
//! mysql_async (the MySQL/MariaDB client most async Rust uses), both with
//! rustls; built only with the cargo feature `sql`.

mod config;
#[cfg(feature = "sql")]
mod mysql;
#[cfg(feature = "sql")]
mod pool;
#[cfg(feature = "sql")]
mod postgres;
pub mod query;

pub use config::{SqlKind, SqlSettings, KIND};

use crate::directory::kind::{Invalid, Prepared};
use std::sync::Arc;

/// Whether the driver takes `url` (checked when the configuration is
/// loaded, not first when the SQL thread connects).
#[cfg(feature = "sql")]
fn check_url(dialect: query::Dialect, url: &str) -> Result<(), String> {
    match dialect {
        query::Dialect::Postgres => url
            .parse::<tokio_postgres::Config>()
            .map(drop)
            .map_err(|e| format!("PostgreSQL cannot use this URL: {e}")),
        query::Dialect::Mysql => mysql_async::Opts::from_url(url)
            .map(drop)
            .map_err(|e| format!("MySQL cannot use this URL: {e}")),
    }
}

#[cfg(not(feature = "sql"))]
fn check_url(_dialect: query::Dialect, _url: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(feature = "sql")]
fn prepared(
    settings: Arc<SqlSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Arc<dyn Prepared>, Invalid> {
    Ok(Arc::new(worker::PreparedSql::new(settings, tls)))
}

#[cfg(not(feature = "sql"))]
fn prepared(
    _settings: Arc<SqlSettings>,
    _tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Arc<dyn Prepared>, Invalid> {
    Err(Invalid::new(
        "directory.kind",
        None,
        "this mailgate was built without SQL support (cargo feature `sql`)",
    ))
}

#[cfg(feature = "sql")]
mod worker;
