//! Free loopback ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A loopback port that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and closing the socket, so another process may
/// take it before the caller binds it: fixtures retry with a new port when their process
/// exits early.
///
/// # Panics
///
/// Panics when no loopback port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// `127.0.0.1:<free_port()>`; see [`free_port`] for the caveat.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}
