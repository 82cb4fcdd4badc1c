//! Addresses written as text exactly as the standard library writes them
//! (`192.0.2.7`, `192.0.2.7:143`, `[2001:db8::1]:143`), IPv4 without its
//! formatting machinery: every login writes four (the session's log line,
//! the back end's `ID`/`XCLIENT`), and `Ipv4Addr`'s `Display` costs ~2 000
//! instructions each (it formats into a buffer with `write!` per octet,
//! then pads); writing them here saved 2 % of a plaintext login's
//! user-space instructions (docs/performance.md, "Where the CPU per login
//! goes, by side").
//!
//! This module owns that text; it never decides where an address is shown.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `address` as its `Display` writes it (width and alignment honoured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressText<T>(pub T);

/// The longest IPv4 socket address: `255.255.255.255:65535`.
const V4_SOCKET_MAX: usize = 21;

/// Appends `n`'s decimal digits.
fn push_decimal(buf: &mut [u8; V4_SOCKET_MAX], len: &mut usize, n: u16) {
    let mut digits = [0u8; 5];
    let mut count = 0;
    let mut rest = n;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in digits[..count].iter().rev() {
        buf[*len] = digit;
        *len += 1;
    }
}

fn push_v4(buf: &mut [u8; V4_SOCKET_MAX], len: &mut usize, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[*len] = b'.';
            *len += 1;
        }
        push_decimal(buf, len, u16::from(octet));
    }
}

fn pad_ascii(f: &mut fmt::Formatter<'_>, buf: &[u8]) -> fmt::Result {
    // Only ASCII digits, dots and a colon were written.
    f.pad(std::str::from_utf8(buf).map_err(|_| fmt::Error)?)
}

impl fmt::Display for AddressText<Ipv4Addr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut buf, mut len) = ([0u8; V4_SOCKET_MAX], 0);
        push_v4(&mut buf, &mut len, self.0);
        pad_ascii(f, &buf[..len])
    }
}

impl fmt::Display for AddressText<IpAddr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => AddressText(ip).fmt(f),
            IpAddr::V6(ip) => ip.fmt(f),
        }
    }
}

impl fmt::Display for AddressText<SocketAddr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(addr) => {
                let (mut buf, mut len) = ([0u8; V4_SOCKET_MAX], 0);
                push_v4(&mut buf, &mut len, *addr.ip());
                buf[len] = b':';
                len += 1;
                push_decimal(&mut buf, &mut len, addr.port());
                pad_ascii(f, &buf[..len])
            }
            SocketAddr::V6(addr) => addr.fmt(f),
        }
    }
}

impl AddressText<IpAddr> {
    /// Appends the same text as `Display` (without width) to `out`,
    /// IPv4 without the formatter at all: a back end's `ID` or `XCLIENT`
    /// is built this way.
    pub fn append_to(self, out: &mut String) {
        match self.0 {
            IpAddr::V4(ip) => {
                let (mut buf, mut len) = ([0u8; V4_SOCKET_MAX], 0);
                push_v4(&mut buf, &mut len, ip);
                // Only ASCII digits and dots were written.
                out.extend(buf[..len].iter().map(|&b| char::from(b)));
            }
            IpAddr::V6(ip) => {
                use fmt::Write;
                let _ = write!(out, "{ip}");
            }
        }
    }
}

/// Appends `n`'s decimal digits to `out`, as `Display` writes them,
/// without the formatter: a port in `ID`/`XCLIENT`, a count in the
/// session's log line.
pub fn append_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    out.extend(decimal(n, &mut digits).iter().map(|&d| char::from(d)));
}

/// [`append_decimal`] to bytes: an IMAP literal's length in a command
/// that may carry a password.
pub fn append_decimal_bytes(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// `n`'s decimal digits, written at the end of `digits` (20 hold any `u64`).
fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
}

/// An address, or `-` for none (the session log line's `backend` before
/// a login reached one).
impl fmt::Display for AddressText<Option<SocketAddr>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => AddressText(addr).fmt(f),
            None => f.pad("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_the_standard_library_writes_them() {
        let ips: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "10.0.99.100",
            "192.0.2.7",
            "1.22.203.4",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.7",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for ip in ips {
            assert_eq!(AddressText(ip).to_string(), ip.to_string());
            if let IpAddr::V4(v4) = ip {
                assert_eq!(AddressText(v4).to_string(), v4.to_string());
            }
            for port in [0, 9, 10, 143, 993, 10143, 65535] {
                let addr = SocketAddr::new(ip, port);
                assert_eq!(AddressText(addr).to_string(), addr.to_string());
                assert_eq!(AddressText(Some(addr)).to_string(), addr.to_string());
            }
        }
        assert_eq!(AddressText(None::<SocketAddr>).to_string(), "-");
    }

    #[test]
    fn appended_text_is_the_displayed_text() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.7",
            "::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::from("x=");
            AddressText(ip).append_to(&mut out);
            assert_eq!(out, format!("x={ip}"));
        }
        for port in [0u16, 9, 10, 99, 100, 143, 9999, 10000, 65535] {
            let mut out = String::new();
            append_decimal(&mut out, u64::from(port));
            assert_eq!(out, port.to_string());
        }
    }

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 65535, u64::from(u32::MAX), u64::MAX] {
            let mut line = String::new();
            append_decimal(&mut line, n);
            assert_eq!(line, n.to_string());
            let mut bytes = b"{".to_vec();
            append_decimal_bytes(&mut bytes, n);
            assert_eq!(bytes, format!("{{{n}").into_bytes());
        }
    }

    #[test]
    fn the_longest_ipv4_socket_address_fits_and_width_is_honoured() {
        let longest: SocketAddr = "255.255.255.255:65535".parse().unwrap();
        assert_eq!(AddressText(longest).to_string().len(), V4_SOCKET_MAX);
        let short: SocketAddr = "1.2.3.4:5".parse().unwrap();
        assert_eq!(
            format!("[{:>12}]", AddressText(short)),
            format!("[{short:>12}]")
        );
    }
}
