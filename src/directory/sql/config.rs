//! `kind = "sql"`: the SQL keys of `[directory]` and their validation into
//! [`SqlSettings`].

use super::query::{self, Dialect, TableSpec};
use crate::auth::Secret;
use crate::directory::host_rewrite::HostRewrite;
use crate::directory::kind::{
    ca_tls, read_secret_file, ClientTls, Invalid, KindSettings, KindSpec, Prepared, Problem, Setup,
};
use crate::directory::name_form::KeyFormat;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The registration of `kind = "sql"`.
pub const KIND: KindSpec = KindSpec {
    name: "sql",
    cached_by_default: true,
    configure,
};

/// The SQL keys of `[directory]`.
#[derive(Debug, Deserialize)]
struct SqlConfig {
    /// `postgresql://user@host:port/db` or `mysql://user@host:port/db`.
    url: Option<toml::Spanned<String>>,
    /// Servers in failover order (instead of `url`), all of one kind.
    servers: Option<toml::Spanned<Vec<String>>>,
    /// File holding the database password (never in the URL).
    password_file: Option<toml::Spanned<PathBuf>>,
    /// CA certificates (PEM) the server's certificate chains to; turns TLS on.
    ca_file: Option<toml::Spanned<PathBuf>>,
    /// Perdition's table, or another of the same shape.
    #[serde(default = "default_table")]
    table: String,
    /// The column compared with the lookup key.
    #[serde(default = "default_user_column")]
    user_column: String,
    /// The column naming the back end.
    #[serde(default = "default_server_column")]
    server_column: String,
    /// The column naming the port (`""`: none).
    #[serde(default = "default_port_column")]
    port_column: String,
    /// A SELECT of one's own with one placeholder (`$1` or `?`).
    query: Option<toml::Spanned<String>>,
    /// Bound on connect and on each query.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    /// Connections per server, for the whole process.
    #[serde(default = "default_pool_size")]
    pool_size: usize,
}

fn default_table() -> String {
    "tblPerdition".into()
}
fn default_user_column() -> String {
    "user".into()
}
fn default_server_column() -> String {
    "servername".into()
}
fn default_port_column() -> String {
    "port".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_pool_size() -> usize {
    4
}

/// Everything the SQL thread needs.
#[derive(Debug)]
pub struct SqlSettings {
    /// PostgreSQL or MySQL.
    pub dialect: Dialect,
    /// Server URLs in failover order (no password in them).
    pub servers: Vec<String>,
    /// The password, from `password_file`.
    pub password: Option<Secret>,
    /// CA file: TLS to the database.
    pub ca_file: Option<PathBuf>,
    /// The statement, with its one placeholder.
    pub query: String,
    /// Bound on connect and each query.
    pub timeout: Duration,
    /// Connections per server for the process.
    pub pool_size: usize,
    /// How a typed name becomes the key.
    pub name_form: KeyFormat,
    /// Host rewriting.
    pub hosts: HostRewrite,
}

fn configure(setup: &mut Setup<'_>) -> Result<Arc<dyn KindSettings>, Problem> {
    let d: SqlConfig = setup.read()?;
    if !cfg!(feature = "sql") {
        return Err(Invalid::new(
            "directory.kind",
            None,
            "this mailgate was built without SQL support (cargo feature `sql`; the Debian package has it)",
        )
        .into());
    }
    let (servers, span) = match (&d.url, &d.servers) {
        (Some(url), None) => (vec![url.get_ref().clone()], url.span()),
        (None, Some(list)) if !list.get_ref().is_empty() => (list.get_ref().clone(), list.span()),
        _ => {
            return Err(Invalid::new(
                "directory.url",
                None,
                "kind = \"sql\" needs `url = \"postgresql://user@host/db\"` (or mysql://…), or a `servers` list",
            )
            .into())
        }
    };
    let dialect = Dialect::of_url(&servers[0]).ok_or_else(|| {
        Invalid::new(
            "directory.url",
            Some(span.clone()),
            "a postgresql:// or mysql:// URL",
        )
    })?;
    for url in &servers {
        if Dialect::of_url(url) != Some(dialect) {
            return Err(Invalid::new(
                "directory.servers",
                Some(span.clone()),
                "servers of one kind: all postgresql:// or all mysql://",
            )
            .into());
        }
        if let Err(why) = super::check_url(dialect, url) {
            return Err(Invalid::new("directory.url", Some(span.clone()), why).into());
        }
        if has_password(url) {
            return Err(Invalid::new(
                "directory.url",
                Some(span.clone()),
                "no password in the URL: put it in `password_file`",
            )
            .into());
        }
    }
    if d.pool_size == 0 {
        return Err(Invalid::new("directory.pool_size", None, "must be greater than 0").into());
    }
    let query = match &d.query {
        Some(custom) => {
            query::check_custom(dialect, custom.get_ref())
                .map_err(|e| Invalid::new("directory.query", Some(custom.span()), e))?;
            custom.get_ref().trim().trim_end_matches(';').to_owned()
        }
        None => {
            let names = [
                ("directory.table", &d.table),
                ("directory.user_column", &d.user_column),
                ("directory.server_column", &d.server_column),
            ];
            for (key, name) in names {
                if !query::is_identifier(name) {
                    return Err(Invalid::new(
                        key,
                        None,
                        "letters, digits, _ and $ (schema.table for a table)",
                    )
                    .into());
                }
            }
            if !d.port_column.is_empty() && !query::is_identifier(&d.port_column) {
                return Err(Invalid::new(
                    "directory.port_column",
                    None,
                    "letters, digits, _ and $, or \"\" for none",
                )
                .into());
            }
            query::table_query(
                dialect,
                &TableSpec {
                    table: d.table.clone(),
                    user_column: d.user_column.clone(),
                    server_column: d.server_column.clone(),
                    port_column: Some(d.port_column.clone()).filter(|c| !c.is_empty()),
                },
            )
        }
    };
    let password = d
        .password_file
        .as_ref()
        .map(|file| read_secret_file("directory.password_file", file, setup.base_dir()))
        .transpose()?;
    setup.locate("directory.ca_file", d.ca_file.as_ref().map(|f| f.span()));
    let common = setup.common();
    Ok(Arc::new(SqlKind(Arc::new(SqlSettings {
        dialect,
        servers,
        password,
        ca_file: d
            .ca_file
            .as_ref()
            .map(|f| setup.base_dir().join(f.get_ref())),
        query,
        timeout: d.timeout,
        pool_size: d.pool_size,
        name_form: common.name_form.clone(),
        hosts: common.hosts.clone(),
    }))))
}

/// Whether a URL's user part carries a password (`user:secret@host`).
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(user, _)| user.contains(':'))
}

/// A validated SQL configuration.
#[derive(Debug)]
pub struct SqlKind(pub Arc<SqlSettings>);

impl KindSettings for SqlKind {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name_form(&self) -> KeyFormat {
        self.0.name_form.clone()
    }

    fn prepare(&self, tls: &ClientTls<'_>) -> Result<Arc<dyn Prepared>, Invalid> {
        let tls = ca_tls(self.0.ca_file.as_deref(), tls)?;
        super::prepared(self.0.clone(), tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found() {
        assert!(has_password("postgresql://u:p@h/db"));
        assert!(has_password("mysql://u:p@h:3306/db?x=1"));
        assert!(!has_password("postgresql://u@h/db"));
        assert!(!has_password("mysql://h/db"));
        assert!(!has_password("postgresql://u@h/db?options=a:b@c"));
    }

    #[cfg(feature = "sql")]
    #[test]
    fn urls_the_driver_cannot_use_are_refused_at_load() {
        let load = |url: &str| {
            let text = format!(
                "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n[directory]\nkind = \"sql\"\nurl = \"{url}\"\n"
            );
            crate::config::parse_str(
                &text,
                std::path::Path::new("t.toml"),
                std::path::Path::new("."),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        };
        assert_eq!(load("postgresql://perdition@db/dbPerdition"), Ok(()));
        assert_eq!(load("mysql://perdition@db:3306/dbPerdition"), Ok(()));
        for bad in [
            "postgresql://u@db:port/x",
            "mysql://u@db:99999/x",
            "mysql://u:pw@db/x",
            "sqlite:///x",
        ] {
            let err = load(bad).unwrap_err();
            assert!(err.starts_with("t.toml:6: `directory.url`"), "{bad}: {err}");
        }
    }
}
