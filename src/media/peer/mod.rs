//! One participant session's peer connection: its state, feeding it datagrams and timers,
//! reading what it received, and writing forwarded media into its receive slots. Applying
//! offers is in [`negotiate`].

mod negotiate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::ice::tcp_type::TcpType;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverId,
};
use rtc::sansio::Protocol;
pub use rtc::shared::TransportProtocol;
use rtc::shared::{TaggedBytesMut, TransportContext};
use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;

use super::ConnectAttempt;
use super::codecs::{build_media_engine, codec_descs, ext_descs};
use super::keyframe::{DEFAULT_INTERVAL, KeyframeLimiter};
use super::offer::{CodecSupport, MediaKind, OfferSummary};
use super::rewrite::{CodecDesc, ExtDesc, SlotSequencer, Translation, Unforwardable};
use super::room::TrackRef;
use super::{PeerId, SessionKey};

/// What every peer connection of this instance shares.
#[derive(Clone)]
pub struct PeerSetup {
    pub certificate: RTCCertificate,
    pub codecs: CodecSupport,
    pub ice_lite: bool,
    /// Our host candidates (advertised address + the shared port).
    pub candidates: Vec<SocketAddr>,
    /// Passive ICE-TCP candidates (advertised address + a TCP port).
    pub tcp_candidates: Vec<SocketAddr>,
}

/// A publish m-line of this peer.
struct Publish {
    receiver: RTCRtpReceiverId,
    /// Keyframes exist only in video: audio tracks get no keyframe requests.
    video: bool,
    /// Learned when the first packet opens the track; needed to address keyframe requests.
    ssrc: Option<u32>,
    /// A keyframe was asked for before the track started: ask as soon as it does.
    keyframe_waiting: bool,
    codecs: Vec<CodecDesc>,
    exts: Vec<ExtDesc>,
    keyframes: KeyframeLimiter,
}

/// A receive slot of this peer: we send on it.
struct Slot {
    sender: RTCRtpSenderId,
    codecs: Vec<CodecDesc>,
    exts: Vec<ExtDesc>,
    sequencer: SlotSequencer,
    source: Option<(TrackRef, Translation)>,
}

/// What the engine must act on after feeding a peer.
#[derive(Debug)]
pub enum PeerOutput {
    Connected,
    Failed,
    /// An RTP packet on a publish m-line.
    Media {
        mid: String,
        packet: rtp::Packet,
    },
    /// The subscriber asks for a keyframe of what its slot `mid` carries.
    KeyframeRequest {
        slot: String,
    },
    /// The subscriber reported lost packets (the stack retransmits them).
    Nack,
}

pub struct Peer {
    pub id: PeerId,
    pub key: SessionKey,
    pub display_name: String,
    pub ufrag: String,
    /// Our ICE password: what a binding request from a new address must be signed with.
    pub ice_password: String,
    pc: RTCPeerConnection,
    /// Our host candidates, added with the first answer.
    candidates: Vec<SocketAddr>,
    tcp_candidates: Vec<SocketAddr>,
    has_candidates: bool,
    /// What connecting tried (checks by transport, relay candidates offered, ICE reached).
    pub attempt: ConnectAttempt,
    /// The transport media last arrived on: the selected ICE path's.
    pub transport: TransportProtocol,
    /// rtc's track id of each published (received) track → its m-line.
    published_tracks: HashMap<String, String>,
    publishes: HashMap<String, Publish>,
    slots: HashMap<String, Slot>,
    pub last_heard: Instant,
    pub connected: bool,
    /// The stack panicked inside a call for this peer: it is closed at the next drain.
    broken: bool,
    /// The stack's next timer, cached after every interaction.
    pub deadline: Option<Instant>,
}

impl Peer {
    pub fn start_slot(&mut self, mid: &str, source: TrackRef, translation: Translation) {
        if let Some(slot) = self.slots.get_mut(mid) {
            slot.sequencer.switch_source();
            slot.source = Some((source, translation));
        }
    }

    pub fn stop_slot(&mut self, mid: &str) {
        if let Some(slot) = self.slots.get_mut(mid) {
            slot.source = None;
        }
    }

    pub fn slot_sources(&self) -> impl Iterator<Item = &TrackRef> {
        self.slots
            .values()
            .filter_map(|s| s.source.as_ref().map(|(t, _)| t))
    }

    pub fn slot_source(&self, mid: &str) -> Option<&TrackRef> {
        self.slots
            .get(mid)
            .and_then(|s| s.source.as_ref().map(|(t, _)| t))
    }

    /// Runs one call into the stack. A panic in it (a bug in `rtc` that a crafted packet may
    /// reach) breaks only this peer, which the engine then closes, instead of the media thread
    /// and with it every room of the instance.
    fn guarded<T>(&mut self, what: &'static str, call: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.broken {
            return None;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&mut *self))) {
            Ok(value) => Some(value),
            Err(_) => {
                self.broken = true;
                tracing::error!(
                    peer = self.id.0,
                    what,
                    "the WebRTC stack panicked; closing this peer"
                );
                None
            }
        }
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        protocol: TransportProtocol,
    ) -> Result<(), String> {
        self.last_heard = now;
        if data.first().is_some_and(|b| *b <= 3) {
            match protocol {
                TransportProtocol::TCP => self.attempt.tcp_checks += 1,
                _ => self.attempt.udp_checks += 1,
            }
        } else {
            self.transport = protocol;
        }
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: BytesMut::from(data),
        };
        self.guarded("handle_read", |p| p.pc.handle_read(message))
            .ok_or_else(|| "the stack panicked".to_owned())?
            .map_err(|e| e.to_string())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(Err(e)) = self.guarded("handle_timeout", |p| p.pc.handle_timeout(now)) {
            tracing::debug!(peer = self.id.0, "timeout handling failed: {e}");
        }
    }

    pub fn refresh_deadline(&mut self) {
        self.deadline = self
            .guarded("poll_timeout", |p| p.pc.poll_timeout())
            .flatten();
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, TransportProtocol, BytesMut)> {
        self.guarded("poll_write", |p| p.pc.poll_write())
            .flatten()
            .map(|m| {
                (
                    m.transport.peer_addr,
                    m.transport.transport_protocol,
                    m.message,
                )
            })
    }

    /// Drains the stack's events and inbound messages into `out`.
    pub fn poll_outputs(&mut self, now: Instant, out: &mut Vec<PeerOutput>) {
        let start = out.len();
        if self
            .guarded("poll_read", |p| p.poll_stack(now, out))
            .is_none()
        {
            out.truncate(start);
            out.push(PeerOutput::Failed);
        }
    }

    fn poll_stack(&mut self, now: Instant, out: &mut Vec<PeerOutput>) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected if !self.connected => {
                        self.connected = true;
                        out.push(PeerOutput::Connected);
                    }
                    RTCPeerConnectionState::Failed => out.push(PeerOutput::Failed),
                    _ => {}
                },
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
                ) => self.attempt.ice_connected = true,
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if let Some(mid) = self.published_tracks.get(&init.track_id).cloned() {
                        self.track_started(now, &mid, init.ssrc);
                    }
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(track_id, packet) => {
                    if let Some(mid) = self.published_tracks.get(&track_id).cloned() {
                        if self.publishes.get(&mid).is_some_and(|p| p.ssrc.is_none()) {
                            self.track_started(now, &mid, packet.header.ssrc);
                        }
                        out.push(PeerOutput::Media { mid, packet });
                    }
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    // rtc attributes a compound RTCP packet to the track of its *first*
                    // packet's first SSRC: often the browser's own sender report, so a PLI in
                    // the same compound would look like it concerned a published track. Each
                    // feedback packet names the stream it is about: route by that.
                    for packet in &packets {
                        let any = packet.as_any();
                        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            self.keyframe_wanted(pli.media_ssrc, out);
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            for entry in &fir.fir {
                                self.keyframe_wanted(entry.ssrc, out);
                            }
                        } else if any.is::<TransportLayerNack>() {
                            out.push(PeerOutput::Nack);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A subscriber asked for a keyframe of the stream we send it with `ssrc`.
    fn keyframe_wanted(&self, ssrc: u32, out: &mut Vec<PeerOutput>) {
        if let Some(mid) = self
            .slots
            .iter()
            .find_map(|(mid, slot)| (slot.sequencer.ssrc() == ssrc).then_some(mid))
        {
            out.push(PeerOutput::KeyframeRequest { slot: mid.clone() });
        }
    }

    /// Forwards one publisher packet into slot `mid`, rewritten for this subscriber.
    pub fn forward(
        &mut self,
        now: Instant,
        mid: &str,
        packet: &rtp::Packet,
    ) -> Result<(), ForwardError> {
        let slot = self.slots.get_mut(mid).ok_or(ForwardError::NoSlot)?;
        let (_, translation) = slot.source.as_ref().ok_or(ForwardError::NoSlot)?;
        let mut header = rtp::header::Header::default();
        slot.sequencer
            .rewrite(translation, &packet.header, &mut header, now)
            .map_err(ForwardError::Unforwardable)?;
        let sender = slot.sender;
        let packet = rtp::Packet {
            header,
            payload: packet.payload.clone(),
        };
        self.guarded("write_rtp", |p| {
            p.pc.rtp_sender(sender)
                .ok_or(ForwardError::NoSlot)?
                .write_rtp(now, packet)
                .map_err(|e| ForwardError::Stack(e.to_string()))
        })
        .unwrap_or_else(|| Err(ForwardError::Stack("the stack panicked".into())))
    }

    fn track_started(&mut self, now: Instant, mid: &str, ssrc: u32) {
        let Some(p) = self.publishes.get_mut(mid) else {
            return;
        };
        p.ssrc = Some(ssrc);
        if std::mem::take(&mut p.keyframe_waiting) {
            self.request_keyframe(now, mid);
        }
    }

    /// Asks this publisher for a keyframe on `mid`, within the rate limit. True when sent.
    /// Before the track has started the request waits for its first packet.
    pub fn request_keyframe(&mut self, now: Instant, mid: &str) -> bool {
        let Some(p) = self.publishes.get_mut(mid).filter(|p| p.video) else {
            return false;
        };
        if p.ssrc.is_none() {
            p.keyframe_waiting = true;
            return false;
        }
        if !p.keyframes.request(now) {
            return false;
        }
        self.send_pli(now, mid)
    }

    /// Sends keyframe requests that waited for the rate limit. Returns how many.
    pub fn poll_keyframes(&mut self, now: Instant) -> usize {
        let due: Vec<String> = self
            .publishes
            .iter_mut()
            .filter_map(|(mid, p)| p.keyframes.poll(now).then(|| mid.clone()))
            .collect();
        due.iter().filter(|mid| self.send_pli(now, mid)).count()
    }

    pub fn keyframe_deadline(&self) -> Option<Instant> {
        self.publishes
            .values()
            .filter_map(|p| p.keyframes.deadline())
            .min()
    }

    fn send_pli(&mut self, now: Instant, mid: &str) -> bool {
        let Some(p) = self.publishes.get(mid) else {
            return false;
        };
        let (Some(media_ssrc), receiver) = (p.ssrc, p.receiver) else {
            return false;
        };
        let Some(mut r) = self.pc.rtp_receiver(receiver) else {
            return false;
        };
        let sent = r.write_rtcp(
            now,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })],
        );
        tracing::debug!(peer = self.id.0, mid, media_ssrc, ?sent, "keyframe request");
        sent.is_ok()
    }

    pub fn published_count(&self) -> usize {
        self.publishes.len()
    }

    /// ICE round-trip time (seconds) and the fraction of published packets lost on the way in.
    pub fn quality(&mut self, now: Instant) -> (Option<f64>, Option<f64>) {
        let Some(report) = self.guarded("get_stats", |p| p.pc.get_stats(now, StatsSelector::None))
        else {
            return (None, None);
        };
        let rtt = report
            .candidate_pairs()
            .filter(|p| p.nominated && p.current_round_trip_time > 0.0)
            .map(|p| p.current_round_trip_time)
            .next()
            // An ICE-lite server sends no connectivity checks of its own, so its candidate
            // pair rarely has an RTT; the subscriber's receiver reports on what we forward do.
            .or_else(|| {
                report
                    .iter()
                    .filter_map(|e| match e {
                        RTCStatsReportEntry::RemoteInboundRtp(s) if s.round_trip_time > 0.0 => {
                            Some(s.round_trip_time)
                        }
                        _ => None,
                    })
                    .reduce(f64::min)
            });
        let (mut received, mut lost) = (0u64, 0i64);
        for s in report.inbound_rtp_streams() {
            received += s.received_rtp_stream_stats.packets_received;
            lost += s.received_rtp_stream_stats.packets_lost.max(0);
        }
        let loss = (received > 0).then(|| lost as f64 / (received as f64 + lost as f64));
        (rtt, loss)
    }

    pub fn close(&mut self) {
        let _ = self.guarded("close", |p| p.pc.close());
    }
}

#[derive(Debug)]
pub enum ForwardError {
    NoSlot,
    Unforwardable(Unforwardable),
    Stack(String),
}
