//! The directory watch: one content-synchronization search (RFC 4533,
//! refreshAndPersist; OpenLDAP's `syncprov` overlay) kept open on the
//! directory's base, reporting every add, modify and delete of a user's
//! entry as a [`Change`], so routes cached for `ttl` and sessions on a box a
//! mailbox left can follow the move at once.
//!
//! It runs on a thread of its own with its own tokio runtime, connects
//! through the same server list (failover order, backoff) and bind as
//! lookups, and resumes with its cookie after a server restart. While it is
//! down, [`WatchStatus::up`] is false and caches fall back to their `ttl`.
//! Every value the server sends is checked before it is used: the
//! content-sync controls are parsed under `catch_unwind` (the LDAP client
//! library panics on malformed ones), a malformed one ends the connection.

use super::entry::route_from;
use super::{connect, query, LdapSettings};
use crate::directory::changes::{Change, FirstContact, WatchStatus};
use ldap3::controls::{
    parse_syncinfo, Control, ControlType, EntryState, MakeCritical, RefreshMode, SyncInfo,
    SyncRequest, SyncState,
};
use ldap3::{Ldap, LdapError, ResultEntry, SearchEntry};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// First pause after every server failed; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause after the server refused the watch (no content sync, a limit cut
/// the search): the fix is the operator's, and retrying at once would only
/// load the server (OpenLDAP 2.5's syncprov has been seen to crash on
/// changes after many persistent searches cut by its size limit).
const REFUSED_BACKOFF: Duration = Duration::from_secs(60);
/// The LDAP result code for a critical control the server does not know.
const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;
/// Result codes of a search cut short by a server limit: time, size, admin.
const TIME_LIMIT_EXCEEDED: u32 = 3;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const ADMIN_LIMIT_EXCEEDED: u32 = 11;
/// e-syncRefreshRequired (RFC 4533 §2.6): the cookie is no good here (too
/// old, or from another replica); start over without it.
const SYNC_REFRESH_REQUIRED: u32 = 4096;

/// Why one watch connection ended.
enum Ended {
    /// The server will not serve the watch until its operator acts.
    Refused(String),
    /// The server no longer knows our cookie: reconnect without it.
    RefreshRequired,
    Failed(String),
}

/// Starts the watch on a thread of its own; `changes` is called for every
/// change (from that thread). The receiver gets the first contact's outcome.
pub fn spawn(
    settings: Arc<LdapSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
    status: Arc<WatchStatus>,
    changes: impl FnMut(Change) + Send + 'static,
) -> std::io::Result<std::sync::mpsc::Receiver<FirstContact>> {
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mailgate-watch".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = first_tx.send(FirstContact::Unreachable(e.to_string()));
                    return;
                }
            };
            let mut watch = Watch {
                settings,
                tls,
                status,
                changes: Box::new(changes),
                cookie: None,
                identities: HashMap::new(),
                first: Some(first_tx),
            };
            runtime.block_on(watch.run());
        })?;
    Ok(first_rx)
}

struct Watch {
    settings: Arc<LdapSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
    status: Arc<WatchStatus>,
    changes: Box<dyn FnMut(Change) + Send>,
    /// The server's position in its change history, to resume from.
    cookie: Option<Vec<u8>>,
    /// entryUUID → identity: a delete names only the entry's UUID.
    identities: HashMap<Vec<u8>, String>,
    first: Option<std::sync::mpsc::Sender<FirstContact>>,
}

impl Watch {
    async fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut was_up = false;
        loop {
            let mut failures = Vec::new();
            let mut refused = false;
            for server in self.settings.query.servers.clone() {
                match self.session(&server).await {
                    Ok(()) => {}
                    Err(Ended::Refused(why)) => {
                        self.report_first(FirstContact::Refused(why.clone()));
                        tracing::error!(server, "directory watch refused: {why}");
                        failures.push(why);
                        refused = true;
                    }
                    Err(Ended::RefreshRequired) => {
                        self.cookie = None;
                        failures.push(format!("{server}: asked for a full refresh"));
                    }
                    Err(Ended::Failed(why)) => failures.push(format!("{server}: {why}")),
                }
                if self.status.up.swap(false, Ordering::AcqRel) {
                    was_up = true;
                    tracing::warn!(
                        "directory watch down ({}); cached routes live for their ttl until it is back",
                        failures.last().map_or("", String::as_str)
                    );
                    backoff = FIRST_BACKOFF;
                }
            }
            if !was_up {
                self.report_first(FirstContact::Unreachable(failures.join("; ")));
            }
            if refused {
                backoff = backoff.max(REFUSED_BACKOFF);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn report_first(&mut self, contact: FirstContact) {
        if let Some(first) = self.first.take() {
            let _ = first.send(contact);
        }
    }

    /// One connection: the search, then changes until it ends.
    async fn session(&mut self, server: &str) -> Result<(), Ended> {
        let mut ldap = connect(&self.settings, self.tls.as_ref(), server)
            .await
            .map_err(Ended::Failed)?;
        let result = self.follow(&mut ldap).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn follow(&mut self, ldap: &mut Ldap) -> Result<(), Ended> {
        let settings = self.settings.clone();
        let q = &settings.query;
        let filter = q.filter.replace("%s", "*");
        let mut attributes = q.attributes();
        attributes.extend(q.key_attribute());
        let request = SyncRequest {
            mode: RefreshMode::RefreshAndPersist,
            cookie: self.cookie.clone(),
            reload_hint: false,
        }
        .critical();
        let scope = match q.scope {
            query::Scope::Base => ldap3::Scope::Base,
            query::Scope::One => ldap3::Scope::OneLevel,
            query::Scope::Sub => ldap3::Scope::Subtree,
        };
        let mut stream = ldap
            .with_controls(request)
            .streaming_search(&q.base, scope, &filter, attributes)
            .await
            .map_err(refusal)?;
        let mut answered = false;
        loop {
            match stream.next().await {
                Ok(Some(entry)) => {
                    if !answered {
                        // The server took the search (a refusal is a bare
                        // result with no message before it): anything
                        // missed while down is forgotten. Start-up waits
                        // for the end of the refresh, where a server limit
                        // would have cut it.
                        answered = true;
                        self.status.up.store(true, Ordering::Release);
                        tracing::info!(base = %q.base, filter, "directory watch up");
                        self.emit(Change::Resync);
                    }
                    self.on_entry(entry)?
                }
                Ok(None) => {
                    let result = stream.finish().await;
                    if let Some(why) = refused(result.rc, &result.text) {
                        return Err(Ended::Refused(why));
                    }
                    if result.rc == SYNC_REFRESH_REQUIRED {
                        return Err(Ended::RefreshRequired);
                    }
                    return Err(Ended::Failed(format!(
                        "the server ended the content-sync search ({}: {})",
                        result.rc, result.text
                    )));
                }
                Err(e) => return Err(refusal(e)),
            }
        }
    }

    fn emit(&mut self, change: Change) {
        self.status.changes.fetch_add(1, Ordering::Relaxed);
        (self.changes)(change);
    }

    fn on_entry(&mut self, entry: ResultEntry) -> Result<(), Ended> {
        if entry.is_intermediate() {
            let info = catch_unwind(AssertUnwindSafe(|| parse_syncinfo(entry)))
                .map_err(|_| Ended::Failed("malformed sync info message".into()))?;
            return self.on_info(info);
        }
        if entry.is_ref() {
            return Ok(());
        }
        let state = sync_state(&entry.1)?;
        if let Some(cookie) = &state.cookie {
            self.cookie = Some(cookie.clone());
        }
        match state.state {
            EntryState::Add | EntryState::Modify => {
                let entry = SearchEntry::construct(entry);
                self.on_present_entry(state.entry_uuid, entry);
            }
            EntryState::Delete => self.on_gone(&state.entry_uuid),
            EntryState::Present => {}
        }
        Ok(())
    }

    fn on_present_entry(&mut self, uuid: Vec<u8>, entry: SearchEntry) {
        let dn = entry.dn.clone();
        let identity = identity_of(&self.settings, &entry).to_lowercase();
        match route_from(&self.settings, &identity, vec![entry]) {
            Ok(Some(route)) => {
                self.identities.insert(uuid, identity.clone());
                self.emit(Change::Route { identity, route });
            }
            Ok(None) => {}
            // An entry that cannot be used: what lookups will say too; the
            // user's cached route must go.
            Err(e) => {
                tracing::warn!(dn, "directory watch: {e}");
                self.identities.insert(uuid, identity.clone());
                self.emit(Change::Gone { identity });
            }
        }
    }

    fn on_gone(&mut self, uuid: &[u8]) {
        if let Some(identity) = self.identities.remove(uuid) {
            self.emit(Change::Gone { identity });
        }
    }

    fn on_info(&mut self, info: SyncInfo) -> Result<(), Ended> {
        match info {
            SyncInfo::NewCookie(cookie) => self.cookie = Some(cookie),
            SyncInfo::RefreshDelete {
                cookie,
                refresh_done,
            }
            | SyncInfo::RefreshPresent {
                cookie,
                refresh_done,
            } => {
                if let Some(cookie) = cookie {
                    self.cookie = Some(cookie);
                }
                if refresh_done {
                    self.report_first(FirstContact::Up);
                }
            }
            SyncInfo::SyncIdSet {
                cookie,
                refresh_deletes,
                sync_uuids,
            } => {
                if let Some(cookie) = cookie {
                    self.cookie = Some(cookie);
                }
                if refresh_deletes {
                    for uuid in sync_uuids {
                        self.on_gone(&uuid);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The user an entry stands for, as caches and sessions know them: the
/// value of the attribute the filter compares with the login (what users
/// type), else the back-end login name, else the DN (which matches nothing:
/// the change then waits for the cache's `ttl`).
fn identity_of(settings: &LdapSettings, entry: &SearchEntry) -> String {
    let q = &settings.query;
    [q.key_attribute(), q.user_attribute.clone()]
        .into_iter()
        .flatten()
        .find_map(|name| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                .and_then(|(_, v)| v.first().cloned())
        })
        .unwrap_or_else(|| entry.dn.clone())
}

/// The Sync State control of an entry, checked.
fn sync_state(controls: &[Control]) -> Result<SyncState, Ended> {
    let raw = controls
        .iter()
        .find(|c| matches!(c.0, Some(ControlType::SyncState)))
        .map(|c| c.1.clone())
        .ok_or_else(|| Ended::Failed("an entry without its sync state".into()))?;
    if raw.val.is_none() {
        return Err(Ended::Failed("a sync state without a value".into()));
    }
    catch_unwind(AssertUnwindSafe(|| raw.parse::<SyncState>()))
        .map_err(|_| Ended::Failed("malformed sync state control".into()))
}

/// An LDAP error as a reason to end (or refuse) the watch.
fn refusal(e: LdapError) -> Ended {
    match &e {
        LdapError::LdapResult { result } if result.rc == SYNC_REFRESH_REQUIRED => {
            Ended::RefreshRequired
        }
        LdapError::LdapResult { result } => match refused(result.rc, &result.text) {
            Some(why) => Ended::Refused(why),
            None => Ended::Failed(e.to_string()),
        },
        _ => Ended::Failed(e.to_string()),
    }
}

/// What to tell the operator when result `rc` means the server will not
/// serve the watch as configured.
fn refused(rc: u32, server_text: &str) -> Option<String> {
    match rc {
        UNAVAILABLE_CRITICAL_EXTENSION => Some(format!(
            "the LDAP server does not offer content synchronization (RFC 4533; {server_text}): \
             load OpenLDAP's syncprov overlay (`moduleload syncprov`, then `overlay syncprov` \
             after the database, with `index entryCSN,entryUUID eq`) or set [directory] watch = false"
        )),
        TIME_LIMIT_EXCEEDED | SIZE_LIMIT_EXCEEDED | ADMIN_LIMIT_EXCEEDED => Some(format!(
            "a server limit cut the watch's search (result {rc}: {server_text}); the watch \
             reads every user entry once: lift the size and time limits for mailgate's bind \
             DN (OpenLDAP: `limits dn.exact=\"BIND-DN\" size=unlimited time=unlimited`, or \
             `limits anonymous …` without bind_dn) or set [directory] watch = false"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ldap::entry::Ambiguity;
    use crate::directory::ldap::query::parse_url;
    use crate::directory::name_form::KeyFormat;
    use crate::directory::HostRewrite;
    use std::sync::Mutex;

    fn watch(url: &str) -> (Watch, Arc<Mutex<Vec<Change>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let settings = LdapSettings {
            query: parse_url(url).unwrap(),
            key: KeyFormat::default(),
            hosts: HostRewrite::default(),
            bind_dn: None,
            bind_password: None,
            starttls: false,
            ca_file: None,
            timeout: Duration::from_secs(1),
            pool_size: 1,
            ambiguous: Ambiguity::Error,
            hold_filter: None,
            watch: true,
        };
        let watch = Watch {
            settings: Arc::new(settings),
            tls: None,
            status: Arc::default(),
            changes: Box::new(move |c| sink.lock().unwrap().push(c)),
            cookie: None,
            identities: HashMap::new(),
            first: None,
        };
        (watch, seen)
    }

    fn entry(attrs: &[(&str, &str)]) -> SearchEntry {
        SearchEntry {
            dn: "uid=a,dc=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn an_entry_is_named_by_the_attribute_the_filter_compares_with_the_login() {
        // The URL's user attribute is `uid` (the back-end login), but users
        // log in with `mail`: caches and sessions know them by that.
        let (mut w, seen) = watch("ldap://x/dc=x?uid,host?sub?(&(mail=%s)(status=active))");
        w.on_present_entry(
            b"u1".to_vec(),
            entry(&[
                ("mail", "Alice@X.org"),
                ("uid", "alice"),
                ("host", "10.0.0.2"),
            ]),
        );
        w.on_gone(b"u1");
        w.on_gone(b"never seen");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        match &seen[0] {
            Change::Route { identity, route } => {
                assert_eq!(identity, "alice@x.org");
                assert_eq!(route.host, "10.0.0.2");
                assert_eq!(route.login_user.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            seen[1],
            Change::Gone {
                identity: "alice@x.org".into()
            }
        );
    }

    #[test]
    fn an_unusable_entry_takes_the_users_route_away() {
        let (mut w, seen) = watch("ldap://x/dc=x?mail,host?sub?(mail=%s)");
        w.on_present_entry(b"u1".to_vec(), entry(&[("mail", "bob@x.org")]));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Change::Gone {
                identity: "bob@x.org".into()
            }]
        );
    }

    #[test]
    fn a_sync_id_set_of_deletes_names_entries_gone() {
        let (mut w, seen) = watch("ldap://x/dc=x?mail,host?sub?(mail=%s)");
        w.on_present_entry(
            b"u1".to_vec(),
            entry(&[("mail", "c@x.org"), ("host", "box1")]),
        );
        w.on_info(SyncInfo::SyncIdSet {
            cookie: Some(b"c1".to_vec()),
            refresh_deletes: true,
            sync_uuids: [b"u1".to_vec()].into_iter().collect(),
        })
        .unwrap_or_else(|_| panic!("accepted"));
        assert_eq!(w.cookie.as_deref(), Some(&b"c1"[..]));
        assert_eq!(
            seen.lock().unwrap().last(),
            Some(&Change::Gone {
                identity: "c@x.org".into()
            })
        );
    }

    #[test]
    fn a_sync_state_without_a_value_ends_the_connection_without_a_panic() {
        let control = Control(
            Some(ControlType::SyncState),
            ldap3::controls::RawControl {
                ctype: "1.3.6.1.4.1.4203.1.9.1.2".into(),
                crit: false,
                val: None,
            },
        );
        assert!(matches!(sync_state(&[control]), Err(Ended::Failed(_))));
        let garbage = Control(
            Some(ControlType::SyncState),
            ldap3::controls::RawControl {
                ctype: "1.3.6.1.4.1.4203.1.9.1.2".into(),
                crit: false,
                val: Some(vec![0x30, 0x03, 0xff, 0xff]),
            },
        );
        assert!(matches!(sync_state(&[garbage]), Err(Ended::Failed(_))));
        assert!(matches!(sync_state(&[]), Err(Ended::Failed(_))));
    }
}
