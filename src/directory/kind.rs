//! The directory seam: what one kind of directory (LDAP, a static map, SQL,
//! an auth_http server) provides, and the one place kinds are registered.
//!
//! A kind is a folder under `directory/` plus one line in [`KINDS`]. Its
//! folder owns its `[directory]` keys (read from the configuration text by
//! [`Setup::read`], so errors keep their lines), their validation, its
//! errors' wording and how a worker's [`Directory`] is built. Everything
//! around a lookup — the cache, single flight, stale-if-error, negative
//! entries, holds, route checks, metrics, admin actions — wraps any kind
//! unchanged, and the runtime builds "a directory" through
//! [`KindSettings`] and [`Prepared`] without knowing which.
//!
//! This module must never name a kind outside [`KINDS`], and reads no
//! configuration type: the configuration hands it the file's text.

use super::changes::{Change, FirstContact, WatchStatus};
use super::host_rewrite::HostRewrite;
use super::name_form::KeyFormat;
use super::Directory;
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Every kind of directory, by its `kind = "…"` name.
pub const KINDS: &[KindSpec] = &[
    super::static_map::KIND,
    super::ldap::KIND,
    super::sql::KIND,
    super::http::KIND,
];

/// The kind named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.name == name)
}

/// The names of every kind, for error messages.
pub fn names() -> String {
    KINDS
        .iter()
        .map(|k| format!("\"{}\"", k.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One kind of directory, as registered.
pub struct KindSpec {
    /// Its `kind = "…"` name.
    pub name: &'static str,
    /// Whether routes are cached unless `[directory.cache] enabled = false`
    /// (a network directory: yes; a map in memory: no).
    pub cached_by_default: bool,
    /// Reads and validates the kind's `[directory]` keys.
    pub configure: fn(&mut Setup<'_>) -> Result<Arc<dyn KindSettings>, Problem>,
}

/// What every kind shares, read from the common `[directory]` keys.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// How a typed name becomes the lookup key (`query_key`,
    /// `strip_domain`, `lower_case`, `default_domain`).
    pub name_form: KeyFormat,
    /// Host rewriting (`host_suffix`, `[directory.hosts]`).
    pub hosts: HostRewrite,
}

/// A kind's configuration, validated: what the runtime prepares a
/// directory from (at start, at every reload, and in `check-config`).
pub trait KindSettings: std::fmt::Debug + Send + Sync {
    /// The kind's name.
    fn kind(&self) -> &'static str;

    /// The settings as `Any` (for tests and tools that look inside one kind).
    fn as_any(&self) -> &dyn std::any::Any;

    /// How a typed name becomes this directory's lookup key: the canonical
    /// name invalidations and sessions are matched by.
    fn name_form(&self) -> KeyFormat;

    /// Loads what the directory needs once per process (a map file, a TLS
    /// client config); `tls` builds a client config from a CA file.
    fn prepare(&self, tls: &ClientTls<'_>) -> Result<Arc<dyn Prepared>, Invalid>;
}

/// Builds a rustls client config trusting the CA certificates (PEM) in a
/// file; the runtime supplies it (TLS sits above the directory).
pub type ClientTls<'a> = dyn Fn(&Path) -> Result<Arc<rustls::ClientConfig>, String> + 'a;

/// The client config for `ca_file` (`directory.ca_file`), if one is set.
pub fn ca_tls(
    ca_file: Option<&Path>,
    tls: &ClientTls<'_>,
) -> Result<Option<Arc<rustls::ClientConfig>>, Invalid> {
    ca_file
        .map(tls)
        .transpose()
        .map_err(|e| Invalid::new("directory.ca_file", None, e))
}

/// A directory ready to be built on each worker.
pub trait Prepared: Send + Sync {
    /// A worker's directory (called on the worker's thread); `health` is
    /// set false while its servers cannot be reached (`/readyz`).
    fn worker(&self, health: Arc<AtomicBool>) -> Rc<dyn Directory>;

    /// Ports its routes may name besides the configured back-end ports.
    fn ports(&self) -> Vec<u16> {
        Vec::new()
    }

    /// One line for `check-config` (e.g. "2 static map entries").
    fn summary(&self) -> String;

    /// The change feed, when the kind has one and it is configured on.
    fn watch(&self) -> Option<&dyn Watch> {
        None
    }
}

/// A feed of changes to users' entries (LDAP's content-sync search).
pub trait Watch: Send + Sync {
    /// Starts the feed on a thread of its own; `changes` is called for
    /// every change. The receiver gets the first contact's outcome.
    fn start(
        &self,
        status: Arc<WatchStatus>,
        changes: Box<dyn FnMut(Change) + Send>,
    ) -> std::io::Result<std::sync::mpsc::Receiver<FirstContact>>;

    /// How long to wait for the first contact before starting anyway.
    fn first_contact_within(&self) -> Duration;
}

/// A key whose value a kind cannot use (the configuration locates it).
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The dotted key, e.g. `directory.map`.
    pub key: String,
    /// Where its value is in the configuration text, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong and what to do.
    pub reason: String,
}

impl Invalid {
    /// An error about `key` at `span`.
    pub fn new(key: &str, span: Option<Range<usize>>, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            span,
            reason: reason.into(),
        }
    }
}

/// Why a kind's `[directory]` keys cannot be used.
#[derive(Debug, Clone)]
pub enum Problem {
    /// TOML's own message (with line, column and key).
    Parse(String),
    /// A value that parsed but is not acceptable.
    Invalid(Invalid),
}

impl From<Invalid> for Problem {
    fn from(invalid: Invalid) -> Self {
        Problem::Invalid(invalid)
    }
}

/// What a kind reads its keys from, and what it leaves for the
/// configuration to check and locate.
pub struct Setup<'a> {
    text: &'a str,
    base_dir: &'a Path,
    common: &'a Common,
    located: Vec<(String, Range<usize>)>,
    unread: Vec<String>,
}

/// `[directory]` alone out of a whole configuration file.
#[derive(serde::Deserialize)]
struct Only<T> {
    directory: T,
}

impl<'a> Setup<'a> {
    /// A setup over the configuration file's `text`.
    pub fn new(text: &'a str, base_dir: &'a Path, common: &'a Common) -> Self {
        Self {
            text,
            base_dir,
            common,
            located: Vec::new(),
            unread: Vec::new(),
        }
    }

    /// The kind's keys: `[directory]` deserialized as `T` from the same
    /// text, so a bad value's message names its line. Keys `T` does not
    /// know are remembered ([`Self::unread`]): the configuration refuses
    /// those no one read.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<T, Problem> {
        let (directory, unread) = read_directory(self.text).map_err(Problem::Parse)?;
        self.unread = unread;
        Ok(directory)
    }

    /// Folder holding the configuration file (relative paths start here).
    pub fn base_dir(&self) -> &Path {
        self.base_dir
    }

    /// The keys every kind shares.
    pub fn common(&self) -> &Common {
        self.common
    }

    /// Remembers where `key` is, for errors found when the directory is
    /// prepared (a map file that cannot be read).
    pub fn locate(&mut self, key: &str, span: Option<Range<usize>>) {
        if let Some(span) = span {
            self.located.push((key.to_owned(), span));
        }
    }

    /// The located keys.
    pub fn located(&self) -> &[(String, Range<usize>)] {
        &self.located
    }

    /// `directory.*` keys the kind's schema did not read.
    pub fn unread(&self) -> &[String] {
        &self.unread
    }
}

/// `[directory]` of a whole configuration text deserialized as `T`, and
/// the keys of the table that `T` has no field for (`directory.KEY`).
pub fn read_directory<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), String> {
    let parse = |e: toml::de::Error| e.to_string().trim_end().to_owned();
    let only: Only<T> = toml::from_str(text).map_err(parse)?;
    let keys: Only<std::collections::BTreeMap<String, serde::de::IgnoredAny>> =
        toml::from_str(text).map_err(parse)?;
    let fields = field_names::<T>();
    let unread = keys
        .directory
        .into_keys()
        .filter(|key| !fields.contains(&key.as_str()))
        .map(|key| format!("directory.{key}"))
        .collect();
    Ok((only.directory, unread))
}

/// The field names a derived `Deserialize` struct asks for: a deserializer
/// that only records what `deserialize_struct` is given.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// Reads a secret from a file (one trailing line end dropped): passwords
/// are never written inline in the configuration.
pub fn read_secret_file(
    key: &str,
    file: &toml::Spanned<std::path::PathBuf>,
    base_dir: &Path,
) -> Result<crate::auth::Secret, Invalid> {
    let path = base_dir.join(file.get_ref());
    let text = std::fs::read(&path).map_err(|e| {
        Invalid::new(
            key,
            Some(file.span()),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
    Ok(crate::auth::Secret::new(
        trimmed.strip_suffix(b"\r").unwrap_or(trimmed).to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        url: String,
        #[serde(default)]
        pool_size: usize,
    }

    #[test]
    fn field_names_are_read_off_the_derived_deserializer() {
        assert_eq!(field_names::<Sample>(), ["url", "pool_size"]);
        let text = "[directory]\nurl = \"x\"\nsurprise = 1\n[directory.sub]\na = 1\n";
        let (sample, unread) = read_directory::<Sample>(text).unwrap();
        assert_eq!(sample.url, "x");
        assert_eq!(unread, ["directory.sub", "directory.surprise"]);
    }
}
