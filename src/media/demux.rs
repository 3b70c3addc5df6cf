//! Which peer a datagram on the shared socket belongs to.
//!
//! All peers share one UDP port. A datagram from a known 5-tuple goes to the peer that owns the
//! tuple. From an unknown one, only a STUN binding request can open a route: its USERNAME is
//! `<our ufrag>:<their ufrag>` and our ufrag is unique per peer (RFC 8445 §7.2.2). ICE-lite means
//! we never send checks first, so the first packet of every new path is such a request.
//! Anything else from an unknown address is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::PeerId;

/// RFC 7983 demultiplexing by first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    Stun,
    Dtls,
    Rtp,
    Other,
}

pub fn classify(datagram: &[u8]) -> PacketClass {
    match datagram.first() {
        Some(0..=3) => PacketClass::Stun,
        Some(20..=63) => PacketClass::Dtls,
        Some(128..=191) => PacketClass::Rtp,
        _ => PacketClass::Other,
    }
}

const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const BINDING_REQUEST: u16 = 0x0001;

/// The local (our) ufrag of a STUN binding request's USERNAME, without allocating.
pub fn binding_request_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < STUN_HEADER || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
        return None;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(STUN_HEADER..STUN_HEADER + declared)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The routing table of the shared socket.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Peer(PeerId),
    /// A new path of a known peer, opened by a binding request with its ufrag.
    NewPath(PeerId),
    /// Unknown sender and not a binding request for one of our peers.
    Unknown,
}

impl Demux {
    pub fn add_peer(&mut self, ufrag: &str, peer: PeerId) {
        self.by_ufrag.insert(ufrag.to_owned(), peer);
    }

    pub fn remove_peer(&mut self, peer: PeerId) {
        self.by_ufrag.retain(|_, p| *p != peer);
        self.by_addr.retain(|_, p| *p != peer);
    }

    pub fn route(&self, from: SocketAddr, datagram: &[u8]) -> Route {
        let known = self.by_addr.get(&from).copied();
        // A binding request names its peer: it wins over the address, so a client port reused
        // by a new session (or a peer moving paths) is routed to the session it names.
        if classify(datagram) == PacketClass::Stun
            && let Some(peer) = binding_request_ufrag(datagram).and_then(|u| self.by_ufrag.get(u))
        {
            return if known == Some(*peer) {
                Route::Peer(*peer)
            } else {
                Route::NewPath(*peer)
            };
        }
        match known {
            Some(peer) => Route::Peer(peer),
            None => Route::Unknown,
        }
    }

    /// Remembers `from` as a path of `peer` (called once the peer's stack accepted the request).
    pub fn learn(&mut self, from: SocketAddr, peer: PeerId) {
        self.by_addr.insert(from, peer);
    }

    pub fn paths(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, as browsers send it, to exercise attribute walking.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn reads_our_ufrag_from_a_binding_request() {
        assert_eq!(
            binding_request_ufrag(&binding_request("srv1:cli9")),
            Some("srv1")
        );
        assert_eq!(
            binding_request_ufrag(&binding_request("abc:d")),
            Some("abc")
        );
    }

    #[test]
    fn ignores_non_requests_and_garbage() {
        let mut response = binding_request("srv1:cli9");
        response[1] = 0x01; // 0x0101 binding success response
        response[0] = 0x01;
        assert_eq!(binding_request_ufrag(&response), None);
        assert_eq!(binding_request_ufrag(&[0, 1, 0, 200]), None);
        let mut truncated = binding_request("srv1:cli9");
        truncated.truncate(30);
        assert_eq!(binding_request_ufrag(&truncated), None);
    }

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0x00, 0x01]), PacketClass::Stun);
        assert_eq!(classify(&[22, 254]), PacketClass::Dtls);
        assert_eq!(classify(&[0x80, 96]), PacketClass::Rtp);
        assert_eq!(classify(&[]), PacketClass::Other);
    }

    #[test]
    fn routes_by_ufrag_then_by_address() {
        let mut d = Demux::default();
        d.add_peer("aaaa", PeerId(1));
        d.add_peer("bbbb", PeerId(2));
        let from: SocketAddr = "10.0.0.5:5000".parse().unwrap();
        assert_eq!(
            d.route(from, &binding_request("bbbb:x")),
            Route::NewPath(PeerId(2))
        );
        assert_eq!(d.route(from, &[0x80, 0]), Route::Unknown);
        d.learn(from, PeerId(2));
        assert_eq!(d.route(from, &[0x80, 0]), Route::Peer(PeerId(2)));
        assert_eq!(
            d.route(from, &binding_request("zzzz:x")),
            Route::Peer(PeerId(2))
        );
        assert_eq!(
            d.route(from, &binding_request("bbbb:x")),
            Route::Peer(PeerId(2))
        );
        // The same client address now names another peer: the path moves.
        assert_eq!(
            d.route(from, &binding_request("aaaa:y")),
            Route::NewPath(PeerId(1))
        );
        d.remove_peer(PeerId(2));
        assert_eq!(d.route(from, &[0x80, 0]), Route::Unknown);
        assert_eq!(d.paths(), 0);
    }
}
