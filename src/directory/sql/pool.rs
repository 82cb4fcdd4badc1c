//! The process's SQL client: one thread with its own runtime owns every
//! database connection (at most `pool_size` per server, for the whole
//! process), serves workers' lookups sent over a channel, and fails over
//! across the configured servers in order. Workers never touch a database
//! socket; the thread ends when the last worker's directory is dropped (a
//! reload starts a new one).

use super::config::SqlSettings;
use super::query::{Dialect, Row};
use crate::directory::ServerFailures;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Rows of an answer kept (one is the route; a second makes it ambiguous).
pub const MAX_ROWS: usize = 2;
/// Lookups waiting for the SQL thread, at most.
pub const QUEUE: usize = 4096;
/// First pause after every server failed; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between attempts while every server is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One lookup for the SQL thread.
pub struct Job {
    /// The lookup key (bound as the query's one parameter).
    pub key: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Vec<Row>, Failure>>,
}

/// Why the SQL thread could not answer.
#[derive(Debug)]
pub enum Failure {
    /// Every server failed a moment ago.
    BackingOff(Duration),
    /// No server could be reached.
    Unreachable(ServerFailures),
    /// A server answered with an error (a missing table, a refused login).
    Query(String),
}

/// What went wrong with one server.
pub enum ServerError {
    /// Connecting or the connection failed: the next server is tried.
    Connect(String),
    /// The server refused the query: no other server would do better.
    Query(String),
}

enum Server {
    Postgres(Box<super::postgres::PgServer>),
    Mysql(super::mysql::MyServer),
}

impl Server {
    async fn fetch(&self, key: &str) -> Result<Vec<Row>, ServerError> {
        match self {
            Server::Postgres(s) => s.fetch(key).await,
            Server::Mysql(s) => s.fetch(key).await,
        }
    }
}

struct Db {
    servers: Vec<(String, Server, Cell<Option<Instant>>)>,
    timeout: Duration,
    retry_at: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
}

/// Starts the SQL thread; the sender is how workers reach it.
pub fn start(
    settings: Arc<SqlSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("mailgate-sql".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!("SQL directory thread: no runtime: {e}");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let db = match Db::new(&settings, tls) {
                    Ok(db) => Rc::new(db),
                    Err(e) => {
                        tracing::error!("SQL directory: {e}");
                        return;
                    }
                };
                while let Some(job) = rx.recv().await {
                    let db = db.clone();
                    tokio::task::spawn_local(async move {
                        let answer = db.lookup(&job.key).await;
                        let _ = job.reply.send(answer);
                    });
                }
            });
        })?;
    Ok(tx)
}

impl Db {
    fn new(settings: &SqlSettings, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let password = settings.password.as_ref().map(|p| p.expose());
        let servers = settings
            .servers
            .iter()
            .map(|url| {
                let server = match settings.dialect {
                    Dialect::Postgres => {
                        Server::Postgres(Box::new(super::postgres::PgServer::new(
                            url,
                            password,
                            &settings.query,
                            settings.pool_size,
                            tls.clone(),
                            settings.timeout,
                        )?))
                    }
                    Dialect::Mysql => Server::Mysql(super::mysql::MyServer::new(
                        url,
                        password,
                        &settings.query,
                        settings.pool_size,
                        settings.ca_file.as_deref(),
                    )?),
                };
                Ok((shown(url), server, Cell::new(None)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            servers,
            timeout: settings.timeout,
            retry_at: Cell::new(None),
            backoff: Cell::new(FIRST_BACKOFF),
        })
    }

    /// The rows for `key` from the first server that answers, in failover
    /// order; a server that failed is skipped for the backoff (unless every
    /// server did).
    async fn lookup(&self, key: &str) -> Result<Vec<Row>, Failure> {
        let now = Instant::now();
        if let Some(at) = self.retry_at.get().filter(|at| *at > now) {
            return Err(Failure::BackingOff(at - now));
        }
        let mut failures = Vec::new();
        for (name, server, down_until) in &self.servers {
            if down_until.get().is_some_and(|at| at > Instant::now()) {
                failures.push((name.clone(), "failed recently".to_owned()));
                continue;
            }
            let why = match tokio::time::timeout(self.timeout, server.fetch(key)).await {
                Ok(Ok(rows)) => {
                    down_until.set(None);
                    self.retry_at.set(None);
                    self.backoff.set(FIRST_BACKOFF);
                    return Ok(rows);
                }
                Ok(Err(ServerError::Query(why))) => {
                    return Err(Failure::Query(format!("{name}: {why}")))
                }
                Ok(Err(ServerError::Connect(why))) => why,
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            down_until.set(Some(Instant::now() + self.backoff.get()));
            failures.push((name.clone(), why));
        }
        let backoff = self.backoff.get();
        self.retry_at.set(Some(Instant::now() + backoff));
        self.backoff.set((backoff * 2).min(MAX_BACKOFF));
        Err(Failure::Unreachable(ServerFailures(failures)))
    }
}

/// A server's URL for messages: scheme, host and port, database (no user).
pub fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            let rest = rest.split('?').next().unwrap_or(rest);
            format!("{scheme}://{rest}")
        }
        None => url.to_owned(),
    }
}
