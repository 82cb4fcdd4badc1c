//! `kind = "ldap"`: the LDAP keys of `[directory]`, their validation into
//! [`LdapSettings`], and how a worker's [`LdapDirectory`] and the watch are
//! built from them.

use super::query::{self, QuerySpec, Scope};
use super::{Ambiguity, LdapDirectory, LdapSettings};
use crate::directory::changes::{Change, FirstContact, WatchStatus};
use crate::directory::kind::{
    ca_tls, read_secret_file, ClientTls, Invalid, KindSettings, KindSpec, Prepared, Problem, Setup,
    Watch,
};
use crate::directory::name_form::KeyFormat;
use crate::directory::Directory;
use serde::Deserialize;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The registration of `kind = "ldap"`.
pub const KIND: KindSpec = KindSpec {
    name: "ldap",
    cached_by_default: true,
    configure,
};

/// LDAP's keys of `[directory]` (the keys every kind shares are read by
/// the configuration).
#[derive(Debug, Deserialize)]
struct LdapConfig {
    /// Perdition-compatible RFC 4516 URL.
    url: Option<toml::Spanned<String>>,
    /// Servers in failover order (overrides the URL's).
    servers: Option<Vec<String>>,
    /// Search base (overrides the URL's).
    base: Option<String>,
    /// `base`, `one` or `sub` (overrides the URL's).
    scope: Option<toml::Spanned<String>>,
    /// Filter with `%s` for the key (overrides the URL's).
    filter: Option<toml::Spanned<String>>,
    /// Attribute naming the back-end login (overrides the URL's first).
    user_attribute: Option<String>,
    /// Attribute naming the back-end host (overrides the URL's second).
    host_attribute: Option<String>,
    /// Attribute naming the back-end port (overrides the URL's third).
    port_attribute: Option<String>,
    /// Simple bind DN (anonymous without).
    bind_dn: Option<String>,
    /// File holding the bind password (never inline).
    bind_password_file: Option<toml::Spanned<PathBuf>>,
    /// StartTLS on `ldap://` servers.
    #[serde(default)]
    starttls: bool,
    /// CA certificates (PEM) for `ldaps://` and StartTLS.
    ca_file: Option<toml::Spanned<PathBuf>>,
    /// Bound on connect, bind and each search.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    /// Connections per worker.
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    /// What several entries (or host values) for one user mean.
    #[serde(default)]
    ambiguous: Ambiguity,
    /// Keep a content-sync search open (RFC 4533) and apply every change.
    #[serde(default)]
    watch: bool,
    /// Users this filter finds get a temporary failure (mailbox moving).
    hold_filter: Option<toml::Spanned<String>>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_pool_size() -> usize {
    1
}

fn configure(setup: &mut Setup<'_>) -> Result<Arc<dyn KindSettings>, Problem> {
    let d: LdapConfig = setup.read()?;
    if d.pool_size == 0 {
        return Err(Invalid::new("directory.pool_size", None, "must be greater than 0").into());
    }
    setup.locate("directory.ca_file", d.ca_file.as_ref().map(|f| f.span()));
    let bind_password = d
        .bind_password_file
        .as_ref()
        .map(|file| read_secret_file("directory.bind_password_file", file, setup.base_dir()))
        .transpose()?;
    if d.bind_dn.is_some() != bind_password.is_some() {
        return Err(Invalid::new(
            "directory.bind_dn",
            None,
            "bind_dn and bind_password_file go together",
        )
        .into());
    }
    let query = query_spec(&d)?;
    let common = setup.common();
    Ok(Arc::new(LdapKind(Arc::new(LdapSettings {
        hold_filter: hold_filter(&d, &query)?,
        query,
        key: common.name_form.clone(),
        hosts: common.hosts.clone(),
        bind_dn: d.bind_dn.clone(),
        bind_password,
        starttls: d.starttls,
        ca_file: d
            .ca_file
            .as_ref()
            .map(|f| setup.base_dir().join(f.get_ref())),
        timeout: d.timeout,
        pool_size: d.pool_size,
        ambiguous: d.ambiguous,
        watch: d.watch,
    }))))
}

/// The hold filter as a template with `%s`: a filter without one is ANDed
/// with `(attribute=%s)`, the attribute being the one the main filter
/// compares with the login (else the user attribute).
fn hold_filter(d: &LdapConfig, query: &QuerySpec) -> Result<Option<String>, Invalid> {
    let Some(hold) = &d.hold_filter else {
        return Ok(None);
    };
    let text = hold.get_ref().trim();
    if text.contains("%s") {
        return Ok(Some(text.to_owned()));
    }
    match query
        .key_attribute()
        .or_else(|| query.user_attribute.clone())
    {
        Some(attribute) => Ok(Some(format!("(&({attribute}=%s){text})"))),
        None => Err(Invalid::new(
            "directory.hold_filter",
            Some(hold.span()),
            "a filter without %s needs an attribute to search by (the one the filter \
             compares with %s, or the URL's first attribute); or write the whole filter with %s",
        )),
    }
}

/// The Perdition-style URL with the explicit keys laid over it.
fn query_spec(d: &LdapConfig) -> Result<QuerySpec, Invalid> {
    let mut spec = match (&d.url, &d.servers) {
        (Some(url), _) => query::parse_url(url.get_ref())
            .map_err(|e| Invalid::new("directory.url", Some(url.span()), e))?,
        (None, Some(_)) => query::parse_url("ldap://placeholder/").expect("a valid URL"),
        (None, None) => {
            return Err(Invalid::new(
                "directory.url",
                None,
                "kind = \"ldap\" needs `url = \"ldap://host/base?user,host?sub?(filter=%s)\"` or `servers`",
            ))
        }
    };
    if let Some(servers) = &d.servers {
        if servers.is_empty()
            || servers
                .iter()
                .any(|s| !s.starts_with("ldap://") && !s.starts_with("ldaps://"))
        {
            return Err(Invalid::new(
                "directory.servers",
                None,
                "a list of ldap:// or ldaps:// URLs",
            ));
        }
        spec.servers = servers.clone();
    }
    if let Some(base) = &d.base {
        spec.base = base.clone();
    }
    if let Some(scope) = &d.scope {
        spec.scope = Scope::parse(scope.get_ref()).ok_or_else(|| {
            Invalid::new(
                "directory.scope",
                Some(scope.span()),
                "one of base, one, sub",
            )
        })?;
    }
    if let Some(filter) = &d.filter {
        spec.filter = filter.get_ref().clone();
    }
    if !spec.filter.contains("%s") {
        let span = d.filter.as_ref().or(d.url.as_ref()).map(|s| s.span());
        return Err(Invalid::new(
            "directory.filter",
            span,
            format!("`{}` has no %s for the user", spec.filter),
        ));
    }
    if let Some(a) = &d.user_attribute {
        spec.user_attribute = Some(a.clone());
    }
    if let Some(a) = &d.host_attribute {
        spec.host_attribute = a.clone();
    }
    if let Some(a) = &d.port_attribute {
        spec.port_attribute = Some(a.clone());
    }
    Ok(spec)
}

/// A validated LDAP configuration.
#[derive(Debug)]
pub struct LdapKind(pub Arc<LdapSettings>);

impl KindSettings for LdapKind {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name_form(&self) -> KeyFormat {
        self.0.key.clone()
    }

    fn prepare(&self, tls: &ClientTls<'_>) -> Result<Arc<dyn Prepared>, Invalid> {
        let tls = ca_tls(self.0.ca_file.as_deref(), tls)?;
        Ok(Arc::new(PreparedLdap {
            settings: self.0.clone(),
            tls,
        }))
    }
}

struct PreparedLdap {
    settings: Arc<LdapSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Prepared for PreparedLdap {
    fn worker(&self, health: Arc<AtomicBool>) -> Rc<dyn Directory> {
        Rc::new(LdapDirectory::new(self.settings.clone(), self.tls.clone()).with_health(health))
    }

    fn ports(&self) -> Vec<u16> {
        self.settings.hosts.ports().collect()
    }

    fn summary(&self) -> String {
        format!("ldap, {} server(s)", self.settings.query.servers.len())
    }

    fn watch(&self) -> Option<&dyn Watch> {
        self.settings.watch.then_some(self as &dyn Watch)
    }
}

impl Watch for PreparedLdap {
    fn start(
        &self,
        status: Arc<WatchStatus>,
        changes: Box<dyn FnMut(Change) + Send>,
    ) -> std::io::Result<std::sync::mpsc::Receiver<FirstContact>> {
        super::watch::spawn(self.settings.clone(), self.tls.clone(), status, changes)
    }

    fn first_contact_within(&self) -> Duration {
        self.settings.timeout * 3 + Duration::from_secs(1)
    }
}
