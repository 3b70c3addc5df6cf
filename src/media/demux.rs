//! Which peer a datagram on the shared socket belongs to.
//!
//! All peers share one UDP port. A datagram from a known 5-tuple goes to the peer that owns the
//! tuple. From an unknown one, only a STUN binding request can open a route: its USERNAME is
//! `<our ufrag>:<their ufrag>` and our ufrag is unique per peer (RFC 8445 §7.2.2). The route is
//! learned only once the request's MESSAGE-INTEGRITY verifies with that peer's ICE password:
//! a USERNAME sniffed off the wire must not be enough to take over someone's media path.
//!
//! With full ICE we also send checks; the client's responses carry no USERNAME and may come
//! from an address not yet learned, so they are routed by the transaction id of the request
//! we sent (remembered for a few seconds), never by a candidate address from the SDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

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
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
/// How long a check we sent may wait for its response.
const CHECK_TTL: Duration = Duration::from_secs(10);
/// Addresses one peer may be reached from (ICE may try a few; more is abuse).
const MAX_PATHS_PER_PEER: usize = 8;

/// A STUN message's type, or `None` when the datagram is not a well-formed STUN header.
fn stun_type(datagram: &[u8]) -> Option<u16> {
    if datagram.len() < STUN_HEADER || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if STUN_HEADER + declared > datagram.len() || !declared.is_multiple_of(4) {
        return None;
    }
    Some(u16::from_be_bytes([datagram[0], datagram[1]]))
}

fn transaction_id(datagram: &[u8]) -> [u8; 12] {
    let mut id = [0; 12];
    id.copy_from_slice(&datagram[8..20]);
    id
}

/// Walks the attributes: (type, offset of the attribute header, value).
fn attributes(datagram: &[u8]) -> impl Iterator<Item = (u16, usize, &[u8])> {
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let end = (STUN_HEADER + declared).min(datagram.len());
    let mut at = STUN_HEADER;
    std::iter::from_fn(move || {
        if at + 4 > end {
            return None;
        }
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
        let value = datagram
            .get(at + 4..at + 4 + len)
            .filter(|_| at + 4 + len <= end)?;
        let start = at;
        at += 4 + len.div_ceil(4) * 4;
        Some((kind, start, value))
    })
}

/// The local (our) ufrag of a STUN binding request's USERNAME, without allocating.
pub fn binding_request_ufrag(datagram: &[u8]) -> Option<&str> {
    if stun_type(datagram)? != BINDING_REQUEST {
        return None;
    }
    attributes(datagram)
        .find(|(kind, _, _)| *kind == ATTR_USERNAME)
        .and_then(|(_, _, value)| std::str::from_utf8(value).ok())
        .and_then(|username| username.split(':').next())
}

/// True when the message's MESSAGE-INTEGRITY (RFC 5389 §15.4, short-term credentials: the key
/// is the password) verifies. The HMAC covers the message up to the attribute, with the
/// header's length field counting up to and including it.
pub fn integrity_verifies(datagram: &[u8], password: &str) -> bool {
    if stun_type(datagram).is_none() {
        return false;
    }
    let Some((_, offset, value)) =
        attributes(datagram).find(|(k, _, _)| *k == ATTR_MESSAGE_INTEGRITY)
    else {
        return false;
    };
    if value.len() != 20 {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    let length = (offset + 24 - STUN_HEADER) as u16;
    ctx.update(&datagram[0..2]);
    ctx.update(&length.to_be_bytes());
    ctx.update(&datagram[4..offset]);
    let tag = ctx.sign();
    // Constant-time comparison.
    aws_lc_rs::constant_time::verify_slices_are_equal(tag.as_ref(), value).is_ok()
}

/// The routing table of the shared socket.
#[derive(Debug, Default)]
pub struct Demux {
    /// Our ufrag → the peer and its ICE password.
    by_ufrag: HashMap<String, (PeerId, String)>,
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Binding requests we sent (full ICE): transaction id → peer, and when it expires.
    checks: HashMap<[u8; 12], (PeerId, Instant)>,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Peer(PeerId),
    /// A verified binding request for a known peer from a new address: the path is learned.
    NewPath(PeerId),
    /// A binding request naming a peer whose MESSAGE-INTEGRITY does not verify.
    Unauthenticated,
    /// Unknown sender and not a binding request for one of our peers.
    Unknown,
}

impl Demux {
    /// Entries of its tables (`/stats`: a leak shows as a count that only grows).
    pub fn sizes(&self) -> [(&'static str, usize); 3] {
        [
            ("demuxUfrags", self.by_ufrag.len()),
            ("demuxAddresses", self.by_addr.len()),
            ("demuxChecks", self.checks.len()),
        ]
    }

    pub fn add_peer(&mut self, ufrag: &str, password: &str, peer: PeerId) {
        self.by_ufrag
            .insert(ufrag.to_owned(), (peer, password.to_owned()));
    }

    /// The peer's new ICE credentials (an ICE restart); its learned paths stay.
    pub fn set_credentials(&mut self, peer: PeerId, ufrag: &str, password: &str) {
        self.by_ufrag.retain(|_, (p, _)| *p != peer);
        self.add_peer(ufrag, password, peer);
    }

    pub fn remove_peer(&mut self, peer: PeerId) {
        self.by_ufrag.retain(|_, (p, _)| *p != peer);
        self.by_addr.retain(|_, p| *p != peer);
        self.checks.retain(|_, (p, _)| *p != peer);
    }

    /// The peer a binding request is for, if it is one of ours and its MESSAGE-INTEGRITY
    /// verifies (`NewPath`); learns nothing. ICE-TCP authenticates a connection with it.
    pub fn verify(&self, datagram: &[u8]) -> Route {
        match self.named_peer(datagram) {
            Some((peer, password)) if integrity_verifies(datagram, password) => {
                Route::NewPath(peer)
            }
            Some(_) => Route::Unauthenticated,
            None => Route::Unknown,
        }
    }

    /// The peer (and its password) a binding request's USERNAME names.
    fn named_peer(&self, datagram: &[u8]) -> Option<(PeerId, &str)> {
        if classify(datagram) != PacketClass::Stun {
            return None;
        }
        binding_request_ufrag(datagram)
            .and_then(|u| self.by_ufrag.get(u))
            .map(|(p, pw)| (*p, pw.as_str()))
    }

    /// Decides where a datagram goes; learns a new path only from a verified binding request.
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Route {
        let known = self.by_addr.get(&from).copied();
        if classify(datagram) == PacketClass::Stun {
            match stun_type(datagram) {
                // A binding request names its peer: it wins over the address, so a client port
                // reused by a new session (or a peer moving paths) goes to the session it names.
                Some(BINDING_REQUEST) => {
                    if let Some((peer, password)) = self.named_peer(datagram) {
                        if known == Some(peer) {
                            return Route::Peer(peer);
                        }
                        if !integrity_verifies(datagram, password) {
                            return Route::Unauthenticated;
                        }
                        self.learn(from, peer);
                        return Route::NewPath(peer);
                    }
                }
                Some(BINDING_SUCCESS | BINDING_ERROR) => {
                    if let Some((peer, _)) = self.checks.remove(&transaction_id(datagram)) {
                        return Route::Peer(peer);
                    }
                }
                _ => {}
            }
        }
        match known {
            Some(peer) => Route::Peer(peer),
            None => Route::Unknown,
        }
    }

    /// Notes a datagram we send: our own binding requests (full ICE) are remembered so that
    /// their responses can be routed.
    pub fn sent(&mut self, peer: PeerId, datagram: &[u8], now: Instant) {
        if datagram.first().is_some_and(|b| *b <= 3) && stun_type(datagram) == Some(BINDING_REQUEST)
        {
            self.checks
                .insert(transaction_id(datagram), (peer, now + CHECK_TTL));
        }
    }

    fn learn(&mut self, from: SocketAddr, peer: PeerId) {
        let paths = self.by_addr.values().filter(|p| **p == peer).count();
        if paths >= MAX_PATHS_PER_PEER {
            // Forget the peer's other paths but the one now proven; ICE nominates it next.
            self.by_addr.retain(|_, p| *p != peer);
        }
        self.by_addr.insert(from, peer);
    }

    /// Drops remembered checks that were never answered.
    pub fn expire(&mut self, now: Instant) {
        self.checks.retain(|_, (_, until)| *until > now);
    }

    pub fn paths(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A binding request as an ICE agent sends it: PRIORITY, USERNAME, MESSAGE-INTEGRITY
    /// (keyed with `password`), FINGERPRINT-less.
    pub fn binding_request(username: &str, password: &str) -> Vec<u8> {
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
        m.extend_from_slice(&((attrs.len() + 24) as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        let tag = hmac::sign(&key, &m);
        m.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(tag.as_ref());
        m
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_our_ufrag_from_a_binding_request() {
        assert_eq!(
            binding_request_ufrag(&binding_request("srv1:cli9", "pw")),
            Some("srv1")
        );
        assert_eq!(
            binding_request_ufrag(&binding_request("abc:d", "pw")),
            Some("abc")
        );
    }

    #[test]
    fn ignores_non_requests_and_garbage() {
        let mut response = binding_request("srv1:cli9", "pw");
        response[0] = 0x01;
        response[1] = 0x01; // 0x0101 binding success response
        assert_eq!(binding_request_ufrag(&response), None);
        assert_eq!(binding_request_ufrag(&[0, 1, 0, 200]), None);
        let mut truncated = binding_request("srv1:cli9", "pw");
        truncated.truncate(30);
        assert_eq!(binding_request_ufrag(&truncated), None);
    }

    #[test]
    fn verifies_message_integrity_with_the_password() {
        let m = binding_request("srv1:cli9", "s3cret-password");
        assert!(integrity_verifies(&m, "s3cret-password"));
        assert!(!integrity_verifies(&m, "another-password"));
        let mut tampered = m.clone();
        tampered[30] ^= 1;
        assert!(!integrity_verifies(&tampered, "s3cret-password"));
        // Without the attribute at all.
        let mut bare = m[..m.len() - 24].to_vec();
        let len = (bare.len() - STUN_HEADER) as u16;
        bare[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(!integrity_verifies(&bare, "s3cret-password"));
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
        d.add_peer("aaaa", "pw-a", PeerId(1));
        d.add_peer("bbbb", "pw-b", PeerId(2));
        let from = addr("10.0.0.5:5000");
        assert_eq!(d.route(from, &[0x80, 0]), Route::Unknown);
        assert_eq!(
            d.route(from, &binding_request("bbbb:x", "pw-b")),
            Route::NewPath(PeerId(2))
        );
        assert_eq!(d.route(from, &[0x80, 0]), Route::Peer(PeerId(2)));
        assert_eq!(
            d.route(from, &binding_request("zzzz:x", "pw-z")),
            Route::Peer(PeerId(2))
        );
        // The same client address now names another peer: the path moves.
        assert_eq!(
            d.route(from, &binding_request("aaaa:y", "pw-a")),
            Route::NewPath(PeerId(1))
        );
        d.remove_peer(PeerId(1));
        assert_eq!(d.route(from, &[0x80, 0]), Route::Unknown);
        assert_eq!(d.paths(), 0);
    }

    #[test]
    fn a_sniffed_username_without_the_password_takes_no_path() {
        let mut d = Demux::default();
        d.add_peer("victim", "the-real-password", PeerId(1));
        let client = addr("10.0.0.5:5000");
        let attacker = addr("10.6.6.6:6666");
        assert_eq!(
            d.route(client, &binding_request("victim:c", "the-real-password")),
            Route::NewPath(PeerId(1))
        );
        assert_eq!(
            d.route(attacker, &binding_request("victim:c", "guessed")),
            Route::Unauthenticated
        );
        assert_eq!(d.route(attacker, &[0x80, 0]), Route::Unknown);
        assert_eq!(d.route(client, &[0x80, 0]), Route::Peer(PeerId(1)));
    }

    #[test]
    fn responses_to_our_checks_route_by_transaction_id() {
        let now = Instant::now();
        let mut d = Demux::default();
        d.add_peer("aaaa", "pw", PeerId(3));
        let check = binding_request("cli:aaaa", "client-password");
        d.sent(PeerId(3), &check, now);
        let mut response = check.clone();
        response[0] = 0x01;
        response[1] = 0x01;
        let from = addr("10.0.0.9:7000");
        assert_eq!(d.route(from, &response), Route::Peer(PeerId(3)));
        // Once only, and the address is not learned by it.
        assert_eq!(d.route(from, &response), Route::Unknown);
        assert_eq!(d.route(from, &[0x80, 0]), Route::Unknown);
        d.sent(PeerId(3), &check, now);
        d.expire(now + CHECK_TTL);
        assert_eq!(d.route(from, &response), Route::Unknown);
    }

    #[test]
    fn a_peer_has_a_bounded_number_of_paths() {
        let mut d = Demux::default();
        d.add_peer("aaaa", "pw", PeerId(1));
        for port in 0..50u16 {
            let from = SocketAddr::from(([10, 0, 0, 1], 1000 + port));
            d.route(from, &binding_request("aaaa:x", "pw"));
        }
        assert!(d.paths() <= MAX_PATHS_PER_PEER, "{}", d.paths());
    }
}
