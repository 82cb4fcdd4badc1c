//! Address values the proxy reasons about: networks in CIDR notation
//! (`10.8.0.0/16`, `2001:db8::/32`) and the key under which a client address
//! is counted (IPv4 per address, IPv6 per /64 — the smallest block a client
//! usually controls; IPv4-mapped IPv6 as IPv4). Pure values: no I/O.

use serde::Deserialize;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// Why a network could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a network (`10.8.0.0/16`, `2001:db8::/32` or an address): {why}")]
pub struct NetworkError {
    text: String,
    why: &'static str,
}

impl Network {
    /// Every IPv4 and IPv6 address.
    pub const ANY: [Network; 2] = [
        Network {
            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            prefix: 0,
        },
        Network {
            address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix: 0,
        },
    ];

    /// Whether `ip` lies in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_bits(u32::from(net).into(), 32, self.prefix)
                    == prefix_bits(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_bits(u128::from(net), 128, self.prefix)
                    == prefix_bits(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit value.
fn prefix_bits(value: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        value >> (width - prefix)
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why| NetworkError {
            text: text.to_owned(),
            why,
        };
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| error("bad address"))?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| error("bad prefix length"))?,
            None => width,
        };
        if prefix > width {
            return Err(error("prefix longer than the address"));
        }
        Ok(Network {
            address: canonical(address),
            prefix: if canonical(address).is_ipv4() && width == 128 {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a client address is counted under: IPv4 addresses as they are,
/// IPv6 by /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_at_the_prefix_boundary() {
        let n = net("10.8.0.0/16");
        assert!(n.contains(ip("10.8.0.1")));
        assert!(n.contains(ip("10.8.255.255")));
        assert!(!n.contains(ip("10.9.0.0")));
        assert!(!n.contains(ip("10.7.255.255")));
        assert!(n.contains(ip("::ffff:10.8.1.2")), "mapped IPv4 counts");
        assert!(!n.contains(ip("2001:db8::1")));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(Network::ANY.iter().any(|n| n.contains(ip("203.0.113.9"))));
        assert!(Network::ANY.iter().any(|n| n.contains(ip("2001:db8::9"))));
    }

    #[test]
    fn bad_networks_are_refused_with_the_text() {
        for bad in ["10.8.0.0/33", "10.8.0/16", "x", "::/129", "10.0.0.0/-1"] {
            let err = bad.parse::<Network>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn clients_are_keyed_per_ipv4_address_and_ipv6_64() {
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }
}
