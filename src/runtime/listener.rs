//! Listening sockets: one `SO_REUSEPORT` socket per worker per configured address.
//!
//! The kernel spreads incoming connections over the workers' sockets, so no
//! accept lock is shared between cores. Port 0 is resolved once: the first
//! socket binds it and the others bind the port the kernel chose.

use crate::transport::KeepAlive;
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Backlog for each listening socket.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Whether binding may join sockets another process already listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// No: a port another process serves is an error (a second instance
    /// started by mistake would otherwise take part of the traffic).
    Exclusive,
    /// Yes: this start takes over from a running mailgate (`run
    /// --handover`), whose sockets share the port until it stops.
    Handover,
}

/// Binds `count` sockets sharing `address` with `SO_REUSEPORT`; accepted
/// connections inherit `keepalive` (set once here rather than per session).
/// With [`Sharing::Exclusive`], a fixed port some process already listens
/// on is refused (`AddrInUse`) before anything is bound.
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
    keepalive: KeepAlive,
    sharing: Sharing,
) -> io::Result<Vec<TcpListener>> {
    if sharing == Sharing::Exclusive && address.port() != 0 {
        probe_unused(address)?;
    }
    let mut sockets = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count {
        let socket = bind_one(bound)?;
        keepalive.apply_to(&socket);
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Fails with `AddrInUse` when a socket listens on `address`: a socket
/// without `SO_REUSEPORT` cannot bind next to one (`SO_REUSEADDR` lets it
/// pass connections in `TIME_WAIT`, which are no listener).
fn probe_unused(address: SocketAddr) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    probe.set_reuse_address(true)?;
    if address.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    match probe.bind(&address.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process already listens there (a second mailgate? `mailgate run --handover` takes over from a running one on purpose)",
        )),
        other => other,
    }
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_workers() {
        let keepalive = KeepAlive {
            idle: std::time::Duration::from_secs(61),
            user_timeout: std::time::Duration::from_secs(121),
        };
        let sockets = bind_reuseport(
            "127.0.0.1:0".parse().unwrap(),
            3,
            keepalive,
            Sharing::Exclusive,
        )
        .unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
        // Accepted connections inherit the keepalive settings.
        let _client = std::net::TcpStream::connect(sockets[0].local_addr().unwrap()).unwrap();
        let (accepted, _) = sockets
            .iter()
            .find_map(|s| {
                s.set_nonblocking(true).unwrap();
                (0..100).find_map(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    s.accept().ok()
                })
            })
            .unwrap();
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.keepalive_time().unwrap().as_secs(), 61);
        assert_eq!(socket.tcp_user_timeout().unwrap().unwrap().as_secs(), 121);
    }
}
