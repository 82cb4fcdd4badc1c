//! The SQL a lookup runs and what its rows mean, without I/O: the table
//! query built from checked identifiers (never from the user name, which is
//! always a bound parameter), a custom query's checks, and a row turned
//! into a [`Route`] as Perdition reads its table (`servername` may be
//! `host`, `host:port` or `user@host:port`; a NULL port means the
//! protocol's port).

use crate::directory::static_map::parse_target;
use crate::directory::Route;

/// The database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (`postgresql://`, `postgres://`): `$1`, `"quoted"` names.
    Postgres,
    /// MariaDB or MySQL (`mysql://`, `mariadb://`): `?`, `` `quoted` `` names.
    Mysql,
}

impl Dialect {
    /// The dialect of a URL's scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgresql" | "postgres" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }

    /// The placeholder of the one bound parameter.
    pub fn placeholder(self) -> &'static str {
        match self {
            Dialect::Postgres => "$1",
            Dialect::Mysql => "?",
        }
    }

    /// The name shown in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
        }
    }

    /// `identifier` quoted as written (a reserved word such as `user`
    /// stays a name).
    fn quote(self, identifier: &str) -> String {
        identifier
            .split('.')
            .map(|part| match self {
                Dialect::Postgres => format!("\"{part}\""),
                Dialect::Mysql => format!("`{part}`"),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `identifier` as an unquoted name means it: PostgreSQL folds
    /// unquoted names to lower case (Perdition's library writes the table,
    /// server and port names unquoted), MySQL takes them as written.
    fn quote_folded(self, identifier: &str) -> String {
        match self {
            Dialect::Postgres => self.quote(&identifier.to_ascii_lowercase()),
            Dialect::Mysql => self.quote(identifier),
        }
    }

    fn as_text(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("{column}::text"),
            Dialect::Mysql => format!("CAST({column} AS CHAR)"),
        }
    }
}

/// A table and its columns (Perdition's layout by default).
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// `table` or `schema.table`.
    pub table: String,
    /// The column compared with the lookup key.
    pub user_column: String,
    /// The column naming the back end (`host`, `host:port`, `user@host:port`).
    pub server_column: String,
    /// The column naming the port (NULL: the protocol's port); none to skip.
    pub port_column: Option<String>,
}

/// Whether `name` may be used as an identifier: letters, digits, `_`,
/// `$`, and `.` between parts (`schema.table`). Anything else is refused,
/// so a configured name can never change the statement.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        })
}

/// The statement for `table`: server and port as text, where the user
/// column equals the bound key. Names mean what they mean in Perdition's
/// own query (PostgreSQL: table, server and port names unquoted, the user
/// column quoted; MySQL: as written), each quoted so no name can be read
/// as SQL.
pub fn table_query(dialect: Dialect, table: &TableSpec) -> String {
    let server = dialect.as_text(&dialect.quote_folded(&table.server_column));
    let port = match &table.port_column {
        Some(port) => dialect.as_text(&dialect.quote_folded(port)),
        None => "NULL".to_owned(),
    };
    format!(
        "SELECT {server}, {port} FROM {} WHERE {} = {}",
        dialect.quote_folded(&table.table),
        dialect.quote(&table.user_column),
        dialect.placeholder()
    )
}

/// Checks a custom query: one SELECT with exactly one placeholder of the
/// dialect outside quoted text; its columns are server, then optionally
/// port and back-end login name.
pub fn check_custom(dialect: Dialect, query: &str) -> Result<(), String> {
    let trimmed = query.trim();
    let first = trimmed.split_whitespace().next().unwrap_or("");
    if !first.eq_ignore_ascii_case("select") && !first.eq_ignore_ascii_case("with") {
        return Err("a SELECT (or WITH … SELECT) statement".into());
    }
    if trimmed.trim_end_matches(';').contains(';') {
        return Err("one statement only".into());
    }
    let count = placeholders(dialect, trimmed);
    if count != 1 {
        return Err(format!(
            "exactly one {} for the user ({count} found outside quotes)",
            dialect.placeholder()
        ));
    }
    Ok(())
}

/// Placeholders of `dialect` outside quoted strings and identifiers.
fn placeholders(dialect: Dialect, query: &str) -> usize {
    let bytes = query.as_bytes();
    let mut quote: Option<u8> = None;
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if matches!(b, b'\'' | b'"' | b'`') => quote = Some(b),
            None => match dialect {
                Dialect::Mysql if b == b'?' => count += 1,
                Dialect::Postgres if b == b'$' => {
                    let digits: String = bytes[i + 1..]
                        .iter()
                        .take_while(|d| d.is_ascii_digit())
                        .map(|&d| d as char)
                        .collect();
                    if !digits.is_empty() {
                        count += if digits == "1" { 1 } else { 2 };
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    count
}

/// A row as text: server, port, login name (later columns ignored).
pub type Row = Vec<Option<String>>;

/// The route a row names, checked; `Err` says what is wrong with it.
pub fn route_of(row: &Row) -> Result<Route, String> {
    let server = row
        .first()
        .cloned()
        .flatten()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or("the server column is NULL or empty")?;
    // Perdition's `user@host:port`: the part before the last `@` is the
    // name to log in with.
    let (login_user, target) = match server.rsplit_once('@') {
        Some((user, target)) => (Some(user.to_owned()), target.to_owned()),
        None => (None, server.clone()),
    };
    let mut route = parse_target(&target).map_err(|e| format!("server {server:?}: {e}"))?;
    if route.port.is_none() {
        if let Some(port) = row.get(1).cloned().flatten() {
            let port = port.trim();
            route.port = Some(
                port.parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("port {port:?} is not a port"))?,
            );
        }
    }
    let user = row.get(2).cloned().flatten().or(login_user);
    if let Some(user) = &user {
        if user.is_empty() || crate::login::check_user_name(user).is_err() {
            return Err(format!(
                "login name {:?} unusable",
                user.escape_debug().to_string()
            ));
        }
    }
    route.login_user = user;
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perdition() -> TableSpec {
        TableSpec {
            table: "tblPerdition".into(),
            user_column: "user".into(),
            server_column: "servername".into(),
            port_column: Some("port".into()),
        }
    }

    #[test]
    fn the_table_query_quotes_names_and_binds_the_user() {
        assert_eq!(
            table_query(Dialect::Postgres, &perdition()),
            "SELECT \"servername\"::text, \"port\"::text FROM \"tblperdition\" WHERE \"user\" = $1"
        );
        let spec = TableSpec {
            table: "mail.routes".into(),
            port_column: None,
            ..perdition()
        };
        assert_eq!(
            table_query(Dialect::Mysql, &spec),
            "SELECT CAST(`servername` AS CHAR), NULL FROM `mail`.`routes` WHERE `user` = ?"
        );
    }

    #[test]
    fn identifiers_cannot_carry_sql() {
        for good in ["tblPerdition", "mail.routes", "_x$1"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "x\"; DROP TABLE t; --",
            "a..b",
            "1abc",
            "t`",
            "a.1b",
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn custom_queries_have_one_placeholder_and_one_statement() {
        let pg = "SELECT host, port FROM r WHERE login = $1 AND note <> '$2'";
        assert_eq!(check_custom(Dialect::Postgres, pg), Ok(()));
        assert!(check_custom(Dialect::Postgres, "SELECT h FROM r WHERE a = $1 OR b = $1").is_err());
        assert!(check_custom(Dialect::Postgres, "SELECT h FROM r WHERE a = $2").is_err());
        assert_eq!(
            check_custom(Dialect::Mysql, "select h from r where u = ? and x = '?'"),
            Ok(())
        );
        assert!(check_custom(Dialect::Mysql, "DELETE FROM r WHERE u = ?").is_err());
        assert!(check_custom(Dialect::Mysql, "SELECT 1 FROM r WHERE u = ?; DROP TABLE r").is_err());
        assert!(check_custom(Dialect::Mysql, "SELECT h FROM r").is_err());
    }

    #[test]
    fn rows_become_routes_as_perdition_reads_them() {
        let row = |s: Option<&str>, p: Option<&str>| vec![s.map(Into::into), p.map(Into::into)];
        let r = route_of(&row(Some("box1.vpn"), None)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.login_user),
            ("box1.vpn", None, None)
        );
        let r = route_of(&row(Some("10.0.0.2"), Some("10143"))).unwrap();
        assert_eq!(r.port, Some(10143));
        let r = route_of(&row(Some("bob@10.0.0.3:4143"), Some("1"))).unwrap();
        assert_eq!((r.port, r.login_user.as_deref()), (Some(4143), Some("bob")));
        let r = route_of(&row(Some("alice@example.org@box2"), None)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.login_user.as_deref()),
            ("box2", Some("alice@example.org"))
        );
        let three = vec![Some("box".into()), None, Some("carol".into())];
        assert_eq!(
            route_of(&three).unwrap().login_user.as_deref(),
            Some("carol")
        );
        assert!(route_of(&row(None, None)).is_err());
        assert!(route_of(&row(Some(" "), None)).is_err());
        assert!(route_of(&row(Some("box"), Some("http"))).is_err());
        assert!(route_of(&row(Some("box:0"), None)).is_err());
        assert!(route_of(&row(Some("\u{7}@box"), None)).is_err());
    }
}
