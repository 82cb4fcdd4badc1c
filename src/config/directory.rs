//! Validating `[directory]`: the keys every kind shares here, the kind's
//! own keys by the kind (`directory::kind`), and the cache's settings.

use super::load::Locator;
use super::{ConfigError, DirectoryConfig};
use crate::directory::kind::{self, Common, KindSettings, Problem, Setup};
use crate::directory::name_form::KeyFormat;
use crate::directory::{CacheSettings, HostRewrite};
use std::path::Path;
use std::sync::Arc;

/// The kind's validated settings and, when caching is on, the cache's;
/// `text` is the whole file (each kind reads its keys from it).
pub(super) fn build(
    d: &DirectoryConfig,
    text: &str,
    at: &mut Locator,
    base_dir: &Path,
) -> Result<(Arc<dyn KindSettings>, Option<CacheSettings>), ConfigError> {
    let Some(spec) = kind::find(d.kind.get_ref()) else {
        return Err(at.invalid(
            Some(d.kind.span()),
            "directory.kind",
            format!(
                "unknown kind \"{}\": one of {}",
                d.kind.get_ref(),
                kind::names()
            ),
        ));
    };
    let common = Common {
        name_form: KeyFormat {
            template: d.query_key.clone(),
            strip_domain: d.strip_domain,
            lower_case: d.lower_case,
            default_domain: d.default_domain.clone(),
        },
        hosts: HostRewrite::new(&d.hosts, d.host_suffix.clone())
            .map_err(|e| at.invalid(None, "directory.hosts", e))?,
    };
    let mut setup = Setup::new(text, base_dir, &common);
    let settings = (spec.configure)(&mut setup).map_err(|problem| match problem {
        Problem::Parse(message) => ConfigError::Parse {
            path: at.path.to_owned(),
            message,
        },
        // A key that is missing, or wrong with another, is shown at `kind`.
        Problem::Invalid(i) => at.invalid(i.span.or(Some(d.kind.span())), &i.key, i.reason),
    })?;
    for (key, span) in setup.located() {
        at.locate(key, Some(span.clone()));
    }
    // A key is unknown when neither the shared schema nor the kind read it.
    let shared = kind::field_names::<DirectoryConfig>();
    let unknown = setup.unread().iter().find(|k| {
        let key = k.strip_prefix("directory.").unwrap_or(k);
        !shared.contains(&key)
    });
    if let Some(unknown) = unknown {
        return Err(at.invalid(
            Some(d.kind.span()),
            unknown,
            format!(
                "unknown key for kind = \"{}\" (see docs/configuration.md, [directory])",
                spec.name
            ),
        ));
    }
    let cache_on = d
        .cache
        .as_ref()
        .map_or(spec.cached_by_default, |c| c.enabled);
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

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use crate::directory::ldap::{LdapKind, LdapSettings};
    use std::path::Path;

    fn parse(directory: &str) -> Result<super::super::Loaded, super::super::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bind.pw"), "s3cret\n").unwrap();
        let text = format!("[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n\n[directory]\n{directory}");
        parse_str(&text, Path::new("t.toml"), dir.path())
    }

    const URL: &str = "url = \"ldap://127.0.0.1/ou=People,dc=infra,dc=org,o=Anarchy?mail,host?sub?(&(mail=%s)(status=active))\"\n";

    fn ldap_of(loaded: &super::super::Loaded) -> &LdapSettings {
        let kind: &dyn std::any::Any = loaded.directory.as_any();
        &kind
            .downcast_ref::<LdapKind>()
            .unwrap_or_else(|| panic!("not LDAP: {:?}", loaded.directory))
            .0
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

    #[test]
    fn a_key_no_kind_reads_is_refused_at_its_table() {
        let err = parse("kind = \"static\"\nmap = \"m\"\nurl = \"ldap://x/\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:6: `directory.url`"), "{err}");
        assert!(err.contains("kind = \"static\""), "{err}");
        let err = parse(&format!("kind = \"ldap\"\n{URL}map = \"m\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`directory.map`"), "{err}");
        // Shared keys are read for every kind.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m"), "* 1.2.3.4\n").unwrap();
        let text = "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n[directory]\nkind = \"static\"\nmap = \"m\"\nlower_case = true\nhost_suffix = \".vpn\"\n";
        assert!(parse_str(text, Path::new("t"), dir.path()).is_ok());
    }

    #[test]
    fn an_unknown_kind_lists_the_kinds() {
        let err = parse("kind = \"nis\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:6: `directory.kind`"), "{err}");
        assert!(
            err.contains("\"ldap\"") && err.contains("\"static\""),
            "{err}"
        );
    }

    #[test]
    fn a_kinds_bad_value_keeps_its_line() {
        let err = parse(&format!("kind = \"ldap\"\n{URL}timeout = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("timeout"), "{err}");
    }
}
