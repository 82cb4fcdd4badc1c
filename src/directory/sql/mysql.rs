//! MariaDB and MySQL through mysql_async: its pool (at most `pool_size`
//! connections per server, none kept open before the first lookup), the
//! statement prepared per connection by the driver's statement cache.

use super::pool::{ServerError, MAX_ROWS};
use super::query::Row;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts, Value};
use std::path::Path;

/// One MariaDB/MySQL server.
pub struct MyServer {
    pool: Pool,
    query: String,
}

impl MyServer {
    /// A server from its URL; connects on first use.
    pub fn new(
        url: &str,
        password: Option<&[u8]>,
        query: &str,
        pool_size: usize,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let opts = Opts::from_url(url).map_err(|e| e.to_string())?;
        let constraints =
            PoolConstraints::new(0, pool_size.max(1)).ok_or("pool_size out of range")?;
        let mut builder = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        if let Some(password) = password {
            let text =
                std::str::from_utf8(password).map_err(|_| "the MySQL password must be UTF-8")?;
            builder = builder.pass(Some(text));
        }
        if let Some(ca) = ca_file {
            builder =
                builder.ssl_opts(SslOpts::default().with_root_certs(vec![ca.to_owned().into()]));
        }
        Ok(Self {
            pool: Pool::new(builder),
            query: query.to_owned(),
        })
    }

    /// The rows for `key`.
    pub async fn fetch(&self, key: &str) -> Result<Vec<Row>, ServerError> {
        let mut conn = self.pool.get_conn().await.map_err(classify)?;
        let mut result = conn
            .exec_iter(self.query.as_str(), (key,))
            .await
            .map_err(classify)?;
        // At most MAX_ROWS rows kept; the rest is read past, one at a
        // time (a query that matches a whole table costs no memory here).
        let mut rows = Vec::new();
        while let Some(row) = result.next().await.map_err(classify)? {
            if rows.len() < MAX_ROWS {
                rows.push(
                    row.unwrap()
                        .into_iter()
                        .map(text_cell)
                        .collect::<Result<Row, ServerError>>()?,
                );
            }
        }
        Ok(rows)
    }
}

/// The server's own error is not cured by another server; anything else
/// (connect, I/O, protocol) is the connection's.
fn classify(e: mysql_async::Error) -> ServerError {
    match e {
        mysql_async::Error::Server(server) => {
            ServerError::Query(format!("{}: {}", server.code, server.message))
        }
        other => ServerError::Connect(other.to_string()),
    }
}

fn text_cell(value: Value) -> Result<Option<String>, ServerError> {
    match value {
        Value::NULL => Ok(None),
        Value::Bytes(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ServerError::Query("a column is not UTF-8".into())),
        Value::Int(n) => Ok(Some(n.to_string())),
        Value::UInt(n) => Ok(Some(n.to_string())),
        other => Err(ServerError::Query(format!(
            "a column of an unexpected type: {other:?}"
        ))),
    }
}
