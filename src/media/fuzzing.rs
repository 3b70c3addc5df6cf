//! What the fuzz targets (`fuzz/`) drive, built only with the `fuzzing` feature: one peer
//! connection as the engine runs it (the shared socket's routing, then the stack, then what the
//! peer makes of its media), without sockets, threads or Firestore. Time is an input.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::shared::TransportProtocol;

use super::demux::{Demux, Route};
use super::offer::{CodecSupport, inspect_offer};
use super::peer::{Peer, PeerOutput, PeerSetup};
use super::{PeerId, SessionKey};

/// One answered session: a client at any address talks to it through the routing table.
pub struct FuzzPeer {
    demux: Demux,
    peer: Peer,
    local: SocketAddr,
    outputs: Vec<PeerOutput>,
    /// Media packets the peer handed over (what forwarding would have sent on).
    pub media_packets: u64,
    /// The connection failed (the client closed DTLS, say).
    pub failed: bool,
}

/// A certificate as the engine makes one (ECDSA P-256), for [`FuzzPeer::answer`].
pub fn certificate() -> RTCCertificate {
    super::engine::generate_certificate().expect("a certificate")
}

impl FuzzPeer {
    /// A peer that answered `offer` (SDP) with the server's host candidate `local`; the
    /// answer is returned with it.
    pub fn answer(
        offer: &str,
        local: SocketAddr,
        certificate: RTCCertificate,
        now: Instant,
    ) -> Result<(FuzzPeer, String), String> {
        let codecs = CodecSupport {
            audio: vec!["opus".into()],
            video: vec!["VP8".into(), "VP9".into(), "H264".into()],
        };
        let summary = inspect_offer(offer, &codecs).map_err(|e| e.to_string())?;
        let setup = PeerSetup {
            certificate,
            codecs,
            ice_lite: true,
            candidates: vec![local],
            tcp_candidates: Vec::new(),
        };
        let key = SessionKey {
            room: "fuzz".into(),
            session: "client".into(),
        };
        let mut peer = Peer::new(PeerId(1), key, "fuzz".into(), &setup, now)?;
        let answer = peer.negotiate(now, offer, &summary, |_| "firesfu".to_owned())?;
        let mut demux = Demux::default();
        demux.add_peer(&peer.ufrag, &peer.ice_password, peer.id);
        Ok((
            FuzzPeer {
                demux,
                peer,
                local,
                outputs: Vec::new(),
                media_packets: 0,
                failed: false,
            },
            answer,
        ))
    }

    /// A datagram from `from`, as the engine's socket loop takes it: routed, fed to the stack,
    /// and the peer's outputs consumed. False when the routing dropped it.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        match self.demux.route(from, datagram) {
            Route::Peer(_) | Route::NewPath(_) => {}
            Route::Unauthenticated | Route::Unknown => return false,
        }
        // A datagram the stack refuses is dropped, as the engine drops it.
        let _ = self
            .peer
            .handle_datagram(now, self.local, from, datagram, TransportProtocol::UDP);
        self.drain(now);
        true
    }

    /// The stack's timers.
    pub fn timeout(&mut self, now: Instant) {
        self.peer.handle_timeout(now);
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        self.peer.poll_outputs(now, &mut self.outputs);
        for output in self.outputs.drain(..) {
            match output {
                PeerOutput::Media { .. } => self.media_packets += 1,
                PeerOutput::Failed => self.failed = true,
                _ => {}
            }
        }
        self.peer.refresh_deadline();
    }

    /// What the peer sends (to the client), with where to.
    pub fn transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.peer.poll_transmit().map(|(to, _, data)| (to, data))
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.peer.deadline
    }

    pub fn connected(&self) -> bool {
        self.peer.connected
    }
}
