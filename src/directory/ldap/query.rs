//! What to ask LDAP: the Perdition-compatible RFC 4516 URL, explicit overrides,
//! and turning a login name into a safe filter.
//!
//! `ldap://host[:port] [host2…]/base?user,host[,port]?scope?filter` — the
//! attributes in order name the back-end login, host and port; `%s` in the
//! filter is the lookup key, escaped per RFC 4515 so that a name like
//! `*)(uid=*` cannot widen the search. A leading `3:` (Perdition's protocol
//! version prefix) is accepted; LDAPv2 is not.

/// Search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry only.
    Base,
    /// Children of the base.
    One,
    /// The whole subtree.
    Sub,
}

impl Scope {
    /// Parses `base`, `one`, `sub` (also `subtree`, `onelevel`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "base" => Some(Scope::Base),
            "one" | "onelevel" => Some(Scope::One),
            "sub" | "subtree" => Some(Scope::Sub),
            _ => None,
        }
    }
}

/// Everything a search needs, after URL parsing and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    /// Server URLs in failover order (`ldap://host:port` or `ldaps://…`).
    pub servers: Vec<String>,
    /// Search base.
    pub base: String,
    /// Scope.
    pub scope: Scope,
    /// Filter template with `%s`.
    pub filter: String,
    /// Attribute whose value is the back-end login name, if any.
    pub user_attribute: Option<String>,
    /// Attribute holding the back-end host.
    pub host_attribute: String,
    /// Attribute holding the back-end port, if any.
    pub port_attribute: Option<String>,
}

impl QuerySpec {
    /// The attributes a search asks for: the host, and the login name and
    /// port when they come from the entry.
    pub fn attributes(&self) -> Vec<String> {
        [
            Some(&self.host_attribute),
            self.user_attribute.as_ref(),
            self.port_attribute.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The attribute the filter compares with the login (`mail` in
    /// `(&(mail=%s)(status=active))`): its value is what users type.
    pub fn key_attribute(&self) -> Option<String> {
        self.filter.match_indices("=%s)").find_map(|(at, _)| {
            let open = self.filter[..at].rfind('(')?;
            let name = self.filter[open + 1..at].trim();
            // `attr:rule:=`, `attr~=`: the name is what comes first.
            let name = name.split([':', '~', '<', '>']).next()?.trim();
            (!name.is_empty() && !name.contains(['(', ')', '&', '|', '!', '*']))
                .then(|| name.to_owned())
        })
    }
}

/// Parses one or more space-separated LDAP URLs (see the module docs).
pub fn parse_url(text: &str) -> Result<QuerySpec, String> {
    let text = text.trim();
    let text = match text.split_once(':') {
        Some((version, rest))
            if version.chars().all(|c| c.is_ascii_digit()) && !version.is_empty() =>
        {
            if version != "3" {
                return Err(format!(
                    "LDAP protocol version {version} is not supported; use 3"
                ));
            }
            rest
        }
        _ => text,
    };
    let mut servers = Vec::new();
    let mut query: Option<&str> = None;
    let mut scheme = "";
    for token in text.split_whitespace() {
        let rest = if let Some(r) = token.strip_prefix("ldap://") {
            scheme = "ldap://";
            r
        } else if let Some(r) = token.strip_prefix("ldaps://") {
            scheme = "ldaps://";
            r
        } else if !scheme.is_empty() && query.is_none() {
            token // another host of the same URL: `ldap://a b/base…`
        } else {
            return Err(format!("`{token}` is not an ldap:// or ldaps:// URL"));
        };
        let (host, q) = match rest.split_once('/') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        if !host.is_empty() {
            servers.push(format!("{scheme}{host}"));
        }
        if query.is_none() {
            query = q;
        }
    }
    if servers.is_empty() {
        return Err("no LDAP server in the URL".into());
    }
    let mut parts = query.unwrap_or("").splitn(5, '?');
    let base = percent_decode(parts.next().unwrap_or(""));
    let attributes: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let scope = match parts.next().unwrap_or("") {
        "" => Scope::Base,
        s => Scope::parse(s).ok_or_else(|| format!("unknown scope `{s}`"))?,
    };
    let filter = match parts.next().unwrap_or("") {
        "" => "(objectClass=*)".to_owned(),
        f => percent_decode(f),
    };
    let (user_attribute, host_attribute, port_attribute) = match attributes.as_slice() {
        [host] => (None, host.clone(), None),
        [user, host] => (Some(user.clone()), host.clone(), None),
        [user, host, port] => (Some(user.clone()), host.clone(), Some(port.clone())),
        [] => (None, "host".to_owned(), None),
        _ => return Err("at most three attributes: user, host, port".into()),
    };
    Ok(QuerySpec {
        servers,
        base,
        scope,
        filter,
        user_attribute,
        host_attribute,
        port_attribute,
    })
}

/// Decodes `%XX` escapes and leaves everything else (notably `%s`) alone.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The filter for `key`: every `%s` replaced by the RFC 4515-escaped key.
pub fn filter_for(template: &str, key: &str) -> String {
    template.replace("%s", &ldap3::ldap_escape(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERDITION: &str =
        "ldap://127.0.0.1/ou=People,dc=infra,dc=org,o=Anarchy?mail,host?sub?(&(mail=%s)(status=active))";

    #[test]
    fn perdition_url_parses() {
        let q = parse_url(PERDITION).unwrap();
        assert_eq!(q.servers, vec!["ldap://127.0.0.1"]);
        assert_eq!(q.base, "ou=People,dc=infra,dc=org,o=Anarchy");
        assert_eq!(q.scope, Scope::Sub);
        assert_eq!(q.filter, "(&(mail=%s)(status=active))");
        assert_eq!(q.user_attribute.as_deref(), Some("mail"));
        assert_eq!(q.host_attribute, "host");
        assert_eq!(q.port_attribute, None);
        assert_eq!(parse_url(&format!("3:{PERDITION}")).unwrap(), q);
        assert!(parse_url(&format!("2:{PERDITION}"))
            .unwrap_err()
            .contains("version 2"));
    }

    #[test]
    fn the_key_attribute_is_the_one_compared_with_the_login() {
        let spec = |filter: &str| QuerySpec {
            filter: filter.into(),
            ..parse_url(PERDITION).unwrap()
        };
        assert_eq!(
            spec("(&(mail=%s)(status=active))")
                .key_attribute()
                .as_deref(),
            Some("mail")
        );
        assert_eq!(spec("(uid=%s)").key_attribute().as_deref(), Some("uid"));
        assert_eq!(
            spec("(&(status=active)(mailAlias:caseExactMatch:=%s))")
                .key_attribute()
                .as_deref(),
            Some("mailAlias")
        );
        assert_eq!(spec("(&(objectClass=*)(cn=x%s))").key_attribute(), None);
        assert_eq!(spec("(objectClass=*)").key_attribute(), None);
    }

    #[test]
    fn several_servers_are_a_failover_list() {
        let q = parse_url("ldap://10.0.0.1 10.0.0.2:3389/dc=x?uid,host,port?one?(uid=%s)").unwrap();
        assert_eq!(q.servers, vec!["ldap://10.0.0.1", "ldap://10.0.0.2:3389"]);
        assert_eq!(q.port_attribute.as_deref(), Some("port"));
        assert_eq!(q.scope, Scope::One);
        let q = parse_url("ldap://a:1/dc=x??sub?(uid=%s) ldaps://b:2/").unwrap();
        assert_eq!(q.servers, vec!["ldap://a:1", "ldaps://b:2"]);
        assert_eq!(q.host_attribute, "host");
    }

    #[test]
    fn percent_escapes_decode_but_placeholder_stays() {
        let q = parse_url("ldap://h/ou=A%20B,dc=x?mail,host?sub?(mail=%s)").unwrap();
        assert_eq!(q.base, "ou=A B,dc=x");
        assert_eq!(q.filter, "(mail=%s)");
        assert_eq!(percent_decode("%28a%29%"), "(a)%");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(parse_url("http://x/").is_err());
        assert!(parse_url("ldap://h/b?a,b,c,d").is_err());
        assert!(parse_url("ldap://h/b?host?everywhere").is_err());
    }

    #[test]
    fn filter_injection_is_escaped() {
        assert_eq!(
            filter_for("(&(mail=%s)(status=active))", "*)(uid=*"),
            "(&(mail=\\2a\\29\\28uid=\\2a)(status=active))"
        );
        assert_eq!(filter_for("(mail=%s)", "a\\b\0c"), "(mail=a\\5cb\\00c)");
    }
}
