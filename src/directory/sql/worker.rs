//! A worker's SQL directory: sends the key to the process's SQL thread and
//! turns the rows into a route (or no user, or an error naming the server).

use super::config::SqlSettings;
use super::pool::{self, Failure, Job};
use super::query::route_of;
use crate::directory::kind::Prepared;
use crate::directory::{Directory, DirectoryError, Lookup, LookupFuture, LookupRequest, Route};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// How errors name this kind.
const KIND_NAME: &str = "SQL";

/// The SQL kind, ready for workers: the SQL thread starts with the first
/// worker's directory and ends when the last one is dropped.
pub struct PreparedSql {
    settings: Arc<SqlSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
    jobs: Mutex<Option<mpsc::WeakSender<Job>>>,
}

impl PreparedSql {
    pub(super) fn new(settings: Arc<SqlSettings>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            settings,
            tls,
            jobs: Mutex::new(None),
        }
    }

    /// The SQL thread's queue, started if no worker holds it.
    fn jobs(&self) -> Option<mpsc::Sender<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = jobs.as_ref().and_then(mpsc::WeakSender::upgrade) {
            return Some(sender);
        }
        match pool::start(self.settings.clone(), self.tls.clone()) {
            Ok(sender) => {
                *jobs = Some(sender.downgrade());
                Some(sender)
            }
            Err(e) => {
                tracing::error!("SQL directory: cannot start its thread: {e}");
                None
            }
        }
    }
}

impl Prepared for PreparedSql {
    fn worker(&self, health: Arc<AtomicBool>) -> Rc<dyn Directory> {
        Rc::new(SqlDirectory {
            settings: self.settings.clone(),
            jobs: self.jobs(),
            health,
        })
    }

    fn ports(&self) -> Vec<u16> {
        self.settings.hosts.ports().collect()
    }

    fn summary(&self) -> String {
        format!(
            "sql ({}), {} server(s)",
            self.settings.dialect.name(),
            self.settings.servers.len()
        )
    }
}

/// One worker's handle on the SQL thread.
pub struct SqlDirectory {
    settings: Arc<SqlSettings>,
    jobs: Option<mpsc::Sender<Job>>,
    health: Arc<AtomicBool>,
}

impl SqlDirectory {
    async fn route(&self, user: &str) -> Result<Option<Route>, DirectoryError> {
        let unreachable = |why: &str| DirectoryError::Query {
            kind: KIND_NAME,
            detail: why.to_owned(),
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| unreachable("no SQL thread"))?;
        let key = self.settings.name_form.key(user);
        let (reply, answer) = oneshot::channel();
        jobs.try_send(Job { key, reply })
            .map_err(|_| unreachable("too many lookups waiting for the database"))?;
        // Each server may take `timeout`; one more for the queue.
        let servers = self.settings.servers.len() as u32;
        let limit = self.settings.timeout * (servers + 1);
        let rows = match tokio::time::timeout(limit, answer).await {
            Err(_) => {
                return Err(DirectoryError::Timeout {
                    kind: KIND_NAME,
                    after: limit,
                })
            }
            Ok(Err(_)) => return Err(unreachable("the SQL thread ended")),
            Ok(Ok(Err(failure))) => {
                let error = match failure {
                    Failure::BackingOff(wait) => DirectoryError::BackingOff {
                        kind: KIND_NAME,
                        wait,
                    },
                    Failure::Unreachable(failures) => DirectoryError::Unreachable {
                        kind: KIND_NAME,
                        failures,
                    },
                    Failure::Query(detail) => DirectoryError::Query {
                        kind: KIND_NAME,
                        detail,
                    },
                };
                if !matches!(error, DirectoryError::Query { .. }) {
                    self.health.store(false, Ordering::Relaxed);
                }
                return Err(error);
            }
            Ok(Ok(Ok(rows))) => rows,
        };
        self.health.store(true, Ordering::Relaxed);
        let bad = |detail: String| DirectoryError::BadEntry {
            kind: KIND_NAME,
            user: user.to_owned(),
            detail,
        };
        match rows.as_slice() {
            [] => Ok(None),
            [row] => route_of(row)
                .map(|route| Some(self.settings.hosts.apply(route)))
                .map_err(bad),
            more => Err(bad(format!("{} rows (one expected)", more.len()))),
        }
    }
}

impl Directory for SqlDirectory {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        Box::pin(async move { self.route(request.user).await.map(Lookup::direct) })
    }
}
