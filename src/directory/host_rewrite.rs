//! Turning the `host` a directory returns into an address to connect to.
//!
//! LDAP entries name boxes (`box1`), not VPN addresses; the old proxy needed a
//! chroot with its own `/etc/hosts` for that. Here a table maps names to
//! targets (`"box1" = "10.8.0.1"`, `"box2" = "10.8.0.2:10143"`), and an
//! optional suffix turns other bare names into resolvable ones (`box3` →
//! `box3.vpn`). IP literals and names with a dot are left alone by the suffix.

use super::static_map::parse_target;
use super::Route;
use std::collections::HashMap;

/// The configured rewrite rules.
#[derive(Debug, Clone, Default)]
pub struct HostRewrite {
    table: HashMap<String, Route>,
    suffix: Option<String>,
}

impl HostRewrite {
    /// Builds the rules; errors name the offending table key.
    pub fn new(table: &HashMap<String, String>, suffix: Option<String>) -> Result<Self, String> {
        let mut parsed = HashMap::with_capacity(table.len());
        for (name, target) in table {
            let route = parse_target(target).map_err(|e| format!("hosts.{name}: {e}"))?;
            parsed.insert(name.to_ascii_lowercase(), route);
        }
        Ok(Self {
            table: parsed,
            suffix: suffix.filter(|s| !s.is_empty()),
        })
    }

    /// The ports the table names.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.table.values().filter_map(|r| r.port)
    }

    /// Applies the rules to `route` (a table port wins over the route's own).
    pub fn apply(&self, mut route: Route) -> Route {
        if let Some(target) = self.table.get(&route.host.to_ascii_lowercase()) {
            route.host = target.host.clone();
            route.port = target.port.or(route.port);
        } else if let Some(suffix) = &self.suffix {
            let is_ip = route.host.parse::<std::net::IpAddr>().is_ok();
            if !is_ip && !route.host.contains('.') {
                route.host.push_str(suffix);
            }
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, port: Option<u16>) -> Route {
        Route::to(host, port)
    }

    #[test]
    fn table_then_suffix_and_literals_untouched() {
        let table = HashMap::from([
            ("box1".to_string(), "10.8.0.1".to_string()),
            ("Box2".to_string(), "10.8.0.2:10143".to_string()),
        ]);
        let rw = HostRewrite::new(&table, Some(".vpn".into())).unwrap();
        assert_eq!(
            rw.apply(route("box1", Some(993))),
            route("10.8.0.1", Some(993))
        );
        assert_eq!(
            rw.apply(route("BOX2", None)),
            route("10.8.0.2", Some(10143))
        );
        assert_eq!(rw.apply(route("box3", None)), route("box3.vpn", None));
        assert_eq!(
            rw.apply(route("mail.example.org", None)),
            route("mail.example.org", None)
        );
        assert_eq!(rw.apply(route("10.0.0.9", None)), route("10.0.0.9", None));
        assert_eq!(rw.apply(route("fd00::1", None)), route("fd00::1", None));
    }

    #[test]
    fn bad_table_entry_names_the_key() {
        let table = HashMap::from([("box1".to_string(), "10.8.0.1:http".to_string())]);
        assert!(HostRewrite::new(&table, None)
            .unwrap_err()
            .starts_with("hosts.box1:"));
    }
}
