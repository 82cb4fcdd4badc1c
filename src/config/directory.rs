//! Validating `[directory]` into directory settings and the cache's.

use super::load::Locator;
use super::{ConfigError, DirectoryConfig, DirectoryKind, DirectorySettings};
use crate::auth::Secret;
use crate::directory::ldap::query::{self, KeyFormat, QuerySpec, Scope};
use crate::directory::ldap::LdapSettings;
use crate::directory::{CacheSettings, HostRewrite};
use std::path::Path;
use std::sync::Arc;

/// The directory settings and, when caching is on, the cache's.
pub(super) fn build(
    d: &DirectoryConfig,
    at: &mut Locator,
    base_dir: &Path,
) -> Result<(DirectorySettings, Option<CacheSettings>), ConfigError> {
    let settings = match d.kind.get_ref() {
        DirectoryKind::Static if d.watch || d.hold_filter.is_some() => {
            return Err(at.invalid(
                Some(d.kind.span()),
                "directory.watch",
                "watch and hold_filter need kind = \"ldap\"".into(),
            ))
        }
        DirectoryKind::Static => {
            let Some(map) = &d.map else {
                return Err(at.invalid(
                    Some(d.kind.span()),
                    "directory.map",
                    "kind = \"static\" needs `map = \"FILE\"`".into(),
                ));
            };
            at.locate("directory.map", Some(map.span()));
            DirectorySettings::Static {
                map: base_dir.join(map.get_ref()),
                local_part_case_sensitive: d.local_part_case_sensitive,
            }
        }
        DirectoryKind::Ldap => {
            at.locate("directory.ca_file", d.ca_file.as_ref().map(|f| f.span()));
            DirectorySettings::Ldap(Arc::new(ldap(d, at, base_dir)?))
        }
    };
    let is_ldap = matches!(settings, DirectorySettings::Ldap(_));
    let cache_on = d.cache.as_ref().map_or(is_ldap, |c| c.enabled);
    let cache = cache_on.then(|| {
        let c = d.cache.clone().unwrap_or_default();
        CacheSettings {
            capacity: c.capacity,
            max_bytes: c.max_bytes,
            ttl: c.ttl,
            negative_ttl: c.negative_ttl,
            max_stale: c.max_stale,
        }
    });
    Ok((settings, cache))
}

fn ldap(d: &DirectoryConfig, at: &Locator, base_dir: &Path) -> Result<LdapSettings, ConfigError> {
    let bind_password = bind_password(d, at, base_dir)?;
    if d.bind_dn.is_some() != bind_password.is_some() {
        return Err(at.invalid(
            None,
            "directory.bind_dn",
            "bind_dn and bind_password_file go together".into(),
        ));
    }
    let hosts = HostRewrite::new(&d.hosts, d.host_suffix.clone())
        .map_err(|e| at.invalid(None, "directory.hosts", e))?;
    let query = query_spec(d, at)?;
    Ok(LdapSettings {
        hold_filter: hold_filter(d, &query, at)?,
        query,
        key: KeyFormat {
            template: d.query_key.clone(),
            strip_domain: d.strip_domain,
            lower_case: d.lower_case,
            default_domain: d.default_domain.clone(),
        },
        hosts,
        bind_dn: d.bind_dn.clone(),
        bind_password,
        starttls: d.starttls,
        ca_file: d.ca_file.as_ref().map(|f| base_dir.join(f.get_ref())),
        timeout: d.timeout,
        pool_size: d.pool_size,
        ambiguous: d.ambiguous,
        watch: d.watch,
    })
}

/// The hold filter as a template with `%s`: a filter without one is ANDed
/// with `(attribute=%s)`, the attribute being the one the main filter
/// compares with the login (else the user attribute).
fn hold_filter(
    d: &DirectoryConfig,
    query: &QuerySpec,
    at: &Locator,
) -> Result<Option<String>, ConfigError> {
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
        None => Err(at.invalid(
            Some(hold.span()),
            "directory.hold_filter",
            "a filter without %s needs an attribute to search by (the one the filter \
             compares with %s, or the URL's first attribute); or write the whole filter with %s"
                .into(),
        )),
    }
}

/// The Perdition-style URL with the explicit keys laid over it.
fn query_spec(d: &DirectoryConfig, at: &Locator) -> Result<QuerySpec, ConfigError> {
    let mut spec = match (&d.url, &d.servers) {
        (Some(url), _) => query::parse_url(url.get_ref())
            .map_err(|e| at.invalid(Some(url.span()), "directory.url", e))?,
        (None, Some(_)) => query::parse_url("ldap://placeholder/")
            .expect("a valid URL"),
        (None, None) => {
            return Err(at.invalid(
                Some(d.kind.span()),
                "directory.url",
                "kind = \"ldap\" needs `url = \"ldap://host/base?user,host?sub?(filter=%s)\"` or `servers`".into(),
            ))
        }
    };
    if let Some(servers) = &d.servers {
        if servers.is_empty()
            || servers
                .iter()
                .any(|s| !s.starts_with("ldap://") && !s.starts_with("ldaps://"))
        {
            return Err(at.invalid(
                None,
                "directory.servers",
                "a list of ldap:// or ldaps:// URLs".into(),
            ));
        }
        spec.servers = servers.clone();
    }
    if let Some(base) = &d.base {
        spec.base = base.clone();
    }
    if let Some(scope) = &d.scope {
        spec.scope = Scope::parse(scope.get_ref()).ok_or_else(|| {
            at.invalid(
                Some(scope.span()),
                "directory.scope",
                "one of base, one, sub".into(),
            )
        })?;
    }
    if let Some(filter) = &d.filter {
        spec.filter = filter.get_ref().clone();
    }
    if !spec.filter.contains("%s") {
        let span = d.filter.as_ref().or(d.url.as_ref()).map(|s| s.span());
        return Err(at.invalid(
            span,
            "directory.filter",
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

/// The bind password from its file (one trailing line end dropped).
fn bind_password(
    d: &DirectoryConfig,
    at: &Locator,
    base_dir: &Path,
) -> Result<Option<Secret>, ConfigError> {
    let Some(file) = &d.bind_password_file else {
        return Ok(None);
    };
    let path = base_dir.join(file.get_ref());
    let text = std::fs::read(&path).map_err(|e| {
        at.invalid(
            Some(file.span()),
            "directory.bind_password_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
    Ok(Some(Secret::new(
        trimmed.strip_suffix(b"\r").unwrap_or(trimmed).to_vec(),
    )))
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use super::*;
    use std::path::Path;

    fn parse(directory: &str) -> Result<super::super::Loaded, super::super::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bind.pw"), "s3cret\n").unwrap();
        let text = format!("[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n\n[directory]\n{directory}");
        parse_str(&text, Path::new("t.toml"), dir.path())
    }

    const URL: &str = "url = \"ldap://127.0.0.1/ou=People,dc=infra,dc=org,o=Anarchy?mail,host?sub?(&(mail=%s)(status=active))\"\n";

    fn ldap_of(loaded: &super::super::Loaded) -> &LdapSettings {
        match &loaded.directory {
            DirectorySettings::Ldap(ldap) => ldap,
            other => panic!("not LDAP: {other:?}"),
        }
    }

    #[test]
    fn ldap_with_perdition_url_and_cache_by_default() {
        let loaded = parse(&format!("kind = \"ldap\"\n{URL}")).unwrap();
        let ldap = ldap_of(&loaded);
        assert_eq!(ldap.query.servers, vec!["ldap://127.0.0.1"]);
        assert_eq!(loaded.cache.as_ref().unwrap().ttl.as_secs(), 60);
    }

    #[test]
    fn explicit_keys_override_the_url() {
        let loaded = parse(&format!(
            "kind = \"ldap\"\n{URL}servers = [\"ldap://a:1\", \"ldap://b:2\"]\nfilter = \"(uid=%s)\"\nhost_attribute = \"mailHost\"\nbind_dn = \"cn=proxy\"\nbind_password_file = \"bind.pw\"\n[directory.hosts]\nbox1 = \"10.8.0.1\"\n[directory.cache]\nttl = \"5s\"\n"
        ))
        .unwrap();
        let ldap = ldap_of(&loaded);
        assert_eq!(ldap.query.servers.len(), 2);
        assert_eq!(ldap.query.filter, "(uid=%s)");
        assert_eq!(ldap.query.host_attribute, "mailHost");
        assert_eq!(ldap.bind_password.as_ref().unwrap().expose(), b"s3cret");
        assert_eq!(loaded.cache.as_ref().unwrap().ttl.as_secs(), 5);
    }

    #[test]
    fn filter_without_placeholder_points_at_its_line() {
        let err = parse(&format!("kind = \"ldap\"\n{URL}filter = \"(uid=x)\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:8: `directory.filter`"), "{err}");
    }

    #[test]
    fn bad_url_and_missing_password_file_point_at_their_lines() {
        let err = parse("kind = \"ldap\"\nurl = \"http://x/\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:7: `directory.url`"), "{err}");
        let err = parse(&format!(
            "kind = \"ldap\"\n{URL}bind_dn = \"cn=x\"\nbind_password_file = \"nope\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("t.toml:9: `directory.bind_password_file`"),
            "{err}"
        );
    }

    #[test]
    fn a_hold_filter_without_placeholder_searches_by_the_login_attribute() {
        let loaded = parse(&format!(
            "kind = \"ldap\"\n{URL}hold_filter = \"(status=moving)\"\n"
        ))
        .unwrap();
        assert_eq!(
            ldap_of(&loaded).hold_filter.as_deref(),
            Some("(&(mail=%s)(status=moving))")
        );
        let loaded = parse(&format!(
            "kind = \"ldap\"\n{URL}hold_filter = \"(&(uid=%s)(st=m))\"\n"
        ))
        .unwrap();
        assert_eq!(
            ldap_of(&loaded).hold_filter.as_deref(),
            Some("(&(uid=%s)(st=m))")
        );
        let err = parse("kind = \"static\"\nmap = \"m\"\nwatch = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory.watch"), "{err}");
    }

    #[test]
    fn static_map_cache_is_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m"), "* 1.2.3.4\n").unwrap();
        let text = "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n[directory]\nkind = \"static\"\nmap = \"m\"\n";
        assert!(parse_str(text, Path::new("t"), dir.path())
            .unwrap()
            .cache
            .is_none());
        let text = format!("{text}[directory.cache]\nenabled = true\n");
        assert!(parse_str(&text, Path::new("t"), dir.path())
            .unwrap()
            .cache
            .is_some());
    }
}
