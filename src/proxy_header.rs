//! The PROXY protocol (versions 1 and 2, as HAProxy specifies them): the
//! header a TCP balancer puts before a connection's first byte to say whom
//! the connection came from. Read on listeners with `proxy_protocol`,
//! written to back ends with `[backend] proxy_protocol`.
//!
//! Pure code: [`advance`] says, from the bytes read so far, how many more to
//! read — never more than the header, so the bytes after it (a TLS
//! ClientHello, a pipelined command) stay in the socket for the session —
//! and what the header says once it is complete; [`v2`] encodes one. It
//! must never do I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The twelve bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The longest version 2 body read (addresses and TLVs); longer is refused.
pub const V2_MAX_BODY: usize = 1024;
/// The first read: enough to tell the versions apart, and no longer than the
/// shortest header (`PROXY UNKNOWN\r\n`, 15 bytes).
pub const FIRST_READ: usize = 13;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Where the client connected from; `None` when the balancer says
    /// nothing about it (v1 `UNKNOWN`, v2 `LOCAL`, a non-TCP family): the
    /// connection's own peer is used then.
    pub source: Option<SocketAddr>,
    /// Where the client connected to, when said.
    pub destination: Option<SocketAddr>,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read exactly this many more bytes.
    Read(usize),
    /// The header is complete (and was exactly the bytes read).
    Done(Header),
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Neither `PROXY ` nor the version 2 signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A version 1 line without CRLF within 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    TooLong,
    /// A version 1 line that does not parse.
    #[error("malformed PROXY v1 line: {0}")]
    V1(&'static str),
    /// A version 2 header that does not parse.
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Given every byte read so far, how many more to read, or the header.
pub fn advance(seen: &[u8]) -> Result<Next, HeaderError> {
    if seen.len() < FIRST_READ {
        return Ok(Next::Read(FIRST_READ - seen.len()));
    }
    if seen.starts_with(&V2_SIGNATURE) {
        return v2_advance(seen);
    }
    if seen.starts_with(b"PROXY ") {
        return match seen.windows(2).position(|w| w == b"\r\n") {
            Some(end) if end + 2 == seen.len() => v1_parse(&seen[..end]).map(Next::Done),
            Some(_) => Err(HeaderError::V1("bytes after the line")),
            None if seen.len() >= V1_MAX => Err(HeaderError::TooLong),
            None => Ok(Next::Read(1)),
        };
    }
    Err(HeaderError::Missing)
}

fn v1_parse(line: &[u8]) -> Result<Header, HeaderError> {
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    fields.next(); // "PROXY"
    let family = fields.next().ok_or(HeaderError::V1("no protocol"))?;
    if family == "UNKNOWN" {
        // The rest, if any, is to be ignored.
        return Ok(Header {
            source: None,
            destination: None,
        });
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(HeaderError::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let parts: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = parts[..] else {
        return Err(HeaderError::V1("not four fields after the protocol"));
    };
    let ip = |text: &str| -> Result<IpAddr, HeaderError> {
        let ip: IpAddr = text.parse().map_err(|_| HeaderError::V1("bad address"))?;
        if ip.is_ipv6() != v6 {
            return Err(HeaderError::V1("address of the other family"));
        }
        Ok(ip)
    };
    let port = |text: &str| -> Result<u16, HeaderError> {
        if text.is_empty() || text.len() > 5 || (text.len() > 1 && text.starts_with('0')) {
            return Err(HeaderError::V1("bad port"));
        }
        text.parse().map_err(|_| HeaderError::V1("bad port"))
    };
    Ok(Header {
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
    })
}

fn v2_advance(seen: &[u8]) -> Result<Next, HeaderError> {
    if seen.len() < 16 {
        return Ok(Next::Read(16 - seen.len()));
    }
    let version_command = seen[12];
    if version_command >> 4 != 2 {
        return Err(HeaderError::V2("version is not 2"));
    }
    let local = match version_command & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::V2("command is neither LOCAL nor PROXY")),
    };
    let family = seen[13];
    let length = usize::from(u16::from_be_bytes([seen[14], seen[15]]));
    if length > V2_MAX_BODY {
        return Err(HeaderError::V2("longer than mailgate reads"));
    }
    if seen.len() < 16 + length {
        return Ok(Next::Read(16 + length - seen.len()));
    }
    let body = &seen[16..];
    let none = Header {
        source: None,
        destination: None,
    };
    if local {
        return Ok(Next::Done(none));
    }
    let header = match family {
        0x11 => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(HeaderError::V2("TCP over IPv4 needs 12 address bytes"))?;
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]));
            let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
            Header {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            }
        }
        0x21 => {
            let b = body
                .get(..36)
                .ok_or(HeaderError::V2("TCP over IPv6 needs 36 address bytes"))?;
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&b[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
            Header {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            }
        }
        // UNSPEC and UNIX sockets: the connection's own addresses count.
        0x00 | 0x31 | 0x32 => none,
        _ => return Err(HeaderError::V2("not a TCP, UNIX or UNSPEC family")),
    };
    Ok(Next::Done(header))
}

/// A version 2 `PROXY` header for a TCP connection from `source` to
/// `destination` (an IPv4 address next to an IPv6 one is written as
/// IPv4-mapped IPv6).
pub fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` the way a reader would: exactly what `advance` asks.
    fn read_all(bytes: &[u8]) -> Result<(Header, usize), HeaderError> {
        let mut seen = 0;
        loop {
            match advance(&bytes[..seen])? {
                Next::Read(n) => {
                    assert!(seen + n <= bytes.len(), "asked past the input");
                    seen += n;
                }
                Next::Done(header) => return Ok((header, seen)),
            }
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_stop_exactly_at_the_line_end() {
        let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 143\r\nA1 LOGIN";
        let (h, used) = read_all(input).unwrap();
        assert_eq!(used, input.len() - 8, "the command after it stays unread");
        assert_eq!(h.source, Some("192.0.2.7:4711".parse().unwrap()));
        assert_eq!(h.destination, Some("198.51.100.1:143".parse().unwrap()));
        let (h, _) = read_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 993\r\n").unwrap();
        assert_eq!(h.source, Some("[2001:db8::7]:65535".parse().unwrap()));
    }

    #[test]
    fn v1_unknown_and_the_shortest_line() {
        let (h, used) = read_all(b"PROXY UNKNOWN\r\n").unwrap();
        assert_eq!((h.source, used), (None, 15));
        let (h, _) = read_all(b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n").unwrap();
        assert_eq!(h.source, None);
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 4711\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 080 2\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        ] {
            assert!(matches!(read_all(bad), Err(HeaderError::V1(_))), "{bad:?}");
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(read_all(&long), Err(HeaderError::TooLong));
        assert_eq!(
            read_all(b"A1 LOGIN alice secret\r\n"),
            Err(HeaderError::Missing)
        );
        assert_eq!(
            read_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00"),
            Err(HeaderError::Missing)
        );
    }

    #[test]
    fn v2_roundtrips_and_stops_at_its_length() {
        for (s, d) in [
            ("192.0.2.7:4711", "198.51.100.1:143"),
            ("[2001:db8::7]:4711", "[2001:db8::1]:993"),
        ] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let mut bytes = v2(s, d);
            let header_len = bytes.len();
            bytes.extend_from_slice(b"\x16\x03\x01");
            let (h, used) = read_all(&bytes).unwrap();
            assert_eq!(used, header_len);
            assert_eq!((h.source, h.destination), (Some(s), Some(d)));
        }
        // Mixed families: IPv4-mapped.
        let mixed = v2(
            "192.0.2.7:1".parse().unwrap(),
            "[2001:db8::1]:2".parse().unwrap(),
        );
        let (h, _) = read_all(&mixed).unwrap();
        assert_eq!(h.source, Some("[::ffff:192.0.2.7]:1".parse().unwrap()));
    }

    #[test]
    fn v2_tlvs_are_skipped_and_local_means_no_address() {
        let mut bytes = v2(
            "192.0.2.7:4711".parse().unwrap(),
            "198.51.100.1:143".parse().unwrap(),
        );
        // A TLV (type 0x04 NOOP, 3 bytes) after the addresses.
        bytes[15] += 6;
        bytes.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
        let (h, used) = read_all(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(h.source, Some("192.0.2.7:4711".parse().unwrap()));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(read_all(&local).unwrap().0.source, None);
    }

    #[test]
    fn v2_refusals() {
        let good = v2(
            "192.0.2.7:4711".parse().unwrap(),
            "198.51.100.1:143".parse().unwrap(),
        );
        let mut version = good.clone();
        version[12] = 0x11;
        assert!(matches!(read_all(&version), Err(HeaderError::V2(_))));
        let mut command = good.clone();
        command[12] = 0x22;
        assert!(matches!(read_all(&command), Err(HeaderError::V2(_))));
        let mut short = good.clone();
        short[15] = 4;
        short.truncate(20);
        assert!(matches!(read_all(&short), Err(HeaderError::V2(_))));
        let mut huge = good.clone();
        huge[14] = 0xFF;
        assert!(matches!(read_all(&huge), Err(HeaderError::V2(_))));
        let mut udp = good;
        udp[13] = 0x12;
        assert!(matches!(read_all(&udp), Err(HeaderError::V2(_))));
    }

    #[test]
    fn the_fuzz_target_holds_on_a_few_inputs() {
        for input in [
            &b""[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 143\r\n",
            b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n",
            &v2(
                "192.0.2.7:1".parse().unwrap(),
                "192.0.2.8:2".parse().unwrap(),
            ),
        ] {
            crate::fuzzing::proxy_header(input);
        }
    }

    #[test]
    fn any_bytes_end_in_a_bounded_number_of_reads() {
        // Whatever a balancer (or an attacker inside the trusted network)
        // sends, `advance` asks for at most 16 + V2_MAX_BODY bytes in all.
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            let prefix: &[u8] = match state % 3 {
                0 => &V2_SIGNATURE,
                1 => b"PROXY ",
                _ => b"",
            };
            bytes.extend_from_slice(prefix);
            while bytes.len() < 16 + V2_MAX_BODY + 8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push((state & 0xFF) as u8);
            }
            let mut seen = 0;
            while let Ok(Next::Read(n)) = advance(&bytes[..seen]) {
                seen += n;
                assert!(seen <= 16 + V2_MAX_BODY, "read {seen} bytes");
            }
        }
    }
}
