//! Reading a route out of the entries a search returned, checking every
//! value before it is used: one entry with one host value (or, with
//! `ambiguous = "first"`, the first of several), a host that parses, a port
//! attribute that is a port number. Pure code, unit-tested without a server.

use super::LdapSettings;
use crate::directory::static_map::parse_target;
use crate::directory::{DirectoryError, Route};
use ldap3::SearchEntry;
use serde::Deserialize;

/// What several entries for one user, or several values of the host, port or
/// user attribute, mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ambiguity {
    /// A lookup error: the user gets a temporary failure and the log names
    /// the values, so the data gets fixed instead of a user being routed
    /// differently from one lookup to the next.
    #[default]
    Error,
    /// Take the first entry and the first value (as Perdition does).
    First,
}

/// The route in `entries` for `user`; `Ok(None)` when no entry matched.
pub(super) fn route_from(
    settings: &LdapSettings,
    user: &str,
    entries: Vec<SearchEntry>,
) -> Result<Option<Route>, DirectoryError> {
    let q = &settings.query;
    let strict = settings.ambiguous == Ambiguity::Error;
    let bad = |detail: String| DirectoryError::BadEntry {
        kind: super::KIND_NAME,
        user: user.to_owned(),
        detail,
    };
    if strict && entries.len() > 1 {
        let dns: Vec<&str> = entries.iter().map(|e| e.dn.as_str()).collect();
        return Err(bad(format!(
            "{} entries match: {}",
            dns.len(),
            dns.join("; ")
        )));
    }
    let Some(entry) = entries.into_iter().next() else {
        return Ok(None);
    };
    let value = |name: &str| -> Result<Option<String>, DirectoryError> {
        let values = entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or(&[][..], |(_, v)| v.as_slice());
        if strict && values.len() > 1 {
            return Err(bad(format!(
                "{}: {name} has {} values: {}",
                entry.dn,
                values.len(),
                values.join(", ")
            )));
        }
        Ok(values.first().cloned())
    };
    let Some(host) = value(&q.host_attribute)? else {
        return Err(bad(format!("{}: no {}", entry.dn, q.host_attribute)));
    };
    let mut route =
        parse_target(&host).map_err(|e| bad(format!("{}: {}: {e}", entry.dn, q.host_attribute)))?;
    if let Some(name) = q.port_attribute.as_deref() {
        if let Some(port) = value(name)? {
            let parsed = port.trim().parse::<u16>().ok().filter(|p| *p != 0);
            let Some(port) = parsed else {
                return Err(bad(format!("{}: {name} `{port}` is not a port", entry.dn)));
            };
            route.port = Some(port);
        }
    }
    route.login_user = match q.user_attribute.as_deref() {
        Some(name) => value(name)?,
        None => None,
    };
    Ok(Some(settings.hosts.apply(route)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ldap::query::parse_url;
    use crate::directory::name_form::KeyFormat;
    use crate::directory::HostRewrite;
    use std::collections::HashMap;

    fn settings(ambiguous: Ambiguity) -> LdapSettings {
        LdapSettings {
            query: parse_url("ldap://x/dc=x?mail,host,port?sub?(mail=%s)").unwrap(),
            key: KeyFormat::default(),
            hosts: HostRewrite::default(),
            bind_dn: None,
            bind_password: None,
            starttls: false,
            ca_file: None,
            timeout: std::time::Duration::from_secs(1),
            pool_size: 1,
            ambiguous,
            hold_filter: None,
            watch: false,
        }
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn one_entry_gives_host_port_and_login() {
        let e = entry(
            "uid=a",
            &[
                ("mail", &["a@x"]),
                ("host", &["box1"]),
                ("port", &["10143"]),
            ],
        );
        let route = route_from(&settings(Ambiguity::Error), "a@x", vec![e])
            .unwrap()
            .unwrap();
        assert_eq!(route.host, "box1");
        assert_eq!(route.port, Some(10143));
        assert_eq!(route.login_user.as_deref(), Some("a@x"));
    }

    #[test]
    fn several_entries_or_values_are_an_error_naming_them_unless_first() {
        let a = entry("uid=a,dc=x", &[("host", &["box1"])]);
        let b = entry("uid=b,dc=x", &[("host", &["box2"])]);
        let err = route_from(&settings(Ambiguity::Error), "u", vec![a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("uid=a,dc=x") && err.contains("uid=b,dc=x"),
            "{err}"
        );
        let first = route_from(&settings(Ambiguity::First), "u", vec![a, b]).unwrap();
        assert_eq!(first.unwrap().host, "box1");
        let two_hosts = entry("uid=c", &[("host", &["box1", "box2"])]);
        let err = route_from(&settings(Ambiguity::Error), "u", vec![two_hosts.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("box1") && err.contains("box2"), "{err}");
        let first = route_from(&settings(Ambiguity::First), "u", vec![two_hosts]).unwrap();
        assert_eq!(first.unwrap().host, "box1");
    }

    #[test]
    fn garbage_or_zero_ports_and_missing_hosts_are_errors() {
        for port in ["x", "0", "70000", "-1"] {
            let e = entry("uid=a", &[("host", &["box1"]), ("port", &[port])]);
            let err = route_from(&settings(Ambiguity::Error), "a", vec![e])
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{port}`")), "{err}");
        }
        let no_host = entry("uid=a", &[("mail", &["a"])]);
        assert!(route_from(&settings(Ambiguity::Error), "a", vec![no_host]).is_err());
        assert_eq!(
            route_from(&settings(Ambiguity::Error), "a", vec![]).unwrap(),
            None
        );
    }
}
