//! Listening sockets: one `SO_REUSEPORT` socket per worker per configured address.
//!
//! The kernel spreads incoming connections over the workers' sockets, so no
//! accept lock is shared between cores. Port 0 is resolved once: the first
//! socket binds it and the others bind the port the kernel chose.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Backlog for each listening socket.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `count` sockets sharing `address` with `SO_REUSEPORT`.
pub fn bind_reuseport(address: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count {
        let socket = bind_one(bound)?;
        bound = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
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
        let sockets = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }
}
