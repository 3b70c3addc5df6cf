//! The engine's transports: datagrams in and out of the shared UDP socket, frames in and out
//! of ICE-TCP connections (whose sockets live in [`crate::media::tcp`]'s tasks).
//!
//! Both feed the same peers. A datagram or frame from a known path goes to the peer that owns
//! it; a new path (a UDP address, a TCP connection) is learned only from a binding request
//! whose MESSAGE-INTEGRITY verifies (see [`crate::media::demux`]). A TCP connection belongs to
//! the first peer it authenticates for, for its whole life.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{Engine, READ_BATCH};
use crate::media::demux::Route;
use crate::media::peer::TransportProtocol;
use crate::media::tcp::{ConnId, TcpEvent, frame};
use crate::media::{MediaStats, PeerId};

/// An open ICE-TCP connection.
struct TcpConn {
    remote: SocketAddr,
    /// The port its listener advertises (what our candidate names).
    port: u16,
    writer: mpsc::Sender<Bytes>,
    /// Set by its first verified binding request.
    peer: Option<PeerId>,
}

/// The sockets peers are reached through.
pub(super) struct Transports {
    pub udp: UdpSocket,
    /// The UDP socket is IPv6 (dual stack): IPv4 destinations are written v4-mapped.
    udp_v6: bool,
    tcp: HashMap<ConnId, TcpConn>,
    /// A connection's remote address → the connection (what the stack names when it writes).
    tcp_by_remote: HashMap<SocketAddr, ConnId>,
}

impl Transports {
    pub fn new(udp: UdpSocket, udp_v6: bool) -> Self {
        Transports {
            udp,
            udp_v6,
            tcp: HashMap::new(),
            tcp_by_remote: HashMap::new(),
        }
    }

    /// Sends what a peer's stack wrote, over the transport it names. Never waits: a TCP
    /// connection whose queue is full (its client reads too slowly) loses the packet.
    pub fn send(
        &mut self,
        to: SocketAddr,
        protocol: TransportProtocol,
        data: &[u8],
        stats: &mut MediaStats,
    ) {
        match protocol {
            TransportProtocol::TCP => {
                let Some(conn) = self.tcp_by_remote.get(&to).and_then(|c| self.tcp.get(c)) else {
                    stats.send_errors += 1;
                    return;
                };
                let Some(framed) = frame(data) else {
                    stats.send_errors += 1;
                    return;
                };
                match conn.writer.try_send(framed) {
                    Ok(()) => stats.tcp_frames_out += 1,
                    Err(TrySendError::Full(_)) => stats.tcp_send_dropped += 1,
                    Err(TrySendError::Closed(_)) => stats.send_errors += 1,
                }
            }
            _ => {
                let to = if self.udp_v6 { v4_mapped(to) } else { to };
                match self.udp.try_send_to(data, to) {
                    Ok(_) => stats.datagrams_out += 1,
                    Err(e) => {
                        stats.send_errors += 1;
                        tracing::trace!("udp send to {to} failed: {e}");
                    }
                }
            }
        }
    }

    /// Forgets (and so closes: their queues drop) the TCP connections of a closed peer.
    pub fn drop_peer(&mut self, peer: PeerId) {
        self.tcp.retain(|_, c| c.peer != Some(peer));
        let tcp = &self.tcp;
        self.tcp_by_remote.retain(|_, c| tcp.contains_key(c));
    }

    pub fn tcp_connections(&self) -> usize {
        self.tcp.len()
    }
}

/// An address a dual-stack socket can send to.
fn v4_mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        v6 => v6,
    }
}

/// The plain form of an address a dual-stack socket reports (`::ffff:a.b.c.d` → `a.b.c.d`).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Engine {
    /// Our candidate address a packet from `from` arrived at (as the stack knows it): the
    /// advertised address of the same family, with the transport's advertised port.
    fn ice_local(&self, from: SocketAddr, port: u16) -> SocketAddr {
        let ip = self
            .setup
            .candidates
            .iter()
            .find(|c| c.is_ipv4() == from.is_ipv4())
            .or(self.setup.candidates.first())
            .map_or(from.ip(), |c| c.ip());
        SocketAddr::new(ip, port)
    }

    pub(super) fn read_datagrams(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        for _ in 0..READ_BATCH {
            match self.io.udp.try_recv_from(buf) {
                Ok((n, from)) => self.on_datagram(now, canonical(from), n, buf),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors (a peer's port closed) surface here on Linux; not fatal.
                    tracing::debug!("udp receive error: {e}");
                    break;
                }
            }
        }
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, n: usize, buf: &[u8]) {
        self.stats.datagrams_in += 1;
        let data = &buf[..n];
        let id = match self.demux.route(from, data) {
            Route::Peer(id) | Route::NewPath(id) => id,
            Route::Unauthenticated => {
                self.stats.dropped_unauthenticated += 1;
                return;
            }
            Route::Unknown => {
                self.stats.dropped_unknown_sender += 1;
                return;
            }
        };
        let local = self.ice_local(from, self.udp_port);
        self.deliver(now, id, local, from, data, TransportProtocol::UDP);
    }

    pub(super) fn on_tcp(&mut self, now: Instant, event: TcpEvent) {
        match event {
            TcpEvent::Opened {
                conn,
                peer,
                port,
                writer,
            } => {
                let remote = canonical(peer);
                self.io.tcp.insert(
                    conn,
                    TcpConn {
                        remote,
                        port,
                        writer,
                        peer: None,
                    },
                );
                self.io.tcp_by_remote.insert(remote, conn);
            }
            TcpEvent::Closed { conn } => {
                if let Some(c) = self.io.tcp.remove(&conn)
                    && self.io.tcp_by_remote.get(&c.remote) == Some(&conn)
                {
                    self.io.tcp_by_remote.remove(&c.remote);
                }
            }
            TcpEvent::Frame { conn, data } => {
                self.stats.tcp_frames_in += 1;
                let Some(c) = self.io.tcp.get_mut(&conn) else {
                    return;
                };
                let id = match c.peer {
                    Some(id) => id,
                    None => match self.demux.verify(&data) {
                        Route::NewPath(id) | Route::Peer(id) => {
                            c.peer = Some(id);
                            id
                        }
                        route => {
                            // Not an ICE client of ours: close the connection rather than
                            // keep it open on its say-so.
                            if route == Route::Unauthenticated {
                                self.stats.dropped_unauthenticated += 1;
                            } else {
                                self.stats.dropped_unknown_sender += 1;
                            }
                            let remote = c.remote;
                            self.io.tcp.remove(&conn);
                            self.io.tcp_by_remote.remove(&remote);
                            return;
                        }
                    },
                };
                let (remote, port) = (c.remote, c.port);
                let local = self.ice_local(remote, port);
                self.deliver(now, id, local, remote, &data, TransportProtocol::TCP);
            }
        }
        self.stats.tcp_connections = self.io.tcp.len() as u64;
    }

    fn deliver(
        &mut self,
        now: Instant,
        id: PeerId,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        protocol: TransportProtocol,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Err(e) = peer.handle_datagram(now, local, from, data, protocol) {
            self.stats.dropped_by_stack += 1;
            tracing::trace!(peer = id.0, "datagram refused by the stack: {e}");
        }
        self.dirty.push(id);
    }

    /// Sends everything a peer's stack has to send.
    pub(super) fn transmit(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        while let Some((to, protocol, datagram)) = peer.poll_transmit() {
            if !self.config.ice_lite {
                self.demux.sent(id, &datagram, now);
            }
            self.io.send(to, protocol, &datagram, &mut self.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_addresses_are_mapped_both_ways() {
        let v4: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mapped = v4_mapped(v4);
        assert_eq!(mapped.to_string(), "[::ffff:10.0.0.1]:5000");
        assert_eq!(canonical(mapped), v4);
        let v6: SocketAddr = "[fd00::1]:5000".parse().unwrap();
        assert_eq!(v4_mapped(v6), v6);
        assert_eq!(canonical(v6), v6);
    }
}
