//! PostgreSQL through tokio-postgres: `pool_size` connections per server,
//! each with the statement prepared once, used round-robin (a connection
//! carries concurrent queries), replaced when it dies (one retry on a fresh
//! connection).

use super::pool::{ServerError, MAX_ROWS};
use super::query::Row;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Statement};

/// A connection with the lookup statement prepared on it.
type Prepared = Rc<(Client, Statement)>;

/// One PostgreSQL server.
pub struct PgServer {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    query: String,
    slots: Vec<RefCell<Option<Prepared>>>,
    next: Cell<usize>,
}

impl PgServer {
    /// A server from its URL; connects on first use.
    pub fn new(
        url: &str,
        password: Option<&[u8]>,
        query: &str,
        pool_size: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(timeout);
        Ok(Self {
            config,
            tls: tls.map(|c| tokio_postgres_rustls::MakeRustlsConnect::new((*c).clone())),
            query: query.to_owned(),
            slots: (0..pool_size.max(1)).map(|_| RefCell::new(None)).collect(),
            next: Cell::new(0),
        })
    }

    async fn connect(&self) -> Result<Prepared, ServerError> {
        let connect_error = |e: tokio_postgres::Error| ServerError::Connect(e.to_string());
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(connect_error)?;
                tokio::task::spawn_local(connection);
                client
            }
            None => {
                let (client, connection) =
                    self.config.connect(NoTls).await.map_err(connect_error)?;
                tokio::task::spawn_local(connection);
                client
            }
        };
        let statement = client.prepare(&self.query).await.map_err(classify)?;
        Ok(Rc::new((client, statement)))
    }

    /// The rows for `key`.
    pub async fn fetch(&self, key: &str) -> Result<Vec<Row>, ServerError> {
        let index = self.next.get() % self.slots.len();
        self.next.set(self.next.get().wrapping_add(1));
        let slot = &self.slots[index];
        let mut last = None;
        for _attempt in 0..2 {
            let kept = slot.borrow().clone().filter(|c| !c.0.is_closed());
            let conn = match kept {
                Some(conn) => conn,
                None => {
                    let conn = self.connect().await?;
                    *slot.borrow_mut() = Some(conn.clone());
                    conn
                }
            };
            match first_rows(&conn, key).await {
                Ok(rows) => return Ok(rows),
                Err(e) if e.as_db_error().is_some() => return Err(classify(e)),
                Err(e) => {
                    // The connection died: one retry on a fresh one.
                    *slot.borrow_mut() = None;
                    last = Some(e.to_string());
                }
            }
        }
        Err(ServerError::Connect(last.unwrap_or_default()))
    }
}

/// At most [`MAX_ROWS`] rows of the answer, streamed (a query that
/// matches a whole table costs no memory here).
async fn first_rows(
    conn: &(Client, Statement),
    key: &str,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    use futures_util::StreamExt;
    let stream = conn
        .0
        .query_raw(
            &conn.1,
            std::iter::once(&key as &(dyn tokio_postgres::types::ToSql + Sync)),
        )
        .await?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.next().await {
        rows.push(text_row(&row?));
        if rows.len() == MAX_ROWS {
            break;
        }
    }
    Ok(rows)
}

/// The server's own error (a missing table, a refused login) is not cured
/// by another server; anything else is the connection's.
fn classify(e: tokio_postgres::Error) -> ServerError {
    match e.as_db_error() {
        Some(db) => ServerError::Query(format!("{}: {}", db.code().code(), db.message())),
        None => ServerError::Connect(e.to_string()),
    }
}

fn text_row(row: &tokio_postgres::Row) -> Row {
    (0..row.len()).map(|i| text_cell(row, i)).collect()
}

/// A column as text, whether the database typed it text or integer.
fn text_cell(row: &tokio_postgres::Row, i: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<_, Option<String>>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<_, Option<i32>>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<_, Option<i64>>(i) {
        return v.map(|n| n.to_string());
    }
    row.try_get::<_, Option<i16>>(i)
        .ok()
        .flatten()
        .map(|n| n.to_string())
}
